//! `confluo verify`: does a lakehouse table hold exactly the rows of its source table?
//!
//! Both sides are read as Arrow with the same column types (the source through its
//! connector — PostgreSQL's binary COPY, or MySQL's text protocol with the snapshot's SELECT
//! expressions —, the target through DataFusion, cast to the source's types), so one row
//! hash serves both. Rows are summed per key range (count and a wrapping sum of row
//! hashes, which does not depend on order); ranges that differ are split again and again
//! until they are small enough to compare row by row, which names the differing keys.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Instant;

use confluo_connectors::mysql::range_read::RangeReader;
use confluo_connectors::mysql::{MysqlConfig, MysqlError};
use confluo_connectors::postgres::copy::{CopyDecoder, copy_out, copy_statement};
use confluo_connectors::postgres::discover::SourceTable;
use confluo_connectors::postgres::types::{ColumnMapping, quote_ident};
use confluo_connectors::postgres::{PostgresConfig, PostgresError};
use confluo_connectors::{mysql, postgres};
use confluo_core::TableName;
use confluo_lakehouse::{Lakehouse, TableVersion};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use serde::Serialize;
use sqlx::PgConnection;
use sqlx::mysql::MySqlConnection;
use tokio::sync::mpsc;

use super::{ManagedError, Result};

/// Ranges small enough to compare row by row.
const ROW_COMPARE_LIMIT: u64 = 20_000;

/// How one key differs.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// In the source, not in the lakehouse.
    MissingInTarget {
        /// The key.
        key: String,
    },
    /// In the lakehouse, not in the source.
    ExtraInTarget {
        /// The key.
        key: String,
    },
    /// In both, with different values.
    Changed {
        /// The key.
        key: String,
        /// `(column, source value, target value)`.
        columns: Vec<(String, String, String)>,
    },
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// `connection.schema.table` (`connection.database.table` for MySQL).
    pub source: String,
    /// The lakehouse table.
    pub target: String,
    /// Rows in the source.
    pub source_rows: u64,
    /// Rows in the lakehouse table.
    pub target_rows: u64,
    /// Key ranges compared by checksum.
    pub ranges: usize,
    /// Whether every row is equal.
    pub equal: bool,
    /// The differences found (at most the limit asked for).
    pub differences: Vec<Difference>,
    /// More differences exist than listed.
    pub truncated: bool,
    /// Columns compared.
    pub columns: Vec<String>,
    /// Time taken.
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Summary {
    rows: u64,
    hash: u64,
}

/// The integer keys of a batch's rows (null keys as `None`).
type Keys = Vec<Option<i64>>;

/// Rows of one side, reduced to key and row hash.
struct Side {
    schema: SchemaRef,
    converter: RowConverter,
}

impl Side {
    fn new(schema: SchemaRef) -> Result<Self> {
        let fields = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields).map_err(arrow_err)?;
        Ok(Side { schema, converter })
    }

    /// Per row: the integer key (when the key is one integer column) and the row hash.
    fn hashes(&self, batch: &RecordBatch, key: usize) -> Result<(Option<Keys>, Vec<u64>)> {
        let columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| cast(c, f.data_type()).map_err(arrow_err))
            .collect::<Result<_>>()?;
        let rows = self
            .converter
            .convert_columns(&columns)
            .map_err(arrow_err)?;
        let hashes = rows
            .iter()
            .map(|r| {
                let mut h = DefaultHasher::new();
                r.as_ref().hash(&mut h);
                h.finish()
            })
            .collect();
        let keys = cast(&columns[key], &DataType::Int64).ok().map(|k| {
            let k = k.as_primitive::<Int64Type>();
            (0..k.len())
                .map(|i| k.is_valid(i).then(|| k.value(i)))
                .collect()
        });
        Ok((keys, hashes))
    }
}

fn arrow_err(e: datafusion::arrow::error::ArrowError) -> ManagedError {
    ManagedError::Convert {
        table: "verify".into(),
        message: e.to_string(),
    }
}

/// The connection the source table is read through.
#[derive(Debug, Clone, Copy)]
pub enum SourceConfig<'a> {
    /// A `type: postgres` connection.
    Postgres(&'a PostgresConfig),
    /// A `type: mysql` connection (MySQL or MariaDB).
    Mysql(&'a MysqlConfig),
}

/// What to compare.
pub struct VerifyRequest<'a> {
    /// The source connection.
    pub source: SourceConfig<'a>,
    /// The table in the source: `schema.table` (PostgreSQL), `database.table` or `table` (a
    /// table of the connection's database; MySQL).
    pub source_table: String,
    /// The lakehouse table.
    pub target: TableName,
    /// Key ranges for the first pass.
    pub ranges: usize,
    /// At most this many differences are listed.
    pub max_differences: usize,
}

