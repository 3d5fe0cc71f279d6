//! `STREAM read_changes('connection', 'schema.table')` in pipelines: a PostgreSQL table's
//! change feed — the table's columns plus `_op` (`INSERT`, `UPDATE`, `DELETE`, `TRUNCATE`),
//! `_lsn` (the commit LSN, a sequence that orders the changes of each key), `_commit_ts`,
//! `_unchanged` (columns an update did not send: unchanged TOAST) and `_old_key` (the key
//! before a key change). AUTO CDC reads the last two to carry the values not sent.
//!
//! The first update of a flow creates the flow's replication slot and reads a snapshot of the
//! table (every row as an `INSERT` at the slot's start), streamed without holding the table
//! in memory; later updates read the whole transactions committed since. Where the flow
//! stands is kept in its offsets, which the pipeline records only after its commit, and the
//! slot is confirmed up to them at the start of the next update: a crash replays, never
//! loses, and transactions already applied are skipped by their commit LSN. MySQL / MariaDB
//! tables have the same feed through the binary log ([`super::mysql_feed`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use confluo_connectors::postgres::PostgresConfig;
use confluo_connectors::postgres::cdc::pgoutput::format_lsn;
use confluo_connectors::postgres::cdc::visibility::SnapshotXids;
use confluo_connectors::postgres::cdc::{
    CapturedTable, CdcError, ChangeReader, batch, generated, slot,
};
use confluo_connectors::postgres::discover::{SourceTable, resolve_tables};
use confluo_connectors::postgres::snapshot::{
    SnapshotRequest, begin_snapshot, snapshot_in_transaction,
};
use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::MemTable;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use sqlx::PgConnection;
use tokio::sync::mpsc;

use super::{ManagedError, Result};

/// Changes read by one update at most (whole transactions, so it may read more).
pub const MAX_CHANGES_PER_UPDATE: i32 = 200_000;

/// What one update reads.
pub struct FeedRead {
    /// The rows to plan the flow over.
    pub provider: Arc<dyn TableProvider>,
    /// Offsets to record with the flow's commit.
    pub offsets: Vec<(String, i64)>,
    /// Whether there is anything new (a commit is needed to move the offsets).
    pub new: bool,
    /// Warnings for the event log.
    pub warnings: Vec<String>,
    /// WAL bytes of the source not yet read when this read ended.
    pub lag_bytes: u64,
    /// Seconds between the last transaction read and now (0 when nothing was new).
    pub lag_seconds: f64,
}

/// The change feed's columns: the table's, then `_op`, `_lsn`, `_commit_ts`, `_unchanged`
/// (the columns an update did not send, which AUTO CDC carries over) and `_old_key` (the key
/// before a key change; `keys` are the table's key columns).
pub fn feed_schema(table_schema: &Schema, keys: &[String]) -> SchemaRef {
    use confluo_connectors::changes as c;
    let mut fields: Vec<Field> = table_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let key_fields: Vec<Field> = keys
        .iter()
        .filter_map(|k| fields.iter().find(|f| f.name() == k).cloned())
        .collect();
    fields.push(Field::new(c::OP_COLUMN, DataType::Utf8, false));
    fields.push(Field::new(c::LSN_COLUMN, DataType::Int64, false));
    fields.push(Field::new(
        c::COMMIT_TS_COLUMN,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    ));
    fields.push(Field::new(c::UNCHANGED_COLUMN, c::unchanged_type(), true));
    fields.push(Field::new(
        c::OLD_KEY_COLUMN,
        c::old_key_type(&key_fields),
        true,
    ));
    Arc::new(Schema::new(fields))
}

