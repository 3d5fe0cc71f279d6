//! The statements of the binlog that change tables rather than rows: which tables they
//! touch and how. Row format logs DDL (and TRUNCATE) as statement text; only the verb and
//! the table names matter here, the new shape is read back from `information_schema`.

/// What a statement does to the tables it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdlKind {
    /// `TRUNCATE [TABLE] t`.
    Truncate,
    /// `ALTER TABLE t ...` (columns added, dropped, renamed or retyped).
    Alter,
    /// `DROP TABLE t, ...`.
    Drop,
    /// `RENAME TABLE a TO b, ...` (the names are the old ones).
    Rename,
}

/// A statement that changes tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ddl {
    /// What it does.
    pub kind: DdlKind,
    /// `(database, table)` of each table it changes.
    pub tables: Vec<(String, String)>,
}

/// Splits a statement into words and identifiers: `` `quoted` `` names keep their case and
/// lose their quotes, `db.t` yields `db`, `.`, `t`, and commas are their own token.
fn tokens(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '/' => {
                chars.next();
                if chars.peek() == Some(&'*') {
                    // A comment (MySQL's versioned `/*!...*/` too, whose body is ignored).
                    let mut prev = ' ';
                    for c in chars.by_ref() {
                        if prev == '*' && c == '/' {
                            break;
                        }
                        prev = c;
                    }
                }
            }
            '`' => {
                chars.next();
                let mut name = String::new();
                while let Some(c) = chars.next() {
                    if c == '`' {
                        if chars.peek() == Some(&'`') {
                            chars.next();
                            name.push('`');
                            continue;
                        }
                        break;
                    }
                    name.push(c);
                }
                out.push(format!("`{name}"));
            }
            '.' | ',' | '(' | ';' => {
                chars.next();
                out.push(c.to_string());
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '.' | ',' | '(' | ';' | '`' | '/') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(word);
            }
        }
    }
    out
}

/// A token as a name: quoted names exactly, bare ones as written.
fn name(token: &str) -> String {
    token.strip_prefix('`').unwrap_or(token).to_string()
}

fn is(token: Option<&String>, word: &str) -> bool {
    token.is_some_and(|t| !t.starts_with('`') && t.eq_ignore_ascii_case(word))
}

/// Reads `[db.]table` at `i`; returns it and the index after it.
fn table_at(t: &[String], i: usize, default_db: &str) -> Option<((String, String), usize)> {
    let first = t.get(i)?;
    if first == "," || first == "(" || first == "." {
        return None;
    }
    if t.get(i + 1).map(String::as_str) == Some(".") {
        let second = t.get(i + 2)?;
        return Some(((name(first), name(second)), i + 3));
    }
    Some(((default_db.to_string(), name(first)), i + 1))
}

/// The tables a statement changes, or `None` for anything else (BEGIN, CREATE, grants…).
/// `default_db` is the statement's current database (the query event's schema).
pub fn parse(sql: &str, default_db: &str) -> Option<Ddl> {
    let t = tokens(sql);
    let mut i = 0;
    let verb = t.first()?.to_ascii_uppercase();
    match verb.as_str() {
        "TRUNCATE" => {
            i += 1;
            if is(t.get(i), "TABLE") {
                i += 1;
            }
            let (table, _) = table_at(&t, i, default_db)?;
            Some(Ddl {
                kind: DdlKind::Truncate,
                tables: vec![table],
            })
        }
        "ALTER" => {
            i += 1;
            while is(t.get(i), "ONLINE") || is(t.get(i), "IGNORE") {
                i += 1;
            }
            if !is(t.get(i), "TABLE") {
                return None;
            }
            i += 1;
            if is(t.get(i), "IF") && is(t.get(i + 1), "EXISTS") {
                i += 2;
            }
            let (table, _) = table_at(&t, i, default_db)?;
            Some(Ddl {
                kind: DdlKind::Alter,
                tables: vec![table],
            })
        }
        "DROP" => {
            i += 1;
            if is(t.get(i), "TEMPORARY") {
                return None;
            }
            if !is(t.get(i), "TABLE") {
                return None;
            }
            i += 1;
            if is(t.get(i), "IF") && is(t.get(i + 1), "EXISTS") {
                i += 2;
            }
            let mut tables = Vec::new();
            while let Some((table, next)) = table_at(&t, i, default_db) {
                tables.push(table);
                if t.get(next).map(String::as_str) != Some(",") {
                    break;
                }
                i = next + 1;
            }
            Some(Ddl {
                kind: DdlKind::Drop,
                tables,
            })
        }
        "RENAME" => {
            i += 1;
            if !is(t.get(i), "TABLE") {
                return None;
            }
            i += 1;
            let mut tables = Vec::new();
            while let Some((table, next)) = table_at(&t, i, default_db) {
                tables.push(table);
                // `a TO b`: skip to the next pair.
                let mut j = next;
                while j < t.len() && t[j] != "," {
                    j += 1;
                }
                if j >= t.len() {
                    break;
                }
                i = j + 1;
            }
            Some(Ddl {
                kind: DdlKind::Rename,
                tables,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(d: &Ddl) -> Vec<String> {
        d.tables.iter().map(|(a, b)| format!("{a}.{b}")).collect()
    }

    #[test]
    fn table_changing_statements_name_their_tables() {
        let d = parse("TRUNCATE TABLE `shop`.`Orders`", "x").unwrap();
        assert_eq!(
            (d.kind, tables(&d)),
            (DdlKind::Truncate, vec!["shop.Orders".into()])
        );
        let d = parse("/* c */ truncate items", "shop").unwrap();
        assert_eq!(tables(&d), ["shop.items"]);
        let d = parse("ALTER TABLE t ADD COLUMN c INT", "db").unwrap();
        assert_eq!((d.kind, tables(&d)), (DdlKind::Alter, vec!["db.t".into()]));
        let d = parse("ALTER ONLINE TABLE `a``b` MODIFY x BIGINT", "db").unwrap();
        assert_eq!(tables(&d), ["db.a`b"]);
        let d = parse(
            "DROP TABLE IF EXISTS a, other.b /* generated by server */",
            "db",
        )
        .unwrap();
        assert_eq!(
            (d.kind, tables(&d)),
            (DdlKind::Drop, vec!["db.a".into(), "other.b".into()])
        );
        let d = parse("RENAME TABLE a TO b, c TO d", "db").unwrap();
        assert_eq!(tables(&d), ["db.a", "db.c"]);
        assert_eq!(parse("BEGIN", "db"), None);
        assert_eq!(parse("CREATE TABLE t (id INT)", "db"), None);
        assert_eq!(parse("DROP TEMPORARY TABLE t", "db"), None);
    }
}
