//! Change data capture from MySQL and MariaDB over the binary log (row format).
//!
//! [`ChangeReader::read`] registers as a replica, reads the binlog from a position to its
//! current end (`BINLOG_DUMP_NON_BLOCK`), and folds whole transactions per table into net
//! upserts and deletes with the same folding as PostgreSQL ([`crate::changes::compact`]).
//! A transaction's sequence is the position just after its commit event, as one number
//! ([`BinlogPosition::seq`]): monotonic across binlog files, so it orders transactions and
//! serves as the Delta application-transaction version. Nothing here records progress: the
//! caller saves the batch's end position only after every touched table has committed, so a
//! crash replays, and each table skips what its own Delta log says it already holds.

pub mod batch;
pub mod ddl;
pub mod render;
pub mod server;

use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;
use futures::StreamExt;
use mysql_async::binlog::events::{EventData, OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::{BinlogStreamRequest, Conn, OptsBuilder, SslOpts};
use serde::{Deserialize, Serialize};
use sqlx::mysql::{MySqlConnection, MySqlSslMode};

use crate::changes::compact::TableChanges;
use crate::changes::{Relation, RelationColumn, Tuple, Value};
use crate::mysql::config::MysqlConfig;
use crate::mysql::discover::{SourceTable, TableId, resolve_tables};
use crate::mysql::error::MysqlError;
use render::ColumnRender;

/// A position in the server's binary log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogPosition {
    /// The binlog file (`mysql-bin.000042`).
    pub file: String,
    /// The byte offset in it.
    pub position: u64,
}

impl BinlogPosition {
    /// The position as one increasing number: the file's sequence number in the high 32
    /// bits, the offset in the low 32 (binlog files stay far below 4 GiB).
    pub fn seq(&self) -> u64 {
        confluo_core::source::binlog_sequence(&self.file, self.position)
    }

    /// Parses `file:position`.
    pub fn parse(text: &str) -> Option<Self> {
        let (file, pos) = text.rsplit_once(':')?;
        Some(BinlogPosition {
            file: file.to_string(),
            position: pos.parse().ok()?,
        })
    }
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.position)
    }
}