async fn source_table(
    cfg: &PostgresConfig,
    conn: &mut PgConnection,
    table: &str,
) -> Result<SourceTable> {
    let t = resolve_tables(conn, cfg, &[table.to_string()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ManagedError::Convert {
            table: table.to_string(),
            message: "not found".into(),
        })?;
    if t.primary_key.is_empty() {
        return Err(CdcError::Table {
            connection: cfg.name.clone(),
            table: t.id.to_string(),
            message: "has no primary key; a change feed orders the changes of each key".into(),
            hint: format!(
                "add a primary key (ALTER TABLE {} ADD PRIMARY KEY (...))",
                t.id.sql()
            ),
        }
        .into());
    }
    Ok(t)
}

/// The feed's schema, for planning without reading (validation, dry runs).
pub async fn schema(cfg: &PostgresConfig, table: &str) -> Result<SchemaRef> {
    let mut conn = cfg.connect().await?;
    let t = source_table(cfg, &mut conn, table).await?;
    let table_schema = t.arrow_schema(cfg)?;
    Ok(feed_schema(&table_schema, &t.primary_key))
}

fn xid_offsets(key: &str, xids: &SnapshotXids) -> Vec<(String, i64)> {
    let mut out = vec![
        (format!("{key}#xmin"), xids.xmin as i64),
        (format!("{key}#xmax"), xids.xmax as i64),
    ];
    out.extend(
        xids.xip
            .iter()
            .enumerate()
            .map(|(i, x)| (format!("{key}#xip{i}"), *x as i64)),
    );
    out
}

fn xids_of(key: &str, state: &HashMap<String, i64>) -> Option<SnapshotXids> {
    let xmin = *state.get(&format!("{key}#xmin"))? as u64;
    let xmax = *state.get(&format!("{key}#xmax"))? as u64;
    let xip = (0..)
        .map_while(|i| state.get(&format!("{key}#xip{i}")).map(|x| *x as u64))
        .collect();
    Some(SnapshotXids { xmin, xmax, xip })
}

/// Reads what is new for a flow: the snapshot on its first update, then changes.
/// `key` names the source in the flow's offsets; `slot` and `publication` are the flow's.
pub async fn read(
    cfg: &PostgresConfig,
    table: &str,
    key: &str,
    slot_name: &str,
    publication: &str,
    state: &HashMap<String, i64>,
) -> Result<FeedRead> {
    let mut conn = cfg.connect().await?;
    let source = source_table(cfg, &mut conn, table).await?;
    let table_schema = source.arrow_schema(cfg)?;
    let schema = feed_schema(&table_schema, &source.primary_key);
    slot::ensure_publication(
        cfg,
        &mut conn,
        publication,
        &[(source.id.schema.clone(), source.id.name.clone())],
    )
    .await?;
    let existing = slot::slot_state(cfg, &mut conn, slot_name).await?;
    let Some(&applied) = state.get(key) else {
        // First update: a new slot, then a snapshot that the stream will not repeat. The
        // server's set-up is checked here, where it can still be fixed before anything runs.
        slot::check_server(cfg, &mut conn).await?;
        if existing.is_some() {
            slot::drop_slot(cfg, &mut conn, slot_name).await?;
        }
        let start = slot::create_slot(cfg, &mut conn, slot_name).await?;
        let mut coordinator = cfg.connect().await?;
        begin_snapshot(&mut coordinator, cfg, None).await?;
        let snap = snapshot_in_transaction(
            cfg,
            coordinator,
            SnapshotRequest {
                tables: vec![source],
                parallelism: 2,
                snapshot_id: None,
            },
        )
        .await?;
        let xids =
            SnapshotXids::parse(&snap.info.pg_snapshot).ok_or_else(|| ManagedError::Convert {
                table: table.to_string(),
                message: format!("unexpected snapshot `{}`", snap.info.pg_snapshot),
            })?;
        let mut offsets = vec![(key.to_string(), start as i64)];
        offsets.extend(xid_offsets(key, &xids));
        let now = chrono::Utc::now().timestamp_micros();
        let provider = SnapshotFeed::start(snap, schema.clone(), start as i64, now);
        return Ok(FeedRead {
            provider: Arc::new(
                StreamingTable::try_new(schema, vec![Arc::new(provider)])
                    .map_err(ManagedError::from)?,
            ),
            offsets,
            new: true,
            warnings: vec![],
            lag_bytes: 0,
            lag_seconds: 0.0,
        });
    };
    let Some(state_now) = existing else {
        return Err(CdcError::Server {
            connection: cfg.name.clone(),
            message: format!(
                "replication slot `{slot_name}` of this flow is gone, so changes since LSN {} may be lost",
                format_lsn(applied as u64)
            ),
            hint: "rebuild the dataset with `confluo run --full-refresh-selection <dataset>`".into(),
        }
        .into());
    };
    // The pipeline committed everything up to `applied`: the server may forget it now.
    if state_now.confirmed_lsn < applied as u64 {
        slot::advance(cfg, &mut conn, slot_name, applied as u64).await?;
    }
    let xids = xids_of(key, state);
    let reader = ChangeReader::new(
        &cfg.name,
        vec![CapturedTable {
            schema: source.id.schema.clone(),
            name: source.id.name.clone(),
            key: source.primary_key.clone(),
            applied_lsn: applied as u64,
            snapshot: xids.clone(),
        }],
    )
    .per_transaction();
    let mut messages = Vec::new();
    slot::peek(
        cfg,
        &mut conn,
        slot_name,
        publication,
        MAX_CHANGES_PER_UPDATE,
        |m| {
            messages.push(m);
            Ok(())
        },
    )
    .await?;
    let mut read = reader.fold(messages)?;
    let warnings = Vec::new();
    let mut batches = Vec::new();
    let mappings = source.mappings(cfg)?;
    for tc in &mut read.tables {
        generated::fill(&mut conn, cfg, &source, tc).await?;
        let rows =
            batch::to_record_batch(tc, &mappings).map_err(|message| ManagedError::Convert {
                table: source.id.to_string(),
                message,
            })?;
        batches.push(project(&rows, &schema)?);
    }
    // The slot is confirmed at the last applied commit, so that transaction is read again
    // (and skipped): only a later commit is news.
    let fresh = read.transactions > 0 && read.commit_lsn > applied as u64;
    let last = if fresh {
        read.commit_lsn as i64
    } else {
        applied
    };
    let mut offsets = vec![(key.to_string(), last)];
    if let Some(x) = &xids {
        offsets.extend(xid_offsets(key, x));
    }
    let mem = MemTable::try_new(schema, vec![batches]).map_err(ManagedError::from)?;
    let lag_bytes = slot::slot_state(cfg, &mut conn, slot_name)
        .await?
        .map(|s| {
            s.current_lsn
                .saturating_sub(read.end_lsn.max(applied as u64))
        })
        .unwrap_or(0);
    let lag_seconds = if fresh {
        (chrono::Utc::now().timestamp_micros() - read.commit_ts_micros).max(0) as f64 / 1e6
    } else {
        0.0
    };
    Ok(FeedRead {
        provider: Arc::new(mem),
        offsets,
        new: fresh,
        warnings,
        lag_bytes,
        lag_seconds,
    })
}

/// The feed's columns out of a change batch, cast to the feed's types.
pub(super) fn project(rows: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            let c = rows.column_by_name(f.name()).cloned().unwrap_or_else(|| {
                datafusion::arrow::array::new_null_array(f.data_type(), rows.num_rows())
            });
            datafusion::arrow::compute::cast(&c, f.data_type())
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| ManagedError::Convert {
            table: "read_changes".into(),
            message: e.to_string(),
        })?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| ManagedError::Convert {
        table: "read_changes".into(),
        message: e.to_string(),
    })
}

