//! The `system` catalog: the metastore's own records as tables, read at the moment a query
//! names them. `system.jobs.runs` and `system.jobs.task_runs` hold every job run and task
//! attempt, so run history can be filtered, joined and aggregated in SQL like any table.
//! `system.quality.check_results` and `system.quality.metrics` are the data quality
//! monitors' history: Delta tables they append to.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};

use confluo_lakehouse::Lakehouse;

/// The catalog's name (reserved, as in Unity Catalog).
pub const SYSTEM_CATALOG: &str = "system";
/// The most rows a system table holds (the newest).
const MAX_ROWS: usize = 100_000;

/// `system`.
#[derive(Debug)]
pub struct SystemCatalog {
    lakehouse: Arc<Lakehouse>,
    /// The `system.quality` tables the metastore had at the session's last refresh.
    quality_tables: Vec<String>,
}

impl SystemCatalog {
    /// The catalog over `lakehouse`'s metastore; `quality_tables` are the monitors' tables
    /// that exist (listed; the others are named only in the error that says how to make
    /// them).
    pub fn new(lakehouse: Arc<Lakehouse>, quality_tables: Vec<String>) -> Self {
        SystemCatalog {
            lakehouse,
            quality_tables,
        }
    }
}

impl CatalogProvider for SystemCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec!["jobs".into(), QUALITY_SCHEMA.into()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let lakehouse = self.lakehouse.clone();
        match name {
            "jobs" => Some(Arc::new(JobsSchema { lakehouse })),
            QUALITY_SCHEMA => Some(Arc::new(QualitySchema {
                lakehouse,
                existing: self.quality_tables.clone(),
            })),
            _ => None,
        }
    }
}

/// The schema of the data quality metric store.
const QUALITY_SCHEMA: &str = "quality";
/// Its tables, created by the first monitor run.
const QUALITY_TABLES: [&str; 2] = ["check_results", "metrics"];

/// `system.quality`: Delta tables the monitors append to (registered in the metastore as
/// `system.quality.*`), read like any lakehouse table.
#[derive(Debug)]
struct QualitySchema {
    lakehouse: Arc<Lakehouse>,
    existing: Vec<String>,
}

