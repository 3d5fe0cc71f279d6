//! Lakehouse Federation: `CREATE CONNECTION` and `CREATE FOREIGN CATALOG` make an external
//! PostgreSQL, MySQL/MariaDB or SQLite database readable as `catalog.schema.table`.
//!
//! Planning is datafusion-federation's: the largest part of a plan that reads only one
//! source (projection, filters, limits, aggregates, joins, sorts) is cut out, unparsed into
//! that source's SQL dialect and run there; `EXPLAIN` shows the SQL. What is Confluo's is
//! the reading: each source streams the query's rows into Arrow with the decoders its
//! connector already uses for snapshots, and every batch is brought to the planned schema
//! with checked casts, so a value that does not fit is an error naming the column.

mod catalog;
mod connection;
mod mysql;
mod postgres;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::FormatOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion_federation::sql::SQLExecutor;

pub use catalog::{ForeignCatalog, ForeignCatalogProvider};
pub use connection::{CONNECTION_TYPES, connection_kind, open_source};

/// Schema → table names of a source.
pub type Listing = BTreeMap<String, Vec<String>>;

/// A database that foreign catalogs read: how to list it and type its tables, besides
/// running SQL.
#[async_trait]
pub trait RemoteSource: SQLExecutor {
    /// The connection's name, for messages.
    fn connection(&self) -> &str;

    /// Its schemas and tables (what the connecting user may read).
    async fn list(&self) -> Result<Listing>;

    /// The Arrow schema of `schema.table`, or `None` when there is no such table.
    async fn table_schema(&self, schema: &str, table: &str) -> Result<Option<SchemaRef>>;
}

/// A listing from `(schema, table)` pairs.
pub(crate) fn listing(tables: impl IntoIterator<Item = (String, String)>) -> Listing {
    let mut out = Listing::new();
    for (schema, table) in tables {
        out.entry(schema).or_default().push(table);
    }
    out
}

/// `schema.table` of every table `source` lists (for [`SQLExecutor::table_names`]).
pub(crate) async fn qualified_names(source: &dyn RemoteSource) -> Result<Vec<String>> {
    Ok(source
        .list()
        .await?
        .into_iter()
        .flat_map(|(s, ts)| ts.into_iter().map(move |t| format!("{s}.{t}")))
        .collect())
}

/// The schema of `table_name` (`schema.table`, quoted with `quote` or not; a bare name is in
/// `default_schema`), for [`SQLExecutor::get_table_schema`].
pub(crate) async fn schema_by_name(
    source: &dyn RemoteSource,
    table_name: &str,
    default_schema: &str,
    quote: char,
) -> Result<SchemaRef> {
    let (schema, table) = table_name
        .split_once('.')
        .map(|(s, t)| (s.trim_matches(quote), t.trim_matches(quote)))
        .unwrap_or((default_schema, table_name.trim_matches(quote)));
    source.table_schema(schema, table).await?.ok_or_else(|| {
        DataFusionError::Plan(format!(
            "connection `{}`: table {table_name} does not exist",
            source.connection()
        ))
    })
}

/// A connector error as a DataFusion error, its message intact.
pub(crate) fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// `batch` with every column cast to `schema`'s type. Casts are checked: a value that does
/// not convert fails the query, naming the column (DataFusion's own schema cast would turn
/// it into a null).
pub(crate) fn conform(
    batch: RecordBatch,
    schema: &SchemaRef,
    connection: &str,
) -> Result<RecordBatch> {
    if batch
        .schema()
        .fields()
        .iter()
        .zip(schema.fields())
        .all(|(a, b)| a.data_type() == b.data_type())
    {
        return Ok(RecordBatch::try_new(
            schema.clone(),
            batch.columns().to_vec(),
        )?);
    }
    let options = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                return Ok(c.clone());
            }
            cast_with_options(c, f.data_type(), &options).map_err(|e| {
                DataFusionError::Execution(format!(
                    "connection `{connection}`: column {} ({} from the source) does not convert to {}: {e}",
                    f.name(),
                    c.data_type(),
                    f.data_type()
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Every source kind, behind one pointer.
pub type SourceRef = Arc<dyn RemoteSource>;
