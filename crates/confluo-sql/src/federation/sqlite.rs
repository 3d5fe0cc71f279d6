//! SQLite as a federated source: one database file, opened read-only, as the schema `main`.
//! SQLite types its values, not its columns, so a column's type comes from its declared
//! type (SQLite's affinity rules) and each value is converted to it; a value that does not
//! convert is an error naming the column, never a silent null.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BinaryBuilder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::PhysicalExpr;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::sql::unparser::dialect::{Dialect, SqliteDialect};
use datafusion_federation::sql::SQLExecutor;
use futures::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Connection, Row, TypeInfo, ValueRef};

use super::{Listing, RemoteSource, conform};

/// Rows per batch.
const BATCH_ROWS: usize = 8192;

/// Reads one SQLite database file.
pub struct SqliteSource {
    name: String,
    path: PathBuf,
}

impl SqliteSource {
    /// A source over the file at `path`, for connection `name`.
    pub fn new(name: &str, path: PathBuf) -> Self {
        SqliteSource {
            name: name.to_string(),
            path,
        }
    }

    async fn connect(&self) -> Result<SqliteConnection> {
        if !self.path.exists() {
            return Err(DataFusionError::Plan(format!(
                "connection `{}`: SQLite database {} does not exist\n  hint: check the connection's `path`",
                self.name,
                self.path.display()
            )));
        }
        let opts = SqliteConnectOptions::new()
            .filename(&self.path)
            .read_only(true)
            .create_if_missing(false);
        SqliteConnection::connect_with(&opts).await.map_err(|e| {
            DataFusionError::Plan(format!(
                "connection `{}`: cannot open SQLite database {}: {e}",
                self.name,
                self.path.display()
            ))
        })
    }

    fn query_err(&self, what: &str) -> impl Fn(sqlx::Error) -> DataFusionError + '_ {
        let what = what.to_string();
        move |e| DataFusionError::Execution(format!("connection `{}`: {what}: {e}", self.name))
    }
}

/// The Arrow type of a declared SQLite type, by SQLite's affinity rules (with dates,
/// timestamps, booleans and decimals of stated precision read as such).
pub fn declared_type(declared: &str) -> DataType {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        DataType::Int64
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        DataType::Utf8
    } else if t.contains("BLOB") {
        DataType::Binary
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        DataType::Float64
    } else if t.contains("BOOL") {
        DataType::Boolean
    } else if t.contains("DATETIME") || t.contains("TIMESTAMP") {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    } else if t.contains("DATE") {
        DataType::Date32
    } else if let Some((p, s)) = precision_scale(&t).filter(|(p, s)| (1..=38).contains(p) && s <= p)
    {
        DataType::Decimal128(p, s as i8)
    } else if t.contains("NUM") || t.contains("DEC") {
        DataType::Float64
    } else {
        // No declared type: values keep whatever type they were stored with; text holds
        // every one of them.
        DataType::Utf8
    }
}

fn precision_scale(t: &str) -> Option<(u8, u8)> {
    let inner = t.split_once('(')?.1.split_once(')')?.0;
    let mut parts = inner.split(',').map(|p| p.trim().parse::<u8>());
    let p = parts.next()?.ok()?;
    let s = parts.next().map(|s| s.ok()).unwrap_or(Some(0))?;
    Some((p, s))
}

#[async_trait]
impl RemoteSource for SqliteSource {
    fn connection(&self) -> &str {
        &self.name
    }

    async fn list(&self) -> Result<Listing> {
        let mut conn = self.connect().await?;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(self.query_err("listing tables"))?;
        let mut out = Listing::new();
        out.insert("main".into(), names);
        Ok(out)
    }

    async fn table_schema(&self, schema: &str, table: &str) -> Result<Option<SchemaRef>> {
        if schema != "main" {
            return Ok(None);
        }
        let mut conn = self.connect().await?;
        let rows = sqlx::query("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")
            .bind(table)
            .fetch_all(&mut conn)
            .await
            .map_err(self.query_err(&format!("reading the columns of {table}")))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let fields: Vec<Field> = rows
            .iter()
            .map(|r| {
                let name: String = r.get(0);
                let declared: String = r.get(1);
                Field::new(name, declared_type(&declared), true)
            })
            .collect();
        Ok(Some(Arc::new(Schema::new(fields))))
    }
}

