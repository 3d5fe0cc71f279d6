//! A `mode: cdc` ingest entry over PostgreSQL: one consistent copy of the tables, tied to a
//! logical replication slot, then the slot's changes applied to the lakehouse in batches of
//! whole transactions.
//!
//! Exactly once: each batch lands in each touched table as one Delta commit carrying the
//! application transaction `(confluo:ingest:<entry>, commit LSN of the batch's last
//! transaction)`; only when every table has committed is the slot confirmed. After a crash
//! the slot replays from its confirmed position and each table skips the transactions at or
//! before the version its own log records. The initial copy of a table records the slot
//! position it started from and its snapshot, whose transactions the stream then skips: no
//! gap, no overlap.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use confluo_connectors::postgres::PostgresConfig;
use confluo_connectors::postgres::cdc::visibility::SnapshotXids;
use confluo_connectors::postgres::cdc::{CapturedTable, CdcError, ChangeReader, batch, slot};
use confluo_connectors::postgres::discover::{SourceTable, TableId, resolve_tables};
use confluo_connectors::postgres::snapshot::{
    SnapshotEvent, SnapshotRequest, begin_snapshot, snapshot_in_transaction,
};
use confluo_connectors::postgres::types::ColumnMapping;
use confluo_core::TableName;
use confluo_lakehouse::changes::{self, NetChanges};
use confluo_lakehouse::delta::{self, CommitRequest, WriteMode};
use confluo_lakehouse::write::TableWriter;
use confluo_lakehouse::{Lakehouse, NewTable, TableVersion};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use serde_json::json;
use sqlx::PgConnection;

use super::state::{self, EntryState, TableState};
use super::{ManagedError, Result};

/// A `mode: cdc` entry, resolved.
#[derive(Debug, Clone)]
pub struct CdcEntry {
    /// The entry's name in `confluo.yaml`.
    pub name: String,
    /// The source connection.
    pub cfg: PostgresConfig,
    /// Table patterns of the entry.
    pub patterns: Vec<String>,
    /// Catalog of the target tables.
    pub catalog: String,
    /// Schema of the target tables.
    pub schema: String,
    /// Connections used by the initial copy.
    pub parallelism: usize,
    /// The replication slot.
    pub slot: String,
    /// The publication.
    pub publication: String,
    /// The project's state folder.
    pub state_dir: PathBuf,
    /// Keep every version of each row (`__START_AT` / `__END_AT`, by commit LSN) instead of
    /// the latest one.
    pub history: bool,
}

/// Each captured table as discovered, with its column mappings.
type Sources = HashMap<TableId, (SourceTable, Vec<(String, ColumnMapping)>)>;

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
            max_changes: 100_000,
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

impl CdcEntry {
    /// The application id recorded in every commit of this entry.
    pub fn app_id(&self) -> String {
        format!("confluo:ingest:{}", self.name)
    }

    /// The lakehouse table a source table lands in.
    pub fn target(&self, id: &TableId) -> TableName {
        TableName::new(self.catalog.clone(), self.schema.clone(), id.name.clone())
    }

    async fn connect(&self) -> Result<PgConnection> {
        Ok(self.cfg.connect().await?)
    }

