//! What a MySQL / MariaDB server holds, from `information_schema`: base tables, their
//! columns and types, primary keys and row estimates. A MySQL database is what Confluo
//! calls a schema: tables are named `database.table`.

use crate::table_patterns::TablePatterns;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use serde::Serialize;
use sqlx::Row;
use sqlx::mysql::{MySqlConnection, MySqlRow};

use super::config::{MysqlConfig, UnsupportedTypes};
use super::error::{MysqlError, Result};
use super::types::{ColumnMapping, MyType, map_type, quote_ident};

/// A table's name in the source: database and table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TableId {
    /// The MySQL database (schema).
    pub schema: String,
    /// The table's name.
    pub name: String,
}

impl TableId {
    /// A table id.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableId {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// `` `schema`.`name` ``, quoted for SQL.
    pub fn sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// One column of a source table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceColumn {
    /// The column's name.
    pub name: String,
    /// The type as declared (`COLUMN_TYPE`), e.g. `decimal(10,2)` or `int(10) unsigned`.
    pub mysql_type: String,
    /// The type's parts, as the mapping needs them.
    #[serde(skip)]
    pub resolved: MyType,
    /// The character set of a text column (`utf8mb4`, `latin1`, …).
    pub charset: Option<String>,
    /// Whether the column accepts NULL.
    pub nullable: bool,
    /// 1-based position.
    pub ordinal: i32,
}

/// A base table of the source and what Confluo knows about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceTable {
    /// Database and name.
    pub id: TableId,
    /// Columns in order.
    pub columns: Vec<SourceColumn>,
    /// Primary key columns, in key order (empty when there is none).
    pub primary_key: Vec<String>,
    /// `TABLES.TABLE_ROWS` (an estimate for InnoDB).
    pub row_estimate: Option<u64>,
}

impl SourceTable {
    /// How each column is read, in column order. A type without mapping is an error naming
    /// the table and column, or text with `unsupported_types: text`.
    pub fn mappings(&self, cfg: &MysqlConfig) -> Result<Vec<(String, ColumnMapping)>> {
        self.columns
            .iter()
            .map(|c| {
                let m = match (map_type(&c.resolved), cfg.unsupported_types) {
                    (Some(m), _) => m,
                    (None, UnsupportedTypes::Text) => ColumnMapping::as_text(),
                    (None, UnsupportedTypes::Error) => {
                        return Err(MysqlError::UnsupportedType {
                            connection: cfg.name.clone(),
                            table: self.id.to_string(),
                            column: c.name.clone(),
                            mysql_type: c.mysql_type.clone(),
                        });
                    }
                };
                Ok((c.name.clone(), m))
            })
            .collect()
    }

    /// The Arrow schema of the table's rows. Every column is nullable: values Arrow cannot
    /// hold (zero dates) arrive as null even in NOT NULL columns.
    pub fn arrow_schema(&self, cfg: &MysqlConfig) -> Result<SchemaRef> {
        let fields: Vec<Field> = self
            .mappings(cfg)?
            .into_iter()
            .map(|(name, m)| Field::new(name, m.arrow, true))
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }

    /// The single-column integer primary key that can split the table into ranges.
    pub fn split_key(&self) -> Option<&SourceColumn> {
        match self.primary_key.as_slice() {
            [one] => self
                .columns
                .iter()
                .find(|c| &c.name == one)
                .filter(|c| super::types::is_integer_key(&c.resolved)),
            _ => None,
        }
    }
}

/// Which tables to look at: glob patterns over `database.table`.
#[derive(Debug, Clone)]
pub struct TableFilter {
    patterns: TablePatterns,
}

impl TableFilter {
    /// Tables matching any of `patterns`: `database.table` with globs in either part
    /// (`shop.*`, `shop.order_*`); a pattern without a dot names tables of the
    /// connection's own database (`database:`), since a server often hosts unrelated ones.
    pub fn new(cfg: &MysqlConfig, patterns: &[String]) -> Result<Self> {
        let patterns =
            TablePatterns::new(patterns, &cfg.database).map_err(|message| MysqlError::Config {
                connection: cfg.name.clone(),
                key: "tables".into(),
                message,
            })?;
        Ok(TableFilter { patterns })
    }

    /// Only tables of database `schema`.
    pub fn schema(cfg: &MysqlConfig, schema: &str) -> Result<Self> {
        Self::new(cfg, &[format!("{schema}.*")])
    }

    /// Whether `id` is selected.
    pub fn matches(&self, id: &TableId) -> bool {
        self.patterns.matches(&id.schema, &id.name)
    }

    /// Patterns that select none of `ids`.
    pub fn unmatched<'a>(&'a self, ids: &[&TableId]) -> Vec<&'a str> {
        let tables: Vec<(&str, &str)> = ids
            .iter()
            .map(|i| (i.schema.as_str(), i.name.as_str()))
            .collect();
        self.patterns.unmatched(&tables)
    }
}

