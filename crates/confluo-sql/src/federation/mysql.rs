//! MySQL and MariaDB as a federated source: the pushed-down query runs over the text
//! protocol and each value is parsed by the snapshot's parser into the type DataFusion
//! planned for its column (the server's databases are the catalog's schemas).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::Result;
use datafusion::physical_plan::PhysicalExpr;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::sql::unparser::dialect::{Dialect, MySqlDialect};
use datafusion_federation::sql::SQLExecutor;
use futures::TryStreamExt;

use confluo_connectors::mysql::MysqlConfig;
use confluo_connectors::mysql::decode::{BATCH_ROWS, BatchBuilder};
use confluo_connectors::mysql::discover::{TableFilter, discover};
use confluo_connectors::mysql::types::{ColumnMapping, Parse};

use super::{Listing, RemoteSource, conform, external};

/// Reads the databases of one MySQL or MariaDB server.
pub struct MysqlSource {
    cfg: MysqlConfig,
}

impl MysqlSource {
    /// A source over `cfg`.
    pub fn new(cfg: MysqlConfig) -> Self {
        MysqlSource { cfg }
    }
}

/// How a value's text is parsed into `arrow`; types the parser has no builder for are read
/// as text and cast by Arrow afterwards.
fn read_as(arrow: &DataType) -> ColumnMapping {
    let (arrow, parse) = match arrow {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            (arrow.clone(), Parse::Int)
        }
        DataType::Decimal128(_, s) if *s >= 0 => (arrow.clone(), Parse::Decimal),
        DataType::Float32 | DataType::Float64 => (arrow.clone(), Parse::Float),
        DataType::Binary => (DataType::Binary, Parse::Bytes),
        DataType::Date32 => (DataType::Date32, Parse::Date),
        DataType::Timestamp(_, tz) => (
            DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            Parse::DateTime,
        ),
        _ => (DataType::Utf8, Parse::Text),
    };
    ColumnMapping {
        arrow,
        parse,
        select: "{}",
    }
}

#[async_trait]
impl RemoteSource for MysqlSource {
    fn connection(&self) -> &str {
        &self.cfg.name
    }

    async fn list(&self) -> Result<Listing> {
        let mut conn = self.cfg.connect().await.map_err(external)?;
        let all = TableFilter::new(&self.cfg, &["*.*".to_string()]).map_err(external)?;
        let tables = discover(&mut conn, &self.cfg, &all)
            .await
            .map_err(external)?;
        Ok(super::listing(
            tables.into_iter().map(|t| (t.id.schema, t.id.name)),
        ))
    }

    async fn table_schema(&self, schema: &str, table: &str) -> Result<Option<SchemaRef>> {
        let mut conn = self.cfg.connect().await.map_err(external)?;
        let filter =
            TableFilter::new(&self.cfg, &[format!("{schema}.{table}")]).map_err(external)?;
        let found = discover(&mut conn, &self.cfg, &filter)
            .await
            .map_err(external)?;
        let Some(t) = found
            .into_iter()
            .find(|t| t.id.schema == schema && t.id.name == table)
        else {
            return Ok(None);
        };
        t.arrow_schema(&self.cfg).map(Some).map_err(external)
    }
}

#[async_trait]
impl SQLExecutor for MysqlSource {
    fn name(&self) -> &str {
        "mysql"
    }

    fn compute_context(&self) -> Option<String> {
        Some(format!("{}/{}", self.cfg.addr(), self.cfg.user))
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        Arc::new(MySqlDialect {})
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> Result<SendableRecordBatchStream> {
        let mappings: Vec<ColumnMapping> = schema
            .fields()
            .iter()
            .map(|f| read_as(f.data_type()))
            .collect();
        let wire_schema: SchemaRef = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .zip(&mappings)
                .map(|(f, m)| Field::new(f.name(), m.arrow.clone(), true))
                .collect::<Vec<_>>(),
        ));
        let cfg = self.cfg.clone();
        let sql = query.to_string();
        let mut builder = RecordBatchReceiverStreamBuilder::new(schema.clone(), 2);
        let tx = builder.tx();
        builder.spawn(async move {
            let mut conn = cfg.connect().await.map_err(external)?;
            let mut rows =
                BatchBuilder::new(&cfg.name, "(federated query)", wire_schema, &mappings);
            let mut stream = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch(&mut conn);
            while let Some(row) = stream.try_next().await.map_err(|e| {
                external(confluo_connectors::mysql::MysqlError::query(
                    &cfg.name,
                    "running the federated query",
                )(e))
            })? {
                rows.append(&row).map_err(external)?;
                if rows.len() >= BATCH_ROWS / 8 {
                    let batch = conform(rows.finish().map_err(external)?, &schema, &cfg.name);
                    if tx.send(batch).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if !rows.is_empty() {
                let batch = conform(rows.finish().map_err(external)?, &schema, &cfg.name);
                let _ = tx.send(batch).await;
            }
            Ok(())
        });
        Ok(builder.build())
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        super::qualified_names(self).await
    }

    async fn get_table_schema(&self, table_name: &str) -> Result<SchemaRef> {
        super::schema_by_name(self, table_name, &self.cfg.database, '`').await
    }
}
