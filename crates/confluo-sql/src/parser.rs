//! Confluo's SQL dialect: what DataFusion runs as is, plus the lakehouse statements
//! (catalogs, `DESCRIBE HISTORY`, `VACUUM`, `OPTIMIZE`, `TBLPROPERTIES`, ...) in Databricks'
//! spelling.
//!
//! Statements are read with sqlparser's Databricks dialect; the ones DataFusion does not
//! know are recognised by their leading words and parsed here with the same tokenizer, so
//! every error carries a line and column.

use datafusion::sql::sqlparser::ast::{
    ColumnDef, Expr, Ident, ObjectName, Query, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

/// One parsed statement and where it is in the input.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The statement.
    pub statement: ConfluoStatement,
    /// Where it starts (1-based line and column).
    pub start: Location,
    /// Its text.
    pub text: String,
}

/// A statement Confluo executes.
#[derive(Debug, Clone)]
pub enum ConfluoStatement {
    /// Anything DataFusion plans itself: queries, `EXPLAIN`, `VALUES`, ...
    Query(Box<Statement>),
    /// `CREATE CATALOG [IF NOT EXISTS] name [COMMENT '...']`
    CreateCatalog {
        /// Name.
        name: Ident,
        /// Skip when it exists.
        if_not_exists: bool,
        /// Description.
        comment: Option<String>,
    },
    /// `CREATE SCHEMA|DATABASE [IF NOT EXISTS] [catalog.]name [COMMENT '...']`
    CreateSchema {
        /// Name.
        name: ObjectName,
        /// Skip when it exists.
        if_not_exists: bool,
        /// Description.
        comment: Option<String>,
    },
    /// `CREATE [OR REPLACE] TABLE ...`
    CreateTable(Box<CreateTable>),
    /// `INSERT INTO|OVERWRITE t [(cols)] [BY NAME] query`
    Insert {
        /// Target.
        table: ObjectName,
        /// Replace the contents.
        overwrite: bool,
        /// Explicit target columns.
        columns: Vec<Ident>,
        /// Match columns by name instead of position.
        by_name: bool,
        /// The rows.
        source: Box<Query>,
    },
    /// `DROP TABLE|SCHEMA|CATALOG [IF EXISTS] name [CASCADE]`
    Drop {
        /// What kind of object.
        kind: ObjectKind,
        /// Its name.
        name: ObjectName,
        /// No error when missing.
        if_exists: bool,
        /// Drop what it contains too.
        cascade: bool,
    },
    /// `COMMENT ON TABLE|SCHEMA|CATALOG|COLUMN name IS 'text'|NULL`
    CommentOn {
        /// What kind of object.
        kind: ObjectKind,
        /// Its name (`table.column` for columns).
        name: ObjectName,
        /// The comment; `None` clears it.
        comment: Option<String>,
    },
    /// `ALTER TABLE t SET TBLPROPERTIES (...)` / `UNSET TBLPROPERTIES [IF EXISTS] (...)`
    AlterProperties {
        /// The table.
        table: ObjectName,
        /// Properties to set.
        set: Vec<(String, String)>,
        /// Properties to remove.
        unset: Vec<String>,
    },
    /// `SHOW CATALOGS|SCHEMAS|TABLES|TBLPROPERTIES|COLUMNS ...`
    Show {
        /// What to show.
        what: Show,
        /// `LIKE 'pattern'` (`*` and `%` wildcards).
        like: Option<String>,
    },
    /// `DESCRIBE [TABLE|HISTORY|DETAIL|EXTENDED] t`
    Describe {
        /// The table.
        table: ObjectName,
        /// Which description.
        kind: DescribeKind,
    },
    /// `VACUUM t [RETAIN n HOURS] [DRY RUN]`
    Vacuum {
        /// The table.
        table: ObjectName,
        /// Keep files needed by versions newer than this many hours.
        retain_hours: Option<f64>,
        /// Only list what would be deleted.
        dry_run: bool,
    },
    /// `OPTIMIZE t [WHERE partition predicate] [ZORDER BY (col, ...)]`
    Optimize {
        /// The table.
        table: ObjectName,
        /// Which partitions.
        predicate: Option<Box<Expr>>,
        /// Columns to Z-order the rewritten files by.
        zorder: Vec<Ident>,
    },
    /// `USE [CATALOG|SCHEMA] name`
    Use {
        /// `catalog` or `catalog.schema` or `schema`.
        name: ObjectName,
        /// Whether `CATALOG` was said.
        catalog: bool,
    },
}

