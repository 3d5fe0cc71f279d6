//! What a change-capture entry remembers between runs, in the metastore: the slot it
//! reads, and per table whether its initial copy finished and which snapshot it was (so the
//! change stream can skip what the copy already holds). Where each table stands in
//! the stream is not kept here: it is the application transaction version in the table's own
//! Delta log, written atomically with the data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use confluo_lakehouse::Lakehouse;
use confluo_lakehouse::metastore::Metastore;
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

/// Where an entry's state lives: the metastore, so every worker sharing it sees the same
/// entry. Projects from before kept it in `<state dir>/ingest/<entry>.json`; the first load
/// moves that file's state into the metastore (nothing is copied again) and renames the
/// file to `<entry>.json.migrated`.
pub struct Store {
    metastore: Metastore,
    entry: String,
    legacy: PathBuf,
}

impl Store {
    /// The store of `entry` in `lh`'s metastore; `state_dir` is where an older version kept
    /// the state file.
    pub fn new(lh: &Lakehouse, state_dir: &Path, entry: &str) -> Store {
        Store {
            metastore: lh.metastore().clone(),
            entry: entry.to_string(),
            legacy: state_dir.join("ingest").join(format!("{entry}.json")),
        }
    }

    /// The entry's state (default when it has none yet), migrating a legacy file first.
    pub async fn load(&self) -> Result<EntryState> {
        if let Some(v) = self.metastore.ingest_state(&self.entry).await? {
            return serde_json::from_value(v).map_err(|e| self.unreadable(e));
        }
        let bytes = match std::fs::read(&self.legacy) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(EntryState::default());
            }
            Err(e) => {
                return Err(ManagedError::State {
                    path: self.legacy.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        let state: EntryState =
            serde_json::from_slice(&bytes).map_err(|e| ManagedError::State {
                path: self.legacy.display().to_string(),
                message: format!(
                    "unreadable ({e}); remove it, or run `confluo sync {} --reset`, to start this entry over",
                    self.entry
                ),
            })?;
        self.save(&state).await?;
        // The metastore holds it now; the file stays beside, renamed, for the record.
        let _ = std::fs::rename(&self.legacy, self.legacy.with_extension("json.migrated"));
        Ok(state)
    }

    /// Replaces the entry's state.
    pub async fn save(&self, state: &EntryState) -> Result<()> {
        let v = serde_json::to_value(state).expect("state serialises");
        Ok(self.metastore.set_ingest_state(&self.entry, &v).await?)
    }

    /// Records where the entry stands in its source (the typed offset everything up to
    /// which is committed to every target) for `confluo sync --status` and other workers.
    /// `targets` names what the entry writes (`catalog.schema`).
    pub async fn record(
        &self,
        app_id: &str,
        targets: &str,
        offset: &confluo_core::source::Offset,
    ) -> Result<()> {
        let v = serde_json::to_value(offset).expect("offsets serialise");
        Ok(self
            .metastore
            .set_source_offset(app_id, &self.entry, targets, &v)
            .await?)
    }

    /// Forgets everything the entry recorded (its state, its source positions and a legacy
    /// state file), so its next run starts afresh. Returns whether there was anything.
    pub async fn forget(&self) -> Result<bool> {
        let mut forgot = self.metastore.forget_ingest_entry(&self.entry).await?;
        match std::fs::remove_file(&self.legacy) {
            Ok(()) => forgot = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ManagedError::State {
                    path: self.legacy.display().to_string(),
                    message: e.to_string(),
                });
            }
        }
        Ok(forgot)
    }

    /// Marks `table` as copied and saves.
    pub async fn mark_copied(&self, state: &mut EntryState, table: &str) -> Result<()> {
        if let Some(s) = state.tables.get_mut(table) {
            s.copied = true;
        }
        self.save(state).await
    }

    fn unreadable(&self, e: serde_json::Error) -> ManagedError {
        ManagedError::State {
            path: format!("the metastore's state of ingest entry `{}`", self.entry),
            message: format!(
                "unreadable ({e}); run `confluo sync {} --reset` to start this entry over",
                self.entry
            ),
        }
    }
}
