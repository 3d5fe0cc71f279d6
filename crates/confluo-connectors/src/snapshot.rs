//! What a database connector's snapshot produces, the same for every source: per table a
//! `TableStarted`, its batches and a `TableFinished`, read from a bounded channel while the
//! connector's workers run. The source decides the table id, the instant's description and
//! its error type.

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
