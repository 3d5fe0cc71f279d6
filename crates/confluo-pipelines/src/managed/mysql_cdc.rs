//! A `mode: cdc` ingest entry over MySQL or MariaDB: one consistent copy of the tables, tied
//! to the binary log position it read, then the binlog's row changes applied to the
//! lakehouse in batches of whole transactions.
//!
//! Exactly once, with the protocol of PostgreSQL: each batch lands in each touched table as
//! one Delta commit carrying the application transaction `(confluo:ingest:<entry>, binlog
//! sequence of the batch's last transaction)`; only when every table has committed is the
//! entry's binlog position saved (its state in the metastore stands where PostgreSQL's slot
//! does).
//! After a crash the stream replays from the saved position and each table skips the
//! transactions at or before the version its own log records. A table's copy records its
//! snapshot's binlog position as that version, so the stream resumes it with no gap and no
//! overlap.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confluo_connectors::mysql::MysqlConfig;
use confluo_connectors::mysql::cdc::{
    BinlogPosition, CapturedTable, ChangeReader, MysqlCdcError, batch, replica_id, server,
};
use confluo_connectors::mysql::discover::{SourceTable, TableId, resolve_tables};
use confluo_connectors::mysql::snapshot::{SnapshotRequest, snapshot};
use confluo_core::TableName;
use confluo_core::project::{IngestConfig, ScdType};
use confluo_core::source::Offset;
use confluo_lakehouse::changes::NetChanges;
use confluo_lakehouse::{Lakehouse, TableVersion};
use serde_json::json;
use sqlx::mysql::MySqlConnection;

use super::capture::{
    BatchReport, CdcReport, HistoryContext, Progress, StreamOptions, apply_history,
    apply_net_changes,
};
use super::copy::{self, CopyPlan};
use super::state::{self, BinlogState, EntryState, TableState};
use super::{ManagedError, Result};

/// A `mode: cdc` entry over MySQL / MariaDB, resolved.
#[derive(Debug, Clone)]
pub struct MysqlCdcEntry {
    /// The entry's name in `confluo.yaml`.
    pub name: String,
    /// The source connection.
    pub cfg: MysqlConfig,
    /// Table patterns of the entry.
    pub patterns: Vec<String>,
    /// Catalog of the target tables.
    pub catalog: String,
    /// Schema of the target tables.
    pub schema: String,
    /// Connections used by the initial copy.
    pub parallelism: usize,
    /// The project's state folder.
    pub state_dir: PathBuf,
    /// Keep every version of each row (`__START_AT` / `__END_AT`, by binlog sequence).
    pub history: bool,
}