/// `CREATE TABLE` in any of its forms.
#[derive(Debug, Clone)]
pub struct CreateTable {
    /// Name.
    pub name: ObjectName,
    /// `OR REPLACE`.
    pub or_replace: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// Declared columns.
    pub columns: Vec<ColumnDef>,
    /// `USING format` (only `delta` is stored).
    pub using: Option<String>,
    /// `PARTITIONED BY (...)`.
    pub partition_by: Vec<Ident>,
    /// `CLUSTER BY (...)`.
    pub cluster_by: Vec<Ident>,
    /// `LOCATION '...'`: an external table.
    pub location: Option<String>,
    /// `COMMENT '...'`.
    pub comment: Option<String>,
    /// `TBLPROPERTIES (...)`.
    pub properties: Vec<(String, String)>,
    /// `AS query`.
    pub query: Option<Box<Query>>,
}

impl CreateTable {
    /// A bare `CREATE TABLE name`.
    pub fn new(name: ObjectName) -> Self {
        CreateTable {
            name,
            or_replace: false,
            if_not_exists: false,
            columns: vec![],
            using: None,
            partition_by: vec![],
            cluster_by: vec![],
            location: None,
            comment: None,
            properties: vec![],
            query: None,
        }
    }
}

/// Kinds of catalog object named in DDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A catalog.
    Catalog,
    /// A schema.
    Schema,
    /// A table.
    Table,
    /// A column.
    Column,
}

/// What `SHOW` lists.
#[derive(Debug, Clone)]
pub enum Show {
    /// Catalogs.
    Catalogs,
    /// Schemas, of one catalog or the current one.
    Schemas(Option<ObjectName>),
    /// Tables, of one schema or the current one.
    Tables(Option<ObjectName>),
    /// A table's properties.
    TblProperties(ObjectName),
    /// A table's columns.
    Columns(ObjectName),
}

/// What `DESCRIBE` shows.
#[derive(Debug, Clone, PartialEq)]
pub enum DescribeKind {
    /// Columns and types.
    Columns,
    /// Columns plus table details.
    Extended,
    /// Commits, newest first, optionally only the last `n`.
    History(Option<usize>),
    /// One row of table details.
    Detail,
}

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

fn peek_word(p: &Parser, n: usize) -> Option<String> {
    word(&p.peek_nth_token(n))
}