/// The source table, open for reading: a connection, and how its rows become Arrow.
enum Source<'a> {
    Postgres {
        cfg: &'a PostgresConfig,
        conn: PgConnection,
        table: SourceTable,
        mappings: Vec<(String, ColumnMapping)>,
        schema: SchemaRef,
        key: String,
    },
    Mysql {
        conn: MySqlConnection,
        reader: RangeReader,
    },
}

/// What the comparison needs to know of the source table.
struct SourceShape {
    /// `connection.schema.table`.
    name: String,
    /// The one integer primary key column.
    key: String,
    /// The Arrow schema both sides are compared in.
    schema: SchemaRef,
}

/// A MySQL error as a verify error, prefixed with the table it was about.
fn mysql_err(table: &str) -> impl Fn(MysqlError) -> ManagedError + '_ {
    move |e| ManagedError::Convert {
        table: table.to_string(),
        message: e.to_string(),
    }
}

/// The one table `pattern` names (a pattern naming several is an error).
fn only_table<T>(pattern: &str, tables: Vec<T>, id: impl Fn(&T) -> String) -> Result<T> {
    let mut tables = tables.into_iter();
    let first = tables.next().ok_or_else(|| ManagedError::Convert {
        table: pattern.to_string(),
        message: "not found".into(),
    })?;
    if let Some(second) = tables.next() {
        return Err(ManagedError::Convert {
            table: pattern.to_string(),
            message: format!(
                "names several tables ({}, {}, …); verify compares one table",
                id(&first),
                id(&second)
            ),
        });
    }
    Ok(first)
}

/// The primary key when it is one integer column: verify splits the table by it.
/// `key_type` gives, for a column, whether it is an integer key and its declared type.
fn integer_key(
    table: &str,
    primary_key: &[String],
    key_type: impl Fn(&str) -> Option<(bool, String)>,
) -> Result<String> {
    if primary_key.len() != 1 {
        return Err(ManagedError::Convert {
            table: table.to_string(),
            message: format!(
                "verify compares by a one-column primary key; this table has {}",
                if primary_key.is_empty() {
                    "none".to_string()
                } else {
                    format!("{} key columns", primary_key.len())
                }
            ),
        });
    }
    let key = primary_key[0].clone();
    if let Some((false, declared)) = key_type(&key) {
        return Err(ManagedError::Convert {
            table: table.to_string(),
            message: format!(
                "verify splits the table by an integer primary key; `{key}` is {declared}"
            ),
        });
    }
    Ok(key)
}

impl<'a> Source<'a> {
    /// Connects and finds the table.
    async fn open(cfg: SourceConfig<'a>, pattern: &str) -> Result<(Self, SourceShape)> {
        let patterns = vec![pattern.to_string()];
        match cfg {
            SourceConfig::Postgres(cfg) => {
                let mut conn = cfg.connect().await?;
                let tables = postgres::resolve_tables(&mut conn, cfg, &patterns).await?;
                let table = only_table(pattern, tables, |t| t.id.to_string())?;
                let key = integer_key(&table.id.to_string(), &table.primary_key, |k| {
                    let c = table.columns.iter().find(|c| c.name == k)?;
                    Some((
                        postgres::types::is_integer_key(&c.resolved),
                        c.pg_type.clone(),
                    ))
                })?;
                let mappings = table.mappings(cfg)?;
                let schema = table.arrow_schema(cfg)?;
                let shape = SourceShape {
                    name: format!("{}.{}", cfg.name, table.id),
                    key: key.clone(),
                    schema: schema.clone(),
                };
                let source = Source::Postgres {
                    cfg,
                    conn,
                    table,
                    mappings,
                    schema,
                    key,
                };
                Ok((source, shape))
            }
            SourceConfig::Mysql(cfg) => {
                let err = mysql_err(pattern);
                let mut conn = cfg.connect().await.map_err(&err)?;
                let tables = mysql::resolve_tables(&mut conn, cfg, &patterns)
                    .await
                    .map_err(&err)?;
                let table = only_table(pattern, tables, |t| t.id.to_string())?;
                let name = table.id.to_string();
                let key = integer_key(&name, &table.primary_key, |k| {
                    let c = table.columns.iter().find(|c| c.name == k)?;
                    Some((
                        mysql::types::is_integer_key(&c.resolved),
                        c.mysql_type.clone(),
                    ))
                })?;
                let reader = RangeReader::new(cfg, &table)
                    .map_err(mysql_err(&name))?
                    .ok_or_else(|| ManagedError::Convert {
                        table: name.clone(),
                        message: format!("cannot read by ranges of `{key}`"),
                    })?;
                let shape = SourceShape {
                    name: format!("{}.{name}", cfg.name),
                    key,
                    schema: reader.schema().clone(),
                };
                Ok((Source::Mysql { conn, reader }, shape))
            }
        }
    }

