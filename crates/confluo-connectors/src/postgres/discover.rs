//! What a PostgreSQL database holds: tables, their columns (types resolved through domains,
//! enums and arrays), primary keys, row estimates and replica identity.

use crate::table_patterns::TablePatterns;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use serde::Serialize;
use sqlx::{PgConnection, Row};

use super::config::{PostgresConfig, UnsupportedTypes};
use super::error::{PostgresError, Result};
use super::types::{ColumnMapping, PgType, map_type, quote_ident};

/// A table's name in the source: schema and table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TableId {
    /// The PostgreSQL schema (namespace).
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

    /// `"schema"."name"`, quoted for SQL.
    pub fn sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// What kind of relation a source table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// An ordinary table.
    Table,
    /// A partitioned table (read through its root, which covers every partition).
    PartitionedTable,
    /// A view.
    View,
    /// A materialized view.
    MaterializedView,
    /// A foreign table.
    ForeignTable,
}

/// Which old values PostgreSQL logs for updates and deletes (`ALTER TABLE ... REPLICA
/// IDENTITY`); change capture needs at least the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaIdentity {
    /// The primary key.
    Default,
    /// Nothing.
    Nothing,
    /// Every column.
    Full,
    /// A chosen unique index.
    Index,
}

/// One column of a source table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceColumn {
    /// The column's name.
    pub name: String,
    /// The type as declared (`format_type`), e.g. `numeric(10,2)` or a domain's name.
    pub pg_type: String,
    /// The type after resolving domains.
    #[serde(skip)]
    pub resolved: PgType,
    /// Whether the column accepts NULL.
    pub nullable: bool,
    /// 1-based position (`attnum`).
    pub ordinal: i32,
    /// `pg_attribute.atttypid`.
    #[serde(skip)]
    pub type_oid: u32,
    /// How a stored generated column (`GENERATED ALWAYS AS (...) STORED`) is computed.
    /// `pgoutput` does not send these columns (before PostgreSQL 18), so change capture
    /// computes them (see [`crate::postgres::cdc::generated`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated: Option<Generated>,
}

/// A stored generated column's expression and the columns it reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generated {
    /// The expression as `pg_get_expr` prints it (column names unqualified).
    pub expression: String,
    /// The table's columns it reads (`pg_depend`).
    pub inputs: Vec<String>,
}

/// A table (or view) of the source and what Confluo knows about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceTable {
    /// Schema and name.
    pub id: TableId,
    /// Table, view, ….
    pub kind: TableKind,
    /// Columns in order.
    pub columns: Vec<SourceColumn>,
    /// Primary key columns, in key order (empty when there is none).
    pub primary_key: Vec<String>,
    /// `pg_class.reltuples` (for a partitioned table, the sum over its partitions); `None`
    /// when the table was never analyzed.
    pub row_estimate: Option<u64>,
    /// Replica identity.
    pub replica_identity: ReplicaIdentity,
}

impl SourceTable {
    /// How each column is read, in column order. A type without mapping is an error naming
    /// the table and column, or text with `unsupported_types: text`.
    pub fn mappings(&self, cfg: &PostgresConfig) -> Result<Vec<(String, ColumnMapping)>> {
        self.columns
            .iter()
            .map(|c| {
                let m = match (map_type(&c.resolved), cfg.unsupported_types) {
                    (Some(m), _) => m,
                    (None, UnsupportedTypes::Text) => ColumnMapping::as_text(),
                    (None, UnsupportedTypes::Error) => {
                        return Err(PostgresError::UnsupportedType {
                            connection: cfg.name.clone(),
                            table: self.id.to_string(),
                            column: c.name.clone(),
                            pg_type: c.pg_type.clone(),
                        });
                    }
                };
                Ok((c.name.clone(), m))
            })
            .collect()
    }

