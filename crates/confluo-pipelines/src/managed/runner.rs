//! The runner: drives any [`ChangeSource`] into its lakehouse table, exactly once where the
//! source can replay.
//!
//! Each round reads one batch `[from, to)` as Arrow, lands it in one Delta commit through the
//! change-apply engine (appended, or upserted by key for at-least-once sources) together with
//! the source's offset as application transactions, and only then acknowledges the source
//! and records the typed offset in the metastore. On start, and after every transient error,
//! the committed offset is read back from the table's Delta log and the source resumes
//! right after it; only the runner retries, only transient errors, with backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use confluo_core::TableName;
use confluo_core::source::{Apply, ChangeSource, Offset, ReadLimits, SourceBatch};
use confluo_lakehouse::changes::{self, NetChanges, OP_COLUMN};
use confluo_lakehouse::delta::{self, CommitRequest};
use confluo_lakehouse::optimize::{self, OptimizeReport};
use confluo_lakehouse::{Lakehouse, NewTable, TableVersion};
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use deltalake::DeltaTable;
use serde_json::json;

use super::{ManagedError, Result};

/// What the runner is to do.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Keep reading until stopped, instead of stopping once a read finds nothing new.
    pub continuous: bool,
    /// Batch limits.
    pub limits: ReadLimits,
    /// Set to stop at the next batch boundary.
    pub stop: Arc<AtomicBool>,
    /// Transient errors in a row a run that is not continuous rides out before failing.
    pub attempts: u32,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            continuous: false,
            limits: ReadLimits::default(),
            stop: Arc::new(AtomicBool::new(false)),
            attempts: 4,
        }
    }
}

/// Where the rows go and what the commits say about them.
#[derive(Debug, Clone)]
pub struct Target {
    /// The ingest entry (its application id is `confluo:ingest:<entry>`).
    pub entry: String,
    /// The source connection.
    pub connection: String,
    /// The lakehouse table.
    pub table: TableName,
}

impl Target {
    /// The application id of the entry's commits.
    pub fn app_id(&self) -> String {
        format!("confluo:ingest:{}", self.entry)
    }

    fn txn_app(&self, key: &str) -> String {
        if key.is_empty() {
            self.app_id()
        } else {
            format!("{}/{key}", self.app_id())
        }
    }
}

/// What happened, for progress displays (and later the server's event stream).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// Connected and positioned after what the table holds.
    Started {
        /// Where the table stands (`None`: it holds nothing yet).
        committed: Option<String>,
    },
    /// A batch is committed and acknowledged.
    Batch(BatchStats),
    /// Nothing new arrived.
    Idle,
    /// The table's small files were compacted (auto-compaction of a streaming target).
    Compacted(OptimizeReport),
    /// Something went wrong that costs no data and needs no retry now.
    Warning {
        /// What.
        message: String,
    },
    /// A transient error; the runner reconnects after `retry_in_seconds`.
    Retrying {
        /// What failed.
        error: String,
        /// The wait before the next attempt.
        retry_in_seconds: f64,
    },
}

/// One committed batch.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BatchStats {
    /// Messages read.
    pub messages: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Rows inserted into the table.
    pub inserted: u64,
    /// Rows that replaced an earlier copy (at-least-once redeliveries, upserts by key).
    pub updated: u64,
    /// Messages kept in `_rescued_data`.
    pub rescued: u64,
    /// The source's position after the batch.
    pub offset: Option<Offset>,
    /// The Delta version committed.
    pub version: Option<i64>,
    /// Seconds from the newest message's source time to its commit.
    pub lag_seconds: f64,
    /// Time spent on the batch.
    pub seconds: f64,
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunReport {
    /// The table written.
    pub table: String,
    /// Batches committed.
    pub batches: u64,
    /// Messages read.
    pub messages: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows replaced.
    pub updated: u64,
    /// Messages rescued.
    pub rescued: u64,
    /// The source's position at the end.
    pub offset: Option<Offset>,
}

