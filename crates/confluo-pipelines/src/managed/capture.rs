//! What every change-capture entry shares, whatever the source: the options of a run, its
//! progress events and reports, and SCD 2 history applied through the AUTO CDC engine (the
//! initial copy lands through [`super::copy`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use confluo_core::TableName;
use confluo_lakehouse::changes;
use confluo_lakehouse::{Lakehouse, TableVersion};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use serde_json::json;

use super::{ManagedError, Result};

/// How long to keep streaming.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Keep running (poll every `interval`) instead of stopping once caught up.
    pub continuous: bool,
    /// Time between polls when there is nothing new.
    pub interval: Duration,
    /// About how many changes one batch reads (whole transactions, so it may read more).
    pub max_changes: i32,
    /// Warn when the slot makes the server keep more WAL than this.
    pub retained_warn_bytes: u64,
    /// Set to stop a continuous run at the next batch boundary.
    pub stop: Arc<AtomicBool>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            continuous: false,
            interval: Duration::from_secs(1),
            max_changes: 250_000,
            retained_warn_bytes: 1 << 30,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What happens during a database entry's run, as typed events: progress displays show
/// them, and `--json --continuous` (later the server) streams them as JSON objects tagged by
/// `event`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    /// The initial copy of a table started.
    CopyStarted {
        /// Source table.
        table: String,
        /// Row estimate.
        estimate: Option<u64>,
    },
    /// Rows copied so far.
    CopyRows {
        /// Source table.
        table: String,
        /// Rows so far.
        rows: u64,
    },
    /// A table's copy is committed.
    CopyDone {
        /// Source table.
        table: String,
        /// Rows copied.
        rows: u64,
    },
    /// A batch of changes is committed and the slot confirmed.
    Batch(BatchReport),
    /// Caught up; `lag_bytes` of WAL not yet applied (other databases' traffic).
    Idle {
        /// Bytes behind.
        lag_bytes: u64,
    },
    /// Something the user should know (schema changes, WAL retention, reconnects).
    Warning {
        /// What.
        message: String,
    },
}

/// One applied batch.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BatchReport {
    /// Source transactions read.
    pub transactions: u64,
    /// Row changes read.
    pub changes: u64,
    /// Rows inserted, updated and deleted in the lakehouse.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Commit LSN of the last transaction applied.
    pub lsn: String,
    /// WAL bytes not yet applied after this batch.
    pub lag_bytes: u64,
    /// Seconds between the last applied transaction's commit and its visibility here.
    pub lag_seconds: f64,
    /// Time spent on the batch.
    pub seconds: f64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CdcReport {
    /// Tables copied, with rows.
    pub copied: Vec<(String, u64)>,
    /// Batches applied.
    pub batches: u64,
    /// Source transactions applied.
    pub transactions: u64,
    /// Row changes applied.
    pub changes: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Where the slot stands at the end.
    pub confirmed_lsn: String,
}

/// Where a batch of history comes from, for its commit metadata and messages.
#[derive(Debug, Clone)]
pub struct HistoryContext<'a> {
    /// The ingest entry.
    pub entry: &'a str,
    /// `schema.table` at the source.
    pub source_table: String,
    /// The lakehouse table.
    pub target: &'a TableName,
    /// The source position of the batch (LSN or binlog position), as text.
    pub position: String,
}

/// Applies one table's changes as SCD 2 history through the AUTO CDC engine: each
/// transaction's change of a key is a version, ordered by commit LSN.
#[allow(clippy::too_many_arguments)]
pub async fn apply_history(
    lh: &Lakehouse,
    info: &confluo_lakehouse::TableInfo,
    ctx: &HistoryContext<'_>,
    rows: RecordBatch,
    keys: &[String],
    app: &str,
    commit_lsn: u64,
    changes: u64,
) -> Result<crate::auto_cdc::ApplyStats> {
    use crate::auto_cdc::{AutoCdcSpec, ColumnSelection, ScdType, Txn, apply_changes};
    if let Some(ops) = rows.column_by_name("_op") {
        let ops = datafusion::arrow::array::AsArray::as_string::<i32>(ops);
        if ops.iter().any(|o| o == Some("TRUNCATE")) {
            return Err(ManagedError::Convert {
                table: ctx.source_table.clone(),
                message: format!(
                    "was truncated at the source; SCD 2 history has no way to apply a truncate\n  hint: drop the lakehouse table {} and sync again to copy the table afresh",
                    ctx.target
                ),
            });
        }
    }
    // `_unchanged` and `_old_key` are read by the AUTO CDC engine itself.
    let except = vec![
        "_op".to_string(),
        "_lsn".to_string(),
        "_commit_ts".to_string(),
    ];
    let spec = AutoCdcSpec {
        keys: keys.to_vec(),
        sequence_by: "_lsn".into(),
        ignore_null_updates: false,
        apply_as_deletes: Some("_op = 'DELETE'".into()),
        apply_as_truncates: None,
        columns: ColumnSelection::Except(except),
        scd_type: ScdType::Two,
        track_history: ColumnSelection::All,
    };
    let session = datafusion::prelude::SessionContext::new();
    let df = session.read_batch(rows)?;
    let meta = HashMap::from([(
        "confluo.cdc".to_string(),
        json!({
            "entry": ctx.entry,
            "table": ctx.source_table,
            "position": ctx.position,
            "changes": changes,
            "scd_type": 2,
        }),
    )]);
    apply_changes(
        lh,
        info,
        df,
        &spec,
        &Txn {
            app_id: app.to_string(),
            version: commit_lsn as i64,
        },
        meta,
    )
    .await
    .map_err(|e| ManagedError::Convert {
        table: ctx.source_table.clone(),
        message: e.to_string(),
    })
}

/// The copy's schema plus the SCD 2 columns, typed like the sequence (`_lsn`).
pub fn with_history_columns(schema: &SchemaRef) -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(crate::auto_cdc::START_AT, DataType::Int64, true));
    fields.push(Field::new(crate::auto_cdc::END_AT, DataType::Int64, true));
    Arc::new(Schema::new(fields))
}

/// Copied rows as the first version of each key: it starts at the copy's slot position.
pub fn history_rows(batch: &RecordBatch, from: i64) -> Result<RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, Int64Array};
    let n = batch.num_rows();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from_value(from, n)));
    columns.push(Arc::new(Int64Array::from(vec![None::<i64>; n])));
    RecordBatch::try_new(with_history_columns(&batch.schema()), columns).map_err(|e| {
        ManagedError::Convert {
            table: "copy".into(),
            message: e.to_string(),
        }
    })
}

/// Applies one table's net changes of a batch to its target in one commit (see
/// [`changes::apply`]) and adds the rows it inserted, updated and deleted to `out`.
pub async fn apply_net_changes(
    lh: &Lakehouse,
    info: &confluo_lakehouse::TableInfo,
    net: changes::NetChanges,
    out: &mut BatchReport,
) -> Result<()> {
    let mut table = lh.open_delta(info, TableVersion::Latest).await?;
    let applied = changes::apply(&mut table, net).await?;
    out.inserted += applied.inserted;
    out.updated += applied.updated;
    out.deleted += applied.deleted;
    Ok(())
}
