//! The lakehouse statements parsed by hand: `SHOW`, `DESCRIBE`, `ALTER TABLE`, `CREATE`
//! (tables, catalogs, schemas) and `INSERT`.

use super::*;

pub(super) fn parse_show(p: &mut Parser) -> Result<ConfluoStatement, ParserError> {
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
        let table = p.parse_object_name(false)?;
        // Spark's `SHOW COLUMNS IN t IN schema` names the schema apart.
        match in_name(p)? {
            Some(schema) => {
                let mut parts = schema.0;
                parts.extend(table.0);
                Show::Columns(ObjectName(parts))
            }
            None => Show::Columns(table),
        }
    } else if eat(p, &["CONNECTIONS"]) {
        Show::Connections
    } else if eat(p, &["VIEWS"]) {
        Show::Views(in_name(p)?)
    } else if eat(p, &["CREATE", "TABLE"]) {
        let table = p.parse_object_name(false)?;
        let _ = eat(p, &["AS", "SERDE"]);
        Show::CreateTable(table)
    } else {
        let t = p.peek_token();
        return p.expected(
            "CATALOGS, SCHEMAS, TABLES, VIEWS, CONNECTIONS, TBLPROPERTIES, COLUMNS or CREATE TABLE",
            t,
        );
    };
    let like = if eat(p, &["LIKE"]) || matches!(p.peek_token().token, Token::SingleQuotedString(_))
    {
        Some(p.parse_literal_string()?)
    } else {
        None
    };
    Ok(ConfluoStatement::Show { what, like })
}

pub(super) fn expect_one(p: &mut Parser, words: &[&str]) -> Result<(), ParserError> {
    for w in words {
        if eat(p, &[w]) {
            return Ok(());
        }
    }
    let t = p.peek_token();
    p.expected(&words.join(" or "), t)
}

