//! The one way a database snapshot lands in the lakehouse, for a `mode: snapshot` sync and
//! for the initial copy of a `mode: cdc` entry alike: each source table into its target
//! (created when missing, reshaped when the source's columns changed) in one overwrite
//! commit that carries the new schema, the source position as commit metadata and, for
//! change capture, the application transaction the stream resumes from.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::hash::Hash;

use confluo_connectors::snapshot::{Snapshot, SnapshotEvent};
use confluo_core::TableName;
use confluo_lakehouse::delta::{self, CommitRequest, WriteMode};
use confluo_lakehouse::write::TableWriter;
use confluo_lakehouse::{Lakehouse, NewTable, TableVersion};
use datafusion::arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use serde::Serialize;
use serde_json::json;

use super::capture::{Progress, history_rows, with_history_columns};
use super::state::{EntryState, Store};
use super::{ManagedError, Result};

/// One lakehouse table a copy wrote.
#[derive(Debug, Clone, Serialize)]
pub struct CopiedTable<Id> {
    /// The source table.
    pub source: Id,
    /// The lakehouse table.
    pub table: String,
    /// Rows written.
    pub rows: u64,
    /// The Delta version committed.
    pub version: i64,
    /// Whether the copy created the table.
    pub created: bool,
    /// Key ranges the source table was read in, in parallel (1: read whole).
    pub ranges: usize,
    /// Values stored as null because they have no Arrow counterpart, by column.
    pub nulled: Vec<(String, u64)>,
}

/// How a copy lands its tables.
pub struct CopyPlan<'a, Id> {
    /// The ingest entry doing the copy.
    pub entry: &'a str,
    /// The source connection's name.
    pub connection: &'a str,
    /// How the entry keeps the targets (`snapshot`, `change data capture`), for the comment
    /// of a table the copy creates.
    pub capture: &'a str,
    /// The commit metadata key the source position is recorded under (`confluo.source`
    /// for snapshots, `confluo.copy` for the initial copy of change capture).
    pub metadata_key: &'a str,
    /// The source position of the snapshot, recorded beside the entry, connection, table
    /// and row counts.
    pub position: serde_json::Map<String, serde_json::Value>,
    /// The application transaction (id, version) every commit records: the source position
    /// the change stream resumes from. `None` for a plain snapshot.
    pub txn: Option<(String, i64)>,
    /// Add `__START_AT` / `__END_AT` (SCD 2 targets); copied rows start at the
    /// transaction's version.
    pub history: bool,
    /// The lakehouse table of a source table.
    pub target: &'a (dyn Fn(&Id) -> TableName + Sync),
}

/// A table being written.
struct Open {
    name: TableName,
    table: DeltaTable,
    writer: TableWriter,
    new_schema: Option<SchemaRef>,
    created: bool,
    ranges: usize,
    rows: u64,
}

