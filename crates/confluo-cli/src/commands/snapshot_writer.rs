//! Lands a running database snapshot in the lakehouse, whatever the source: one table per
//! source table (created when missing, its columns following the source's), each replaced in
//! one Delta overwrite commit whose `commitInfo` records `confluo.source`, with a progress
//! bar per table.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::hash::Hash;

use arrow::datatypes::SchemaRef;
use confluo_connectors::snapshot::{Snapshot, SnapshotEvent, TableSnapshot};
use confluo_core::TableName;
use confluo_lakehouse::delta::{self, CommitRequest, TableVersion, WriteMode};
use confluo_lakehouse::write::TableWriter;
use confluo_lakehouse::{Lakehouse, NewTable};
use deltalake::DeltaTable;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use serde::Serialize;
use serde_json::Value;

use super::sync::table_bar;
use crate::progress::count;
use crate::report::CliError;

/// One lakehouse table written by a sync.
#[derive(Debug, Clone, Serialize)]
pub struct SyncedTable<Id> {
    /// The source table.
    pub source: Id,
    /// The lakehouse table.
    pub table: String,
    /// Rows written.
    pub rows: u64,
    /// The Delta version committed.
    pub version: i64,
    /// Whether the sync created the table.
    pub created: bool,
    /// Key ranges the source table was read in, in parallel (1: read whole).
    pub ranges: usize,
    /// Values stored as null because they have no Arrow counterpart, by column.
    pub nulled: Vec<(String, u64)>,
}

/// Prints each synced table and its notes; `why_null` says which values become null.
pub fn print_tables<Id: Display>(tables: &[SyncedTable<Id>], why_null: &str) {
    for t in tables {
        println!(
            "  {} -> {}: {} rows (version {}{})",
            t.source,
            t.table,
            count(t.rows),
            t.version,
            if t.created { ", new table" } else { "" }
        );
        for (col, n) in &t.nulled {
            println!(
                "    note: {} value{} of `{col}` ({why_null}) stored as null",
                count(*n),
                if *n == 1 { "" } else { "s" }
            );
        }
    }
}

/// Where the tables go and how they are described.
pub struct Landing<'a, Id> {
    /// Target catalog.
    pub catalog: &'a str,
    /// Target schema.
    pub schema: &'a str,
    /// The lakehouse table name of a source table.
    pub table_name: &'a dyn Fn(&Id) -> String,
    /// The comment of a table the sync creates.
    pub comment: &'a dyn Fn(&Id) -> String,
    /// What `confluo.source` records for a finished table.
    pub source: &'a dyn Fn(&TableSnapshot<Id>) -> Value,
    /// No progress bars.
    pub quiet: bool,
}

/// A table being written: its writer and what the commit needs.
struct Pending {
    name: TableName,
    table: DeltaTable,
    writer: TableWriter,
    new_schema: Option<SchemaRef>,
    created: bool,
    ranges: usize,
    bar: Option<ProgressBar>,
}

/// Writes every table of `snap` as it arrives; returns them in `order`, then waits for the
/// snapshot's workers.
pub async fn write_snapshot<Id, Info, E>(
    lh: &Lakehouse,
    mut snap: Snapshot<Id, Info, E>,
    order: &[Id],
    landing: Landing<'_, Id>,
) -> Result<Vec<SyncedTable<Id>>, CliError>
where
    Id: Clone + Eq + Hash + Ord + Display,
    CliError: From<E>,
{
    let bars = (!landing.quiet)
        .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)));
    let mut pending: HashMap<Id, Pending> = HashMap::new();
    let mut done: BTreeMap<Id, SyncedTable<Id>> = BTreeMap::new();
    while let Some(event) = snap.next().await {
        match event? {
            SnapshotEvent::TableStarted {
                table,
                schema,
                row_estimate,
                ranges,
            } => {
                let name = TableName::new(
                    landing.catalog,
                    landing.schema,
                    (landing.table_name)(&table),
                );
                let bar = bars.as_ref().map(|m| table_bar(m, &table, row_estimate));
                let comment = (landing.comment)(&table);
                let mut p = open_target(lh, name, schema, comment, bar).await?;
                p.ranges = ranges;
                pending.insert(table, p);
            }
            SnapshotEvent::Batch { table, batch } => {
                if let Some(p) = pending.get_mut(&table) {
                    p.writer.write(&batch).await?;
                    if let Some(b) = &p.bar {
                        b.inc(batch.num_rows() as u64);
                    }
                }
            }
            SnapshotEvent::TableFinished(t) => {
                let Some(p) = pending.remove(&t.table) else {
                    continue;
                };
                let adds = p.writer.finish().await?;
                let app_metadata =
                    HashMap::from([("confluo.source".to_string(), (landing.source)(&t))]);
                let version = delta::commit(
                    &p.table,
                    CommitRequest {
                        adds,
                        mode: WriteMode::Overwrite,
                        new_schema: p.new_schema,
                        app_metadata,
                        ..Default::default()
                    },
                )
                .await?;
                if let Some(b) = &p.bar {
                    b.finish_and_clear();
                }
                done.insert(
                    t.table.clone(),
                    SyncedTable {
                        source: t.table,
                        table: p.name.to_string(),
                        rows: t.rows,
                        version,
                        created: p.created,
                        ranges: p.ranges,
                        nulled: t.nulled,
                    },
                );
            }
        }
    }
    snap.finish().await?;
    if let Some(m) = &bars {
        let _ = m.clear();
    }
    Ok(order.iter().filter_map(|id| done.remove(id)).collect())
}

/// Opens (or creates) the lakehouse table for a source table and a writer for its rows.
async fn open_target(
    lh: &Lakehouse,
    name: TableName,
    arrow_schema: SchemaRef,
    comment: String,
    bar: Option<ProgressBar>,
) -> Result<Pending, CliError> {
    let target = delta::delta_compatible_schema(&arrow_schema);
    let (table, new_schema, created) = match lh.metastore().get_table(&name).await? {
        Some(info) => {
            let table = lh.open_delta(&info, TableVersion::Latest).await?;
            let current = delta::table_schema(&table)?;
            // The source's columns may have changed since the last sync: the overwrite
            // commit replaces the schema along with the rows.
            let changed = current.fields() != target.fields();
            (table, changed.then(|| target.clone()), false)
        }
        None => {
            let (_, table) = lh
                .create_table(NewTable {
                    name: name.clone(),
                    schema: target.as_ref().clone(),
                    partition_by: Vec::new(),
                    comment: Some(comment),
                    properties: BTreeMap::new(),
                    location: None,
                })
                .await?;
            (table, None, true)
        }
    };
    let writer = TableWriter::new(&table, target)?;
    Ok(Pending {
        name,
        table,
        writer,
        new_schema,
        created,
        ranges: 1,
        bar,
    })
}