pub(super) fn parse_describe(p: &mut Parser) -> Result<ConfluoStatement, ParserError> {
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

pub(super) fn parse_alter(p: &mut Parser) -> Result<ConfluoStatement, ParserError> {
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

pub(super) fn property_key(p: &mut Parser) -> Result<String, ParserError> {
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

pub(super) fn property_value(p: &mut Parser) -> Result<String, ParserError> {
    let t = p.next_token();
    match &t.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s.clone()),
        Token::Number(n, _) => Ok(n.clone()),
        Token::Word(w) => Ok(w.value.clone()),
        _ => p.expected("a property value", t),
    }
}

/// Options as `(key, value)` pairs.
type Options = Vec<(String, String)>;

/// `[OPTIONS (...)] [COMMENT '...']`, in either order.
fn parse_options_and_comment(p: &mut Parser) -> Result<(Options, Option<String>), ParserError> {
    let mut options = Vec::new();
    let mut comment = None;
    loop {
        if eat(p, &["OPTIONS"]) {
            options = parse_options(p)?;
        } else if eat(p, &["COMMENT"]) {
            comment = Some(p.parse_literal_string()?);
        } else {
            return Ok((options, comment));
        }
    }
}

/// `( key 'value', ... )` of `CREATE CONNECTION` and `CREATE FOREIGN CATALOG`: keys are
/// names (`=` optional), values literals or `secret('scope', 'key')` (kept as that text).
pub fn parse_options(p: &mut Parser) -> Result<Vec<(String, String)>, ParserError> {
    p.expect_token(&Token::LParen)?;
    if p.consume_token(&Token::RParen) {
        return Ok(vec![]);
    }
    let options = p.parse_comma_separated(|p| {
        let k = property_key(p)?.to_ascii_lowercase();
        let _ = p.consume_token(&Token::Eq);
        let is_call = peek_word(p, 0).as_deref() == Some("SECRET")
            && p.peek_nth_token(1).token == Token::LParen;
        let v = if is_call {
            p.next_token();
            p.next_token();
            let scope = p.parse_literal_string()?;
            p.expect_token(&Token::Comma)?;
            let key = p.parse_literal_string()?;
            p.expect_token(&Token::RParen)?;
            format!("secret('{scope}', '{key}')")
        } else {
            property_value(p)?
        };
        Ok((k, v))
    })?;
    p.expect_token(&Token::RParen)?;
    Ok(options)
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

pub(super) fn parse_create(p: &mut Parser) -> Result<ConfluoStatement, ParserError> {
    let save = p.index();
    p.next_token();
    let or_replace = eat(p, &["OR", "REPLACE"]);
    if eat(p, &["CONNECTION"]) {
        let if_not_exists = eat(p, &["IF", "NOT", "EXISTS"]);
        let name = p.parse_identifier()?;
        expect(p, &["TYPE"])?;
        let kind = property_value(p)?;
        let (options, comment) = parse_options_and_comment(p)?;
        return Ok(ConfluoStatement::CreateConnection {
            name,
            if_not_exists,
            kind,
            options,
            comment,
        });
    }
    if eat(p, &["FOREIGN", "CATALOG"]) {
        let if_not_exists = eat(p, &["IF", "NOT", "EXISTS"]);
        let name = p.parse_identifier()?;
        expect(p, &["USING", "CONNECTION"])?;
        let connection = p.parse_identifier()?;
        let (options, comment) = parse_options_and_comment(p)?;
        return Ok(ConfluoStatement::CreateForeignCatalog {
            name,
            if_not_exists,
            connection,
            options,
            comment,
        });
    }
    if eat(p, &["VIEW"]) {
        let if_not_exists = eat(p, &["IF", "NOT", "EXISTS"]);
        let name = p.parse_object_name(false)?;
        if p.peek_token().token == Token::LParen {
            return Err(ParserError::ParserError(format!(
                "CREATE VIEW {name}: a column list is not supported; name the columns in the query (SELECT a AS x, ...)"
            )));
        }
        let mut comment = None;
        loop {
            if eat(p, &["COMMENT"]) {
                comment = Some(p.parse_literal_string()?);
            } else if eat(p, &["TBLPROPERTIES"]) {
                parse_properties(p)?;
            } else {
                break;
            }
        }
        expect(p, &["AS"])?;
        let query = p.parse_query()?;
        return Ok(ConfluoStatement::CreateView {
            name,
            or_replace,
            if_not_exists,
            query,
            comment,
        });
    }
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
    // Temporary and materialized views and the rest: DataFusion's business.
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

pub(super) fn parse_ident_list(p: &mut Parser) -> Result<Vec<Ident>, ParserError> {
    if p.consume_token(&Token::LParen) {
        let ids = p.parse_comma_separated(|p| p.parse_identifier())?;
        p.expect_token(&Token::RParen)?;
        Ok(ids)
    } else {
        Ok(vec![p.parse_identifier()?])
    }
}

pub(super) fn parse_insert(p: &mut Parser) -> Result<ConfluoStatement, ParserError> {
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

/// `ANALYZE TABLE t [PARTITION (...)] COMPUTE STATISTICS [NOSCAN | FOR COLUMNS ... | FOR ALL
/// COLUMNS]`.
pub(super) fn parse_analyze(p: &mut Parser) -> Result<ConfluoStatement, ParserError> {
    p.next_token();
    expect(p, &["TABLE"])?;
    let table = p.parse_object_name(false)?;
    if peek_word(p, 0).as_deref() == Some("PARTITION") {
        return Err(ParserError::ParserError(format!(
            "not supported yet: ANALYZE TABLE ... PARTITION: statistics are reported for the whole table{}",
            at_token(p)
        )));
    }
    expect(p, &["COMPUTE", "STATISTICS"])?;
    let columns = if eat(p, &["NOSCAN"]) {
        None
    } else if eat(p, &["FOR", "ALL", "COLUMNS"]) {
        Some(vec![])
    } else if eat(p, &["FOR", "COLUMNS"]) {
        Some(p.parse_comma_separated(|p| p.parse_identifier())?)
    } else {
        None
    };
    Ok(ConfluoStatement::Analyze { table, columns })
}

fn at_token(p: &Parser) -> String {
    let l = p.peek_token().span.start;
    format!(" at Line: {}, Column: {}", l.line, l.column)
}