/// Consumes the words if they come next (case-insensitive, unquoted).
fn eat(p: &mut Parser, words: &[&str]) -> bool {
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
        ("SHOW", _) => parse_show(p),
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
            let kind = match parse_kind(p)? {
                ObjectKind::Column => {
                    let t = p.peek_token();
                    return p.expected("TABLE, SCHEMA or CATALOG", t);
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
    if eat(p, &["TABLE"]) || eat(p, &["VIEW"]) {
        Ok(ObjectKind::Table)
    } else if eat(p, &["SCHEMA"]) || eat(p, &["DATABASE"]) {
        Ok(ObjectKind::Schema)
    } else if eat(p, &["CATALOG"]) {
        Ok(ObjectKind::Catalog)
    } else if eat(p, &["COLUMN"]) {
        Ok(ObjectKind::Column)
    } else {
        let t = p.peek_token();
        p.expected("TABLE, SCHEMA, CATALOG or COLUMN", t)
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

fn parse_show(p: &mut Parser) -> Result<ConfluoStatement, ParserError> {
    p.next_token();
    let in_name = |p: &mut Parser| -> Result<Option<ObjectName>, ParserError> {
        if eat(p, &["IN"]) || eat(p, &["FROM"]) {
            Ok(Some(p.parse_object_name(false)?))
        } else {
            Ok(None)
        }
    };
    let what = if eat(p, &["CATALOGS"]) {
        Show::Catalogs
    } else if eat(p, &["SCHEMAS"]) || eat(p, &["DATABASES"]) {
        Show::Schemas(in_name(p)?)
    } else if eat(p, &["TABLES"]) {
        Show::Tables(in_name(p)?)
    } else if eat(p, &["TBLPROPERTIES"]) {
        Show::TblProperties(p.parse_object_name(false)?)
    } else if eat(p, &["COLUMNS"]) {
        expect_one(p, &["IN", "FROM"])?;
        Show::Columns(p.parse_object_name(false)?)
    } else {
        let t = p.peek_token();
        return p.expected("CATALOGS, SCHEMAS, TABLES, TBLPROPERTIES or COLUMNS", t);
    };
    let like = if eat(p, &["LIKE"]) || matches!(p.peek_token().token, Token::SingleQuotedString(_))
    {
        Some(p.parse_literal_string()?)
    } else {
        None
    };
    Ok(ConfluoStatement::Show { what, like })
}

fn expect_one(p: &mut Parser, words: &[&str]) -> Result<(), ParserError> {
    for w in words {
        if eat(p, &[w]) {
            return Ok(());
        }
    }
    let t = p.peek_token();
    p.expected(&words.join(" or "), t)
}

fn parse_describe(p: &mut Parser) -> Result<ConfluoStatement, ParserError> {
    p.next_token();
    // Spark writes `DESCRIBE [TABLE] [EXTENDED|FORMATTED] t`; `DESCRIBE EXTENDED TABLE t`
    // is accepted too.
    let table_first = eat(p, &["TABLE"]);
    let kind = if !table_first && eat(p, &["HISTORY"]) {
        DescribeKind::History(None)
    } else if !table_first && eat(p, &["DETAIL"]) {
        DescribeKind::Detail
    } else if eat(p, &["EXTENDED"]) || eat(p, &["FORMATTED"]) {
        DescribeKind::Extended
    } else {
        DescribeKind::Columns
    };
    if !table_first {
        let _ = eat(p, &["TABLE"]);
    }
    let table = p.parse_object_name(false)?;
    let kind = match kind {
        DescribeKind::History(_) if eat(p, &["LIMIT"]) => {
            DescribeKind::History(Some(literal_number(p)? as usize))
        }
        k => k,
    };
    Ok(ConfluoStatement::Describe { table, kind })
}

fn parse_alter(p: &mut Parser) -> Result<ConfluoStatement, ParserError> {
    p.next_token();
    p.next_token();
    let table = p.parse_object_name(false)?;
    if eat(p, &["SET", "TBLPROPERTIES"]) {
        let set = parse_properties(p)?;
        Ok(ConfluoStatement::AlterProperties {
            table,
            set,
            unset: vec![],
        })
    } else if eat(p, &["UNSET", "TBLPROPERTIES"]) {
        let _ = eat(p, &["IF", "EXISTS"]);
        p.expect_token(&Token::LParen)?;
        let keys = p.parse_comma_separated(property_key)?;
        p.expect_token(&Token::RParen)?;
        Ok(ConfluoStatement::AlterProperties {
            table,
            set: vec![],
            unset: keys,
        })
    } else {
        let t = p.peek_token();
        p.expected("SET TBLPROPERTIES or UNSET TBLPROPERTIES", t)
    }
}

fn property_key(p: &mut Parser) -> Result<String, ParserError> {
    let t = p.next_token();
    match &t.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s.clone()),
        Token::Word(_) => {
            // Dotted keys like delta.appendOnly.
            let mut key = match &t.token {
                Token::Word(w) => w.value.clone(),
                _ => unreachable!(),
            };
            while p.consume_token(&Token::Period) {
                let n = p.next_token();
                match &n.token {
                    Token::Word(w) => {
                        key.push('.');
                        key.push_str(&w.value);
                    }
                    _ => return p.expected("a property name", n),
                }
            }
            Ok(key)
        }
        _ => p.expected("a property name", t),
    }
}

fn property_value(p: &mut Parser) -> Result<String, ParserError> {
    let t = p.next_token();
    match &t.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s.clone()),
        Token::Number(n, _) => Ok(n.clone()),
        Token::Word(w) => Ok(w.value.clone()),
        _ => p.expected("a property value", t),
    }
}

/// `( key = value, ... )` with quoted or dotted keys.
pub fn parse_properties(p: &mut Parser) -> Result<Vec<(String, String)>, ParserError> {
    p.expect_token(&Token::LParen)?;
    if p.consume_token(&Token::RParen) {
        return Ok(vec![]);
    }
    let props = p.parse_comma_separated(|p| {
        let k = property_key(p)?;
        let _ = p.consume_token(&Token::Eq);
        let v = property_value(p)?;
        Ok((k, v))
    })?;
    p.expect_token(&Token::RParen)?;
    Ok(props)
}

