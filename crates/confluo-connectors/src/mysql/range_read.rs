//! One table, or one range of its integer primary key, read as Arrow record batches with the
//! columns, types and SELECT expressions of the snapshot — so what is read here compares
//! value for value with what a snapshot wrote (`confluo verify`).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt};
use sqlx::Row;
use sqlx::mysql::MySqlConnection;

use super::config::MysqlConfig;
use super::decode::{BATCH_ROWS, BatchBuilder};
use super::discover::{SourceTable, TableId};
use super::error::{MysqlError, Result};
use super::types::{ColumnMapping, quote_ident};

/// Reads a table by ranges of its single-column integer primary key.
#[derive(Debug, Clone)]
pub struct RangeReader {
    connection: String,
    table: TableId,
    key: String,
    schema: SchemaRef,
    mappings: Vec<ColumnMapping>,
    select: String,
}

impl RangeReader {
    /// A reader of `table`, whose primary key must be one integer column (`None` otherwise).
    /// A column type without mapping is an error, as in a snapshot.
    pub fn new(cfg: &MysqlConfig, table: &SourceTable) -> Result<Option<Self>> {
        let Some(key) = table.split_key() else {
            return Ok(None);
        };
        let mappings = table.mappings(cfg)?;
        let select = mappings
            .iter()
            .map(|(name, m)| m.select_expr(name))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Some(RangeReader {
            connection: cfg.name.clone(),
            table: table.id.clone(),
            key: key.name.clone(),
            schema: table.arrow_schema(cfg)?,
            mappings: mappings.into_iter().map(|(_, m)| m).collect(),
            select,
        }))
    }

    /// The Arrow schema of the batches (the snapshot's).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The table read.
    pub fn table(&self) -> &TableId {
        &self.table
    }

    /// The key column.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The smallest and largest key (`None` for an empty table).
    pub async fn key_bounds(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<(Option<i64>, Option<i64>)> {
        let k = quote_ident(&self.key);
        let sql = format!(
            "SELECT CAST(MIN({k}) AS SIGNED), CAST(MAX({k}) AS SIGNED) FROM {}",
            self.table.sql()
        );
        let what = format!("reading the key range of {}", self.table);
        let row = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await
            .map_err(MysqlError::query(&self.connection, what))?;
        // Text protocol: each value arrives as its decimal text.
        let number = |i: usize| {
            row.try_get_unchecked::<Option<&[u8]>, _>(i)
                .ok()
                .flatten()
                .and_then(|b| std::str::from_utf8(b).ok()?.parse::<i64>().ok())
        };
        Ok((number(0), number(1)))
    }

    /// The rows whose key is in `start..end` (every row for `None`), in batches of at most
    /// [`BATCH_ROWS`] rows, in no particular order.
    pub fn read<'c>(
        &self,
        conn: &'c mut MySqlConnection,
        range: Option<(i64, i64)>,
    ) -> impl Stream<Item = Result<RecordBatch>> + Send + 'c {
        let mut sql = format!("SELECT {} FROM {}", self.select, self.table.sql());
        if let Some((start, end)) = range {
            let k = quote_ident(&self.key);
            sql.push_str(&format!(" WHERE {k} >= {start} AND {k} < {end}"));
        }
        let mut builder = BatchBuilder::new(
            &self.connection,
            &self.table.to_string(),
            self.schema.clone(),
            &self.mappings,
        );
        let connection = self.connection.clone();
        let what = format!("reading {}", self.table);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .fetch(conn)
            .chunks(BATCH_ROWS)
            .map(move |rows| {
                for row in rows {
                    let row = row.map_err(MysqlError::query(&connection, what.clone()))?;
                    builder.append(&row)?;
                }
                builder.finish()
            })
    }
}