    /// Copies what needs copying, then applies changes until caught up (or forever with
    /// `continuous`).
    pub async fn run(
        &self,
        lh: &Lakehouse,
        opts: &StreamOptions,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<CdcReport> {
        let mut report = CdcReport::default();
        let mut conn = self.connect().await?;
        slot::check_server(&self.cfg, &mut conn).await?;
        let tables = resolve_tables(&mut conn, &self.cfg, &self.patterns).await?;
        for t in &tables {
            if t.primary_key.is_empty() {
                return Err(CdcError::Table {
                    connection: self.cfg.name.clone(),
                    table: t.id.to_string(),
                    message: "has no primary key, so its changes cannot be applied by key".into(),
                    hint: format!(
                        "add a primary key (ALTER TABLE {} ADD PRIMARY KEY (...)), or ingest it in an entry with `mode: snapshot`",
                        t.id.sql()
                    ),
                }
                .into());
            }
            // Every target name must be a valid identifier before anything is created.
            let _ = self.target(&t.id);
        }
        let ids: Vec<(String, String)> = tables
            .iter()
            .map(|t| (t.id.schema.clone(), t.id.name.clone()))
            .collect();
        slot::ensure_publication(&self.cfg, &mut conn, &self.publication, &ids).await?;

        let file = state::path(&self.state_dir, &self.name);
        let mut st = state::load(&file)?.unwrap_or_default();
        let slot_now = slot::slot_state(&self.cfg, &mut conn, &self.slot).await?;
        let from = match slot_now {
            Some(s) if st.slot == self.slot => s.confirmed_lsn,
            existing => {
                // No slot, or one this entry did not record: changes may have been missed,
                // so every table is copied again from a new slot.
                if existing.is_some() {
                    slot::drop_slot(&self.cfg, &mut conn, &self.slot).await?;
                }
                st = EntryState {
                    slot: self.slot.clone(),
                    tables: BTreeMap::new(),
                };
                let lsn = slot::create_slot(&self.cfg, &mut conn, &self.slot).await?;
                state::save(&file, &st)?;
                lsn
            }
        };
        let mut need_copy = Vec::new();
        for t in &tables {
            let copied = st.tables.get(&t.id.to_string()).is_some_and(|s| s.copied);
            let exists = lh
                .metastore()
                .get_table(&self.target(&t.id))
                .await?
                .is_some();
            if !copied || !exists {
                need_copy.push(t.clone());
            }
        }
        if !need_copy.is_empty() {
            report.copied = self
                .copy(lh, need_copy, from, &mut st, &file, progress)
                .await?;
        }
        self.stream(lh, &tables, &st, opts, conn, progress, &mut report)
            .await?;
        Ok(report)
    }

    /// The initial copy of `tables` in one snapshot, each into its target in one overwrite
    /// commit whose application transaction version is the slot position `from`.
    async fn copy(
        &self,
        lh: &Lakehouse,
        tables: Vec<SourceTable>,
        from: u64,
        st: &mut EntryState,
        file: &std::path::Path,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Vec<(String, u64)>> {
        let mut coordinator = self.connect().await?;
        begin_snapshot(&mut coordinator, &self.cfg, None).await?;
        let estimates: HashMap<String, Option<u64>> = tables
            .iter()
            .map(|t| (t.id.to_string(), t.row_estimate))
            .collect();
        let mut snap = snapshot_in_transaction(
            &self.cfg,
            coordinator,
            SnapshotRequest {
                tables,
                parallelism: self.parallelism.max(1),
                snapshot_id: None,
            },
        )
        .await?;
        for key in estimates.keys() {
            st.tables.insert(
                key.clone(),
                TableState {
                    copied: false,
                    snapshot: snap.info.pg_snapshot.clone(),
                    from_lsn: from,
                },
            );
        }
        state::save(file, st)?;
        let mut open: HashMap<TableId, (DeltaTable, TableWriter, u64)> = HashMap::new();
        let mut done = Vec::new();
        while let Some(event) = snap.next().await {
            match event? {
                SnapshotEvent::TableStarted { table, schema, .. } => {
                    progress(Progress::CopyStarted {
                        table: table.to_string(),
                        estimate: estimates.get(&table.to_string()).copied().flatten(),
                    });
                    let schema = if self.history {
                        with_history_columns(&schema)
                    } else {
                        schema
                    };
                    let target = self.ensure_target(lh, &table, &schema).await?;
                    let writer = TableWriter::new(&target, delta::table_schema(&target)?)?;
                    open.insert(table, (target, writer, 0));
                }
                SnapshotEvent::Batch { table, batch } => {
                    if let Some((_, writer, rows)) = open.get_mut(&table) {
                        let batch = if self.history {
                            history_rows(&batch, from as i64)?
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
                    let Some((target, writer, rows)) = open.remove(&result.table) else {
                        continue;
                    };
                    let adds = writer.finish().await?;
                    let meta = json!({
                        "entry": self.name,
                        "connection": self.cfg.name,
                        "table": result.table.to_string(),
                        "snapshot": snap.info.pg_snapshot,
                        "lsn": confluo_connectors::postgres::cdc::pgoutput::format_lsn(from),
                        "rows": rows,
                        "nulled": result.nulled,
                    });
                    delta::commit(
                        &target,
                        CommitRequest {
                            adds,
                            mode: WriteMode::Overwrite,
                            app_metadata: HashMap::from([("confluo.copy".to_string(), meta)]),
                            txn: Some((self.app_id(), from as i64)),
                            ..Default::default()
                        },
                    )
                    .await?;
                    lh.metastore()
                        .touch_table(&self.target(&result.table))
                        .await?;
                    if let Some(s) = st.tables.get_mut(&result.table.to_string()) {
                        s.copied = true;
                    }
                    state::save(file, st)?;
                    progress(Progress::CopyDone {
                        table: result.table.to_string(),
                        rows,
                    });
                    done.push((result.table.to_string(), rows));
                }
            }
        }
        snap.finish().await?;
        Ok(done)
    }

    /// The target table, created when missing; an existing one gets the source's current
    /// columns (the overwrite that follows replaces its rows).
    async fn ensure_target(
        &self,
        lh: &Lakehouse,
        id: &TableId,
        schema: &SchemaRef,
    ) -> Result<DeltaTable> {
        let name = self.target(id);
        if let Some(info) = lh.metastore().get_table(&name).await? {
            let table = lh.open_delta(&info, TableVersion::Latest).await?;
            let current = delta::table_schema(&table)?;
            let wanted = delta::delta_compatible_schema(schema);
            if current.fields() != wanted.fields() {
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
                &self.catalog,
                &self.schema,
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
                comment: Some(format!(
                    "{}.{} of connection `{}`, kept in sync by ingest entry `{}` (change data capture)",
                    id.schema, id.name, self.cfg.name, self.name
                )),
                properties: BTreeMap::from([
                    ("confluo.ingest.entry".to_string(), self.name.clone()),
                    ("confluo.ingest.source".to_string(), format!("{}:{}", self.cfg.name, id)),
                ]),
                location: None,
            })
            .await?;
        Ok(table)
    }

    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        lh: &Lakehouse,
        tables: &[SourceTable],
        st: &EntryState,
        opts: &StreamOptions,
        mut conn: PgConnection,
        progress: &mut (dyn FnMut(Progress) + Send),
        report: &mut CdcReport,
    ) -> Result<()> {
        let app = self.app_id();
        let mut sources: Sources = HashMap::new();
        let mut captured = Vec::new();
        for t in tables {
            let info = lh
                .metastore()
                .get_table(&self.target(&t.id))
                .await?
                .ok_or_else(|| lh_missing(&self.target(&t.id)))?;
            let target = lh.open_delta(&info, TableVersion::Latest).await?;
            let applied = target
                .snapshot()
                .map_err(|e| lh_delta(&info.name.to_string(), e))?
                .transaction_version(target.log_store().as_ref(), &app)
                .await
                .map_err(|e| lh_delta(&info.name.to_string(), e))?
                .unwrap_or(0);
            let ts = st.tables.get(&t.id.to_string());
            captured.push(CapturedTable {
                schema: t.id.schema.clone(),
                name: t.id.name.clone(),
                key: t.primary_key.clone(),
                applied_lsn: applied.max(0) as u64,
                snapshot: ts.and_then(|s| SnapshotXids::parse(&s.snapshot)),
            });
            sources.insert(t.id.clone(), (t.clone(), t.mappings(&self.cfg)?));
        }
        let mut reader = ChangeReader::new(&self.cfg.name, captured);
        if self.history {
            reader = reader.per_transaction();
        }
        let mut backoff = Duration::from_millis(500);
        let mut warned_retention = false;
        loop {
            if opts.stop.load(Ordering::Relaxed) {
                break;
            }
            let step = self
                .step(
                    lh,
                    &mut conn,
                    &mut reader,
                    &mut sources,
                    &app,
                    opts,
                    progress,
                    report,
                )
                .await;
            match step {
                Ok(applied) => {
                    backoff = Duration::from_millis(500);
                    let state = slot::slot_state(&self.cfg, &mut conn, &self.slot).await?;
                    if let Some(s) = &state {
                        report.confirmed_lsn =
                            confluo_connectors::postgres::cdc::pgoutput::format_lsn(
                                s.confirmed_lsn,
                            );
                        if s.retained_bytes() > opts.retained_warn_bytes && !warned_retention {
                            warned_retention = true;
                            progress(Progress::Warning(format!(
                                "slot `{}` makes the server keep {} MiB of WAL",
                                self.slot,
                                s.retained_bytes() >> 20
                            )));
                        }
                    }
                    let lag_bytes = state.as_ref().map_or(0, |s| s.lag_bytes());
                    let Some(mut out) = applied else {
                        progress(Progress::Idle { lag_bytes });
                        if !opts.continuous {
                            break;
                        }
                        tokio::time::sleep(opts.interval).await;
                        continue;
                    };
                    out.lag_bytes = lag_bytes;
                    progress(Progress::Batch(out));
                }
                Err(e) if opts.continuous && is_transient(&e) => {
                    progress(Progress::Warning(format!(
                        "{e}; reconnecting in {:.1} s",
                        backoff.as_secs_f64()
                    )));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    if let Ok(c) = self.connect().await {
                        conn = c;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Applies one table's changes as SCD 2 history through the AUTO CDC engine: each
    /// transaction's change of a key is a version, ordered by commit LSN.
    #[allow(clippy::too_many_arguments)]
    async fn apply_history(
        &self,
        lh: &Lakehouse,
        info: &confluo_lakehouse::TableInfo,
        id: &TableId,
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
                return Err(CdcError::Table {
                    connection: self.cfg.name.clone(),
                    table: id.to_string(),
                    message:
                        "was truncated at the source; SCD 2 history has no way to apply a truncate"
                            .into(),
                    hint: format!(
                        "drop the lakehouse table {} and sync again to copy the table afresh",
                        self.target(id)
                    ),
                }
                .into());
            }
        }
        let mut except = vec![
            "_op".to_string(),
            "_lsn".to_string(),
            "_commit_ts".to_string(),
        ];
        except.extend(
            rows.schema()
                .fields()
                .iter()
                .filter(|f| f.name().starts_with(changes::UNCHANGED_PREFIX))
                .map(|f| f.name().clone()),
        );
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
        let ctx = datafusion::prelude::SessionContext::new();
        let df = ctx.read_batch(rows)?;
        let meta = HashMap::from([(
            "confluo.cdc".to_string(),
            json!({
                "entry": self.name,
                "table": id.to_string(),
                "lsn": confluo_connectors::postgres::cdc::pgoutput::format_lsn(commit_lsn),
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
            table: id.to_string(),
            message: e.to_string(),
        })
    }

    /// Reads one batch and applies it; returns what it applied (`None`: nothing new). The
    /// caller adds the lag, from the slot state it reads once per batch anyway.
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        lh: &Lakehouse,
        conn: &mut PgConnection,
        reader: &mut ChangeReader,
        sources: &mut Sources,
        app: &str,
        opts: &StreamOptions,
        progress: &mut (dyn FnMut(Progress) + Send),
        report: &mut CdcReport,
    ) -> Result<Option<BatchReport>> {
        let started = Instant::now();
        let mut messages = Vec::new();
        slot::peek(
            &self.cfg,
            conn,
            &self.slot,
            &self.publication,
            opts.max_changes,
            |m| {
                messages.push(m);
                Ok(())
            },
        )
        .await?;
        let batch = reader.fold(messages)?;
        if batch.transactions == 0 {
            return Ok(None);
        }
        let mut out = BatchReport {
            transactions: batch.transactions,
            changes: batch.changes,
            lsn: confluo_connectors::postgres::cdc::pgoutput::format_lsn(batch.commit_lsn),
            ..Default::default()
        };
        for tc in &batch.tables {
            let id = TableId::new(tc.relation.schema.clone(), tc.relation.name.clone());
            let Some((source, mappings)) = sources.get_mut(&id) else {
                continue;
            };
            let known = |m: &Vec<(String, ColumnMapping)>| {
                tc.relation
                    .columns
                    .iter()
                    .all(|c| m.iter().any(|(n, _)| n == &c.name))
            };
            if !known(mappings) {
                // The source gained a column: learn its type, then the target evolves.
                let fresh = resolve_tables(conn, &self.cfg, &[id.to_string()]).await?;
                if let Some(t) = fresh.into_iter().next() {
                    *mappings = t.mappings(&self.cfg)?;
                    *source = t;
                }
                progress(Progress::Warning(format!(
                    "{id}: the source's columns changed; the lakehouse table follows (new columns are added, dropped ones keep their old values and get nulls in new rows)"
                )));
            }
            let rows =
                batch::to_record_batch(tc, mappings).map_err(|message| ManagedError::Convert {
                    table: id.to_string(),
                    message,
                })?;
            let name = self.target(&id);
            let info = lh.table(&name).await?;
            if self.history {
                let s = self
                    .apply_history(
                        lh,
                        &info,
                        &id,
                        rows,
                        &source.primary_key,
                        app,
                        batch.commit_lsn,
                        tc.changes,
                    )
                    .await?;
                reader.applied(&id.schema, &id.name, batch.commit_lsn);
                out.inserted += s.upserted;
                out.deleted += s.deleted;
                lh.metastore().touch_table(&name).await?;
                continue;
            }
            let mut table = lh.open_delta(&info, TableVersion::Latest).await?;
            let applied = changes::apply(
                &mut table,
                NetChanges {
                    rows,
                    keys: source.primary_key.clone(),
                    truncated: tc.truncated,
                    txn: (app.to_string(), batch.commit_lsn as i64),
                    metadata: HashMap::from([(
                        "confluo.cdc".to_string(),
                        json!({
                            "entry": self.name,
                            "table": id.to_string(),
                            "lsn": out.lsn,
                            "end_lsn": confluo_connectors::postgres::cdc::pgoutput::format_lsn(batch.end_lsn),
                            "changes": tc.changes,
                            "truncated": tc.truncated,
                        }),
                    )]),
                },
            )
            .await?;
            reader.applied(&id.schema, &id.name, batch.commit_lsn);
            out.inserted += applied.inserted;
            out.updated += applied.updated;
            out.deleted += applied.deleted;
            lh.metastore().touch_table(&name).await?;
        }
        // Every touched table has committed: only now may the server forget these changes.
        slot::advance(&self.cfg, conn, &self.slot, batch.end_lsn).await?;
        let now_micros = chrono::Utc::now().timestamp_micros();
        out.lag_seconds = (now_micros - batch.commit_ts_micros).max(0) as f64 / 1e6;
        out.seconds = started.elapsed().as_secs_f64();
        report.batches += 1;
        report.transactions += out.transactions;
        report.changes += out.changes;
        report.inserted += out.inserted;
        report.updated += out.updated;
        report.deleted += out.deleted;
        Ok(Some(out))
    }
}

/// A lost connection (network, server restart), which a continuous run rides out.
fn is_transient(e: &ManagedError) -> bool {
    use confluo_connectors::postgres::PostgresError;
    match e {
        ManagedError::Cdc(c) => c.is_transient(),
        ManagedError::Postgres(p) => match p.as_ref() {
            PostgresError::Connect { .. } => true,
            PostgresError::Query { source, .. } => slot::is_disconnect(source),
            _ => false,
        },
        _ => false,
    }
}

/// The copy's schema plus the SCD 2 columns, typed like the sequence (`_lsn`).
fn with_history_columns(schema: &SchemaRef) -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(crate::auto_cdc::START_AT, DataType::Int64, true));
    fields.push(Field::new(crate::auto_cdc::END_AT, DataType::Int64, true));
    Arc::new(Schema::new(fields))
}

/// Copied rows as the first version of each key: it starts at the copy's slot position.
fn history_rows(batch: &RecordBatch, from: i64) -> Result<RecordBatch> {
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

fn lh_missing(name: &TableName) -> ManagedError {
    ManagedError::from(confluo_lakehouse::LakehouseError::Invalid(format!(
        "{name} disappeared during the sync"
    )))
}

fn lh_delta(name: &str, e: deltalake::DeltaTableError) -> ManagedError {
    ManagedError::from(confluo_lakehouse::LakehouseError::delta(name)(e))
}