fn parse_create(p: &mut Parser) -> Result<ConfluoStatement, ParserError> {
    let save = p.index();
    p.next_token();
    let or_replace = eat(p, &["OR", "REPLACE"]);
    if eat(p, &["CATALOG"]) {
        let if_not_exists = eat(p, &["IF", "NOT", "EXISTS"]);
        let name = p.parse_identifier()?;
        let comment = if eat(p, &["COMMENT"]) {
            Some(p.parse_literal_string()?)
        } else {
            None
        };
        return Ok(ConfluoStatement::CreateCatalog {
            name,
            if_not_exists,
            comment,
        });
    }
    if eat(p, &["SCHEMA"]) || eat(p, &["DATABASE"]) {
        let if_not_exists = eat(p, &["IF", "NOT", "EXISTS"]);
        let name = p.parse_object_name(false)?;
        let mut comment = None;
        loop {
            if eat(p, &["COMMENT"]) {
                comment = Some(p.parse_literal_string()?);
            } else if eat(p, &["WITH", "DBPROPERTIES"]) {
                parse_properties(p)?;
            } else if eat(p, &["LOCATION"]) || eat(p, &["MANAGED", "LOCATION"]) {
                p.parse_literal_string()?;
            } else {
                break;
            }
        }
        return Ok(ConfluoStatement::CreateSchema {
            name,
            if_not_exists,
            comment,
        });
    }
    let _ = eat(p, &["EXTERNAL"]);
    if eat(p, &["TABLE"]) {
        let if_not_exists = eat(p, &["IF", "NOT", "EXISTS"]);
        let mut ct = CreateTable::new(p.parse_object_name(false)?);
        ct.or_replace = or_replace;
        ct.if_not_exists = if_not_exists;
        if p.peek_token().token == Token::LParen {
            let (columns, _constraints) = p.parse_columns()?;
            ct.columns = columns;
        }
        parse_table_clauses(p, &mut ct)?;
        return Ok(ConfluoStatement::CreateTable(Box::new(ct)));
    }
    // Views and the rest: DataFusion's business.
    while p.index() > save {
        p.prev_token();
    }
    Ok(ConfluoStatement::Query(Box::new(p.parse_statement()?)))
}

/// The clauses after a table's name and columns, in any order (as Databricks allows).
pub fn parse_table_clauses(p: &mut Parser, ct: &mut CreateTable) -> Result<(), ParserError> {
    loop {
        if eat(p, &["USING"]) {
            ct.using = Some(p.parse_identifier()?.value);
        } else if eat(p, &["PARTITIONED", "BY"]) {
            ct.partition_by = parse_ident_list(p)?;
        } else if eat(p, &["CLUSTER", "BY"]) {
            if eat(p, &["AUTO"]) || eat(p, &["NONE"]) {
                continue;
            }
            ct.cluster_by = parse_ident_list(p)?;
        } else if eat(p, &["LOCATION"]) {
            ct.location = Some(p.parse_literal_string()?);
        } else if eat(p, &["COMMENT"]) {
            ct.comment = Some(p.parse_literal_string()?);
        } else if eat(p, &["TBLPROPERTIES"]) || eat(p, &["OPTIONS"]) {
            ct.properties.extend(parse_properties(p)?);
        } else if eat(p, &["AS"])
            || matches!(peek_word(p, 0).as_deref(), Some("SELECT") | Some("WITH"))
        {
            ct.query = Some(p.parse_query()?);
            return Ok(());
        } else {
            return Ok(());
        }
    }
}

fn parse_ident_list(p: &mut Parser) -> Result<Vec<Ident>, ParserError> {
    if p.consume_token(&Token::LParen) {
        let ids = p.parse_comma_separated(|p| p.parse_identifier())?;
        p.expect_token(&Token::RParen)?;
        Ok(ids)
    } else {
        Ok(vec![p.parse_identifier()?])
    }
}

