//! Rewrites of table references DataFusion cannot plan by itself: `read_files(...)` with
//! named options, `cloud_files(...)`, time travel (`VERSION AS OF`, `TIMESTAMP AS OF`) and
//! path tables (`` delta.`/path` ``). Each is resolved asynchronously into a provider,
//! registered under a scratch name, and the reference is pointed at that name.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart,
    Statement, TableAlias, TableFactor, TableVersion as AstVersion, VisitMut, VisitorMut,
    visit_expressions_mut, visit_relations,
};
use datafusion::sql::sqlparser::tokenizer::Location;

use crate::parser::literal_text;

/// The names of the tables a statement reads or writes, as written.
pub fn table_names(statement: &Statement) -> Vec<ObjectName> {
    let mut names = Vec::new();
    let _ = visit_relations(statement, |name| {
        if !names.contains(name) {
            names.push(name.clone());
        }
        ControlFlow::<()>::Continue(())
    });
    names
}

/// Gives every unquoted column reference whose lowercase form is a key of `spelling` that
/// spelling, quoted (so the planner, which lowercases unquoted names, matches it exactly).
/// Returns whether anything changed.
pub fn respell_columns(statement: &mut Statement, spelling: &HashMap<String, String>) -> bool {
    let mut changed = false;
    let mut fix = |id: &mut Ident| {
        if id.quote_style.is_none()
            && let Some(actual) = spelling.get(&id.value.to_lowercase())
        {
            id.value = actual.clone();
            id.quote_style = Some('`');
            changed = true;
        }
    };
    let _ = visit_expressions_mut(statement, |e| {
        match e {
            Expr::Identifier(id) => fix(id),
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last_mut() {
                    fix(last);
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

/// A table reference that needs resolving.
#[derive(Debug, Clone)]
pub enum Request {
    /// `read_files(path, key => value, ...)` or `cloud_files(path, format, map(...))`.
    ReadFiles {
        /// The path or glob.
        path: String,
        /// Options in the order given.
        options: Vec<(String, String)>,
        /// Where it is written.
        location: Option<Location>,
    },
    /// A table at a version or time.
    TimeTravel {
        /// The table's name as written.
        name: ObjectName,
        /// `VERSION AS OF n` (Some(n)) or `TIMESTAMP AS OF expr` (the expression's text).
        version: Option<i64>,
        /// The timestamp expression's text.
        timestamp: Option<String>,
        /// Where it is written.
        location: Option<Location>,
    },
    /// `` delta.`/path/to/table` `` (optionally at a version).
    DeltaPath {
        /// The table's location.
        path: String,
        /// Where it is written.
        location: Option<Location>,
    },
}

fn is_read_files(name: &ObjectName) -> Option<&'static str> {
    let last = match name.0.last()? {
        ObjectNamePart::Identifier(i) => i.value.to_ascii_lowercase(),
        _ => return None,
    };
    match last.as_str() {
        "read_files" => Some("read_files"),
        "cloud_files" => Some("cloud_files"),
        _ => None,
    }
}

fn delta_path(name: &ObjectName) -> Option<String> {
    if name.0.len() != 2 {
        return None;
    }
    let (ObjectNamePart::Identifier(a), ObjectNamePart::Identifier(b)) = (&name.0[0], &name.0[1])
    else {
        return None;
    };
    (a.value.eq_ignore_ascii_case("delta")
        && b.quote_style.is_some()
        && (b.value.contains('/') || b.value.contains("://")))
    .then(|| b.value.clone())
}

fn location_of(name: &ObjectName) -> Option<Location> {
    match name.0.first()? {
        ObjectNamePart::Identifier(i) => Some(i.span.start).filter(|l| l.line > 0),
        _ => None,
    }
}

/// A table function's `name => value` argument as text (a literal value); any other
/// argument is an error naming the function.
pub fn named_option(func: &str, arg: &FunctionArg) -> Result<(String, String), String> {
    match arg {
        FunctionArg::Named {
            name,
            arg: FunctionArgExpr::Expr(e),
            ..
        } => {
            let v = literal_text(e).ok_or_else(|| {
                format!("{func}: option `{}` must be a literal, not {e}", name.value)
            })?;
            Ok((name.value.clone(), v))
        }
        FunctionArg::ExprNamed {
            name,
            arg: FunctionArgExpr::Expr(e),
            ..
        } => {
            let k = literal_text(name).ok_or_else(|| format!("{func}: bad option name {name}"))?;
            let v = literal_text(e)
                .ok_or_else(|| format!("{func}: option `{k}` must be a literal, not {e}"))?;
            Ok((k, v))
        }
        other => Err(format!(
            "{func}: options are written `name => value`, not {other}"
        )),
    }
}

/// The reference a table factor makes that needs resolving, if any.
pub fn request_of(tf: &TableFactor) -> Result<Option<Request>, String> {
    let TableFactor::Table {
        name,
        args,
        version,
        ..
    } = tf
    else {
        return Ok(None);
    };
    let location = location_of(name);
    if let (Some(func), Some(args)) = (is_read_files(name), args) {
        let mut path = None;
        let mut options = Vec::new();
        let mut positional = 0;
        for arg in &args.args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                    positional += 1;
                    match (func, positional) {
                        (_, 1) => {
                            path = Some(literal_text(e).ok_or_else(|| {
                                format!("{func}: the path must be a string literal, not {e}")
                            })?)
                        }
                        ("cloud_files", 2) => options.push((
                            "format".into(),
                            literal_text(e).ok_or_else(|| {
                                format!("cloud_files: the format must be a string literal, not {e}")
                            })?,
                        )),
                        ("cloud_files", 3) => options.extend(map_pairs(e)?),
                        _ => {
                            return Err(format!(
                                "{func}: options are written `name => value`, not as extra positional arguments ({e})"
                            ));
                        }
                    }
                }
                other => options.push(named_option(func, other)?),
            }
        }
        let path =
            path.ok_or_else(|| format!("{func} needs a path or glob as its first argument"))?;
        return Ok(Some(Request::ReadFiles {
            path,
            options,
            location,
        }));
    }
    if let Some(path) = delta_path(name) {
        return Ok(Some(Request::DeltaPath { path, location }));
    }
    match version {
        None => Ok(None),
        Some(AstVersion::VersionAsOf(e)) => {
            let v = literal_text(e)
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| format!("VERSION AS OF needs a whole number, not {e}"))?;
            Ok(Some(Request::TimeTravel {
                name: name.clone(),
                version: Some(v),
                timestamp: None,
                location,
            }))
        }
        Some(AstVersion::TimestampAsOf(e)) | Some(AstVersion::ForSystemTimeAsOf(e)) => {
            Ok(Some(Request::TimeTravel {
                name: name.clone(),
                version: None,
                timestamp: Some(literal_text(e).unwrap_or_else(|| e.to_string())),
                location,
            }))
        }
        Some(other) => Err(format!("unsupported time travel clause {other}")),
    }
}

