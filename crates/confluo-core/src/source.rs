//! The source contract: what every connector that feeds the lakehouse implements, and what
//! the one runner (`confluo_pipelines::managed::runner`) relies on.
//!
//! A source reads `[from, to)` as Arrow batches and says where it stands after each batch
//! with a typed [`Offset`]. The runner commits the rows and the offset to Delta in one
//! commit (the offset as the table's application transactions, `txn`), and only then
//! acknowledges the source ([`ChangeSource::ack`]). After a crash the runner reads the
//! committed offset back from the Delta log and the source resumes after it: a replayable
//! source is exactly once. A source that cannot replay (plain MQTT, queues) is at least
//! once, and the runner applies its rows as upserts by key, so a redelivery replaces the
//! row it already wrote instead of adding one ([`Guarantee`]).
//!
//! Errors are [`ErrorClass::Definite`] (bad configuration, a dropped table, a message that
//! no retry will fix) or [`ErrorClass::Transient`] (network, broker restart): only the
//! runner retries, only transient ones, with backoff.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

/// Where a source stands: everything up to and including this position is read. Typed per
/// system, serialisable (the metastore keeps it as JSON, Delta commits carry it in
/// `commitInfo`), and ordered within one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Offset {
    /// PostgreSQL logical replication: the commit LSN of the last transaction.
    Postgres {
        /// The LSN as a number.
        lsn: u64,
    },
    /// MySQL / MariaDB binary log: the position after the last transaction, and the
    /// equivalent GTID set where the server says.
    Mysql {
        /// Binlog file name.
        file: String,
        /// Byte position in it.
        position: u64,
        /// The GTID position (MariaDB `gtid_binlog_pos`, MySQL `gtid_executed`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gtid: Option<String>,
    },
    /// Kafka: per `topic/partition`, the offset of the last record read.
    Kafka {
        /// Offsets by `topic/partition`.
        partitions: BTreeMap<String, i64>,
    },
    /// NATS JetStream: the stream sequence of the last message read.
    JetStream {
        /// The stream.
        stream: String,
        /// Its sequence number.
        sequence: u64,
    },
    /// RabbitMQ stream: the offset of the last message read.
    RabbitStream {
        /// The stream.
        stream: String,
        /// Its offset.
        offset: u64,
    },
}

impl Offset {
    /// The Delta application transactions that record this offset, as `(key, version)`:
    /// the runner's app id is `<entry app id>` for the empty key and `<app id>/<key>`
    /// otherwise. A version is the position itself, so a replayed batch is recognised by
    /// comparing numbers.
    pub fn txns(&self) -> Vec<(String, i64)> {
        match self {
            Offset::Postgres { lsn } => vec![(String::new(), *lsn as i64)],
            Offset::Mysql { file, position, .. } => {
                vec![(String::new(), binlog_sequence(file, *position) as i64)]
            }
            Offset::Kafka { partitions } => {
                partitions.iter().map(|(k, v)| (k.clone(), *v)).collect()
            }
            Offset::JetStream { sequence, .. } => vec![(String::new(), *sequence as i64)],
            Offset::RabbitStream { offset, .. } => vec![(String::new(), *offset as i64)],
        }
    }