impl MysqlCdcEntry {
    /// The entry `name` of `confluo.yaml`, landing in `catalog.schema`.
    pub fn new(
        name: &str,
        entry: &IngestConfig,
        cfg: MysqlConfig,
        (catalog, schema): (String, String),
        state_dir: PathBuf,
    ) -> MysqlCdcEntry {
        MysqlCdcEntry {
            name: name.to_string(),
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

    /// The replica id this entry registers with: the connection's `server_id`, else one
    /// derived from the project, database and entry, so entries never evict each other.
    pub fn server_id(&self) -> u32 {
        self.cfg.server_id.unwrap_or_else(|| {
            replica_id(&format!(
                "{}\0{}\0{}",
                self.state_dir.display(),
                self.cfg.database,
                self.name
            ))
        })
    }

    fn marker(&self) -> String {
        format!("mysql:{}", self.cfg.name)
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
        let mut conn = self.cfg.connect().await.map_err(ManagedError::from)?;
        let server = server::check_server(&self.cfg, &mut conn).await?;
        let tables = resolve_tables(&mut conn, &self.cfg, &self.patterns)
            .await
            .map_err(ManagedError::from)?;
        for t in &tables {
            if t.primary_key.is_empty() {
                return Err(MysqlCdcError::Table {
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
            // Every column must map before anything is created.
            t.mappings(&self.cfg).map_err(ManagedError::from)?;
            let _ = self.target(&t.id);
        }
        let store = state::Store::new(lh, &self.state_dir, &self.name);
        let mut st = store.load().await?;
        if st.slot != self.marker() || st.binlog.is_none() {
            // A fresh entry, or one whose position is unknown: everything is copied anew.
            st = EntryState {
                slot: self.marker(),
                ..Default::default()
            };
        }
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
            report.copied = self.copy(lh, need_copy, &mut st, &store, progress).await?;
        }
        self.stream(
            lh,
            &tables,
            &mut st,
            &store,
            opts,
            conn,
            &server,
            progress,
            &mut report,
        )
        .await?;
        Ok(report)
    }

    /// The initial copy of `tables` in one snapshot, each into its target in one overwrite
    /// commit whose application transaction version is the snapshot's binlog sequence.
    async fn copy(
        &self,
        lh: &Lakehouse,
        tables: Vec<SourceTable>,
        st: &mut EntryState,
        store: &state::Store,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Vec<(String, u64)>> {
        let order: Vec<TableId> = tables.iter().map(|t| t.id.clone()).collect();
        let mut snap = snapshot(
            &self.cfg,
            SnapshotRequest {
                tables,
                parallelism: self.parallelism.max(1),
            },
        )
        .await
        .map_err(ManagedError::from)?;
        let at = match (&snap.info.binlog_file, snap.info.binlog_position) {
            (Some(f), Some(p)) => BinlogPosition {
                file: f.clone(),
                position: p,
            },
            _ => {
                return Err(MysqlCdcError::Server {
                    connection: self.cfg.name.clone(),
                    message: "the snapshot could not read the binary log position it corresponds to".into(),
                    hint: format!(
                        "GRANT REPLICATION CLIENT (MariaDB: BINLOG MONITOR) and RELOAD ON *.* TO '{}'@'%'",
                        self.cfg.user
                    ),
                }
                .into());
            }
        };
        let seq = at.seq();
        if st.binlog.is_none() {
            st.binlog = Some(BinlogState {
                position: at.clone(),
                gtid: snap.info.gtid_set.clone(),
            });
        }
        for id in &order {
            st.tables.insert(
                id.to_string(),
                TableState {
                    copied: false,
                    snapshot: snap.info.position(),
                    from_lsn: seq,
                },
            );
        }
        store.save(st).await?;
        let plan = CopyPlan {
            history: self.history,
            entry: &self.name,
            connection: &self.cfg.name,
            capture: "binlog change data capture",
            metadata_key: "confluo.copy",
            txn: Some((self.app_id(), seq as i64)),
            position: serde_json::Map::from_iter([
                ("binlog".to_string(), json!(snap.info.position())),
                ("gtid".to_string(), json!(snap.info.gtid_set)),
                ("exact".to_string(), json!(snap.info.exact)),
            ]),
            target: &|id: &TableId| self.target(id),
        };
        let done = copy::land(lh, &mut snap, &plan, &order, progress, Some((store, st))).await?;
        snap.finish().await.map_err(ManagedError::from)?;
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
        st: &mut EntryState,
        store: &state::Store,
        opts: &StreamOptions,
        mut conn: MySqlConnection,
        server: &server::ServerInfo,
        progress: &mut (dyn FnMut(Progress) + Send),
        report: &mut CdcReport,
    ) -> Result<()> {
        let mariadb = server.mariadb;
        let app = self.app_id();
        let mut captured = Vec::new();
        for t in tables {
            let info = lh.table(&self.target(&t.id)).await?;
            let target = lh.open_delta(&info, TableVersion::Latest).await?;
            let applied = target
                .snapshot()
                .map_err(|e| lh_delta(&info.name.to_string(), e))?
                .transaction_version(target.log_store().as_ref(), &app)
                .await
                .map_err(|e| lh_delta(&info.name.to_string(), e))?
                .unwrap_or(0);
            captured.push(CapturedTable {
                table: t.clone(),
                applied_seq: applied.max(0) as u64,
            });
        }
        let mut reader = ChangeReader::new(&self.cfg, server, self.server_id(), captured)?;
        if self.history {
            reader = reader.per_transaction();
        }
        let mut backoff = Duration::from_millis(500);
        loop {
            if opts.stop.load(Ordering::Relaxed) {
                break;
            }
            let Some(from) = st.binlog.as_ref().map(|b| b.position.clone()) else {
                break;
            };
            match self
                .step(
                    lh,
                    &mut conn,
                    &mut reader,
                    &from,
                    st,
                    store,
                    mariadb,
                    &app,
                    opts,
                    progress,
                    report,
                )
                .await
            {
                Ok(Some(out)) => {
                    backoff = Duration::from_millis(500);
                    progress(Progress::Batch(out));
                }
                Ok(None) => {
                    backoff = Duration::from_millis(500);
                    let at = st.binlog.as_ref().map_or(from, |b| b.position.clone());
                    let lag_bytes = match server::binary_logs(&self.cfg, &mut conn).await {
                        Ok(logs) => server::bytes_behind(&logs, &at),
                        Err(_) => 0,
                    };
                    progress(Progress::Idle { lag_bytes });
                    if !opts.continuous {
                        break;
                    }
                    tokio::time::sleep(opts.interval).await;
                }
                Err(e) if opts.continuous && is_transient(&e) => {
                    progress(Progress::Warning {
                        message: format!("{e}; reconnecting in {:.1} s", backoff.as_secs_f64()),
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    if let Ok(c) = self.cfg.connect().await {
                        conn = c;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(b) = &st.binlog {
            report.confirmed_lsn = b.position.to_string();
        }
        Ok(())
    }

    /// Reads one batch and applies it; `None` when there was nothing new for any table
    /// (the saved position still moves past other tables' transactions).
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        lh: &Lakehouse,
        conn: &mut MySqlConnection,
        reader: &mut ChangeReader,
        from: &BinlogPosition,
        st: &mut EntryState,
        store: &state::Store,
        mariadb: bool,
        app: &str,
        opts: &StreamOptions,
        progress: &mut (dyn FnMut(Progress) + Send),
        report: &mut CdcReport,
    ) -> Result<Option<BatchReport>> {
        let started = Instant::now();
        let gtid = st.binlog.as_ref().and_then(|b| b.gtid.clone());
        let batch = reader
            .read(conn, from, gtid.as_deref(), opts.max_changes.max(1) as u64)
            .await?;
        for note in &batch.notes {
            progress(Progress::Warning {
                message: note.clone(),
            });
        }
        let Some(end) = batch.end.clone() else {
            return Ok(None);
        };
        let position = end.to_string();
        let mut out = BatchReport {
            transactions: batch.transactions,
            changes: batch.changes,
            lsn: position.clone(),
            ..Default::default()
        };
        for tc in &batch.tables {
            let id = TableId::new(tc.relation.schema.clone(), tc.relation.name.clone());
            let Some(source) = reader.table(&id).cloned() else {
                continue;
            };
            let rows =
                batch::to_record_batch(&self.cfg, &source, tc).map_err(ManagedError::from)?;
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
                        position: position.clone(),
                    },
                    rows,
                    &source.primary_key,
                    app,
                    batch.commit_seq,
                    tc.changes,
                )
                .await?;
                out.inserted += s.upserted;
                out.deleted += s.deleted;
            } else {
                apply_net_changes(
                    lh,
                    &info,
                    NetChanges {
                        rows,
                        keys: source.primary_key.clone(),
                        truncated: tc.truncated,
                        txns: vec![(app.to_string(), batch.commit_seq as i64)],
                        metadata: HashMap::from([(
                            "confluo.cdc".to_string(),
                            json!({
                                "entry": self.name,
                                "table": id.to_string(),
                                "binlog": position,
                                "changes": tc.changes,
                                "truncated": tc.truncated,
                            }),
                        )]),
                    },
                    &mut out,
                )
                .await?;
            }
            reader.applied(&id, batch.commit_seq);
            lh.metastore().touch_table(&name).await?;
        }
        // Every touched table has committed: only now does the entry move on.
        let gtid = server::gtid_at(&self.cfg, conn, mariadb, &end).await;
        let offset = Offset::Mysql {
            file: end.file.clone(),
            position: end.position,
            gtid: gtid.clone(),
        };
        st.binlog = Some(BinlogState {
            position: end.clone(),
            gtid,
        });
        store.save(st).await?;
        let targets = format!("{}.{}", self.catalog, self.schema);
        store.record(app, &targets, &offset).await?;
        report.confirmed_lsn = position;
        if batch.tables.is_empty() {
            return Ok(None);
        }
        if let Ok(logs) = server::binary_logs(&self.cfg, conn).await {
            out.lag_bytes = server::bytes_behind(&logs, &end);
        }
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
    match e {
        ManagedError::MysqlCdc(c) => c.is_transient(),
        ManagedError::Mysql(m) => m.is_transient(),
        _ => false,
    }
}

fn lh_delta(name: &str, e: deltalake::DeltaTableError) -> ManagedError {
    ManagedError::from(confluo_lakehouse::LakehouseError::delta(name)(e))
}