/// `map('k1', 'v1', 'k2', 'v2')` into pairs.
fn map_pairs(e: &Expr) -> Result<Vec<(String, String)>, String> {
    let Expr::Function(f) = e else {
        return Err(format!(
            "cloud_files: the third argument must be map('key', 'value', ...), not {e}"
        ));
    };
    let FunctionArguments::List(list) = &f.args else {
        return Ok(vec![]);
    };
    let texts: Vec<String> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                literal_text(e).ok_or_else(|| format!("map values must be literals, not {e}"))
            }
            other => Err(format!("unsupported map argument {other}")),
        })
        .collect::<Result<_, _>>()?;
    if !texts.len().is_multiple_of(2) {
        return Err("map(...) needs key, value pairs".into());
    }
    Ok(texts
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect())
}

struct Collect {
    found: Vec<Request>,
    error: Option<String>,
}

impl VisitorMut for Collect {
    type Break = ();

    fn pre_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        match request_of(tf) {
            Ok(Some(r)) => self.found.push(r),
            Ok(None) => {}
            Err(e) => {
                self.error = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// The references in a statement that need resolving, in order.
pub fn collect(statement: &mut Statement) -> Result<Vec<Request>, String> {
    let mut c = Collect {
        found: Vec::new(),
        error: None,
    };
    let _ = statement.visit(&mut c);
    match c.error {
        Some(e) => Err(e),
        None => Ok(c.found),
    }
}

struct Replace<'a> {
    names: &'a [ObjectName],
    next: usize,
    functions_named: std::collections::HashSet<&'static str>,
}

impl VisitorMut for Replace<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        if let Ok(Some(_)) = request_of(tf)
            && let TableFactor::Table {
                name,
                alias,
                args,
                version,
                ..
            } = tf
        {
            if alias.is_none() {
                // Keep `t.col` references working after the rename, and keep the scratch
                // name out of messages: an unaliased `read_files(...)` is called by its
                // function's name (once per statement, so two never clash), a path table
                // by its path.
                let name_as_written = if args.is_some() {
                    is_read_files(name)
                        .filter(|f| self.functions_named.insert(*f))
                        .map(Ident::new)
                } else if let Some(path) = delta_path(name) {
                    Some(Ident::with_quote('"', path))
                } else if let Some(ObjectNamePart::Identifier(last)) = name.0.last() {
                    Some(last.clone())
                } else {
                    None
                };
                *alias = name_as_written.map(|name| TableAlias {
                    explicit: true,
                    name,
                    columns: vec![],
                    at: None,
                });
            }
            *name = self.names[self.next].clone();
            *args = None;
            *version = None;
            self.next += 1;
        }
        ControlFlow::Continue(())
    }
}