#[async_trait]
impl SchemaProvider for QualitySchema {
    /// Only the tables that exist: a catalog browser (a Postgres client's `\dt`) lists what it
    /// can open. Naming one that does not exist yet still says how to make it.
    fn table_names(&self) -> Vec<String> {
        QUALITY_TABLES
            .iter()
            .filter(|t| self.existing.iter().any(|e| e == *t))
            .map(|t| t.to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let full = confluo_core::TableName::new(SYSTEM_CATALOG, QUALITY_SCHEMA, name);
        let Some(info) = self
            .lakehouse
            .metastore()
            .get_table(&full)
            .await
            .map_err(external)?
        else {
            if QUALITY_TABLES.contains(&name) {
                return Err(DataFusionError::Plan(format!(
                    "{full} is empty: it is created by the first `confluo monitor run`"
                )));
            }
            return Ok(None);
        };
        let table = self
            .lakehouse
            .open_delta(&info, confluo_lakehouse::TableVersion::Latest)
            .await
            .map_err(external)?;
        Ok(Some(table.table_provider().await?))
    }

    fn table_exist(&self, name: &str) -> bool {
        QUALITY_TABLES.contains(&name)
    }
}

/// `system.jobs`.
#[derive(Debug)]
struct JobsSchema {
    lakehouse: Arc<Lakehouse>,
}

fn ts(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        true,
    )
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl SchemaProvider for JobsSchema {
    fn table_names(&self) -> Vec<String> {
        vec!["runs".into(), "task_runs".into()]
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let ms = self.lakehouse.metastore();
        let batch = match name {
            "runs" => {
                let runs = ms.job_runs(None, MAX_ROWS).await.map_err(external)?;
                let schema = Arc::new(Schema::new(vec![
                    text("run_id", false),
                    text("job", false),
                    text("trigger", false),
                    text("state", false),
                    text("message", true),
                    ts("logical_time"),
                    ts("start_time"),
                    ts("end_time"),
                    Field::new("duration_ms", DataType::Int64, true),
                    text("worker", true),
                    text("parameters", false),
                    text("trigger_info", true),
                ]));
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from_iter_values(
                        runs.iter().map(|r| &r.run_id),
                    )),
                    Arc::new(StringArray::from_iter_values(runs.iter().map(|r| &r.job))),
                    Arc::new(StringArray::from_iter_values(
                        runs.iter().map(|r| &r.trigger),
                    )),
                    Arc::new(StringArray::from_iter_values(runs.iter().map(|r| &r.state))),
                    Arc::new(StringArray::from_iter(
                        runs.iter().map(|r| r.message.as_deref()),
                    )),
                    Arc::new(
                        TimestampMillisecondArray::from_iter(runs.iter().map(|r| r.logical_ms))
                            .with_timezone("UTC"),
                    ),
                    Arc::new(
                        TimestampMillisecondArray::from_iter_values(
                            runs.iter().map(|r| r.started_ms),
                        )
                        .with_timezone("UTC"),
                    ),
                    Arc::new(
                        TimestampMillisecondArray::from_iter(runs.iter().map(|r| r.ended_ms))
                            .with_timezone("UTC"),
                    ),
                    Arc::new(Int64Array::from_iter(
                        runs.iter().map(|r| r.ended_ms.map(|e| e - r.started_ms)),
                    )),
                    Arc::new(StringArray::from_iter(
                        runs.iter().map(|r| r.worker.as_deref()),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        runs.iter().map(|r| r.parameters.to_string()),
                    )),
                    Arc::new(StringArray::from_iter(runs.iter().map(|r| {
                        (!r.trigger_info.is_empty())
                            .then(|| serde_json::to_string(&r.trigger_info).unwrap_or_default())
                    }))),
                ];
                RecordBatch::try_new(schema, columns)?
            }
            "task_runs" => {
                let attempts = ms.all_task_attempts(MAX_ROWS).await.map_err(external)?;
                let schema = Arc::new(Schema::new(vec![
                    text("run_id", false),
                    text("job", false),
                    text("task", false),
                    Field::new("attempt", DataType::Int64, false),
                    text("state", false),
                    text("message", true),
                    Field::new("exit_code", DataType::Int64, true),
                    text("task_values", true),
                    ts("start_time"),
                    ts("end_time"),
                    Field::new("duration_ms", DataType::Int64, true),
                ]));
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from_iter_values(
                        attempts.iter().map(|(_, a)| &a.run_id),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        attempts.iter().map(|(job, _)| job),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        attempts.iter().map(|(_, a)| &a.task),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        attempts.iter().map(|(_, a)| a.attempt),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        attempts.iter().map(|(_, a)| &a.state),
                    )),
                    Arc::new(StringArray::from_iter(
                        attempts.iter().map(|(_, a)| a.message.as_deref()),
                    )),
                    Arc::new(Int64Array::from_iter(
                        attempts.iter().map(|(_, a)| a.exit_code),
                    )),
                    Arc::new(StringArray::from_iter(
                        attempts
                            .iter()
                            .map(|(_, a)| a.values.as_ref().map(|v| v.to_string())),
                    )),
                    Arc::new(
                        TimestampMillisecondArray::from_iter_values(
                            attempts.iter().map(|(_, a)| a.started_ms),
                        )
                        .with_timezone("UTC"),
                    ),
                    Arc::new(
                        TimestampMillisecondArray::from_iter(
                            attempts.iter().map(|(_, a)| a.ended_ms),
                        )
                        .with_timezone("UTC"),
                    ),
                    Arc::new(Int64Array::from_iter(
                        attempts
                            .iter()
                            .map(|(_, a)| a.ended_ms.map(|e| e - a.started_ms)),
                    )),
                ];
                RecordBatch::try_new(schema, columns)?
            }
            _ => return Ok(None),
        };
        let schema = batch.schema();
        Ok(Some(Arc::new(MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        matches!(name, "runs" | "task_runs")
    }
}