fn parse_insert(p: &mut Parser) -> Result<ConfluoStatement, ParserError> {
    p.next_token();
    let overwrite = if eat(p, &["OVERWRITE"]) {
        true
    } else {
        expect(p, &["INTO"])?;
        false
    };
    let _ = eat(p, &["TABLE"]);
    let table = p.parse_object_name(false)?;
    let mut columns = Vec::new();
    // `(a, b)` is a column list unless a query starts with a parenthesis.
    if p.peek_token().token == Token::LParen
        && !matches!(
            peek_word(p, 1).as_deref(),
            Some("SELECT") | Some("WITH") | Some("VALUES")
        )
    {
        p.expect_token(&Token::LParen)?;
        columns = p.parse_comma_separated(|p| p.parse_identifier())?;
        p.expect_token(&Token::RParen)?;
    }
    let by_name = eat(p, &["BY", "NAME"]);
    let source = p.parse_query()?;
    Ok(ConfluoStatement::Insert {
        table,
        overwrite,
        columns,
        by_name,
        source,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> ConfluoStatement {
        let mut v = parse_sql(sql).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0).statement
    }

    #[test]
    fn lakehouse_statements() {
        assert!(matches!(
            one("SHOW CATALOGS"),
            ConfluoStatement::Show {
                what: Show::Catalogs,
                ..
            }
        ));
        assert!(matches!(
            one("show tables in main.bronze like 'ord*'"),
            ConfluoStatement::Show {
                what: Show::Tables(Some(_)),
                like: Some(_)
            }
        ));
        for sql in [
            "DESCRIBE TABLE EXTENDED t",
            "DESC EXTENDED t",
            "DESCRIBE TABLE FORMATTED s.t",
        ] {
            assert!(
                matches!(
                    one(sql),
                    ConfluoStatement::Describe {
                        kind: DescribeKind::Extended,
                        ..
                    }
                ),
                "{sql}"
            );
        }
        assert!(matches!(
            one("DESCRIBE HISTORY t LIMIT 3"),
            ConfluoStatement::Describe {
                kind: DescribeKind::History(Some(3)),
                ..
            }
        ));
        assert!(matches!(
            one("CREATE CATALOG IF NOT EXISTS c COMMENT 'x'"),
            ConfluoStatement::CreateCatalog {
                if_not_exists: true,
                ..
            }
        ));
        match one(
            "CREATE OR REPLACE TABLE s.t (id BIGINT, v STRING) USING DELTA COMMENT 'c' PARTITIONED BY (v) TBLPROPERTIES ('delta.appendOnly' = 'false', owner.team = 'x')",
        ) {
            ConfluoStatement::CreateTable(ct) => {
                assert!(ct.or_replace);
                assert_eq!(ct.columns.len(), 2);
                assert_eq!(ct.partition_by.len(), 1);
                assert_eq!(ct.properties[1].0, "owner.team");
            }
            other => panic!("{other:?}"),
        }
        match one("CREATE TABLE t TBLPROPERTIES (a = 1) AS SELECT 1 AS x") {
            ConfluoStatement::CreateTable(ct) => assert!(ct.query.is_some()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            one("INSERT INTO t (a, b) SELECT 1, 2"),
            ConfluoStatement::Insert { .. }
        ));
        assert!(matches!(
            one("INSERT OVERWRITE t VALUES (1)"),
            ConfluoStatement::Insert {
                overwrite: true,
                ..
            }
        ));
        assert!(matches!(
            one("INSERT INTO t BY NAME SELECT 1 AS a"),
            ConfluoStatement::Insert { by_name: true, .. }
        ));
        assert!(matches!(
            one("ALTER TABLE t SET TBLPROPERTIES ('k' = 'v')"),
            ConfluoStatement::AlterProperties { .. }
        ));
        assert!(matches!(
            one("COMMENT ON TABLE t IS 'hello'"),
            ConfluoStatement::CommentOn {
                kind: ObjectKind::Table,
                ..
            }
        ));
        assert!(matches!(
            one("VACUUM t RETAIN 0 HOURS DRY RUN"),
            ConfluoStatement::Vacuum { dry_run: true, .. }
        ));
        assert!(matches!(
            one("SELECT * FROM t VERSION AS OF 1"),
            ConfluoStatement::Query(_)
        ));
        assert!(matches!(
            one("DROP TABLE IF EXISTS t"),
            ConfluoStatement::Drop {
                if_exists: true,
                ..
            }
        ));
    }

    #[test]
    fn errors_have_positions_and_statements_their_text() {
        let e = parse_sql("SELECT 1;\nSELEC * FROM t").unwrap_err();
        let l = e.location.unwrap();
        assert_eq!((l.line, l.column), (2, 1), "{e}");
        let v = parse_sql("SELECT 1;  SELECT 2 ;").unwrap();
        assert_eq!(v[1].text, "SELECT 2");
    }

    #[test]
    fn optimize_takes_partitions_and_zorder_columns() {
        assert!(matches!(
            one("OPTIMIZE sales.events WHERE day = '2026-01-01' ZORDER BY (customer, ts)"),
            ConfluoStatement::Optimize { predicate: Some(_), ref zorder, .. } if zorder.len() == 2
        ));
        assert!(matches!(
            one("optimize t zorder by a"),
            ConfluoStatement::Optimize { predicate: None, ref zorder, .. } if zorder.len() == 1
        ));
        assert!(matches!(
            one("OPTIMIZE t"),
            ConfluoStatement::Optimize { predicate: None, ref zorder, .. } if zorder.is_empty()
        ));
    }
}