/// Points the references found by [`collect`] at `names`, in the same order.
pub fn replace(statement: &mut Statement, names: &[ObjectName]) {
    let _ = statement.visit(&mut Replace {
        names,
        next: 0,
        functions_named: Default::default(),
    });
}

/// A three-part name as an AST name.
pub fn object_name(parts: &[&str]) -> ObjectName {
    ObjectName(
        parts
            .iter()
            .map(|p| ObjectNamePart::Identifier(Ident::with_quote('"', *p)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{ConfluoStatement, parse_sql};

    fn stmt(sql: &str) -> Statement {
        match parse_sql(sql).unwrap().remove(0).statement {
            ConfluoStatement::Query(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn finds_and_replaces() {
        let mut s = stmt(
            "SELECT t.a FROM t VERSION AS OF 2 JOIN read_files('/x/*.csv', format => 'csv', header => true) r ON true, delta.`/tmp/d` d",
        );
        let found = collect(&mut s).unwrap();
        assert_eq!(found.len(), 3);
        assert!(matches!(
            &found[0],
            Request::TimeTravel {
                version: Some(2),
                ..
            }
        ));
        match &found[1] {
            Request::ReadFiles { path, options, .. } => {
                assert_eq!(path, "/x/*.csv");
                assert_eq!(
                    options,
                    &vec![
                        ("format".to_string(), "csv".to_string()),
                        ("header".to_string(), "true".to_string())
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&found[2], Request::DeltaPath { .. }));
        let names: Vec<_> = (0..3)
            .map(|i| object_name(&["c", "s", &format!("t{i}")]))
            .collect();
        replace(&mut s, &names);
        let text = s.to_string();
        assert!(text.contains("\"c\".\"s\".\"t0\" AS t"), "{text}");
        assert!(!text.contains("VERSION"), "{text}");
    }

    #[test]
    fn scratch_names_stay_out_of_sight() {
        let mut s = stmt(
            "SELECT read_files.a FROM read_files('/a.csv') JOIN read_files('/b.csv') b ON true",
        );
        let found = collect(&mut s).unwrap();
        let names: Vec<_> = (0..found.len())
            .map(|i| object_name(&["c", "s", &format!("t{i}")]))
            .collect();
        replace(&mut s, &names);
        let text = s.to_string();
        assert!(text.contains("\"t0\" AS read_files"), "{text}");
        assert!(text.contains("\"t1\" b"), "{text}");
    }

    #[test]
    fn cloud_files_map() {
        let mut s = stmt("SELECT * FROM cloud_files('/in', 'json', map('multiLine', 'true'))");
        match &collect(&mut s).unwrap()[0] {
            Request::ReadFiles { options, .. } => assert_eq!(options.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