/// Runs `source` into `target` until caught up (or, continuous, until stopped).
pub async fn run(
    lh: &Lakehouse,
    target: &Target,
    source: &mut dyn ChangeSource,
    opts: &RunnerOptions,
    on_event: &mut (dyn FnMut(RunEvent) + Send),
) -> Result<RunReport> {
    let mut report = RunReport {
        table: target.table.to_string(),
        ..Default::default()
    };
    let mut failures = 0u32;
    let mut backoff = Duration::from_millis(250);
    'connect: loop {
        if opts.stop.load(Ordering::Relaxed) {
            return Ok(report);
        }
        match position(lh, target, source).await {
            Ok(committed) => on_event(RunEvent::Started { committed }),
            Err(e) => {
                retry(e, opts, &mut failures, &mut backoff, on_event).await?;
                continue 'connect;
            }
        }
        // Where a starting option placed the source is kept before anything is read.
        let start = match source.starting_batch() {
            Ok(Some(b)) => land(lh, target, source, b, Instant::now()).await.map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = start {
            retry(e, opts, &mut failures, &mut backoff, on_event).await?;
            continue 'connect;
        }
        loop {
            if opts.stop.load(Ordering::Relaxed) {
                return Ok(report);
            }
            let started = Instant::now();
            let batch = match source.next_batch(&opts.limits).await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    on_event(RunEvent::Idle);
                    if !opts.continuous {
                        return Ok(report);
                    }
                    continue;
                }
                Err(e) => {
                    retry(e.into(), opts, &mut failures, &mut backoff, on_event).await?;
                    continue 'connect;
                }
            };
            let stats = match land(lh, target, source, batch, started).await {
                Ok(s) => s,
                Err(e) => {
                    retry(e, opts, &mut failures, &mut backoff, on_event).await?;
                    continue 'connect;
                }
            };
            failures = 0;
            backoff = Duration::from_millis(250);
            report.batches += 1;
            report.messages += stats.messages;
            report.inserted += stats.inserted;
            report.updated += stats.updated;
            report.rescued += stats.rescued;
            report.offset = stats.offset.clone();
            on_event(RunEvent::Batch(stats));
            if report.batches.is_multiple_of(COMPACT_CHECK_EVERY) {
                match compact_if_due(lh, &target.table).await {
                    Ok(Some(r)) => on_event(RunEvent::Compacted(r)),
                    Ok(None) => {}
                    // The data is committed either way; compaction is tried again later.
                    Err(e) => on_event(RunEvent::Warning {
                        message: format!(
                            "auto-compaction of {} failed (tried again later): {e}",
                            target.table
                        ),
                    }),
                }
            }
        }
    }
}

/// Waits before the next attempt after a transient error; a definite error, or too many
/// transient ones in a run that is not continuous, ends the run.
async fn retry(
    e: ManagedError,
    opts: &RunnerOptions,
    failures: &mut u32,
    backoff: &mut Duration,
    on_event: &mut (dyn FnMut(RunEvent) + Send),
) -> Result<()> {
    let transient = matches!(&e, ManagedError::Source(s) if s.is_transient());
    *failures += 1;
    if !transient || (!opts.continuous && *failures >= opts.attempts) {
        return Err(e);
    }
    on_event(RunEvent::Retrying {
        error: e.to_string(),
        retry_in_seconds: backoff.as_secs_f64(),
    });
    let until = Instant::now() + *backoff;
    while Instant::now() < until && !opts.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50).min(*backoff)).await;
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(30));
    Ok(())
}

