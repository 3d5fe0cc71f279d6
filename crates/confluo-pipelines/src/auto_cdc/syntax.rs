//! The AUTO CDC clauses as Lakeflow writes them, after `AUTO CDC [ONCE] INTO` or
//! `APPLY CHANGES INTO`:
//! `target FROM source KEYS (k, ...) [IGNORE NULL UPDATES] [APPLY AS DELETE WHEN cond]
//! [APPLY AS TRUNCATE WHEN cond] SEQUENCE BY expr [COLUMNS a, b | COLUMNS * EXCEPT (x)]
//! [STORED AS SCD TYPE 1 | 2] [TRACK HISTORY ON a, b | TRACK HISTORY ON * EXCEPT (x)]`.
//! Clauses after the source are accepted in any order, each at most once.

use std::ops::ControlFlow;
use std::path::Path;

use datafusion::sql::sqlparser::ast::{Expr, ObjectName, Query, Value, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use super::{AutoCdcSpec, Clause, ColumnSelection, ScdType};
use crate::error::Pos;

/// An AUTO CDC flow as written: what it does and where each clause is.
#[derive(Debug, Clone)]
pub struct CdcFlow {
    /// The spec.
    pub spec: AutoCdcSpec,
    /// Where each clause that was written starts.
    pub clauses: Vec<(Clause, Pos)>,
    /// Where the source is written.
    pub source: Pos,
}

impl CdcFlow {
    /// Where a clause is written (or the source, for a clause left out).
    pub fn pos_of(&self, clause: Clause) -> &Pos {
        self.clauses
            .iter()
            .find(|(c, _)| *c == clause)
            .map(|(_, p)| p)
            .unwrap_or(&self.source)
    }
}

fn pos(path: &Path, loc: Location) -> Pos {
    Pos {
        file: path.to_path_buf(),
        line: loc.line.max(1),
        column: loc.column.max(1),
    }
}

fn word(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn eat(p: &mut Parser, words: &[&str]) -> bool {
    let toks = p.peek_tokens_ref::<5>();
    for (i, w) in words.iter().enumerate() {
        if word(&toks[i].token).as_deref() != Some(*w) {
            return false;
        }
    }
    for _ in words {
        p.next_token();
    }
    true
}

fn ident_list(p: &mut Parser) -> Result<Vec<String>, ParserError> {
    let paren = p.consume_token(&Token::LParen);
    let mut out = Vec::new();
    loop {
        out.push(p.parse_identifier()?.value);
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    if paren {
        p.expect_token(&Token::RParen)?;
    }
    Ok(out)
}

/// `* EXCEPT (a, b)`, `(a, b)` or `a, b`.
fn selection(p: &mut Parser) -> Result<ColumnSelection, ParserError> {
    if p.consume_token(&Token::Mul) {
        if eat(p, &["EXCEPT"]) {
            p.expect_token(&Token::LParen)?;
            let list = ident_list(p)?;
            p.expect_token(&Token::RParen)?;
            return Ok(ColumnSelection::Except(list));
        }
        return Ok(ColumnSelection::All);
    }
    Ok(ColumnSelection::Only(ident_list(p)?))
}

/// Databricks writes string literals in double quotes (`operation = "DELETE"`); the
/// conditions are planned later by DataFusion, where double quotes name columns.
struct SingleQuote;

impl VisitorMut for SingleQuote {
    type Break = ();
    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Expr::Value(v) = e
            && let Value::DoubleQuotedString(s) = &v.value
        {
            v.value = Value::SingleQuotedString(s.clone());
        }
        ControlFlow::Continue(())
    }
}

fn expr_sql(p: &mut Parser) -> Result<String, ParserError> {
    let mut e = p.parse_expr()?;
    let _ = e.visit(&mut SingleQuote);
    Ok(e.to_string())
}

/// The source `name` or `STREAM(name)` / `STREAM(read_files(...))` as the query
/// `SELECT * FROM <source>`, with the source's tokens (and so its positions) kept.
fn source_query(p: &mut Parser) -> Result<Box<Query>, ParserError> {
    let first = p.peek_token();
    let mut toks: Vec<TokenWithSpan> = Vec::new();
    let mk = |t: Token| TokenWithSpan::new(t, first.span);
    toks.push(mk(Token::make_keyword("SELECT")));
    toks.push(mk(Token::Mul));
    toks.push(mk(Token::make_keyword("FROM")));
    let name = p.next_token();
    if !matches!(name.token, Token::Word(_)) {
        return p.expected("a source table after FROM", name);
    }
    toks.push(name);
    while p.peek_token().token == Token::Period {
        toks.push(p.next_token());
        let part = p.next_token();
        if !matches!(part.token, Token::Word(_)) {
            return p.expected("a name after `.`", part);
        }
        toks.push(part);
    }
    if p.peek_token().token == Token::LParen {
        let mut depth = 0usize;
        loop {
            let t = p.next_token();
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::EOF => return p.expected("`)`", t),
                _ => {}
            }
            toks.push(t);
            if depth == 0 {
                break;
            }
        }
    }
    toks.push(mk(Token::EOF));
    let dialect = DatabricksDialect {};
    Parser::new(&dialect)
        .with_tokens_with_locations(toks)
        .parse_query()
}

/// Parses `target FROM source clauses...` after `AUTO CDC [ONCE] INTO` / `APPLY CHANGES INTO`.
pub fn parse_body(
    p: &mut Parser,
    path: &Path,
) -> Result<(ObjectName, Box<Query>, CdcFlow), ParserError> {
    let target = p.parse_object_name(false)?;
    let (query, cdc) = parse_from(p, path)?;
    Ok((target, query, cdc))
}

/// Parses `FROM source clauses...` (after the target, or after `FLOW AUTO CDC` in
/// `CREATE STREAMING TABLE t FLOW AUTO CDC FROM ...`).
pub fn parse_from(p: &mut Parser, path: &Path) -> Result<(Box<Query>, CdcFlow), ParserError> {
    if !eat(p, &["FROM"]) {
        let t = p.peek_token();
        return p.expected("FROM <source> after the AUTO CDC target", t);
    }
    let source = pos(path, p.peek_token().span.start);
    let query = source_query(p)?;
    let mut spec = AutoCdcSpec::default();
    let mut clauses: Vec<(Clause, Pos)> = Vec::new();
    let mut seen = Vec::new();
    let mut sequence = false;
    loop {
        let at = p.peek_token();
        let here = pos(path, at.span.start);
        let mut once = |name: &str| -> Result<(), ParserError> {
            if seen.contains(&name.to_string()) {
                return Err(ParserError::ParserError(format!(
                    "{name} is written twice in this AUTO CDC flow"
                )));
            }
            seen.push(name.to_string());
            Ok(())
        };
        if eat(p, &["KEYS"]) {
            once("KEYS")?;
            spec.keys = ident_list(p)?;
            clauses.push((Clause::Keys, here));
        } else if eat(p, &["IGNORE", "NULL", "UPDATES"]) {
            once("IGNORE NULL UPDATES")?;
            spec.ignore_null_updates = true;
        } else if eat(p, &["APPLY", "AS", "DELETE", "WHEN"]) {
            once("APPLY AS DELETE WHEN")?;
            spec.apply_as_deletes = Some(expr_sql(p)?);
            clauses.push((Clause::Deletes, here));
        } else if eat(p, &["APPLY", "AS", "TRUNCATE", "WHEN"]) {
            once("APPLY AS TRUNCATE WHEN")?;
            spec.apply_as_truncates = Some(expr_sql(p)?);
            clauses.push((Clause::Truncates, here));
        } else if eat(p, &["SEQUENCE", "BY"]) {
            once("SEQUENCE BY")?;
            spec.sequence_by = expr_sql(p)?;
            sequence = true;
            clauses.push((Clause::SequenceBy, here));
        } else if eat(p, &["COLUMNS"]) {
            once("COLUMNS")?;
            spec.columns = selection(p)?;
            clauses.push((Clause::Columns, here));
        } else if eat(p, &["STORED", "AS", "SCD", "TYPE"]) {
            once("STORED AS")?;
            let t = p.next_token();
            spec.scd_type = match &t.token {
                Token::Number(n, _) if n == "1" => ScdType::One,
                Token::Number(n, _) if n == "2" => ScdType::Two,
                _ => return p.expected("1 or 2 after STORED AS SCD TYPE", t),
            };
        } else if eat(p, &["TRACK", "HISTORY", "ON"]) {
            once("TRACK HISTORY ON")?;
            spec.track_history = selection(p)?;
            clauses.push((Clause::TrackHistory, here));
        } else {
            break;
        }
    }
    let next = p.peek_token();
    if !matches!(next.token, Token::SemiColon | Token::EOF) {
        return p.expected(
            "KEYS, IGNORE NULL UPDATES, APPLY AS DELETE WHEN, APPLY AS TRUNCATE WHEN, SEQUENCE BY, COLUMNS, STORED AS SCD TYPE or TRACK HISTORY ON",
            next,
        );
    }
    if spec.keys.is_empty() {
        return Err(ParserError::ParserError(
            "AUTO CDC needs KEYS (...): the columns that identify a row".into(),
        ));
    }
    if !sequence {
        return Err(ParserError::ParserError(
            "AUTO CDC needs SEQUENCE BY <column>: the order of the changes of a key".into(),
        ));
    }
    Ok((
        query,
        CdcFlow {
            spec,
            clauses,
            source,
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::dialect::{Definition, parse_file};

    use super::*;

    fn flow(sql: &str) -> (String, CdcFlow) {
        let f = parse_file(Path::new("p.sql"), sql, &BTreeMap::new()).unwrap();
        let Some(Definition::Flow(f)) = f.definitions.into_iter().last() else {
            panic!("no flow")
        };
        (f.name, *f.auto_cdc.expect("an AUTO CDC flow"))
    }

    #[test]
    fn both_spellings() {
        let (name, f) = flow(
            "CREATE FLOW f AS AUTO CDC INTO t FROM STREAM(src) KEYS (a, b) IGNORE NULL UPDATES \
             APPLY AS DELETE WHEN op = \"DELETE\" APPLY AS TRUNCATE WHEN op = 'T' SEQUENCE BY ts \
             COLUMNS * EXCEPT (op, ts) STORED AS SCD TYPE 2 TRACK HISTORY ON * EXCEPT (x)",
        );
        assert_eq!(name, "f");
        assert_eq!(f.spec.keys, ["a", "b"]);
        assert!(f.spec.ignore_null_updates);
        assert_eq!(f.spec.apply_as_deletes.as_deref(), Some("op = 'DELETE'"));
        assert_eq!(f.spec.sequence_by, "ts");
        assert_eq!(
            f.spec.columns,
            ColumnSelection::Except(vec!["op".into(), "ts".into()])
        );
        assert_eq!(f.spec.scd_type, ScdType::Two);
        assert_eq!(
            f.spec.track_history,
            ColumnSelection::Except(vec!["x".into()])
        );
        let (name, f) = flow(
            "APPLY CHANGES INTO LIVE.t FROM STREAM(LIVE.src) KEYS (id) SEQUENCE BY seq COLUMNS id, v",
        );
        assert_eq!(name, "t");
        assert_eq!(f.spec.scd_type, ScdType::One);
        assert_eq!(
            f.spec.columns,
            ColumnSelection::Only(vec!["id".into(), "v".into()])
        );
    }

    #[test]
    fn missing_clauses_are_errors() {
        let e = parse_file(
            Path::new("p.sql"),
            "CREATE FLOW f AS AUTO CDC INTO t FROM STREAM(src) SEQUENCE BY s",
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("needs KEYS"), "{e}");
        let e = parse_file(
            Path::new("p.sql"),
            "CREATE FLOW f AS AUTO CDC INTO t FROM STREAM(src) KEYS (k) KEYS (j) SEQUENCE BY s",
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("written twice"), "{e}");
    }
}
