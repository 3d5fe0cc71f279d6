//! Change data capture from PostgreSQL over logical replication (`pgoutput`).
//!
//! [`ChangeReader`] turns the slot's stream into batches of whole transactions, folded per
//! table into net upserts and deletes ([`compact`]), skipping what the initial snapshot
//! already holds ([`visibility`]) and what each lakehouse table has already applied (its
//! last applied commit LSN). Nothing here confirms the slot: the caller does, with
//! [`slot::advance`], after the lakehouse commit — so a crash anywhere replays, never loses.

pub mod batch;
pub use crate::changes::compact;
pub mod generated;
pub mod pgoutput;
pub mod slot;
pub mod text;
pub mod visibility;

use std::collections::HashMap;

use bytes::Bytes;

use compact::TableChanges;
use pgoutput::{Message, Relation};
use visibility::SnapshotXids;

/// What can go wrong capturing changes.
#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    /// The server is not set up for logical replication, or refused a replication command.
    #[error("connection `{connection}`: {message}\n  hint: {hint}")]
    Server {
        /// The connection's name.
        connection: String,
        /// What happened.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// A table cannot be captured as configured (e.g. it has no primary key).
    #[error("connection `{connection}`: table {table}: {message}\n  hint: {hint}")]
    Table {
        /// The connection's name.
        connection: String,
        /// `schema.table`.
        table: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// The stream sent something this reader cannot decode.
    #[error("connection `{connection}`: change stream at LSN {lsn}: {source}")]
    Stream {
        /// The connection's name.
        connection: String,
        /// The transaction's commit LSN, in PostgreSQL's text form.
        lsn: String,
        /// The decoding error.
        #[source]
        source: pgoutput::MalformedMessage,
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
    /// Connecting or reading failed.
    #[error(transparent)]
    Postgres(#[from] crate::postgres::error::PostgresError),
}

impl CdcError {
    /// Whether the error is a lost connection, worth a reconnect with backoff.
    pub fn is_transient(&self) -> bool {
        match self {
            CdcError::Disconnected { .. } => true,
            CdcError::Postgres(crate::postgres::error::PostgresError::Connect { .. }) => true,
            CdcError::Postgres(crate::postgres::error::PostgresError::Query { source, .. }) => {
                slot::is_disconnect(source)
            }
            _ => false,
        }
    }
}

/// A source table being captured: its name and key columns.
#[derive(Debug, Clone)]
pub struct CapturedTable {
    /// Schema.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Primary key column names.
    pub key: Vec<String>,
    /// Commit LSN of the last transaction already applied to this table's target (0: none);
    /// transactions at or before it are skipped, so a replay after a crash is harmless.
    pub applied_lsn: u64,
    /// The snapshot of this table's initial copy: transactions it sees are already in the
    /// target and are skipped.
    pub snapshot: Option<SnapshotXids>,
}

/// Whole transactions read from the slot, folded per table.
#[derive(Debug, Default)]
pub struct ChangeBatch {
    /// Net changes per table (only tables with something to apply).
    pub tables: Vec<TableChanges>,
    /// End LSN of the last whole transaction in the batch: confirm the slot to this once
    /// every table's changes are committed. 0 when the batch read nothing.
    pub end_lsn: u64,
    /// Commit LSN of that transaction (the version each touched target records).
    pub commit_lsn: u64,
    /// Its commit time, microseconds since the Unix epoch.
    pub commit_ts_micros: i64,
    /// Transactions read (including skipped ones).
    pub transactions: u64,
    /// Row changes folded in.
    pub changes: u64,
}

/// Reads batches of changes from a slot for a set of tables.
#[derive(Debug)]
pub struct ChangeReader {
    connection: String,
    tables: HashMap<(String, String), CapturedTable>,
    per_transaction: bool,
}

struct Txn {
    final_lsn: u64,
    ts: i64,
    xid: u32,
}

impl ChangeReader {
    /// A reader for `tables`.
    pub fn new(connection: &str, tables: Vec<CapturedTable>) -> Self {
        ChangeReader {
            connection: connection.to_string(),
            tables: tables
                .into_iter()
                .map(|t| ((t.schema.clone(), t.name.clone()), t))
                .collect(),
            per_transaction: false,
        }
    }

    /// Keeps each transaction's change per key (a change feed with history) instead of one
    /// net change per key for the whole batch.
    pub fn per_transaction(mut self) -> Self {
        self.per_transaction = true;
        self
    }

    /// Records that a table's target now holds everything up to `lsn`.
    pub fn applied(&mut self, schema: &str, name: &str, lsn: u64) {
        if let Some(t) = self.tables.get_mut(&(schema.to_string(), name.to_string())) {
            t.applied_lsn = t.applied_lsn.max(lsn);
        }
    }

    /// The tables and where each stands.
    pub fn tables(&self) -> impl Iterator<Item = &CapturedTable> {
        self.tables.values()
    }

    /// Folds the messages of one peek into a batch. Messages after the last whole
    /// transaction (there are none with the SQL interface, which returns whole transactions)
    /// are left for the next read.
    pub fn fold(&self, messages: impl IntoIterator<Item = Bytes>) -> Result<ChangeBatch, CdcError> {
        let mut batch = ChangeBatch::default();
        let mut relations: HashMap<u32, Relation> = HashMap::new();
        let mut by_rel: HashMap<u32, usize> = HashMap::new();
        let mut txn: Option<Txn> = None;
        let mut txn_changes = 0u64;
        for data in messages {
            let msg = pgoutput::decode(data).map_err(|source| CdcError::Stream {
                connection: self.connection.clone(),
                lsn: pgoutput::format_lsn(txn.as_ref().map(|t| t.final_lsn).unwrap_or(0)),
                source,
            })?;
            match msg {
                Message::Begin {
                    final_lsn,
                    commit_ts_micros,
                    xid,
                } => {
                    txn_changes = 0;
                    txn = Some(Txn {
                        final_lsn,
                        ts: commit_ts_micros,
                        xid,
                    });
                }
                Message::Commit {
                    commit_lsn,
                    end_lsn,
                } => {
                    batch.transactions += 1;
                    batch.end_lsn = end_lsn;
                    batch.commit_lsn = commit_lsn;
                    if let Some(t) = txn.take() {
                        batch.commit_ts_micros = t.ts;
                    }
                }
                Message::Relation(rel) => {
                    if let Some(&i) = by_rel.get(&rel.id)
                        && batch.tables[i].relation.columns != rel.columns
                    {
                        if txn_changes == 0 {
                            // Cut here: this transaction and the rest are read again by the
                            // next batch (the slot is confirmed only up to the last whole
                            // transaction folded), which starts with the new shape.
                            break;
                        }
                        let key = self.key_positions(&rel)?;
                        batch.tables[i]
                            .reshape(&rel, key)
                            .map_err(|message| CdcError::Table {
                                connection: self.connection.clone(),
                                table: format!("{}.{}", rel.schema, rel.name),
                                message,
                                hint: "change a column's type in a transaction of its own".into(),
                            })?;
                    }
                    relations.insert(rel.id, rel);
                }
                Message::Insert { rel, new } => {
                    if let Some((t, lsn, ts)) =
                        self.target(&mut batch, &relations, &mut by_rel, rel, &txn)?
                    {
                        t.insert(lsn, ts, new);
                        batch.changes += 1;
                        txn_changes += 1;
                    }
                }
                Message::Update { rel, old, new } => {
                    if let Some((t, lsn, ts)) =
                        self.target(&mut batch, &relations, &mut by_rel, rel, &txn)?
                    {
                        t.update(lsn, ts, old, new);
                        batch.changes += 1;
                        txn_changes += 1;
                    }
                }
                Message::Delete { rel, old } => {
                    if let Some((t, lsn, ts)) =
                        self.target(&mut batch, &relations, &mut by_rel, rel, &txn)?
                    {
                        t.delete(lsn, ts, old);
                        batch.changes += 1;
                        txn_changes += 1;
                    }
                }
                Message::Truncate { rels } => {
                    for rel in rels {
                        if let Some((t, lsn, ts)) =
                            self.target(&mut batch, &relations, &mut by_rel, rel, &txn)?
                        {
                            t.truncate(lsn, ts);
                            batch.changes += 1;
                        }
                    }
                }
                Message::Other(_) => {}
            }
        }
        batch.tables.retain(|t| t.changes > 0);
        Ok(batch)
    }

    fn key_positions(&self, rel: &Relation) -> Result<Vec<usize>, CdcError> {
        let table = &self.tables[&(rel.schema.clone(), rel.name.clone())];
        table
            .key
            .iter()
            .map(|k| {
                rel.columns.iter().position(|c| &c.name == k).ok_or_else(|| CdcError::Table {
                    connection: self.connection.clone(),
                    table: format!("{}.{}", rel.schema, rel.name),
                    message: format!("key column `{k}` is no longer in the table"),
                    hint: "a dropped or renamed key column needs a fresh snapshot: drop the target table and sync again".into(),
                })
            })
            .collect()
    }

    /// The changes to fold a row change of `rel` into, or `None` when it is skipped.
    fn target<'b>(
        &self,
        batch: &'b mut ChangeBatch,
        relations: &HashMap<u32, Relation>,
        by_rel: &mut HashMap<u32, usize>,
        rel: u32,
        txn: &Option<Txn>,
    ) -> Result<Option<(&'b mut TableChanges, u64, i64)>, CdcError> {
        let Some(t) = txn else { return Ok(None) };
        let Some(relation) = relations.get(&rel) else {
            return Ok(None);
        };
        let Some(captured) = self
            .tables
            .get(&(relation.schema.clone(), relation.name.clone()))
        else {
            return Ok(None);
        };
        if t.final_lsn <= captured.applied_lsn
            || captured.snapshot.as_ref().is_some_and(|s| s.sees(t.xid))
        {
            return Ok(None);
        }
        let i = match by_rel.get(&rel) {
            Some(&i) => i,
            None => {
                let key = self.key_positions(relation)?;
                let mut changes = TableChanges::new(relation.clone(), key);
                changes.per_transaction = self.per_transaction;
                batch.tables.push(changes);
                by_rel.insert(rel, batch.tables.len() - 1);
                batch.tables.len() - 1
            }
        };
        Ok(Some((&mut batch.tables[i], t.final_lsn, t.ts)))
    }
}