    /// The offset as text for messages (`LSN 0/16B3748`, `ORDERS #42`, ...).
    pub fn describe(&self) -> String {
        match self {
            Offset::Postgres { lsn } => format!("LSN {:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff),
            Offset::Mysql { file, position, .. } => format!("{file}:{position}"),
            Offset::Kafka { partitions } => partitions
                .iter()
                .map(|(k, v)| format!("{k}@{v}"))
                .collect::<Vec<_>>()
                .join(", "),
            Offset::JetStream { stream, sequence } => format!("{stream} #{sequence}"),
            Offset::RabbitStream { stream, offset } => format!("{stream} @{offset}"),
        }
    }
}

impl PartialOrd for Offset {
    /// Offsets of the same source compare by position; offsets of different sources (or
    /// Kafka offsets ahead on one partition and behind on another) do not compare.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        use Offset::*;
        match (self, other) {
            (Postgres { lsn: a }, Postgres { lsn: b }) => Some(a.cmp(b)),
            (
                Mysql {
                    file: f1,
                    position: p1,
                    ..
                },
                Mysql {
                    file: f2,
                    position: p2,
                    ..
                },
            ) => Some(binlog_sequence(f1, *p1).cmp(&binlog_sequence(f2, *p2))),
            (
                JetStream {
                    stream: s1,
                    sequence: a,
                },
                JetStream {
                    stream: s2,
                    sequence: b,
                },
            ) if s1 == s2 => Some(a.cmp(b)),
            (
                RabbitStream {
                    stream: s1,
                    offset: a,
                },
                RabbitStream {
                    stream: s2,
                    offset: b,
                },
            ) if s1 == s2 => Some(a.cmp(b)),
            (Kafka { partitions: a }, Kafka { partitions: b }) => {
                let mut order = Ordering::Equal;
                for key in a.keys().chain(b.keys()) {
                    let x = a.get(key).copied().unwrap_or(-1);
                    let y = b.get(key).copied().unwrap_or(-1);
                    match (order, x.cmp(&y)) {
                        (_, Ordering::Equal) => {}
                        (Ordering::Equal, o) => order = o,
                        (o, p) if o != p => return None,
                        _ => {}
                    }
                }
                Some(order)
            }
            _ => None,
        }
    }
}

/// A binlog position as one increasing number, for Delta's integer transaction versions:
/// the file's sequence number (`mysql-bin.000042`) in the high 32 bits, the byte position in
/// the low 32 (binlog files stay far below 4 GiB).
pub fn binlog_sequence(file: &str, position: u64) -> u64 {
    let n: u64 = file
        .rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    (n << 32) | (position & 0xffff_ffff)
}

/// What a source can promise about each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// The source replays from an offset: with the offset committed beside the rows, every
    /// message lands exactly once.
    ExactlyOnce,
    /// The source redelivers what was not acknowledged but cannot replay from an offset:
    /// every message lands at least once, and rows are upserted by their key so a
    /// redelivered message replaces its earlier copy.
    AtLeastOnce,
}

/// What to do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retrying cannot help: bad configuration or data, a dropped table, denied access.
    Definite,
    /// Retrying later can succeed: a lost connection, a restarting broker, a timeout.
    Transient,
}

/// An error from a source, with its class. The message names the connection and what
/// failed, and carries a hint where one helps.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// Definite or transient.
    pub class: ErrorClass,
    /// What happened.
    pub message: String,
}

impl SourceError {
    /// An error no retry will fix.
    pub fn definite(message: impl Into<String>) -> Self {
        SourceError {
            class: ErrorClass::Definite,
            message: message.into(),
        }
    }

    /// An error a retry may fix.
    pub fn transient(message: impl Into<String>) -> Self {
        SourceError {
            class: ErrorClass::Transient,
            message: message.into(),
        }
    }

    /// Whether the runner may retry.
    pub fn is_transient(&self) -> bool {
        self.class == ErrorClass::Transient
    }
}

/// How a batch's rows land in their table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    /// Appended (replayable sources: each message arrives once).
    Append,
    /// Upserted by these columns (at-least-once sources: a redelivered message replaces
    /// its earlier copy).
    Upsert {
        /// The key columns.
        keys: Vec<String>,
    },
}

/// The rows of one target table in a batch.
#[derive(Debug, Clone)]
pub struct TableRows {
    /// The target table's name within the entry's schema.
    pub table: String,
    /// The rows.
    pub rows: RecordBatch,
    /// How they land.
    pub apply: Apply,
}

/// One batch read from a source.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// Rows per target table (a table may appear once per batch).
    pub tables: Vec<TableRows>,
    /// Where the source stands after this batch; `None` for sources without offsets
    /// (at-least-once), whose acknowledgement is by message.
    pub offset: Option<Offset>,
    /// Messages (or changes) read.
    pub messages: u64,
    /// Bytes of payload read.
    pub bytes: u64,
    /// Source time of the newest message (microseconds since the epoch), for lag.
    pub newest_micros: Option<i64>,
    /// Messages kept in `_rescued_data` because they did not fit (malformed JSON, ...).
    pub rescued: u64,
}

