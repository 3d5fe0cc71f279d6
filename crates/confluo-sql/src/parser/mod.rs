//! Confluo's SQL dialect: what DataFusion runs as is, plus the lakehouse statements
//! (catalogs, `DESCRIBE HISTORY`, `VACUUM`, `OPTIMIZE`, `TBLPROPERTIES`, ...) in Databricks'
//! spelling.
//!
//! Statements are read with sqlparser's Databricks dialect; the ones DataFusion does not
//! know are recognised by their leading words and parsed here with the same tokenizer, so
//! every error carries a line and column.

use datafusion::sql::sqlparser::ast::{Expr, Ident, ObjectName, Value};
use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

mod ast;
mod statements;
#[cfg(test)]
mod tests;

pub use ast::*;
use statements::*;
pub use statements::{parse_properties, parse_table_clauses};

/// A parse error with its position.
#[derive(Debug, Clone)]
pub struct ParseError {
    /// What was expected or is wrong.
    pub message: String,
    /// Where (1-based), when known.
    pub location: Option<Location>,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.location {
            Some(l) => write!(
                f,
                "{} at line {}, column {}",
                self.message, l.line, l.column
            ),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}

fn from_parser_error(e: ParserError, fallback: Location) -> ParseError {
    let text = e.to_string();
    let text = text
        .strip_prefix("sql parser error: ")
        .unwrap_or(&text)
        .to_string();
    // sqlparser puts " at Line: l, Column: c" at the end of its messages.
    if let Some(i) = text.rfind(" at Line: ") {
        let tail = &text[i + " at Line: ".len()..];
        let mut parts = tail.split(", Column: ");
        let line = parts.next().and_then(|s| s.trim().parse().ok());
        let col = parts.next().and_then(|s| s.trim().parse().ok());
        if let (Some(line), Some(column)) = (line, col) {
            return ParseError {
                message: text[..i].to_string(),
                location: Some(Location { line, column }),
            };
        }
    }
    ParseError {
        message: text,
        location: Some(fallback),
    }
}

/// Parses a script of `;`-separated statements.
pub fn parse_sql(sql: &str) -> Result<Vec<Parsed>, ParseError> {
    let dialect = DatabricksDialect {};
    let mut p = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(|e| from_parser_error(e, Location { line: 1, column: 1 }))?;
    let mut out = Vec::new();
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |l: Location| -> usize {
        let ls = line_starts
            .get(l.line.saturating_sub(1) as usize)
            .copied()
            .unwrap_or(sql.len());
        let line_text = &sql[ls..];
        line_text
            .char_indices()
            .nth(l.column.saturating_sub(1) as usize)
            .map(|(i, _)| ls + i)
            .unwrap_or(sql.len())
    };
    loop {
        while p.consume_token(&Token::SemiColon) {}
        let tok = p.peek_token();
        if tok.token == Token::EOF {
            break;
        }
        let start = tok.span.start;
        let statement = parse_one(&mut p).map_err(|e| from_parser_error(e, start))?;
        let next = p.peek_token();
        match next.token {
            Token::EOF | Token::SemiColon => {}
            _ => {
                return Err(ParseError {
                    message: format!("expected end of statement, found: {}", next.token),
                    location: Some(next.span.start),
                });
            }
        }
        let end = if next.token == Token::EOF {
            sql.len()
        } else {
            offset(next.span.start)
        };
        out.push(Parsed {
            statement,
            start,
            text: sql[offset(start)..end].trim().to_string(),
        });
    }
    Ok(out)
}

fn word(t: &TokenWithSpan) -> Option<String> {
    match &t.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// The `n`th next token as an unquoted word, upper-cased.
pub fn peek_word(p: &Parser, n: usize) -> Option<String> {
    word(&p.peek_nth_token(n))
}

/// Consumes the words if they come next (case-insensitive, unquoted); else consumes nothing.
pub fn eat(p: &mut Parser, words: &[&str]) -> bool {
    for (i, w) in words.iter().enumerate() {
        if peek_word(p, i).as_deref() != Some(*w) {
            return false;
        }
    }
    for _ in words {
        p.next_token();
    }
    true
}

fn expect(p: &mut Parser, words: &[&str]) -> Result<(), ParserError> {
    if eat(p, words) {
        Ok(())
    } else {
        let t = p.peek_token();
        p.expected(&words.join(" "), t)
    }
}

fn parse_one(p: &mut Parser) -> Result<ConfluoStatement, ParserError> {
    let w0 = peek_word(p, 0).unwrap_or_default();
    let w1 = peek_word(p, 1).unwrap_or_default();
    match (w0.as_str(), w1.as_str()) {
        // DataFusion lists functions (and settings) itself.
        ("SHOW", "FUNCTIONS" | "ALL") => {
            Ok(ConfluoStatement::Query(Box::new(p.parse_statement()?)))
        }
        ("SHOW", _) => parse_show(p),
        ("ANALYZE", "TABLE") => parse_analyze(p),
        ("DESCRIBE" | "DESC", _) => parse_describe(p),
        ("VACUUM", _) => {
            p.next_token();
            let table = p.parse_object_name(false)?;
            let mut retain_hours = None;
            let mut dry_run = false;
            loop {
                if eat(p, &["RETAIN"]) {
                    let v = literal_number(p)?;
                    expect(p, &["HOURS"])?;
                    retain_hours = Some(v);
                } else if eat(p, &["DRY", "RUN"]) {
                    dry_run = true;
                } else {
                    break;
                }
            }
            Ok(ConfluoStatement::Vacuum {
                table,
                retain_hours,
                dry_run,
            })
        }
        ("OPTIMIZE", _) => {
            p.next_token();
            let table = p.parse_object_name(false)?;
            let predicate = if eat(p, &["WHERE"]) {
                Some(Box::new(p.parse_expr()?))
            } else {
                None
            };
            let mut zorder = Vec::new();
            if eat(p, &["ZORDER", "BY"]) {
                let parens = p.consume_token(&Token::LParen);
                zorder = p.parse_comma_separated(|p| p.parse_identifier())?;
                if parens {
                    p.expect_token(&Token::RParen)?;
                }
            }
            Ok(ConfluoStatement::Optimize {
                table,
                predicate,
                zorder,
            })
        }
        ("USE", _) => {
            p.next_token();
            let catalog = eat(p, &["CATALOG"]);
            if !catalog {
                let _ = eat(p, &["SCHEMA"]) || eat(p, &["DATABASE"]);
            }
            Ok(ConfluoStatement::Use {
                name: p.parse_object_name(false)?,
                catalog,
            })
        }
        ("COMMENT", "ON") => {
            p.next_token();
            p.next_token();
            let kind = parse_kind(p)?;
            let name = p.parse_object_name(false)?;
            expect(p, &["IS"])?;
            let comment = if eat(p, &["NULL"]) {
                None
            } else {
                Some(p.parse_literal_string()?)
            };
            Ok(ConfluoStatement::CommentOn {
                kind,
                name,
                comment,
            })
        }
        ("ALTER", "TABLE") => parse_alter(p),
        ("CREATE", _) => parse_create(p),
        ("INSERT", _) => parse_insert(p),
        ("DROP", _) => {
            p.next_token();
            let _ = eat(p, &["FOREIGN"]);
            let kind = match parse_kind(p)? {
                ObjectKind::Column => {
                    let t = p.peek_token();
                    return p.expected("TABLE, VIEW, SCHEMA, CATALOG or CONNECTION", t);
                }
                k => k,
            };
            let if_exists = eat(p, &["IF", "EXISTS"]);
            let name = p.parse_object_name(false)?;
            let cascade = eat(p, &["CASCADE"]);
            let _ = eat(p, &["RESTRICT"]) || eat(p, &["PURGE"]);
            Ok(ConfluoStatement::Drop {
                kind,
                name,
                if_exists,
                cascade,
            })
        }
        _ => Ok(ConfluoStatement::Query(Box::new(p.parse_statement()?))),
    }
}

fn parse_kind(p: &mut Parser) -> Result<ObjectKind, ParserError> {
    if eat(p, &["TABLE"]) {
        Ok(ObjectKind::Table)
    } else if eat(p, &["VIEW"]) {
        Ok(ObjectKind::View)
    } else if eat(p, &["CONNECTION"]) {
        Ok(ObjectKind::Connection)
    } else if eat(p, &["SCHEMA"]) || eat(p, &["DATABASE"]) {
        Ok(ObjectKind::Schema)
    } else if eat(p, &["CATALOG"]) {
        Ok(ObjectKind::Catalog)
    } else if eat(p, &["COLUMN"]) {
        Ok(ObjectKind::Column)
    } else {
        let t = p.peek_token();
        p.expected("TABLE, VIEW, SCHEMA, CATALOG, CONNECTION or COLUMN", t)
    }
}

fn literal_number(p: &mut Parser) -> Result<f64, ParserError> {
    let t = p.next_token();
    match &t.token {
        Token::Number(n, _) => n
            .parse()
            .map_err(|_| ParserError::ParserError(format!("invalid number {n}"))),
        _ => p.expected("a number", t),
    }
}

/// The text of a literal expression (for options like `format => 'csv'`).
pub fn literal_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.clone()),
            Value::Boolean(b) => Some(b.to_string()),
            Value::Null => Some(String::new()),
            _ => None,
        },
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::UnaryOp { op, expr } => literal_text(expr).map(|t| format!("{op}{t}")),
        _ => None,
    }
}