    /// The smallest and largest key (`None` for an empty table).
    async fn bounds(&mut self) -> Result<(Option<i64>, Option<i64>)> {
        match self {
            Source::Postgres {
                cfg,
                conn,
                table,
                key,
                ..
            } => {
                let k = quote_ident(key);
                let what = "reading key bounds".to_string();
                let bounds = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT min({k})::int8, max({k})::int8 FROM {}",
                    table.id.sql()
                )))
                .fetch_one(conn)
                .await
                .map_err(|e| ManagedError::from(PostgresError::query(&cfg.name, what)(e)))?;
                Ok(bounds)
            }
            Source::Mysql { conn, reader, .. } => {
                let name = reader.table().to_string();
                reader.key_bounds(conn).await.map_err(mysql_err(&name))
            }
        }
    }

    /// The rows with keys in `range` (every row for `None`), batch by batch.
    async fn batches(
        &mut self,
        range: Option<(i64, i64)>,
        mut each: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let (cfg, conn, table, mappings, schema, key) = match self {
            Source::Postgres {
                cfg,
                conn,
                table,
                mappings,
                schema,
                key,
            } => (cfg, conn, table, mappings, schema, key),
            Source::Mysql { conn, reader, .. } => {
                let name = reader.table().to_string();
                let mut stream = std::pin::pin!(reader.read(conn, range));
                while let Some(b) = stream.next().await {
                    each(b.map_err(mysql_err(&name))?)?;
                }
                return Ok(());
            }
        };
        let sql = copy_statement(&table.id.sql(), mappings, key_filter(key, range).as_deref());
        let only: Vec<ColumnMapping> = mappings.iter().map(|(_, m)| m.clone()).collect();
        let decoder = CopyDecoder::new(&cfg.name, &table.id.to_string(), schema.clone(), &only);
        let (tx, mut rx) = mpsc::channel(4);
        let copy = async move {
            let r = copy_out(conn, &sql, decoder, &tx, |b| b).await;
            drop(tx);
            r
        };
        let consume = async {
            let mut out = Ok(());
            while let Some(b) = rx.recv().await {
                if out.is_ok() {
                    out = each(b);
                }
            }
            out
        };
        let (copied, consumed) = tokio::join!(copy, consume);
        copied?;
        consumed
    }

    /// Ends the session politely (a dropped MySQL connection is logged as aborted).
    async fn close(self) {
        match self {
            Source::Postgres { conn, .. } => {
                let _ = sqlx::Connection::close(conn).await;
            }
            Source::Mysql { conn, .. } => {
                let _ = sqlx::Connection::close(conn).await;
            }
        }
    }
}

/// `key >= a AND key < b`, quoted the PostgreSQL way (which DataFusion shares).
fn key_filter(key: &str, range: Option<(i64, i64)>) -> Option<String> {
    range.map(|(a, b)| {
        let k = quote_ident(key);
        format!("{k} >= {a} AND {k} < {b}")
    })
}

struct Compare<'a> {
    source: Source<'a>,
    key: String,
    key_index: usize,
    columns: Vec<String>,
    ctx: SessionContext,
    source_schema: SchemaRef,
    side: Side,
}

