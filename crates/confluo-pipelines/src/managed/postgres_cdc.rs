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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confluo_connectors::postgres::PostgresConfig;
use confluo_connectors::postgres::cdc::visibility::SnapshotXids;
use confluo_connectors::postgres::cdc::{
    CapturedTable, CdcError, ChangeReader, batch, generated, slot,
};
use confluo_connectors::postgres::discover::{SourceTable, TableId, resolve_tables};
use confluo_connectors::postgres::snapshot::{
    SnapshotRequest, begin_snapshot, snapshot_in_transaction,
};
use confluo_connectors::postgres::types::ColumnMapping;
use confluo_core::TableName;
use confluo_core::project::{IngestConfig, ScdType};
use confluo_core::source::Offset;
use confluo_lakehouse::changes::NetChanges;
use confluo_lakehouse::{Lakehouse, TableVersion};
use serde_json::json;
use sqlx::PgConnection;

pub use super::capture::{BatchReport, CdcReport, Progress, StreamOptions};
use super::capture::{HistoryContext, apply_history, apply_net_changes};
use super::copy::{self, CopyPlan};
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

/// A name PostgreSQL accepts for a slot or publication: lower case letters, digits and
/// underscores, at most 63 bytes.
fn object_name(parts: &[&str]) -> String {
    let mut s: String = parts
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(63);
    s
}

impl CdcEntry {
    /// The entry `name` of `confluo.yaml`, landing in `catalog.schema`. The slot is named
    /// after the database and the entry (slots are per server, publications per database),
    /// unless the connection names one.
    pub fn new(
        name: &str,
        entry: &IngestConfig,
        cfg: PostgresConfig,
        (catalog, schema): (String, String),
        state_dir: PathBuf,
    ) -> CdcEntry {
        CdcEntry {
            name: name.to_string(),
            slot: cfg
                .slot
                .clone()
                .unwrap_or_else(|| object_name(&["confluo", &cfg.database, name])),
            publication: cfg
                .publication
                .clone()
                .unwrap_or_else(|| object_name(&["confluo", name])),
            patterns: entry.tables.clone(),
            catalog,
            schema,
            parallelism: entry
                .parallelism
                .unwrap_or(super::snapshot::DEFAULT_PARALLELISM),
            state_dir,
            history: entry.scd_type == ScdType::Type2,
            cfg,
        }
    }

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

        let store = state::Store::new(lh, &self.state_dir, &self.name);
        let mut st = store.load().await?;
        slot::wait_until_free(&self.cfg, &mut conn, &self.slot, Duration::from_secs(10)).await?;
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
                    ..Default::default()
                };
                let lsn = slot::create_slot(&self.cfg, &mut conn, &self.slot).await?;
                store.save(&st).await?;
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
                .copy(lh, need_copy, from, &mut st, &store, progress)
                .await?;
        }
        self.stream(lh, &tables, &st, &store, opts, conn, progress, &mut report)
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
        store: &state::Store,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Vec<(String, u64)>> {
        let mut coordinator = self.connect().await?;
        begin_snapshot(&mut coordinator, &self.cfg, None).await?;
        let order: Vec<TableId> = tables.iter().map(|t| t.id.clone()).collect();
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
        for id in &order {
            st.tables.insert(
                id.to_string(),
                TableState {
                    copied: false,
                    snapshot: snap.info.pg_snapshot.clone(),
                    from_lsn: from,
                },
            );
        }
        store.save(st).await?;
        let plan = CopyPlan {
            history: self.history,
            entry: &self.name,
            connection: &self.cfg.name,
            capture: "change data capture",
            metadata_key: "confluo.copy",
            txn: Some((self.app_id(), from as i64)),
            position: serde_json::Map::from_iter([
                ("snapshot".to_string(), json!(snap.info.pg_snapshot)),
                (
                    "lsn".to_string(),
                    json!(confluo_connectors::postgres::cdc::pgoutput::format_lsn(
                        from
                    )),
                ),
            ]),
            target: &|id: &TableId| self.target(id),
        };
        let done = copy::land(lh, &mut snap, &plan, &order, progress, Some((store, st))).await?;
        snap.finish().await?;
        Ok(done
            .into_iter()
            .map(|t| (t.source.to_string(), t.rows))
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        lh: &Lakehouse,
        tables: &[SourceTable],
        st: &EntryState,
        store: &state::Store,
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
        let targets = format!("{}.{}", self.catalog, self.schema);
        let mut recorded = None;
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
                        if recorded != Some(s.confirmed_lsn) {
                            let at = Offset::Postgres {
                                lsn: s.confirmed_lsn,
                            };
                            store.record(&app, &targets, &at).await?;
                            recorded = Some(s.confirmed_lsn);
                        }
                        if s.retained_bytes() > opts.retained_warn_bytes && !warned_retention {
                            warned_retention = true;
                            progress(Progress::Warning {
                                message: format!(
                                    "slot `{}` makes the server keep {} MiB of WAL",
                                    self.slot,
                                    s.retained_bytes() >> 20
                                ),
                            });
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
                    progress(Progress::Warning {
                        message: format!("{e}; reconnecting in {:.1} s", backoff.as_secs_f64()),
                    });
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
        let mut batch = reader.fold(messages)?;
        if batch.transactions == 0 {
            return Ok(None);
        }
        let mut out = BatchReport {
            transactions: batch.transactions,
            changes: batch.changes,
            lsn: confluo_connectors::postgres::cdc::pgoutput::format_lsn(batch.commit_lsn),
            ..Default::default()
        };
        for tc in &mut batch.tables {
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
                progress(Progress::Warning {
                    message: format!(
                        "{id}: the source's columns changed; the lakehouse table follows (new columns are added, dropped ones keep their old values and get nulls in new rows)"
                    ),
                });
            }
            generated::fill(conn, &self.cfg, source, tc).await?;
            let rows =
                batch::to_record_batch(tc, mappings).map_err(|message| ManagedError::Convert {
                    table: id.to_string(),
                    message,
                })?;
            let name = self.target(&id);
            let info = lh.table(&name).await?;
            if self.history {
                let s = apply_history(
                    lh,
                    &info,
                    &HistoryContext {
                        entry: &self.name,
                        source_table: id.to_string(),
                        target: &name,
                        position: out.lsn.clone(),
                    },
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
            apply_net_changes(
                lh,
                &info,
                NetChanges {
                    rows,
                    keys: source.primary_key.clone(),
                    truncated: tc.truncated,
                    txns: vec![(app.to_string(), batch.commit_lsn as i64)],
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
                &mut out,
            )
            .await?;
            reader.applied(&id.schema, &id.name, batch.commit_lsn);
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

fn lh_missing(name: &TableName) -> ManagedError {
    ManagedError::from(confluo_lakehouse::LakehouseError::Invalid(format!(
        "{name} disappeared during the sync"
    )))
}

fn lh_delta(name: &str, e: deltalake::DeltaTableError) -> ManagedError {
    ManagedError::from(confluo_lakehouse::LakehouseError::delta(name)(e))
}
