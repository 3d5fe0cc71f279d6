//! What an ingest entry remembers between runs, in `<state dir>/ingest/<entry>.json`: the
//! slot it reads, and per table whether its initial copy finished and which snapshot it was
//! (so the change stream can skip what the copy already holds). Where each table stands in
//! the stream is not kept here: it is the application transaction version in the table's own
//! Delta log, written atomically with the data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ManagedError, Result};

/// One table's initial copy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableState {
    /// The copy is committed to the lakehouse.
    pub copied: bool,
    /// `pg_current_snapshot()` of the copy: transactions it sees are skipped in the stream.
    pub snapshot: String,
    /// The slot position the copy started from (its application transaction version).
    pub from_lsn: u64,
}

/// Where a MySQL / MariaDB entry stands in the binary log: everything before it is
/// committed to every target (it plays the part of PostgreSQL's confirmed slot position).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BinlogState {
    /// The next read starts here.
    pub position: confluo_connectors::mysql::cdc::BinlogPosition,
    /// The equivalent GTID position, where the server can say (MariaDB).
    #[serde(default)]
    pub gtid: Option<String>,
}

/// An entry's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EntryState {
    /// The replication slot (PostgreSQL), or `mysql:<connection>` for binlog entries.
    pub slot: String,
    /// Tables by `schema.table`.
    pub tables: BTreeMap<String, TableState>,
    /// The binlog position of a MySQL / MariaDB entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog: Option<BinlogState>,
}

/// Where an entry's state lives.
pub fn path(state_dir: &Path, entry: &str) -> PathBuf {
    state_dir.join("ingest").join(format!("{entry}.json"))
}

/// Reads the state; a missing file is a fresh entry.
pub fn load(file: &Path) -> Result<Option<EntryState>> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ManagedError::State {
                path: file.display().to_string(),
                message: format!("unreadable ({e}); remove it to start this entry over"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ManagedError::State {
            path: file.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// Writes the state atomically (a crash leaves the old or the new file, never half of one).
pub fn save(file: &Path, state: &EntryState) -> Result<()> {
    let err = |e: std::io::Error| ManagedError::State {
        path: file.display().to_string(),
        message: e.to_string(),
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = file.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(state).expect("state serialises");
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, file).map_err(err)
}