/// One column's values as SQLite gives them: bytes for BLOB columns, text for the rest
/// (converted to the planned type afterwards).
enum Column {
    Text(StringBuilder),
    Bytes(BinaryBuilder),
}

fn append(col: &mut Column, row: &SqliteRow, i: usize) -> std::result::Result<(), sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        match col {
            Column::Text(b) => b.append_null(),
            Column::Bytes(b) => b.append_null(),
        }
        return Ok(());
    }
    let kind = raw.type_info().name().to_string();
    match col {
        Column::Bytes(b) => {
            let v: Vec<u8> = row.try_get_unchecked(i)?;
            b.append_value(v);
        }
        Column::Text(b) => match kind.as_str() {
            "INTEGER" => b.append_value(row.try_get_unchecked::<i64, _>(i)?.to_string()),
            "REAL" => b.append_value(row.try_get_unchecked::<f64, _>(i)?.to_string()),
            _ => b.append_value(row.try_get_unchecked::<String, _>(i)?),
        },
    }
    Ok(())
}

fn finish(cols: &mut [Column], schema: &SchemaRef) -> Result<RecordBatch> {
    let arrays: Vec<ArrayRef> = cols
        .iter_mut()
        .map(|c| match c {
            Column::Text(b) => Arc::new(b.finish()) as ArrayRef,
            Column::Bytes(b) => Arc::new(b.finish()) as ArrayRef,
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

#[async_trait]
impl SQLExecutor for SqliteSource {
    fn name(&self) -> &str {
        "sqlite"
    }

    fn compute_context(&self) -> Option<String> {
        Some(self.path.display().to_string())
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        Arc::new(SqliteDialect {})
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> Result<SendableRecordBatchStream> {
        let wire_schema: SchemaRef = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| {
                    let t = if matches!(f.data_type(), DataType::Binary | DataType::LargeBinary) {
                        DataType::Binary
                    } else {
                        DataType::Utf8
                    };
                    Field::new(f.name(), t, true)
                })
                .collect::<Vec<_>>(),
        ));
        let source = SqliteSource::new(&self.name, self.path.clone());
        let sql = query.to_string();
        let mut builder = RecordBatchReceiverStreamBuilder::new(schema.clone(), 2);
        let tx = builder.tx();
        builder.spawn(async move {
            let mut conn = source.connect().await?;
            let new_cols = || -> Vec<Column> {
                wire_schema
                    .fields()
                    .iter()
                    .map(|f| match f.data_type() {
                        DataType::Binary => Column::Bytes(BinaryBuilder::new()),
                        _ => Column::Text(StringBuilder::new()),
                    })
                    .collect()
            };
            let mut cols = new_cols();
            let mut n = 0usize;
            let mut rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch(&mut conn);
            while let Some(row) = rows
                .try_next()
                .await
                .map_err(source.query_err("running the federated query"))?
            {
                for (i, col) in cols.iter_mut().enumerate() {
                    append(col, &row, i).map_err(|e| {
                        DataFusionError::Execution(format!(
                            "connection `{}`: column {}: {e}",
                            source.name,
                            wire_schema.field(i).name()
                        ))
                    })?;
                }
                n += 1;
                if n >= BATCH_ROWS {
                    let batch = finish(&mut cols, &wire_schema)?;
                    n = 0;
                    if tx
                        .send(conform(batch, &schema, &source.name))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
            if n > 0 {
                let batch = finish(&mut cols, &wire_schema)?;
                let _ = tx.send(conform(batch, &schema, &source.name)).await;
            }
            Ok(())
        });
        Ok(builder.build())
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        Ok(self.list().await?.remove("main").unwrap_or_default())
    }

    async fn get_table_schema(&self, table_name: &str) -> Result<SchemaRef> {
        let table = table_name.rsplit('.').next().unwrap_or(table_name);
        super::schema_by_name(self, table, "main", '"').await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity() {
        assert_eq!(declared_type("INTEGER"), DataType::Int64);
        assert_eq!(declared_type("varchar(20)"), DataType::Utf8);
        assert_eq!(declared_type("DECIMAL(10,2)"), DataType::Decimal128(10, 2));
        assert_eq!(declared_type("NUMERIC"), DataType::Float64);
        assert_eq!(
            declared_type("datetime"),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(declared_type("DATE"), DataType::Date32);
        assert_eq!(declared_type(""), DataType::Utf8);
    }
}