/// Connects the source and positions it after what the table's log records; tells it the
/// table's columns. Returns the committed position, described.
async fn position(
    lh: &Lakehouse,
    target: &Target,
    source: &mut dyn ChangeSource,
) -> Result<Option<String>> {
    source.connect().await?;
    let mut committed = BTreeMap::new();
    if let Some(table) = open(lh, &target.table).await? {
        let snapshot = table
            .snapshot()
            .map_err(confluo_lakehouse::LakehouseError::delta(&target.table))?;
        for key in source.offset_keys() {
            if let Some(v) = snapshot
                .transaction_version(table.log_store().as_ref(), &target.txn_app(&key))
                .await
                .map_err(confluo_lakehouse::LakehouseError::delta(&target.table))?
            {
                committed.insert(key, v);
            }
        }
        let schema = delta::table_schema(&table)?;
        source.set_table_schema(target.table.table.as_str(), &schema);
    }
    source.seek(&committed).await?;
    Ok((!committed.is_empty()).then(|| {
        committed
            .iter()
            .map(|(k, v)| {
                if k.is_empty() {
                    v.to_string()
                } else {
                    format!("{k}@{v}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }))
}

/// Batches between two looks at whether the target needs compacting.
const COMPACT_CHECK_EVERY: u64 = 10;

/// Compacts the target's small files when enough have gathered (see
/// [`optimize::due`]); appends are committed as they come, so a long-running stream would
/// otherwise leave one small file per batch.
async fn compact_if_due(lh: &Lakehouse, name: &TableName) -> Result<Option<OptimizeReport>> {
    let Some(info) = lh.metastore().get_table(name).await? else {
        return Ok(None);
    };
    let table = lh.open_delta(&info, TableVersion::Latest).await?;
    if !optimize::due(&table, &info.properties)? {
        return Ok(None);
    }
    let metadata = std::collections::BTreeMap::from([(
        "confluo.autoCompact".to_string(),
        json!({ "table": name.to_string() }),
    )]);
    let (_, report) =
        optimize::optimize(table, &optimize::OptimizeRequest::default(), metadata).await?;
    lh.metastore().touch_table(name).await?;
    Ok(Some(report))
}

async fn open(lh: &Lakehouse, name: &TableName) -> Result<Option<DeltaTable>> {
    match lh.metastore().get_table(name).await? {
        Some(info) => Ok(Some(lh.open_delta(&info, TableVersion::Latest).await?)),
        None => Ok(None),
    }
}

/// Commits one batch (one commit per table; a stream entry has one) and acknowledges it.
async fn land(
    lh: &Lakehouse,
    target: &Target,
    source: &mut dyn ChangeSource,
    batch: SourceBatch,
    started: Instant,
) -> Result<BatchStats> {
    let txns: Vec<(String, i64)> = batch
        .offset
        .as_ref()
        .map(|o| {
            o.txns()
                .into_iter()
                .map(|(k, v)| (target.txn_app(&k), v))
                .collect()
        })
        .unwrap_or_default();
    let mut stats = BatchStats {
        messages: batch.messages,
        bytes: batch.bytes,
        rescued: batch.rescued,
        offset: batch.offset.clone(),
        ..Default::default()
    };
    for rows in batch.tables {
        let name = &target.table;
        let mut table = match open(lh, name).await? {
            Some(t) => t,
            None => create(lh, target, &rows.rows).await?,
        };
        if rows.rows.num_rows() == 0 {
            // No messages (a starting position): the offsets alone, in a commit of their
            // own; the change path skips empty batches.
            let version = delta::commit(
                &table,
                CommitRequest {
                    txns: txns.clone(),
                    app_metadata: HashMap::from([(
                        "confluo.stream".to_string(),
                        json!({
                            "entry": target.entry,
                            "connection": target.connection,
                            "offset": batch.offset,
                            "start": true,
                        }),
                    )]),
                    ..Default::default()
                },
            )
            .await?;
            stats.version = Some(version);
            lh.metastore().touch_table(name).await?;
            continue;
        }
        let keys = match &rows.apply {
            Apply::Append => Vec::new(),
            Apply::Upsert { keys } => keys.clone(),
        };
        let data = match &rows.apply {
            Apply::Append => with_op(&rows.rows, "INSERT")?,
            Apply::Upsert { keys } => with_op(&last_per_key(&rows.rows, keys, name)?, "UPDATE")?,
        };
        let before = delta::table_schema(&table)?;
        let applied = changes::apply(
            &mut table,
            NetChanges {
                rows: data,
                keys,
                truncated: false,
                txns: txns.clone(),
                metadata: HashMap::from([(
                    "confluo.stream".to_string(),
                    json!({
                        "entry": target.entry,
                        "connection": target.connection,
                        "offset": batch.offset,
                        "messages": batch.messages,
                        "rescued": batch.rescued,
                    }),
                )]),
            },
        )
        .await?;
        stats.inserted += applied.inserted;
        stats.updated += applied.updated;
        stats.version = applied.version.or(stats.version);
        let after = delta::table_schema(&table)?;
        if after != before {
            source.set_table_schema(name.table.as_str(), &after);
        }
        lh.metastore().touch_table(name).await?;
    }
    // Committed: only now may the source forget these messages.
    source.ack().await?;
    if let Some(o) = &batch.offset {
        lh.metastore()
            .set_source_offset(
                &target.app_id(),
                &target.entry,
                &target.table.to_string(),
                &serde_json::to_value(o).unwrap_or_default(),
            )
            .await?;
    }
    if let Some(newest) = batch.newest_micros {
        stats.lag_seconds = (chrono::Utc::now().timestamp_micros() - newest).max(0) as f64 / 1e6;
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Creates the entry's table with the first batch's columns.
async fn create(lh: &Lakehouse, target: &Target, rows: &RecordBatch) -> Result<DeltaTable> {
    let name = target.table.clone();
    lh.metastore()
        .create_schema(
            name.catalog.as_str(),
            name.schema.as_str(),
            None,
            Some(&confluo_lakehouse::lakehouse::current_user()),
            true,
        )
        .await?;
    let schema = delta::delta_compatible_schema(&rows.schema());
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let (_, table) = lh
        .create_table(NewTable {
            name,
            schema: Schema::new(fields),
            partition_by: vec![],
            comment: Some(format!(
                "messages of connection `{}`, kept by ingest entry `{}`",
                target.connection, target.entry
            )),
            properties: std::collections::BTreeMap::from([
                ("confluo.ingest.entry".to_string(), target.entry.clone()),
                (
                    "confluo.ingest.source".to_string(),
                    target.connection.clone(),
                ),
            ]),
            location: None,
        })
        .await?;
    Ok(table)
}

/// `rows` with an `_op` column of `op` on every row.
fn with_op(rows: &RecordBatch, op: &str) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
    fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from(vec![op; rows.num_rows()])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| {
        ManagedError::Convert {
            table: "batch".into(),
            message: e.to_string(),
        }
    })
}

/// The last row of each key (a redelivered message replaces its earlier copy, within a
/// batch as across batches); a key column missing from the rows is an error naming it.
fn last_per_key(rows: &RecordBatch, keys: &[String], table: &TableName) -> Result<RecordBatch> {
    use datafusion::arrow::row::{RowConverter, SortField};
    let bad = |message: String| ManagedError::Convert {
        table: table.to_string(),
        message,
    };
    let mut columns = Vec::with_capacity(keys.len());
    for k in keys {
        let c = rows.column_by_name(k).ok_or_else(|| {
            bad(format!(
                "the key column `{k}` is not in the messages (their columns: {})",
                rows.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        columns.push(c.clone());
    }
    let converter = RowConverter::new(
        columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )
    .map_err(|e| bad(e.to_string()))?;
    let converted = converter
        .convert_columns(&columns)
        .map_err(|e| bad(e.to_string()))?;
    let mut last: HashMap<&[u8], u32> = HashMap::with_capacity(rows.num_rows());
    for i in 0..rows.num_rows() {
        last.insert(converted.row(i).data(), i as u32);
    }
    if last.len() == rows.num_rows() {
        return Ok(rows.clone());
    }
    let mut keep: Vec<u32> = last.into_values().collect();
    keep.sort_unstable();
    let indices = datafusion::arrow::array::UInt32Array::from(keep);
    datafusion::arrow::compute::take_record_batch(rows, &indices).map_err(|e| bad(e.to_string()))
}