/// The snapshot as one partition of rows marked `INSERT`, produced as the plan reads it.
#[derive(Debug)]
pub(super) struct SnapshotFeed {
    schema: SchemaRef,
    rx: Mutex<Option<mpsc::Receiver<datafusion::error::Result<RecordBatch>>>>,
}

impl SnapshotFeed {
    /// Streams a snapshot of any source as `INSERT` rows at sequence `lsn`.
    pub(super) fn start<Id, Info, E>(
        mut snap: confluo_connectors::snapshot::Snapshot<Id, Info, E>,
        schema: SchemaRef,
        lsn: i64,
        ts: i64,
    ) -> Self
    where
        Id: Send + 'static,
        Info: Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let (tx, rx) = mpsc::channel(2);
        let out_schema = schema.clone();
        tokio::spawn(async move {
            while let Some(event) = snap.next().await {
                let item = match event {
                    Ok(confluo_connectors::snapshot::SnapshotEvent::Batch { batch, .. }) => {
                        let n = batch.num_rows();
                        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
                        columns.push(Arc::new(StringArray::from_iter_values(
                            std::iter::repeat_n("INSERT", n),
                        )));
                        columns.push(Arc::new(Int64Array::from_value(lsn, n)));
                        columns.push(Arc::new(
                            TimestampMicrosecondArray::from_value(ts, n).with_timezone("UTC"),
                        ));
                        // A snapshot row sends every value and keeps its key.
                        for f in out_schema.fields().iter().skip(columns.len()) {
                            columns
                                .push(datafusion::arrow::array::new_null_array(f.data_type(), n));
                        }
                        let columns: std::result::Result<Vec<ArrayRef>, _> = columns
                            .iter()
                            .zip(out_schema.fields())
                            .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
                            .collect();
                        columns
                            .and_then(|c| RecordBatch::try_new(out_schema.clone(), c))
                            .map_err(|e| {
                                datafusion::error::DataFusionError::ArrowError(Box::new(e), None)
                            })
                    }
                    Ok(_) => continue,
                    Err(e) => Err(datafusion::error::DataFusionError::External(Box::new(e))),
                };
                if tx.send(item).await.is_err() {
                    break;
                }
            }
            if let Err(e) = snap.finish().await {
                let _ = tx
                    .send(Err(datafusion::error::DataFusionError::External(Box::new(
                        e,
                    ))))
                    .await;
            }
        });
        SnapshotFeed {
            schema,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl PartitionStream for SnapshotFeed {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rx = self.rx.lock().expect("snapshot feed").take();
        let stream = futures::stream::unfold(rx, |rx| async move {
            let mut rx = rx?;
            rx.recv().await.map(|item| (item, Some(rx)))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}