/// How a batch is read.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// At most this many messages.
    pub max_messages: usize,
    /// At most this many payload bytes (a batch may pass it by one message).
    pub max_bytes: usize,
    /// How long to wait for the first message before answering "nothing new".
    pub wait: Duration,
    /// Once a message arrived, how long to keep filling the batch.
    pub linger: Duration,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_messages: 100_000,
            max_bytes: 64 << 20,
            wait: Duration::from_millis(500),
            linger: Duration::from_millis(200),
        }
    }
}

/// An unbounded source of rows: a stream, a queue or a change log. Implemented by each
/// connector; driven only by the runner.
#[async_trait::async_trait]
pub trait ChangeSource: Send {
    /// Exactly once or at least once.
    fn guarantee(&self) -> Guarantee;

    /// The keys of the Delta application transactions the offset is recorded under (see
    /// [`Offset::txns`]), so the runner can read them back. Known after [`Self::connect`].
    fn offset_keys(&self) -> Vec<String>;

    /// The columns of the source's rows, known before anything is read (those of a batch
    /// without messages), so a pipeline can be checked before data moves.
    fn columns(&self) -> Result<arrow::datatypes::Schema, SourceError>;

    /// Whether everything the source held when [`Self::seek`] positioned it has been handed
    /// out: a one-shot read (a pipeline update) stops there. `false` when the source cannot
    /// tell; the read then stops at a wait that brings nothing.
    fn caught_up(&self) -> bool {
        false
    }

    /// Connects and checks that what the entry names exists.
    async fn connect(&mut self) -> Result<(), SourceError>;

    /// Positions the source after what the target holds: `committed` maps each offset key
    /// to the version committed in the table (missing: nothing committed yet, start where
    /// the entry says).
    async fn seek(&mut self, committed: &BTreeMap<String, i64>) -> Result<(), SourceError>;

    /// After [`Self::seek`]: a batch without messages that records where a starting option
    /// (Kafka's `latest`, a timestamp) placed keys the table held nothing of, for the runner
    /// to commit before any message arrives; otherwise a run that reads nothing would let
    /// the next one start at a later "latest", skipping what was produced in between.
    /// `None` when nothing needs keeping (the start is the source's beginning).
    fn starting_batch(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        Ok(None)
    }

    /// The next batch, or `None` when nothing arrived within `limits.wait`.
    async fn next_batch(&mut self, limits: &ReadLimits)
    -> Result<Option<SourceBatch>, SourceError>;

    /// Everything in the batches returned so far is committed: the source may forget it.
    async fn ack(&mut self) -> Result<(), SourceError>;

    /// The target table's columns as they are now (after a commit created or evolved it), so
    /// later batches decode into them: a value that does not fit is rescued rather than
    /// changing the column's type.
    fn set_table_schema(&mut self, _table: &str, _schema: &arrow::datatypes::Schema) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_order_within_a_source() {
        let a = Offset::JetStream {
            stream: "S".into(),
            sequence: 5,
        };
        let b = Offset::JetStream {
            stream: "S".into(),
            sequence: 9,
        };
        assert!(a < b);
        let k = |v: &[(&str, i64)]| Offset::Kafka {
            partitions: v.iter().map(|(k, o)| (k.to_string(), *o)).collect(),
        };
        assert!(k(&[("t/0", 1), ("t/1", 5)]) < k(&[("t/0", 2), ("t/1", 5)]));
        assert_eq!(
            k(&[("t/0", 1), ("t/1", 6)]).partial_cmp(&k(&[("t/0", 2), ("t/1", 5)])),
            None
        );
        assert_eq!(a.partial_cmp(&Offset::Postgres { lsn: 1 }), None);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, r#"{"source":"jet_stream","stream":"S","sequence":9}"#);
        assert_eq!(serde_json::from_str::<Offset>(&json).unwrap(), b);
        assert_eq!(b.txns(), vec![(String::new(), 9)]);
    }
}