/// Lands every table of `snap` as `plan` says, reporting progress as typed events. With
/// an entry's `state`, each table is marked copied there as soon as its commit is in, so a
/// crash copies again only the tables not yet committed. Returns the tables in `order`;
/// the caller finishes the snapshot.
pub async fn land<Id, Info, E>(
    lh: &Lakehouse,
    snap: &mut Snapshot<Id, Info, E>,
    plan: &CopyPlan<'_, Id>,
    order: &[Id],
    progress: &mut (dyn FnMut(Progress) + Send),
    mut state: Option<(&Store, &mut EntryState)>,
) -> Result<Vec<CopiedTable<Id>>>
where
    Id: Clone + Eq + Hash + Display,
    ManagedError: From<E>,
{
    let mut open: HashMap<Id, Open> = HashMap::new();
    let mut done: HashMap<Id, CopiedTable<Id>> = HashMap::new();
    let history_from = plan.txn.as_ref().map_or(0, |(_, v)| *v);
    while let Some(event) = snap.next().await {
        match event? {
            SnapshotEvent::TableStarted {
                table,
                schema,
                row_estimate,
                ranges,
            } => {
                progress(Progress::CopyStarted {
                    table: table.to_string(),
                    estimate: row_estimate,
                });
                let schema = if plan.history {
                    with_history_columns(&schema)
                } else {
                    schema
                };
                let mut o = open_target(lh, plan, (plan.target)(&table), &table, &schema).await?;
                o.ranges = ranges;
                open.insert(table, o);
            }
            SnapshotEvent::Batch { table, batch } => {
                if let Some(o) = open.get_mut(&table) {
                    let batch = if plan.history {
                        history_rows(&batch, history_from)?
                    } else {
                        batch
                    };
                    o.writer.write(&batch).await?;
                    o.rows += batch.num_rows() as u64;
                    progress(Progress::CopyRows {
                        table: table.to_string(),
                        rows: o.rows,
                    });
                }
            }
            SnapshotEvent::TableFinished(result) => {
                let Some(o) = open.remove(&result.table) else {
                    continue;
                };
                let adds = o.writer.finish().await?;
                let mut metadata = serde_json::Map::from_iter([
                    ("entry".to_string(), json!(plan.entry)),
                    ("connection".to_string(), json!(plan.connection)),
                    ("table".to_string(), json!(result.table.to_string())),
                    ("rows".to_string(), json!(o.rows)),
                    ("nulled".to_string(), json!(result.nulled)),
                ]);
                metadata.extend(plan.position.clone());
                let version = delta::commit(
                    &o.table,
                    CommitRequest {
                        adds,
                        mode: WriteMode::Overwrite,
                        new_schema: o.new_schema,
                        app_metadata: HashMap::from([(
                            plan.metadata_key.to_string(),
                            serde_json::Value::Object(metadata),
                        )]),
                        txns: plan.txn.iter().cloned().collect(),
                        ..Default::default()
                    },
                )
                .await?;
                lh.metastore().touch_table(&o.name).await?;
                if let Some((store, st)) = state.as_mut() {
                    store.mark_copied(st, &result.table.to_string()).await?;
                }
                progress(Progress::CopyDone {
                    table: result.table.to_string(),
                    rows: o.rows,
                });
                done.insert(
                    result.table.clone(),
                    CopiedTable {
                        source: result.table,
                        table: o.name.to_string(),
                        rows: o.rows,
                        version,
                        created: o.created,
                        ranges: o.ranges,
                        nulled: result.nulled,
                    },
                );
            }
        }
    }
    Ok(order.iter().filter_map(|id| done.remove(id)).collect())
}

/// Opens the target of a source table, creating it when missing. An existing target whose
/// columns differ from the source's gets the source's: the schema travels in the overwrite
/// commit that replaces the rows, so no reader ever sees the table reshaped but empty.
async fn open_target<Id: Display>(
    lh: &Lakehouse,
    plan: &CopyPlan<'_, Id>,
    name: TableName,
    source: &Id,
    schema: &SchemaRef,
) -> Result<Open> {
    let wanted = delta::delta_compatible_schema(schema);
    if let Some(info) = lh.metastore().get_table(&name).await? {
        let table = lh.open_delta(&info, TableVersion::Latest).await?;
        let current = delta::table_schema(&table)?;
        let same = current.fields().len() == wanted.fields().len()
            && current.fields().iter().zip(wanted.fields()).all(|(c, w)| {
                c.name() == w.name()
                    && c.is_nullable() == w.is_nullable()
                    && delta::same_stored_type(c.data_type(), w.data_type())
                    && delta::same_stored_type(w.data_type(), c.data_type())
            });
        // Unchanged, the rows are written as the table stores them.
        let (writer_schema, new_schema) = if same {
            (current, None)
        } else {
            (wanted.clone(), Some(wanted))
        };
        return Ok(Open {
            writer: TableWriter::new(&table, writer_schema)?,
            name,
            table,
            new_schema,
            created: false,
            ranges: 1,
            rows: 0,
        });
    }
    // The target schema exists: every entry ensures it before it copies.
    let properties = BTreeMap::from([
        ("confluo.ingest.entry".to_string(), plan.entry.to_string()),
        (
            "confluo.ingest.source".to_string(),
            format!("{}:{source}", plan.connection),
        ),
    ]);
    let (_, table) = lh
        .create_table(NewTable {
            name: name.clone(),
            schema: wanted.as_ref().clone(),
            partition_by: vec![],
            comment: Some(format!(
                "{source} of connection `{}`, kept in sync by ingest entry `{}` ({})",
                plan.connection, plan.entry, plan.capture
            )),
            properties,
            location: None,
        })
        .await?;
    Ok(Open {
        writer: TableWriter::new(&table, wanted)?,
        name,
        table,
        new_schema: None,
        created: true,
        ranges: 1,
        rows: 0,
    })
}
