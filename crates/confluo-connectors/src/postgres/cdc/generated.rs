//! Stored generated columns in the change stream.
//!
//! `pgoutput` leaves generated columns out of its messages (until PostgreSQL 18's
//! `publish_generated_columns`), while the snapshot copies them: without this, every row
//! changed after the copy would land with NULL there. The server computes them again, from
//! the values the change carries: the column's expression (`pg_get_expr`) is evaluated over
//! the rows of the batch, typed as the table types them, in one query per table and batch.
//! The expression is immutable by definition, so this is the value the source stored.
//!
//! One case cannot be computed from the change: an update that did not send a value the
//! expression reads (an unchanged TOASTed column). Those rows read the column from the
//! source table by key instead — its current value, which a later change in the stream
//! brings up to date if the row moved on — and keep the target's earlier value when the
//! row is gone.

use bytes::Bytes;
use sqlx::{PgConnection, Row};

use super::compact::TableChanges;
use crate::changes::{RelationColumn, Value};
use crate::postgres::discover::{SourceColumn, SourceTable};
use crate::postgres::types::quote_ident;
use crate::postgres::{PostgresConfig, PostgresError};

/// The name rows are numbered by in the queries (not a name a table's column could read).
const ORD: &str = "__confluo_row";

/// Adds the generated columns of `table` that `changes` lacks to its relation and rows.
pub async fn fill(
    conn: &mut PgConnection,
    cfg: &PostgresConfig,
    table: &SourceTable,
    changes: &mut TableChanges,
) -> Result<(), PostgresError> {
    let missing: Vec<&SourceColumn> = table
        .columns
        .iter()
        .filter(|c| c.generated.is_some())
        .filter(|c| !changes.relation.columns.iter().any(|r| r.name == c.name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let position = |name: &str| changes.relation.columns.iter().position(|c| c.name == name);
    // What the expressions read, by position in the relation.
    let mut inputs: Vec<(usize, &SourceColumn)> = Vec::new();
    for g in &missing {
        for name in &g.generated.as_ref().expect("generated").inputs {
            let (Some(p), Some(c)) = (
                position(name),
                table.columns.iter().find(|c| &c.name == name),
            ) else {
                continue;
            };
            if !inputs.iter().any(|(q, _)| *q == p) {
                inputs.push((p, c));
            }
        }
    }
    let mut computed: Vec<usize> = Vec::new();
    let mut read_back: Vec<usize> = Vec::new();
    for (i, row) in changes.rows.iter().enumerate() {
        if !row.op.keeps_row() {
            continue;
        }
        if inputs
            .iter()
            .any(|(p, _)| matches!(row.values[*p], Value::Unchanged))
        {
            read_back.push(i);
        } else {
            computed.push(i);
        }
    }
    let width = missing.len();
    let mut values: Vec<Vec<Value>> = vec![vec![Value::Null; width]; changes.rows.len()];
    let err = |what: &str| PostgresError::query(&cfg.name, format!("{what} of {}", table.id));
    if !computed.is_empty() {
        let mut sql = format!("SELECT src.{ORD}");
        for g in &missing {
            let expr = &g.generated.as_ref().expect("generated").expression;
            sql.push_str(&format!(", (({expr}))::text"));
        }
        sql.push_str(&format!(" FROM (SELECT u.{ORD}"));
        for (n, (_, c)) in inputs.iter().enumerate() {
            sql.push_str(&format!(
                ", u.c{n}::{} AS {}",
                c.pg_type,
                quote_ident(&c.name)
            ));
        }
        sql.push_str(" FROM unnest($1::int8[]");
        for n in 0..inputs.len() {
            sql.push_str(&format!(", ${}::text[]", n + 2));
        }
        sql.push_str(&format!(") AS u({ORD}"));
        for n in 0..inputs.len() {
            sql.push_str(&format!(", c{n}"));
        }
        sql.push_str(")) AS src");
        let ords: Vec<i64> = computed.iter().map(|&i| i as i64).collect();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ords);
        for (p, _) in &inputs {
            q = q.bind(text_of(changes, &computed, *p));
        }
        let rows = q
            .fetch_all(&mut *conn)
            .await
            .map_err(err("computing generated columns"))?;
        store(&rows, &mut values);
    }
    if !read_back.is_empty() {
        let key: Vec<(usize, &SourceColumn)> = changes
            .key
            .iter()
            .filter_map(|&p| {
                let name = &changes.relation.columns[p].name;
                table
                    .columns
                    .iter()
                    .find(|c| &c.name == name)
                    .map(|c| (p, c))
            })
            .collect();
        let mut sql = format!("SELECT u.{ORD}");
        for g in &missing {
            sql.push_str(&format!(", t.{}::text", quote_ident(&g.name)));
        }
        sql.push_str(&format!(
            " FROM {} t JOIN unnest($1::int8[]",
            table.id.sql()
        ));
        for n in 0..key.len() {
            sql.push_str(&format!(", ${}::text[]", n + 2));
        }
        sql.push_str(&format!(") AS u({ORD}"));
        for n in 0..key.len() {
            sql.push_str(&format!(", k{n}"));
        }
        sql.push_str(") ON ");
        let on: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(n, (_, c))| format!("t.{} = u.k{n}::{}", quote_ident(&c.name), c.pg_type))
            .collect();
        sql.push_str(&on.join(" AND "));
        let ords: Vec<i64> = read_back.iter().map(|&i| i as i64).collect();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ords);
        for (p, _) in &key {
            q = q.bind(text_of(changes, &read_back, *p));
        }
        let rows = q
            .fetch_all(&mut *conn)
            .await
            .map_err(err("reading generated columns"))?;
        // A row the source no longer has keeps the target's value; its deletion follows.
        for &i in &read_back {
            values[i] = vec![Value::Unchanged; width];
        }
        store(&rows, &mut values);
    }
    for g in &missing {
        changes.relation.columns.push(RelationColumn {
            key: false,
            name: g.name.clone(),
            type_oid: g.type_oid,
            type_modifier: -1,
        });
    }
    for (row, extra) in changes.rows.iter_mut().zip(values) {
        row.values.extend(extra);
        if let Some(old) = &mut row.old_key {
            old.extend(std::iter::repeat_n(Value::Null, width));
        }
    }
    Ok(())
}

/// The text of column `p` in the rows `rows` (NULL for SQL NULL).
fn text_of(changes: &TableChanges, rows: &[usize], p: usize) -> Vec<Option<String>> {
    rows.iter()
        .map(|&i| {
            TableChanges::raw(&changes.rows[i].values[p])
                .map(|b| String::from_utf8_lossy(b).into_owned())
        })
        .collect()
}

/// Puts each result row (row number, then one text per column) into `values`.
fn store(rows: &[sqlx::postgres::PgRow], values: &mut [Vec<Value>]) {
    for r in rows {
        let i = r.get::<i64, _>(0) as usize;
        let Some(slot) = values.get_mut(i) else {
            continue;
        };
        for (n, v) in slot.iter_mut().enumerate() {
            *v = match r.get::<Option<String>, _>(n + 1) {
                Some(text) => Value::Text(Bytes::from(text)),
                None => Value::Null,
            };
        }
    }
}
