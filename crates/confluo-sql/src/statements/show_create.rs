//! `SHOW CREATE TABLE`: the DDL that recreates a table's definition (not its rows).

use datafusion::sql::sqlparser::ast::ObjectName;

use super::describe::{out, strings};
use super::optimize::CLUSTERING_COLUMNS;
use crate::error::Result;
use crate::session::{SqlOutput, SqlSession};
use confluo_lakehouse::delta::{self, type_name};
use confluo_lakehouse::{LakehouseError, TableVersion};

/// An identifier as Spark prints it: bare when it is a plain lowercase word, else quoted.
fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

/// A string literal both Spark and Confluo read back: single-quoted, or double-quoted when
/// the text holds a single quote (Spark reads `''` as two adjacent literals, not a quote).
fn literal(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else if !text.contains('"') {
        format!("\"{text}\"")
    } else {
        format!("'{}'", text.replace('\'', "''"))
    }
}

/// The statement, one clause per line as Databricks prints it.
pub(super) async fn show_create(s: &SqlSession, name: ObjectName) -> Result<SqlOutput> {
    let lh = s.lakehouse();
    let t = s.table_name(&name)?;
    let info = lh.table(&t).await?;
    let table = lh.open_delta(&info, TableVersion::Latest).await?;
    let snap = table.snapshot().map_err(LakehouseError::delta(&t))?;
    let schema = delta::table_schema(&table)?;
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut c = format!("  {} {}", ident(f.name()), type_name(f.data_type()));
            if !f.is_nullable() {
                c.push_str(" NOT NULL");
            }
            if let Some(comment) = f.metadata().get("comment").filter(|c| !c.is_empty()) {
                c.push_str(&format!(" COMMENT {}", literal(comment)));
            }
            c
        })
        .collect();
    let mut ddl = format!(
        "CREATE TABLE {}.{}.{} (\n{})\nUSING {}",
        ident(t.catalog.as_str()),
        ident(t.schema.as_str()),
        ident(t.table.as_str()),
        columns.join(",\n"),
        info.format.to_lowercase()
    );
    let partitions = snap.metadata().partition_columns();
    if !partitions.is_empty() {
        let cols: Vec<String> = partitions.iter().map(|c| ident(c)).collect();
        ddl.push_str(&format!("\nPARTITIONED BY ({})", cols.join(", ")));
    }
    let mut properties = info.properties.clone();
    for (k, v) in snap.metadata().configuration() {
        properties.insert(k.clone(), v.clone());
    }
    if let Some(cols) = properties.remove(CLUSTERING_COLUMNS) {
        let cols: Vec<String> = cols.split(',').map(|c| ident(c.trim())).collect();
        ddl.push_str(&format!("\nCLUSTER BY ({})", cols.join(", ")));
    }
    if let Some(c) = info.comment.as_deref().filter(|c| !c.is_empty()) {
        ddl.push_str(&format!("\nCOMMENT {}", literal(c)));
    }
    if !info.managed {
        ddl.push_str(&format!("\nLOCATION {}", literal(&info.location)));
    }
    if !properties.is_empty() {
        let props: Vec<String> = properties
            .iter()
            .map(|(k, v)| format!("  {} = {}", literal(k), literal(v)))
            .collect();
        ddl.push_str(&format!("\nTBLPROPERTIES (\n{})", props.join(",\n")));
    }
    out(s, vec![strings("createtab_stmt", vec![Some(ddl)])])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_texts_are_quoted_as_spark_reads_them() {
        assert_eq!(ident("order_id"), "order_id");
        assert_eq!(ident("Amount"), "`Amount`");
        assert_eq!(ident("a b"), "`a b`");
        assert_eq!(literal("plain"), "'plain'");
        assert_eq!(literal("it's"), "\"it's\"");
        assert_eq!(literal("it's \"x\""), "'it''s \"x\"'");
    }
}