/// Column `i` of a text-protocol row as text (information_schema values are text).
fn text(row: &MySqlRow, i: usize) -> Option<String> {
    row.try_get_unchecked::<Option<&[u8]>, _>(i)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn number<T: std::str::FromStr>(row: &MySqlRow, i: usize) -> Option<T> {
    text(row, i).and_then(|t| t.parse().ok())
}

/// Databases never synced: the server's own.
const SYSTEM: &str = "'mysql', 'information_schema', 'performance_schema', 'sys'";

/// Lists the base tables selected by `filter`, with columns, keys and estimates, sorted by
/// name.
pub async fn discover(
    conn: &mut MySqlConnection,
    cfg: &MysqlConfig,
    filter: &TableFilter,
) -> Result<Vec<SourceTable>> {
    let q = |what: &str| MysqlError::query(&cfg.name, format!("listing {what}"));
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, CAST(TABLE_ROWS AS CHAR)
         FROM information_schema.TABLES
         WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ({SYSTEM})
         ORDER BY 1, 2"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(q("tables"))?;
    let mut tables: Vec<SourceTable> = Vec::new();
    for r in &rows {
        let id = TableId::new(
            text(r, 0).unwrap_or_default(),
            text(r, 1).unwrap_or_default(),
        );
        if !filter.matches(&id) {
            continue;
        }
        tables.push(SourceTable {
            id,
            columns: Vec::new(),
            primary_key: Vec::new(),
            row_estimate: number(r, 2),
        });
    }
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let index: HashMap<TableId, usize> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.clone(), i))
        .collect();
    let mut schemas: Vec<&str> = tables.iter().map(|t| t.id.schema.as_str()).collect();
    schemas.dedup();
    let in_list = schemas
        .iter()
        .map(|s| super::types::quote_literal(s))
        .collect::<Vec<_>>()
        .join(", ");
    let cols = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, CAST(ORDINAL_POSITION AS CHAR),
                LOWER(DATA_TYPE), LOWER(COLUMN_TYPE), IS_NULLABLE,
                CAST(NUMERIC_PRECISION AS CHAR), CAST(NUMERIC_SCALE AS CHAR), CHARACTER_SET_NAME
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN ({in_list})
         ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(q("columns"))?;
    for r in &cols {
        let id = TableId::new(
            text(r, 0).unwrap_or_default(),
            text(r, 1).unwrap_or_default(),
        );
        let Some(&i) = index.get(&id) else {
            continue;
        };
        let charset = text(r, 9);
        let resolved = MyType {
            data_type: text(r, 4).unwrap_or_default(),
            column_type: text(r, 5).unwrap_or_default(),
            precision: number(r, 7),
            scale: number(r, 8),
            charset: charset.clone(),
        };
        tables[i].columns.push(SourceColumn {
            name: text(r, 2).unwrap_or_default(),
            mysql_type: resolved.column_type.clone(),
            resolved,
            charset,
            nullable: text(r, 6).as_deref() == Some("YES"),
            ordinal: number(r, 3).unwrap_or(0),
        });
    }
    let keys = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME
         FROM information_schema.KEY_COLUMN_USAGE
         WHERE CONSTRAINT_NAME = 'PRIMARY' AND TABLE_SCHEMA IN ({in_list})
         ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(q("primary keys"))?;
    for r in &keys {
        let id = TableId::new(
            text(r, 0).unwrap_or_default(),
            text(r, 1).unwrap_or_default(),
        );
        if let (Some(&i), Some(col)) = (index.get(&id), text(r, 2)) {
            tables[i].primary_key.push(col);
        }
    }
    Ok(tables)
}

/// The tables selected by `patterns`; a pattern that selects nothing is an error that lists
/// near names.
pub async fn resolve_tables(
    conn: &mut MySqlConnection,
    cfg: &MysqlConfig,
    patterns: &[String],
) -> Result<Vec<SourceTable>> {
    let filter = TableFilter::new(cfg, patterns)?;
    let tables = discover(conn, cfg, &filter).await?;
    let ids: Vec<&TableId> = tables.iter().map(|t| &t.id).collect();
    let unmatched = filter.unmatched(&ids);
    if !unmatched.is_empty() || patterns.is_empty() {
        let all = discover(conn, cfg, &TableFilter::schema(cfg, &cfg.database)?).await?;
        let names: Vec<String> = all.iter().map(|t| t.id.to_string()).collect();
        let first = unmatched.first().copied().unwrap_or("");
        let near = confluo_core::suggest::nearest(first, names.iter().map(String::as_str));
        let hint = if !near.is_empty() {
            confluo_core::suggest::hint(&near)
        } else if names.is_empty() {
            format!(
                "\n  hint: database `{}` has no tables this user can read",
                cfg.database
            )
        } else {
            let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
            format!(
                "\n  hint: tables in `{}` include {}",
                cfg.database,
                shown.join(", ")
            )
        };
        return Err(MysqlError::NoTables {
            connection: cfg.name.clone(),
            patterns: if unmatched.is_empty() {
                "(no `tables:` given)".to_string()
            } else {
                unmatched.join(", ")
            },
            hint,
        });
    }
    Ok(tables)
}