/// Compares a source table with a lakehouse table.
pub async fn verify(lh: &Lakehouse, req: VerifyRequest<'_>) -> Result<VerifyReport> {
    let started = Instant::now();
    let (source, shape) = Source::open(req.source, &req.source_table).await?;
    let SourceShape {
        name: source_name,
        key,
        schema: source_schema,
    } = shape;
    let columns: Vec<String> = source_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let key_index = source_schema.index_of(&key).map_err(arrow_err)?;
    let info = lh.table(&req.target).await?;
    let delta = lh.open_delta(&info, TableVersion::Latest).await?;
    let ctx = SessionContext::new();
    let provider = delta.table_provider().await.map_err(ManagedError::from)?;
    ctx.register_table("target", provider)
        .map_err(ManagedError::from)?;
    let target_cols: Vec<String> = ctx
        .table("target")
        .await
        .map_err(ManagedError::from)?
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for name in &columns {
        if !target_cols.contains(name) {
            return Err(ManagedError::Convert {
                table: req.target.to_string(),
                message: format!("has no column `{name}`, which the source has"),
            });
        }
    }
    let side = Side::new(source_schema.clone())?;
    let mut cmp = Compare {
        source,
        key,
        key_index,
        columns,
        ctx,
        source_schema,
        side,
    };
    let (lo, hi) = cmp.bounds().await?;
    let n = req.ranges.max(1);
    let bounds = split(lo, hi, n);
    let ours = cmp.summaries_source(&bounds, None).await?;
    let theirs = cmp.summaries_target(&bounds, None).await?;
    let source_rows = ours.iter().map(|s| s.rows).sum();
    let target_rows = theirs.iter().map(|s| s.rows).sum();
    let mut differences = Vec::new();
    let mut truncated = false;
    let mut pending: Vec<(i64, i64, u64)> = bounds
        .windows(2)
        .zip(ours.iter().zip(&theirs))
        .filter(|(_, (a, b))| a != b)
        .map(|(w, (a, b))| (w[0], w[1], a.rows.max(b.rows)))
        .collect();
    while let Some((a, b, rows)) = pending.pop() {
        if differences.len() >= req.max_differences {
            truncated = true;
            break;
        }
        let filter = Some((a, b));
        if rows <= ROW_COMPARE_LIMIT || b - a <= 16 {
            differences.extend(cmp.rows_differ(a, b).await?);
            continue;
        }
        let sub = split(a, b - 1, 16);
        let x = cmp.summaries_source(&sub, filter).await?;
        let y = cmp.summaries_target(&sub, filter).await?;
        for (w, (p, q)) in sub.windows(2).zip(x.iter().zip(&y)) {
            if p != q {
                pending.push((w[0], w[1], p.rows.max(q.rows)));
            }
        }
    }
    if differences.len() > req.max_differences {
        differences.truncate(req.max_differences);
        truncated = true;
    }
    let Compare {
        source, columns, ..
    } = cmp;
    source.close().await;
    Ok(VerifyReport {
        source: source_name,
        target: req.target.to_string(),
        source_rows,
        target_rows,
        ranges: n,
        equal: differences.is_empty() && source_rows == target_rows,
        differences,
        truncated,
        columns,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `n` ranges covering `[lo, hi]` as `n + 1` boundaries (the last one exclusive).
fn split(lo: i64, hi: i64, n: usize) -> Vec<i64> {
    let span = (hi as i128 - lo as i128 + 1).max(1);
    let n = (n as i128).min(span).max(1);
    (0..=n)
        .map(|i| (lo as i128 + span * i / n) as i64)
        .collect()
}

fn range_of(bounds: &[i64], k: i64) -> Option<usize> {
    match bounds.binary_search(&k) {
        Ok(i) if i + 1 < bounds.len() => Some(i),
        Ok(_) => None,
        Err(0) => None,
        Err(i) if i < bounds.len() => Some(i - 1),
        Err(_) => None,
    }
}

impl Compare<'_> {
    async fn df(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let df = self.ctx.sql(sql).await.map_err(ManagedError::from)?;
        df.collect().await.map_err(ManagedError::from)
    }

    /// The smallest and largest key on either side.
    async fn bounds(&mut self) -> Result<(i64, i64)> {
        let k = quote_ident(&self.key);
        let (a, b) = self.source.bounds().await?;
        let t = self
            .df(&format!(
                "SELECT CAST(min({k}) AS BIGINT), CAST(max({k}) AS BIGINT) FROM target"
            ))
            .await?;
        let (mut lo, mut hi) = (a.unwrap_or(0), b.unwrap_or(0));
        if let Some(batch) = t.first().filter(|b| b.num_rows() > 0) {
            let x = batch.column(0).as_primitive::<Int64Type>();
            let y = batch.column(1).as_primitive::<Int64Type>();
            if x.is_valid(0) {
                lo = if a.is_some() {
                    lo.min(x.value(0))
                } else {
                    x.value(0)
                };
                hi = if b.is_some() {
                    hi.max(y.value(0))
                } else {
                    y.value(0)
                };
            }
        }
        Ok((lo, hi))
    }

    async fn target_batches(
        &self,
        range: Option<(i64, i64)>,
        mut each: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let cols: Vec<String> = self.columns.iter().map(|n| quote_ident(n)).collect();
        let mut sql = format!("SELECT {} FROM target", cols.join(", "));
        if let Some(w) = key_filter(&self.key, range) {
            sql.push_str(" WHERE ");
            sql.push_str(&w);
        }
        let df = self.ctx.sql(&sql).await.map_err(ManagedError::from)?;
        let mut stream = df.execute_stream().await.map_err(ManagedError::from)?;
        while let Some(b) = stream.next().await {
            each(b.map_err(ManagedError::from)?)?;
        }
        Ok(())
    }

    fn fold(
        side: &Side,
        key: usize,
        bounds: &[i64],
        sums: &mut [Summary],
        batch: &RecordBatch,
    ) -> Result<()> {
        let (keys, hashes) = side.hashes(batch, key)?;
        let keys = keys.unwrap_or_default();
        for (k, h) in keys.iter().zip(hashes) {
            if let Some(i) = k.and_then(|k| range_of(bounds, k)) {
                sums[i].rows += 1;
                sums[i].hash = sums[i].hash.wrapping_add(h);
            }
        }
        Ok(())
    }

    async fn summaries_source(
        &mut self,
        bounds: &[i64],
        range: Option<(i64, i64)>,
    ) -> Result<Vec<Summary>> {
        let mut sums = vec![Summary::default(); bounds.len() - 1];
        let (side, key) = (&self.side, self.key_index);
        self.source
            .batches(range, |b| Self::fold(side, key, bounds, &mut sums, &b))
            .await?;
        Ok(sums)
    }

    async fn summaries_target(
        &self,
        bounds: &[i64],
        range: Option<(i64, i64)>,
    ) -> Result<Vec<Summary>> {
        let mut sums = vec![Summary::default(); bounds.len() - 1];
        let key = self.key_index;
        self.target_batches(range, |b| {
            Self::fold(&self.side, key, bounds, &mut sums, &b)
        })
        .await?;
        Ok(sums)
    }

    /// Row-by-row comparison of one small range.
    async fn rows_differ(&mut self, a: i64, b: i64) -> Result<Vec<Difference>> {
        type Rows = HashMap<i64, (u64, RecordBatch, usize)>;
        let key = self.key_index;
        let collect = |side: &Side, rows: &mut Rows, batch: RecordBatch| -> Result<()> {
            let (keys, hashes) = side.hashes(&batch, key)?;
            for (i, (k, h)) in keys.unwrap_or_default().into_iter().zip(hashes).enumerate() {
                if let Some(k) = k {
                    rows.insert(k, (h, batch.clone(), i));
                }
            }
            Ok(())
        };
        let side = &self.side;
        let mut ours: Rows = HashMap::new();
        self.source
            .batches(Some((a, b)), |batch| collect(side, &mut ours, batch))
            .await?;
        let mut theirs: Rows = HashMap::new();
        self.target_batches(Some((a, b)), |batch| {
            collect(&self.side, &mut theirs, batch)
        })
        .await?;
        let mut keys: Vec<i64> = ours.keys().chain(theirs.keys()).copied().collect();
        keys.sort_unstable();
        keys.dedup();
        let mut out = Vec::new();
        for k in keys {
            match (ours.get(&k), theirs.get(&k)) {
                (Some(_), None) => out.push(Difference::MissingInTarget { key: k.to_string() }),
                (None, Some(_)) => out.push(Difference::ExtraInTarget { key: k.to_string() }),
                (Some((h1, b1, i1)), Some((h2, b2, i2))) if h1 != h2 => {
                    let mut columns = Vec::new();
                    for (c, f) in self.source_schema.fields().iter().enumerate() {
                        let x = array_value_to_string(b1.column(c), *i1).unwrap_or_default();
                        let y = cast(b2.column(c), f.data_type())
                            .ok()
                            .and_then(|col| array_value_to_string(&col, *i2).ok())
                            .unwrap_or_default();
                        if x != y {
                            columns.push((f.name().clone(), x, y));
                        }
                    }
                    out.push(Difference::Changed {
                        key: k.to_string(),
                        columns,
                    });
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_keys_exactly_once() {
        let b = split(1, 100, 4);
        assert_eq!(b, vec![1, 26, 51, 76, 101]);
        assert_eq!(range_of(&b, 1), Some(0));
        assert_eq!(range_of(&b, 26), Some(1));
        assert_eq!(range_of(&b, 100), Some(3));
        assert_eq!(range_of(&b, 101), None);
        assert_eq!(range_of(&b, 0), None);
        assert_eq!(split(5, 5, 16), vec![5, 6]);
    }
}
