//! What every change-capture entry shares, whatever the source: the options of a run, its
//! progress events and reports, the target tables (created or reshaped), and SCD 2 history
//! applied through the AUTO CDC engine.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use confluo_core::TableName;
use confluo_lakehouse::changes;
use confluo_lakehouse::delta::{self, CommitRequest, WriteMode};
use confluo_lakehouse::{Lakehouse, NewTable, TableVersion};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
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

/// What happens, for progress displays and the event log.
#[derive(Debug, Clone)]
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
    Warning(String),
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

/// The target table, created when missing; an existing one gets the source's current
/// columns (the overwrite that follows replaces its rows).
pub async fn ensure_target(
    lh: &Lakehouse,
    name: TableName,
    schema: &SchemaRef,
    comment: String,
    properties: BTreeMap<String, String>,
) -> Result<DeltaTable> {
    if let Some(info) = lh.metastore().get_table(&name).await? {
        let table = lh.open_delta(&info, TableVersion::Latest).await?;
        let current = delta::table_schema(&table)?;
        let wanted = delta::delta_compatible_schema(schema);
        let same = current.fields().len() == wanted.fields().len()
            && current.fields().iter().zip(wanted.fields()).all(|(c, w)| {
                c.name() == w.name()
                    && c.is_nullable() == w.is_nullable()
                    && delta::same_stored_type(c.data_type(), w.data_type())
                    && delta::same_stored_type(w.data_type(), c.data_type())
            });
        if !same {
            delta::commit(
                &table,
                CommitRequest {
                    mode: WriteMode::Overwrite,
                    new_schema: Some(wanted),
                    ..Default::default()
                },
            )
            .await?;
            return Ok(lh.open_delta(&info, TableVersion::Latest).await?);
        }
        return Ok(table);
    }
    lh.metastore()
        .create_schema(
            name.catalog.as_str(),
            name.schema.as_str(),
            None,
            Some(&confluo_lakehouse::lakehouse::current_user()),
            true,
        )
        .await?;
    let (_, table) = lh
        .create_table(NewTable {
            name,
            schema: schema.as_ref().clone(),
            partition_by: vec![],
            comment: Some(comment),
            properties,
            location: None,
        })
        .await?;
    Ok(table)
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

/// How an initial copy lands its tables: each source table into its target in one overwrite
/// commit whose application transaction version is `version` (the source position the
/// snapshot corresponds to).
pub struct CopyPlan<'a, Id> {
    /// Add `__START_AT` / `__END_AT` (SCD 2 targets); copied rows start at `version`.
    pub history: bool,
    /// The ingest entry doing the copy.
    pub entry: &'a str,
    /// The source connection's name.
    pub connection: &'a str,
    /// How the entry keeps the targets in sync, for their comments (`change data capture`).
    pub capture: &'a str,
    /// The application transaction of every commit.
    pub app_id: String,
    /// Its version.
    pub version: i64,
    /// The source position of the snapshot, recorded in every table's `confluo.copy`
    /// commit metadata beside the entry, connection, table and row counts.
    pub position: serde_json::Map<String, serde_json::Value>,
    /// Row estimates by table, for progress.
    pub estimates: &'a HashMap<String, Option<u64>>,
    /// The lakehouse table of a source table.
    pub target: &'a (dyn Fn(&Id) -> TableName + Sync),
}

/// Lands a snapshot's tables as `plan` says, marking each as copied in the entry's state
/// (`st`, saved to `file`) once committed. Returns each table with its rows; the caller
/// finishes the snapshot.
pub async fn land_copy<Id, Info, E>(
    lh: &Lakehouse,
    snap: &mut confluo_connectors::snapshot::Snapshot<Id, Info, E>,
    plan: &CopyPlan<'_, Id>,
    st: &mut super::state::EntryState,
    file: &std::path::Path,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Vec<(String, u64)>>
where
    Id: Clone + Eq + std::hash::Hash + std::fmt::Display,
    ManagedError: From<E>,
{
    use confluo_connectors::snapshot::SnapshotEvent;
    use confluo_lakehouse::write::TableWriter;
    let mut open: HashMap<Id, (TableName, DeltaTable, TableWriter, u64)> = HashMap::new();
    let mut done = Vec::new();
    while let Some(event) = snap.next().await {
        match event? {
            SnapshotEvent::TableStarted { table, schema, .. } => {
                progress(Progress::CopyStarted {
                    table: table.to_string(),
                    estimate: plan.estimates.get(&table.to_string()).copied().flatten(),
                });
                let schema = if plan.history {
                    with_history_columns(&schema)
                } else {
                    schema
                };
                let comment = format!(
                    "{table} of connection `{}`, kept in sync by ingest entry `{}` ({})",
                    plan.connection, plan.entry, plan.capture
                );
                let properties = BTreeMap::from([
                    ("confluo.ingest.entry".to_string(), plan.entry.to_string()),
                    (
                        "confluo.ingest.source".to_string(),
                        format!("{}:{table}", plan.connection),
                    ),
                ]);
                let name = (plan.target)(&table);
                let target = ensure_target(lh, name.clone(), &schema, comment, properties).await?;
                let writer = TableWriter::new(&target, delta::table_schema(&target)?)?;
                open.insert(table, (name, target, writer, 0));
            }
            SnapshotEvent::Batch { table, batch } => {
                if let Some((_, _, writer, rows)) = open.get_mut(&table) {
                    let batch = if plan.history {
                        history_rows(&batch, plan.version)?
                    } else {
                        batch
                    };
                    writer.write(&batch).await?;
                    *rows += batch.num_rows() as u64;
                    progress(Progress::CopyRows {
                        table: table.to_string(),
                        rows: *rows,
                    });
                }
            }
            SnapshotEvent::TableFinished(result) => {
                let Some((name, target, writer, rows)) = open.remove(&result.table) else {
                    continue;
                };
                let adds = writer.finish().await?;
                let mut metadata = serde_json::Map::from_iter([
                    ("entry".to_string(), json!(plan.entry)),
                    ("connection".to_string(), json!(plan.connection)),
                    ("table".to_string(), json!(result.table.to_string())),
                    ("rows".to_string(), json!(rows)),
                    ("nulled".to_string(), json!(result.nulled)),
                ]);
                metadata.extend(plan.position.clone());
                delta::commit(
                    &target,
                    CommitRequest {
                        adds,
                        mode: WriteMode::Overwrite,
                        app_metadata: HashMap::from([(
                            "confluo.copy".to_string(),
                            serde_json::Value::Object(metadata),
                        )]),
                        txns: vec![(plan.app_id.clone(), plan.version)],
                        ..Default::default()
                    },
                )
                .await?;
                lh.metastore().touch_table(&name).await?;
                if let Some(s) = st.tables.get_mut(&result.table.to_string()) {
                    s.copied = true;
                }
                super::state::save(file, st)?;
                progress(Progress::CopyDone {
                    table: result.table.to_string(),
                    rows,
                });
                done.push((result.table.to_string(), rows));
            }
        }
    }
    Ok(done)
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
