//! What a database connector's snapshot produces, the same for every source: per table a
//! `TableStarted`, its batches and a `TableFinished`, read from a bounded channel while the
//! connector's workers run. The source decides the table id, the instant's description and
//! its error type.

use std::collections::VecDeque;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::Serialize;
use tokio::sync::mpsc;

/// What a snapshot produces, in order per table: `TableStarted`, its `Batch`es,
/// `TableFinished`. Events of different tables interleave.
#[derive(Debug)]
pub enum SnapshotEvent<Id> {
    /// Reading of a table began.
    TableStarted {
        /// The table.
        table: Id,
        /// The Arrow schema of its batches.
        schema: SchemaRef,
        /// The source's row estimate, if known (for progress).
        row_estimate: Option<u64>,
        /// Key ranges it is read in (1 when read whole).
        ranges: usize,
    },
    /// Rows of a table.
    Batch {
        /// The table.
        table: Id,
        /// The rows.
        batch: RecordBatch,
    },
    /// Every row of the table has been sent.
    TableFinished(TableSnapshot<Id>),
}

/// The outcome for one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSnapshot<Id> {
    /// The table.
    pub table: Id,
    /// Rows read.
    pub rows: u64,
    /// Values stored as null because Arrow has no counterpart (e.g. `±infinity`, zero
    /// dates), by column.
    pub nulled: Vec<(String, u64)>,
}

/// A snapshot in progress: its instant, and a stream of events.
#[derive(Debug)]
pub struct Snapshot<Id, Info, E> {
    /// The instant read.
    pub info: Info,
    rx: mpsc::Receiver<Result<SnapshotEvent<Id>, E>>,
    driver: tokio::task::JoinHandle<Result<Vec<TableSnapshot<Id>>, E>>,
    task_failed: fn(String) -> E,
}

impl<Id, Info, E> Snapshot<Id, Info, E> {
    /// A snapshot whose events arrive on `rx` while `driver` runs the workers;
    /// `task_failed` turns a panicked driver into the source's error.
    pub fn new(
        info: Info,
        rx: mpsc::Receiver<Result<SnapshotEvent<Id>, E>>,
        driver: tokio::task::JoinHandle<Result<Vec<TableSnapshot<Id>>, E>>,
        task_failed: fn(String) -> E,
    ) -> Self {
        Snapshot {
            info,
            rx,
            driver,
            task_failed,
        }
    }

    /// The next event, or `None` when every table is done (or a worker failed: the error is
    /// delivered first).
    pub async fn next(&mut self) -> Option<Result<SnapshotEvent<Id>, E>> {
        self.rx.recv().await
    }

    /// Waits for the workers to finish; returns per-table results in the request's order.
    pub async fn finish(mut self) -> Result<Vec<TableSnapshot<Id>>, E> {
        // Drain what is left so no worker waits on a full channel.
        self.rx.close();
        while self.rx.recv().await.is_some() {}
        match self.driver.await {
            Ok(r) => r,
            Err(e) => Err((self.task_failed)(format!("snapshot task failed: {e}"))),
        }
    }
}

/// The work shared by a snapshot's workers: `(table, range)` tasks, and per table whether it
/// started, how many ranges are still running, rows read and values nulled.
pub(crate) struct WorkQueue {
    pub(crate) tasks: VecDeque<(usize, usize)>,
    pub(crate) started: Vec<bool>,
    pub(crate) remaining: Vec<usize>,
    pub(crate) rows: Vec<u64>,
    pub(crate) nulled: Vec<Vec<(String, u64)>>,
}

/// `n` filters covering every value of `key`: the first and last are open-ended, so rows
/// outside `[lo, hi]` (there are none in the snapshot) could not be lost either.
pub fn split_range(key: &str, lo: i64, hi: i64, n: usize) -> Vec<Option<String>> {
    let span = hi as i128 - lo as i128 + 1;
    let n = (n as i128).min(span).max(1);
    if n == 1 {
        return vec![None];
    }
    let bounds: Vec<i64> = (1..n).map(|i| (lo as i128 + span * i / n) as i64).collect();
    let mut out = Vec::with_capacity(n as usize);
    out.push(Some(format!("{key} < {}", bounds[0])));
    for w in bounds.windows(2) {
        out.push(Some(format!("{key} >= {} AND {key} < {}", w[0], w[1])));
    }
    out.push(Some(format!("{key} >= {}", bounds[bounds.len() - 1])));
    out
}
