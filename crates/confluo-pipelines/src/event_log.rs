//! The event log: every update's events in a Delta table per pipeline
//! (`<catalog>.<schema>.<pipeline>_event_log`), queryable with SQL like any table.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

use confluo_core::TableName;
use confluo_lakehouse::delta::{self, CommitRequest};
use confluo_lakehouse::write::TableWriter;
use confluo_lakehouse::{Lakehouse, NewTable, TableVersion};

use crate::error::Result;

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    /// When (microseconds since the epoch, UTC).
    pub timestamp: i64,
    /// INFO, WARN or ERROR.
    pub level: &'static str,
    /// `create_update`, `planning`, `flow_started`, `flow_progress`, `flow_completed`,
    /// `flow_failed`, `flow_skipped`, `update_completed`, `update_failed`.
    pub event_type: &'static str,
    /// The dataset it concerns.
    pub dataset: Option<String>,
    /// The flow it concerns.
    pub flow: Option<String>,
    /// A readable sentence.
    pub message: String,
    /// Metrics and settings as JSON.
    pub details: Value,
    /// The error and its causes, when it is one.
    pub error: Option<String>,
}

impl Event {
    /// An INFO event.
    pub fn info(event_type: &'static str, message: impl Into<String>) -> Self {
        Event {
            timestamp: chrono::Utc::now().timestamp_micros(),
            level: "INFO",
            event_type,
            dataset: None,
            flow: None,
            message: message.into(),
            details: Value::Null,
            error: None,
        }
    }

    /// An ERROR event.
    pub fn error(event_type: &'static str, message: impl Into<String>, error: String) -> Self {
        Event {
            level: "ERROR",
            error: Some(error),
            ..Event::info(event_type, message)
        }
    }

    /// For a dataset and flow.
    pub fn on(mut self, dataset: &str, flow: Option<&str>) -> Self {
        self.dataset = Some(dataset.to_string());
        self.flow = flow.map(str::to_string);
        self
    }

    /// With details.
    pub fn with(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// The event log table's columns.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("update_id", DataType::Utf8, false),
        Field::new("pipeline", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("level", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("dataset", DataType::Utf8, true),
        Field::new("flow", DataType::Utf8, true),
        Field::new("message", DataType::Utf8, false),
        Field::new("details", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// The table name of a pipeline's event log.
pub fn table_name(catalog: &str, schema: &str, pipeline: &str) -> TableName {
    let clean: String = pipeline
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    TableName::new(catalog, schema, format!("{clean}_event_log"))
}

/// Events of one update, buffered and appended in commits at chosen points.
pub struct EventLog {
    table: TableName,
    pipeline: String,
    update_id: String,
    pending: Mutex<Vec<Event>>,
}

impl EventLog {
    /// A log for a new update of `pipeline`.
    pub fn new(table: TableName, pipeline: &str, update_id: &str) -> Self {
        EventLog {
            table,
            pipeline: pipeline.to_string(),
            update_id: update_id.to_string(),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// The log's table.
    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// Records an event (written at the next [`EventLog::flush`]).
    pub fn record(&self, e: Event) {
        self.pending.lock().expect("event log lock").push(e);
    }

    /// Appends the recorded events to the table in one commit.
    pub async fn flush(&self, lh: &Lakehouse) -> Result<()> {
        let events: Vec<Event> = std::mem::take(&mut *self.pending.lock().expect("event log lock"));
        if events.is_empty() {
            return Ok(());
        }
        let table = match lh.metastore().get_table(&self.table).await? {
            Some(info) => lh.open_delta(&info, TableVersion::Latest).await?,
            None => {
                lh.create_table(NewTable {
                    name: self.table.clone(),
                    schema: schema().as_ref().clone(),
                    partition_by: vec![],
                    comment: Some(format!("event log of pipeline {}", self.pipeline)),
                    properties: Default::default(),
                    location: None,
                })
                .await?
                .1
            }
        };
        let batch = self.batch(&events)?;
        let mut writer = TableWriter::new(&table, schema())?;
        writer.write(&batch).await?;
        let adds = writer.finish().await?;
        delta::commit(
            &table,
            CommitRequest {
                adds,
                ..Default::default()
            },
        )
        .await?;
        Ok(())
    }

    fn batch(&self, events: &[Event]) -> Result<RecordBatch> {
        let n = events.len();
        let strs = |f: &dyn Fn(&Event) -> Option<String>| -> ArrayRef {
            Arc::new(events.iter().map(f).collect::<StringArray>())
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|_| uuid::Uuid::now_v7().to_string()),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|_| self.update_id.clone()),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|_| self.pipeline.clone()),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.timestamp))
                    .with_timezone("UTC"),
            ),
            strs(&|e| Some(e.level.to_string())),
            strs(&|e| Some(e.event_type.to_string())),
            strs(&|e| e.dataset.clone()),
            strs(&|e| e.flow.clone()),
            strs(&|e| Some(e.message.clone())),
            strs(&|e| (!e.details.is_null()).then(|| e.details.to_string())),
            strs(&|e| e.error.clone()),
        ];
        Ok(RecordBatch::try_new(schema(), columns)?)
    }
}