/// What can go wrong capturing changes from MySQL or MariaDB.
#[derive(Debug, thiserror::Error)]
pub enum MysqlCdcError {
    /// The server is not set up for change capture, or refused the replication protocol.
    #[error("connection `{connection}`: {message}\n  hint: {hint}")]
    Server {
        /// The connection's name.
        connection: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// A table cannot be captured as configured or as it changed.
    #[error("connection `{connection}`: table {table}: {message}\n  hint: {hint}")]
    Table {
        /// The connection's name.
        connection: String,
        /// `database.table`.
        table: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// The binlog held something this reader cannot decode.
    #[error("connection `{connection}`: binlog at {position}: {message}")]
    Stream {
        /// The connection's name.
        connection: String,
        /// Where.
        position: String,
        /// What.
        message: String,
    },
    /// The connection was lost (network, server restart): retrying later can succeed.
    #[error("connection `{connection}`: lost the server while {doing}: {message}")]
    Disconnected {
        /// The connection's name.
        connection: String,
        /// What Confluo was doing.
        doing: String,
        /// The driver's message.
        message: String,
    },
    /// Connecting, discovering or querying failed.
    #[error(transparent)]
    Mysql(#[from] MysqlError),
}

impl MysqlCdcError {
    /// Whether the error is a lost connection, worth a reconnect with backoff.
    pub fn is_transient(&self) -> bool {
        match self {
            MysqlCdcError::Disconnected { .. } => true,
            MysqlCdcError::Mysql(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// A source table being captured, and how far its target already is.
#[derive(Debug, Clone)]
pub struct CapturedTable {
    /// The table as discovered.
    pub table: SourceTable,
    /// Sequence ([`BinlogPosition::seq`]) of the last transaction its target holds;
    /// transactions ending at or before it are skipped.
    pub applied_seq: u64,
}

/// Whole transactions read from the binlog, folded per table.
#[derive(Debug, Default)]
pub struct ChangeBatch {
    /// Net changes per table (only tables with something to apply).
    pub tables: Vec<TableChanges>,
    /// Where the next read starts: just after the last whole transaction read (captured or
    /// not). `None` when nothing was read.
    pub end: Option<BinlogPosition>,
    /// Sequence of the last transaction folded in (the version each touched target records).
    pub commit_seq: u64,
    /// Its commit time, microseconds since the Unix epoch.
    pub commit_ts_micros: i64,
    /// Transactions read (including ones of other tables and ones already applied).
    pub transactions: u64,
    /// Row changes folded in.
    pub changes: u64,
    /// Schema changes seen, for the user.
    pub notes: Vec<String>,
}

/// One table's columns as the reader maps binlog rows onto them.
#[derive(Debug)]
struct Shape {
    relation: Relation,
    renders: Vec<ColumnRender>,
    key: Vec<usize>,
}

#[derive(Debug)]
struct Captured {
    table: SourceTable,
    applied_seq: u64,
    shape: Shape,
}

enum RowChange {
    Insert(Tuple),
    Update(Tuple, Tuple),
    Delete(Tuple),
}

/// MariaDB's GTID event, which replaces BEGIN when a replica asks for GTIDs.
const MARIADB_GTID_EVENT: u8 = 162;

/// FNV-1a, for ids that must stay the same from run to run.
fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A replica id derived from `seed` (stable across runs, distinct for distinct seeds with
/// high probability), clear of the small ids servers themselves use.
pub fn replica_id(seed: &str) -> u32 {
    1_000_000 + (fnv1a(seed) % 2_000_000_000) as u32
}

fn shape_of(cfg: &MysqlConfig, table: &SourceTable) -> Result<Shape, MysqlCdcError> {
    let mappings = table.mappings(cfg)?;
    let relation = Relation {
        id: 0,
        schema: table.id.schema.clone(),
        name: table.id.name.clone(),
        replica_identity: b'f',
        columns: table
            .columns
            .iter()
            .map(|c| RelationColumn {
                key: table.primary_key.contains(&c.name),
                name: c.name.clone(),
                // A changed type reads as a different column.
                type_oid: fnv1a(&c.mysql_type) as u32,
                type_modifier: 0,
            })
            .collect(),
    };
    let renders = table
        .columns
        .iter()
        .zip(&mappings)
        .map(|(c, (_, m))| ColumnRender::new(c, m))
        .collect();
    let key = table
        .primary_key
        .iter()
        .map(|k| {
            table
                .columns
                .iter()
                .position(|c| &c.name == k)
                .ok_or_else(|| MysqlCdcError::Table {
                    connection: cfg.name.clone(),
                    table: table.id.to_string(),
                    message: format!("key column `{k}` is not among the table's columns"),
                    hint: "a dropped or renamed key column needs a fresh copy: drop the target table and sync again".into(),
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(Shape {
        relation,
        renders,
        key,
    })
}

/// The replication connection's options (TLS as configured: `preferred` connects without
/// TLS here, since the replication driver cannot fall back).
fn binlog_opts(cfg: &MysqlConfig) -> OptsBuilder {
    let mut o = OptsBuilder::default()
        .ip_or_hostname(cfg.host.clone())
        .tcp_port(cfg.port)
        .user(Some(cfg.user.clone()))
        .pass(cfg.password.clone())
        .prefer_socket(false);
    let ssl = match cfg.ssl_mode {
        MySqlSslMode::Disabled | MySqlSslMode::Preferred => None,
        MySqlSslMode::Required => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        MySqlSslMode::VerifyCa => Some(
            SslOpts::default()
                .with_root_certs(cfg.ssl_ca.iter().map(|p| p.clone().into()).collect())
                .with_danger_skip_domain_validation(true),
        ),
        MySqlSslMode::VerifyIdentity => Some(
            SslOpts::default()
                .with_root_certs(cfg.ssl_ca.iter().map(|p| p.clone().into()).collect()),
        ),
    };
    o = o.ssl_opts(ssl);
    o
}

/// Reads batches of changes from the binary log for a set of tables.
#[derive(Debug)]
pub struct ChangeReader {
    cfg: MysqlConfig,
    server_id: u32,
    mariadb: bool,
    checksum: bool,
    tables: HashMap<(String, String), Captured>,
    per_transaction: bool,
}

impl ChangeReader {
    /// A reader registering with `server` as replica `server_id`, for `tables`.
    pub fn new(
        cfg: &MysqlConfig,
        server: &server::ServerInfo,
        server_id: u32,
        tables: Vec<CapturedTable>,
    ) -> Result<Self, MysqlCdcError> {
        let mut map = HashMap::new();
        for t in tables {
            let shape = shape_of(cfg, &t.table)?;
            map.insert(
                (t.table.id.schema.clone(), t.table.id.name.clone()),
                Captured {
                    table: t.table,
                    applied_seq: t.applied_seq,
                    shape,
                },
            );
        }
        Ok(ChangeReader {
            cfg: cfg.clone(),
            server_id,
            mariadb: server.mariadb,
            checksum: server.checksum,
            tables: map,
            per_transaction: false,
        })
    }

    /// Keeps each transaction's change per key (history) instead of one net change per key
    /// for the whole batch.
    pub fn per_transaction(mut self) -> Self {
        self.per_transaction = true;
        self
    }

    /// Records that a table's target now holds everything up to `seq`.
    pub fn applied(&mut self, id: &TableId, seq: u64) {
        if let Some(t) = self.tables.get_mut(&(id.schema.clone(), id.name.clone())) {
            t.applied_seq = t.applied_seq.max(seq);
        }
    }

    /// The table as the reader currently knows it (its columns follow DDL).
    pub fn table(&self, id: &TableId) -> Option<&SourceTable> {
        self.tables
            .get(&(id.schema.clone(), id.name.clone()))
            .map(|c| &c.table)
    }

    fn lost(&self, doing: &str, e: mysql_async::Error) -> MysqlCdcError {
        match e {
            mysql_async::Error::Server(s) => {
                let (message, hint) = match s.code {
                    // ER_MASTER_FATAL_ERROR_READING_BINLOG: purged or unknown file.
                    1236 => (
                        format!("the server cannot send its binary log from the saved position: {}", s.message),
                        "the binlog files this entry still needed were purged (expire_logs_days / binlog_expire_logs_seconds) or the server was replaced: run `confluo sync <entry> --reset` and sync again to copy the tables afresh, and keep binlogs longer than the longest pause between syncs".to_string(),
                    ),
                    1045 | 1227 | 1044 => (
                        s.message.clone(),
                        format!("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{}'@'%' (MariaDB: BINLOG MONITOR instead of REPLICATION CLIENT)", self.cfg.user),
                    ),
                    _ => (s.message.clone(), "check the server's error log".to_string()),
                };
                MysqlCdcError::Server {
                    connection: self.cfg.name.clone(),
                    message,
                    hint,
                }
            }
            other => MysqlCdcError::Disconnected {
                connection: self.cfg.name.clone(),
                doing: doing.to_string(),
                message: other.to_string(),
            },
        }
    }

    /// Reads whole transactions from `from` until the end of the binary log, or until about
    /// `max_changes` captured row changes, and folds them. Before a schema change of a
    /// captured table the batch ends, so each batch has one shape per table; the change is
    /// then applied at the start of the next read (its columns are read again from
    /// `information_schema`). `conn` serves those lookups.
    pub async fn read(
        &mut self,
        conn: &mut MySqlConnection,
        from: &BinlogPosition,
        gtid: Option<&str>,
        max_changes: u64,
    ) -> Result<ChangeBatch, MysqlCdcError> {
        let mut stream = self.open(from, None).await?;
        let mut gtid_mode = false;
        let mut read_any = false;
        // Until the first format description the reader does not know that events end
        // in a checksum.
        let mut seen_format = false;
        let mut batch = ChangeBatch::default();
        let mut file = from.file.clone();
        let mut in_txn = false;
        let mut pending: Vec<((String, String), RowChange)> = Vec::new();
        let mut by_table: HashMap<(String, String), usize> = HashMap::new();
        let mut end_seq = from.seq();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                // The saved file is gone (purged, or another server of the topology):
                // MariaDB can resume from the GTID position saved with it.
                Err(mysql_async::Error::Server(e))
                    if e.code == 1236
                        && !read_any
                        && !gtid_mode
                        && gtid.is_some()
                        && self.mariadb =>
                {
                    stream = self.open(from, gtid).await?;
                    gtid_mode = true;
                    batch.notes.push(format!(
                        "binlog {from} is no longer on the server ({}); resuming from GTID position {}",
                        e.message,
                        gtid.unwrap_or_default()
                    ));
                    continue;
                }
                Err(e) => return Err(self.lost("reading the binary log", e)),
            };
            read_any = true;
            let header = event.header();
            let log_pos = u64::from(header.log_pos());
            let ts_micros = i64::from(header.timestamp()) * 1_000_000;
            let here = |file: &str| BinlogPosition {
                file: file.to_string(),
                position: log_pos,
            };
            let data = event.read_data().map_err(|e| MysqlCdcError::Stream {
                connection: self.cfg.name.clone(),
                position: here(&file).to_string(),
                message: e.to_string(),
            })?;
            tracing::trace!(
                event_type = header.event_type_raw(),
                log_pos,
                file = %file,
                "binlog event"
            );
            if header.event_type_raw() == MARIADB_GTID_EVENT {
                // Sent in GTID mode instead of BEGIN: seq_no (8), domain (4), flags (1).
                let standalone = event.data().get(12).is_some_and(|f| f & 1 != 0);
                if !standalone {
                    in_txn = true;
                    pending.clear();
                }
                continue;
            }
            let Some(data) = data else { continue };
            let mut committed = false;
            match data {
                EventData::RotateEvent(r) => {
                    let name = r.name();
                    // The artificial rotate that opens a dump comes before the format
                    // description, so its checksum bytes read as part of the name.
                    file = if log_pos == 0 && name.starts_with(from.file.as_str()) {
                        from.file.clone()
                    } else if log_pos == 0
                        && !seen_format
                        && self.checksum
                        && r.name_raw().len() > 4
                    {
                        let raw = r.name_raw();
                        String::from_utf8_lossy(&raw[..raw.len() - 4]).into_owned()
                    } else {
                        name.into_owned()
                    };
                    let next = BinlogPosition {
                        file: file.clone(),
                        position: r.position(),
                    };
                    if !in_txn && next.seq() > end_seq {
                        end_seq = next.seq();
                        batch.end = Some(next);
                    }
                }
                EventData::QueryEvent(q) => {
                    let sql = q.query();
                    let sql = sql.trim();
                    if sql.eq_ignore_ascii_case("BEGIN") {
                        in_txn = true;
                        pending.clear();
                    } else if sql.eq_ignore_ascii_case("COMMIT") {
                        committed = true;
                    } else if sql.starts_with('#') {
                        // MariaDB's stand-in for an event this replica did not ask for.
                    } else {
                        // Any other statement commits implicitly (DDL) or is its own
                        // transaction.
                        let schema = q.schema().into_owned();
                        if let Some(d) = ddl::parse(sql, &schema) {
                            let seq = here(&file).seq();
                            let touched: Vec<(String, String)> = d
                                .tables
                                .iter()
                                .filter(|t| self.tables.contains_key(*t))
                                .cloned()
                                .collect();
                            if !touched.is_empty() {
                                if d.kind != ddl::DdlKind::Truncate && batch.changes > 0 {
                                    // Apply what came before with the old shape first.
                                    break;
                                }
                                self.schema_change(
                                    conn,
                                    d.kind,
                                    &touched,
                                    seq,
                                    ts_micros,
                                    sql,
                                    &mut batch,
                                    &mut by_table,
                                )
                                .await?;
                            }
                        }
                        committed = true;
                    }
                }
                EventData::FormatDescriptionEvent(_) => seen_format = true,
                EventData::XidEvent(_) => committed = true,
                EventData::RowsEvent(rows) => {
                    let Some(tme) = stream.get_tme(rows.table_id()) else {
                        return Err(MysqlCdcError::Stream {
                            connection: self.cfg.name.clone(),
                            position: here(&file).to_string(),
                            message: format!(
                                "rows of table id {} without its table map",
                                rows.table_id()
                            ),
                        });
                    };
                    let key = (
                        tme.database_name().into_owned(),
                        tme.table_name().into_owned(),
                    );
                    if !self.tables.contains_key(&key) {
                        continue;
                    }
                    let names = column_names(tme);
                    for row in rows.rows(tme) {
                        let (before, after) = row.map_err(|e| MysqlCdcError::Stream {
                            connection: self.cfg.name.clone(),
                            position: here(&file).to_string(),
                            message: format!("a row of {}.{}: {e}", key.0, key.1),
                        })?;
                        let before = match before {
                            Some(r) => Some(self.tuple(conn, &key, &r, names.as_deref()).await?),
                            None => None,
                        };
                        let after = match after {
                            Some(r) => Some(self.tuple(conn, &key, &r, names.as_deref()).await?),
                            None => None,
                        };
                        let change = match (before, after) {
                            (None, Some(a)) => RowChange::Insert(a),
                            (Some(b), Some(a)) => RowChange::Update(b, a),
                            (Some(b), None) => RowChange::Delete(b),
                            (None, None) => continue,
                        };
                        pending.push((key.clone(), change));
                    }
                    if !in_txn {
                        // A non-transactional table's statement without BEGIN (rare).
                        committed = true;
                    }
                }
                _ => {}
            }
            if committed {
                in_txn = false;
                let at = here(&file);
                let seq = at.seq();
                batch.transactions += 1;
                if seq > end_seq {
                    end_seq = seq;
                    batch.end = Some(at);
                }
                for (key, change) in pending.drain(..) {
                    self.fold(&mut batch, &mut by_table, &key, change, seq, ts_micros)?;
                }
                if batch.changes >= max_changes {
                    break;
                }
            }
        }
        drop(stream);
        batch.tables.retain(|t| t.changes > 0);
        Ok(batch)
    }

    /// Folds one row change of a committed transaction ending at `seq`, unless the
    /// table's target already holds it.
    fn fold(
        &self,
        batch: &mut ChangeBatch,
        by_table: &mut HashMap<(String, String), usize>,
        key: &(String, String),
        change: RowChange,
        seq: u64,
        ts: i64,
    ) -> Result<(), MysqlCdcError> {
        let Some(captured) = self.tables.get(key) else {
            return Ok(());
        };
        if seq <= captured.applied_seq {
            return Ok(());
        }
        let i = self.changes_index(batch, by_table, key)?;
        let t = &mut batch.tables[i];
        match change {
            RowChange::Insert(a) => t.insert(seq, ts, a),
            RowChange::Update(b, a) => t.update(seq, ts, Some(b), a),
            RowChange::Delete(b) => t.delete(seq, ts, b),
        }
        batch.changes += 1;
        batch.commit_seq = seq;
        batch.commit_ts_micros = ts;
        Ok(())
    }

    /// The batch's changes of a table, in the table's current shape.
    fn changes_index(
        &self,
        batch: &mut ChangeBatch,
        by_table: &mut HashMap<(String, String), usize>,
        key: &(String, String),
    ) -> Result<usize, MysqlCdcError> {
        let captured = &self.tables[key];
        if let Some(&i) = by_table.get(key) {
            let t = &mut batch.tables[i];
            if t.relation != captured.shape.relation {
                t.reshape(&captured.shape.relation, captured.shape.key.clone())
                    .map_err(|message| MysqlCdcError::Table {
                        connection: self.cfg.name.clone(),
                        table: format!("{}.{}", key.0, key.1),
                        message,
                        hint: "run the sync again: the next batch starts at the schema change"
                            .into(),
                    })?;
            }
            return Ok(i);
        }
        let mut t = TableChanges::new(captured.shape.relation.clone(), captured.shape.key.clone());
        t.per_transaction = self.per_transaction;
        batch.tables.push(t);
        by_table.insert(key.clone(), batch.tables.len() - 1);
        Ok(batch.tables.len() - 1)
    }

    /// Opens the binlog stream at `from`, or (MariaDB) at the GTID position `gtid`.
    async fn open(
        &self,
        from: &BinlogPosition,
        gtid: Option<&str>,
    ) -> Result<mysql_async::BinlogStream, MysqlCdcError> {
        use mysql_async::prelude::Queryable;
        let mut replica = Conn::new(binlog_opts(&self.cfg))
            .await
            .map_err(|e| self.lost("connecting for the binary log", e))?;
        let request = match gtid {
            None => BinlogStreamRequest::new(self.server_id)
                .with_filename(from.file.as_bytes())
                .with_pos(from.position),
            Some(g) => {
                let state = format!("SET @slave_connect_state = '{}'", g.replace('\'', ""));
                for sql in [
                    "SET @mariadb_slave_capability = 4",
                    state.as_str(),
                    "SET @slave_gtid_strict_mode = 0",
                    "SET @slave_gtid_ignore_duplicates = 0",
                ] {
                    replica
                        .query_drop(sql)
                        .await
                        .map_err(|e| self.lost("requesting the binary log by GTID", e))?;
                }
                BinlogStreamRequest::new(self.server_id)
                    .with_filename(b"")
                    .with_pos(4)
            }
        };
        replica
            .get_binlog_stream(request.with_non_blocking())
            .await
            .map_err(|e| self.lost("requesting the binary log", e))
    }

    /// Applies a statement that changed captured tables.
    #[allow(clippy::too_many_arguments)]
    async fn schema_change(
        &mut self,
        conn: &mut MySqlConnection,
        kind: ddl::DdlKind,
        tables: &[(String, String)],
        seq: u64,
        ts: i64,
        sql: &str,
        batch: &mut ChangeBatch,
        by_table: &mut HashMap<(String, String), usize>,
    ) -> Result<(), MysqlCdcError> {
        for key in tables {
            let name = format!("{}.{}", key.0, key.1);
            match kind {
                ddl::DdlKind::Truncate => {
                    if seq > self.tables[key].applied_seq {
                        let i = self.changes_index(batch, by_table, key)?;
                        batch.tables[i].truncate(seq, ts);
                        batch.changes += 1;
                        batch.commit_seq = seq;
                        batch.commit_ts_micros = ts;
                    }
                }
                ddl::DdlKind::Alter => {
                    self.rediscover(conn, key).await?;
                    batch.notes.push(format!(
                        "{name}: `{}` — the lakehouse table follows (added columns are added; dropped ones stay, null in new rows)",
                        abbreviate(sql)
                    ));
                }
                ddl::DdlKind::Drop | ddl::DdlKind::Rename => {
                    return Err(MysqlCdcError::Table {
                        connection: self.cfg.name.clone(),
                        table: name,
                        message: format!(
                            "was {} at the source (`{}`); its changes can no longer be followed",
                            if kind == ddl::DdlKind::Drop {
                                "dropped"
                            } else {
                                "renamed"
                            },
                            abbreviate(sql)
                        ),
                        hint: "change the entry's `tables:` to what should be captured now, then run `confluo sync <entry> --reset` and sync again to copy afresh".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads a table's columns again (after DDL, or when a row does not fit).
    async fn rediscover(
        &mut self,
        conn: &mut MySqlConnection,
        key: &(String, String),
    ) -> Result<(), MysqlCdcError> {
        let id = TableId::new(key.0.clone(), key.1.clone());
        let fresh = resolve_tables(conn, &self.cfg, &[id.to_string()]).await?;
        let Some(table) = fresh.into_iter().next() else {
            return Ok(());
        };
        let shape = shape_of(&self.cfg, &table)?;
        if let Some(c) = self.tables.get_mut(key) {
            c.table = table;
            c.shape = shape;
        }
        Ok(())
    }

    /// A binlog row as a tuple in the table's column order. Columns are matched by name
    /// when the table map carries names (`binlog_row_metadata = FULL`), else by position;
    /// columns the row does not have are null.
    async fn tuple(
        &mut self,
        conn: &mut MySqlConnection,
        key: &(String, String),
        row: &BinlogRow,
        names: Option<&[String]>,
    ) -> Result<Tuple, MysqlCdcError> {
        let fits = |c: &Captured| match names {
            Some(names) => names
                .iter()
                .all(|n| c.table.columns.iter().any(|col| &col.name == n)),
            None => row.len() <= c.table.columns.len(),
        };
        if !fits(&self.tables[key]) {
            self.rediscover(conn, key).await?;
            if !fits(&self.tables[key]) {
                return Err(MysqlCdcError::Table {
                    connection: self.cfg.name.clone(),
                    table: format!("{}.{}", key.0, key.1),
                    message: format!(
                        "a row in the binary log has {} columns, which do not match the table's {} columns now",
                        row.len(),
                        self.tables[key].table.columns.len()
                    ),
                    hint: "the table changed shape more than once since this position; set `binlog_row_metadata = FULL` on the server so rows carry their column names, or run `confluo sync <entry> --reset` and sync again to copy afresh".into(),
                });
            }
        }
        let c = &self.tables[key];
        let n = c.table.columns.len();
        let mut out: Tuple = vec![Value::Null; n];
        for i in 0..row.len() {
            let target = match names {
                Some(names) => c.table.columns.iter().position(|col| col.name == names[i]),
                None => Some(i),
            };
            let Some(j) = target else { continue };
            out[j] = match row.as_ref(i) {
                None => Value::Unchanged,
                Some(v) => match c.shape.renders[j].render(v) {
                    Ok(Some(bytes)) => Value::Text(Bytes::from(bytes)),
                    Ok(None) => Value::Null,
                    Err(message) => {
                        return Err(MysqlCdcError::Table {
                            connection: self.cfg.name.clone(),
                            table: format!("{}.{}", key.0, key.1),
                            message: format!("column `{}`: {message}", c.table.columns[j].name),
                            hint: "report this value to the Confluo developers".into(),
                        });
                    }
                },
            };
        }
        Ok(out)
    }
}

/// Column names from the table map's optional metadata, when the server sends them.
fn column_names(tme: &TableMapEvent<'_>) -> Option<Vec<String>> {
    for field in tme.iter_optional_meta() {
        if let Ok(OptionalMetadataField::ColumnName(names)) = field {
            let names: Vec<String> = names
                .iter_names()
                .filter_map(|n| n.ok().map(|n| n.name().into_owned()))
                .collect();
            if names.len() as u64 == tme.columns_count() {
                return Some(names);
            }
        }
    }
    None
}

/// The first line of a statement, at most 120 characters.
fn abbreviate(sql: &str) -> String {
    let line = sql.lines().next().unwrap_or_default();
    if line.chars().count() > 120 {
        format!("{}…", line.chars().take(120).collect::<String>())
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_across_files() {
        let a = BinlogPosition::parse("mysql-bin.000009:99999").unwrap();
        let b = BinlogPosition::parse("mysql-bin.000010:4").unwrap();
        assert!(a.seq() < b.seq());
        assert_eq!(b.to_string(), "mysql-bin.000010:4");
    }
}