    /// The Arrow schema of the table's rows. Every column is nullable: values Arrow cannot
    /// hold (`±infinity` dates) arrive as null even in NOT NULL columns.
    pub fn arrow_schema(&self, cfg: &PostgresConfig) -> Result<SchemaRef> {
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

/// Which tables to look at: glob patterns over `schema.table`.
#[derive(Debug, Clone, Default)]
pub struct TableFilter {
    patterns: TablePatterns,
}

impl TableFilter {
    /// Every table outside the system schemas.
    pub fn all() -> Self {
        TableFilter::default()
    }

    /// Tables matching any of `patterns`: `schema.table` with globs in either part
    /// (`public.*`, `sales.order_*`); a pattern without a dot matches the table name in
    /// every schema.
    pub fn new(cfg_name: &str, patterns: &[String]) -> Result<Self> {
        let patterns =
            TablePatterns::new(patterns, "*").map_err(|message| PostgresError::Config {
                connection: cfg_name.to_string(),
                key: "tables".into(),
                message,
            })?;
        Ok(TableFilter { patterns })
    }

    /// Only tables of schema `schema`.
    pub fn schema(cfg_name: &str, schema: &str) -> Result<Self> {
        Self::new(cfg_name, &[format!("{schema}.*")])
    }

    /// Whether `id` is selected.
    pub fn matches(&self, id: &TableId) -> bool {
        self.patterns.is_empty() || self.patterns.matches(&id.schema, &id.name)
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

/// A row of `pg_type`.
struct TypeRow {
    name: String,
    kind: char,
    category: char,
    elem: i64,
    base: i64,
    base_typmod: i32,
}

/// Resolves a type through domains to a [`PgType`].
fn resolve(types: &HashMap<i64, TypeRow>, oid: i64, typmod: i32, depth: usize) -> PgType {
    let Some(t) = types.get(&oid) else {
        return PgType::Scalar {
            name: format!("oid {oid}"),
            kind: '?',
            typmod,
        };
    };
    if depth > 16 {
        return PgType::Scalar {
            name: t.name.clone(),
            kind: '?',
            typmod,
        };
    }
    if t.kind == 'd' {
        let m = if typmod >= 0 { typmod } else { t.base_typmod };
        return resolve(types, t.base, m, depth + 1);
    }
    if t.category == 'A' && t.elem != 0 {
        // An array column's modifier applies to its elements (numeric(10,2)[]).
        return PgType::Array(Box::new(resolve(types, t.elem, typmod, depth + 1)));
    }
    PgType::Scalar {
        name: t.name.clone(),
        kind: t.kind,
        typmod,
    }
}

fn first_char(s: &str) -> char {
    s.chars().next().unwrap_or('?')
}

/// Lists the tables selected by `filter`, with columns, keys and estimates, sorted by name.
pub async fn discover(
    conn: &mut PgConnection,
    cfg: &PostgresConfig,
    filter: &TableFilter,
) -> Result<Vec<SourceTable>> {
    let q = |what: &str| PostgresError::query(&cfg.name, format!("listing {what}"));
    let rel_rows = sqlx::query(
        "SELECT c.oid::int8 AS oid, n.nspname::text AS schema, c.relname::text AS name,
                c.relkind::text AS kind, c.relreplident::text AS ident,
                CASE WHEN c.relkind = 'p' THEN
                    (SELECT sum(greatest(p.reltuples, 0))::float8 FROM pg_inherits i
                       JOIN pg_class p ON p.oid = i.inhrelid WHERE i.inhparent = c.oid)
                ELSE c.reltuples::float8 END AS estimate
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
           AND has_table_privilege(c.oid, 'SELECT')
         ORDER BY 2, 3",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("tables"))?;
    let mut tables: Vec<(i64, SourceTable)> = Vec::new();
    for r in rel_rows {
        let id = TableId::new(r.get::<String, _>("schema"), r.get::<String, _>("name"));
        if !filter.matches(&id) {
            continue;
        }
        let kind = match r.get::<String, _>("kind").as_str() {
            "p" => TableKind::PartitionedTable,
            "v" => TableKind::View,
            "m" => TableKind::MaterializedView,
            "f" => TableKind::ForeignTable,
            _ => TableKind::Table,
        };
        let replica_identity = match r.get::<String, _>("ident").as_str() {
            "n" => ReplicaIdentity::Nothing,
            "f" => ReplicaIdentity::Full,
            "i" => ReplicaIdentity::Index,
            _ => ReplicaIdentity::Default,
        };
        let estimate: Option<f64> = r.get("estimate");
        tables.push((
            r.get("oid"),
            SourceTable {
                id,
                kind,
                columns: Vec::new(),
                primary_key: Vec::new(),
                // reltuples is -1 for a table never vacuumed or analyzed.
                row_estimate: estimate.filter(|e| *e >= 0.0).map(|e| e as u64),
                replica_identity,
            },
        ));
    }
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let oids: Vec<i64> = tables.iter().map(|(o, _)| *o).collect();
    let types: HashMap<i64, TypeRow> = sqlx::query(
        "SELECT oid::int8 AS oid, typname::text AS name, typtype::text AS kind,
                typcategory::text AS category, typelem::int8 AS elem,
                typbasetype::int8 AS base, typtypmod AS base_typmod
         FROM pg_type",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("types"))?
    .into_iter()
    .map(|r| {
        (
            r.get::<i64, _>("oid"),
            TypeRow {
                name: r.get("name"),
                kind: first_char(&r.get::<String, _>("kind")),
                category: first_char(&r.get::<String, _>("category")),
                elem: r.get("elem"),
                base: r.get("base"),
                base_typmod: r.get("base_typmod"),
            },
        )
    })
    .collect();
    let index: HashMap<i64, usize> = oids.iter().enumerate().map(|(i, o)| (*o, i)).collect();
    let cols = sqlx::query(
        "SELECT a.attrelid::int8 AS rel, a.attnum::int4 AS num, a.attname::text AS name,
                a.attnotnull AS notnull, a.atttypid::int8 AS typid, a.atttypmod AS typmod,
                format_type(a.atttypid, a.atttypmod) AS declared
         FROM pg_attribute a
         WHERE a.attrelid::int8 = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY 1, 2",
    )
    .bind(&oids)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("columns"))?;
    for r in cols {
        let Some(&i) = index.get(&r.get::<i64, _>("rel")) else {
            continue;
        };
        let resolved = resolve(&types, r.get("typid"), r.get("typmod"), 0);
        tables[i].1.columns.push(SourceColumn {
            name: r.get("name"),
            pg_type: r.get("declared"),
            resolved,
            nullable: !r.get::<bool, _>("notnull"),
            ordinal: r.get("num"),
            type_oid: r.get::<i64, _>("typid") as u32,
            generated: None,
        });
    }
    // Stored generated columns exist from PostgreSQL 12 (`attgenerated`).
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int4")
        .fetch_one(&mut *conn)
        .await
        .map_err(q("the server version"))?;
    if version >= 120_000 {
        let generated = sqlx::query(
            "SELECT a.attrelid::int8 AS rel, a.attname::text AS name,
                    pg_get_expr(d.adbin, d.adrelid) AS expression,
                    ARRAY(SELECT r.attname::text FROM pg_depend dep
                          JOIN pg_attribute r ON r.attrelid = dep.refobjid AND r.attnum = dep.refobjsubid
                          WHERE dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
                            AND dep.refobjsubid > 0
                          ORDER BY r.attnum) AS inputs
             FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid::int8 = ANY($1) AND a.attgenerated = 's' AND NOT a.attisdropped",
        )
        .bind(&oids)
        .fetch_all(&mut *conn)
        .await
        .map_err(q("generated columns"))?;
        for r in generated {
            let Some(&i) = index.get(&r.get::<i64, _>("rel")) else {
                continue;
            };
            let name: String = r.get("name");
            if let Some(c) = tables[i].1.columns.iter_mut().find(|c| c.name == name) {
                c.generated = Some(Generated {
                    expression: r.get("expression"),
                    inputs: r.get("inputs"),
                });
            }
        }
    }
    let keys = sqlx::query(
        "SELECT i.indrelid::int8 AS rel, a.attname::text AS name
         FROM pg_index i
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indisprimary AND i.indrelid::int8 = ANY($1)
         ORDER BY 1, k.ord",
    )
    .bind(&oids)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("primary keys"))?;
    for r in keys {
        if let Some(&i) = index.get(&r.get::<i64, _>("rel")) {
            tables[i].1.primary_key.push(r.get("name"));
        }
    }
    Ok(tables.into_iter().map(|(_, t)| t).collect())
}

/// The tables selected by `patterns`; a pattern that selects nothing is an error that lists
/// near names.
pub async fn resolve_tables(
    conn: &mut PgConnection,
    cfg: &PostgresConfig,
    patterns: &[String],
) -> Result<Vec<SourceTable>> {
    let filter = TableFilter::new(&cfg.name, patterns)?;
    let tables = discover(conn, cfg, &filter).await?;
    let ids: Vec<&TableId> = tables.iter().map(|t| &t.id).collect();
    let unmatched = filter.unmatched(&ids);
    if !unmatched.is_empty() || patterns.is_empty() {
        let all = discover(conn, cfg, &TableFilter::all()).await?;
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
        return Err(PostgresError::NoTables {
            connection: cfg.name.clone(),
            patterns: if unmatched.is_empty() {
                "(no patterns given)".into()
            } else {
                unmatched
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            hint,
        });
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let f = TableFilter::new("c", &["public.*".into(), "orders".into()]).unwrap();
        assert!(f.matches(&TableId::new("public", "x")));
        assert!(f.matches(&TableId::new("sales", "orders")));
        assert!(!f.matches(&TableId::new("sales", "items")));
        let f = TableFilter::new("c", &["sales.order_*".into(), "nope.*".into()]).unwrap();
        let a = TableId::new("sales", "order_items");
        assert_eq!(f.unmatched(&[&a]), vec!["nope.*"]);
    }

    #[test]
    fn domains_and_arrays_resolve() {
        let mut types = HashMap::new();
        let row = |name: &str, kind: char, category: char, elem: i64, base: i64, m: i32| TypeRow {
            name: name.into(),
            kind,
            category,
            elem,
            base,
            base_typmod: m,
        };
        types.insert(1700, row("numeric", 'b', 'N', 0, 0, -1));
        types.insert(1231, row("_numeric", 'b', 'A', 1700, 0, -1));
        types.insert(9000, row("price", 'd', 'N', 0, 1700, (10 << 16 | 2) + 4));
        assert_eq!(
            resolve(&types, 9000, -1, 0),
            PgType::Scalar {
                name: "numeric".into(),
                kind: 'b',
                typmod: (10 << 16 | 2) + 4
            }
        );
        assert!(matches!(resolve(&types, 1231, -1, 0), PgType::Array(_)));
    }
}
