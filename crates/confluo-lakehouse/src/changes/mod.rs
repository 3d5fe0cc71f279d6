//! Applying keyed changes to a Delta table: the net upserts and deletes of a batch of source
//! transactions, in one commit that carries the application transaction of the batch, so a
//! batch is applied exactly once however often it is replayed. The change-capture engines of
//! every database source land their rows through here.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use datafusion::common::Column;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use serde_json::Value;

use crate::delta::{self, CommitRequest, WriteMode};
use crate::error::{LakehouseError, Result};
use crate::write::TableWriter;

mod carry;
mod rewrite;

pub use carry::{LOOKUP_ROW, rows_by_key};
pub use confluo_connectors::changes::{
    CHANGE_COLUMNS, OLD_KEY_COLUMN, OP_COLUMN, UNCHANGED_COLUMN,
};

fn is_change_column(name: &str) -> bool {
    CHANGE_COLUMNS.contains(&name)
}

/// One batch of net changes to apply.
pub struct NetChanges {
    /// Rows: the table's columns, `_op`, and optionally `_unchanged` (the columns whose
    /// values the source did not send: the row keeps its earlier ones) and `_old_key` (where
    /// a key change's earlier row is); `_lsn` and `_commit_ts` are ignored.
    pub rows: RecordBatch,
    /// Key columns.
    pub keys: Vec<String>,
    /// The source truncated the table first: the result is exactly the upserts.
    pub truncated: bool,
    /// `(app id, version)` pairs recorded with the commit; when the table holds every one
    /// of them already, the batch is skipped. Empty for sources without positions
    /// (at-least-once upserts).
    pub txns: Vec<(String, i64)>,
    /// Provenance in the commit's `commitInfo`.
    pub metadata: HashMap<String, Value>,
}

/// What an apply did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ApplyReport {
    /// The new table version (`None` when there was nothing to do).
    pub version: Option<i64>,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows deleted.
    pub deleted: u64,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn data_columns(rows: &RecordBatch) -> Vec<String> {
    rows.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !is_change_column(n))
        .collect()
}

/// The table's schema widened with source columns it lacks (new nullable columns). An
/// existing column whose type changed is an error naming both types and where they differ;
/// types Delta stores alike (a list's `item` or `element`) are the same type.
fn evolved_schema(table: &DeltaTable, rows: &RecordBatch, name: &str) -> Result<Option<SchemaRef>> {
    let current = delta::table_schema(table)?;
    let incoming = arrow::datatypes::Schema::new(
        rows.schema()
            .fields()
            .iter()
            .filter(|f| !is_change_column(f.name()))
            .map(|f| match current.field_with_name(f.name()) {
                Ok(t) if delta::same_stored_type(t.data_type(), f.data_type()) => {
                    Arc::new(f.as_ref().clone().with_data_type(t.data_type().clone()))
                }
                _ => f.clone(),
            })
            .collect::<Vec<_>>(),
    );
    delta::evolve_schema(&current, &incoming, name)
}

/// The rows with each table column in the table's own type (nested field names, widened
/// integers), so MERGE compares and writes like with like.
fn align(rows: RecordBatch, table: &SchemaRef, name: &str) -> Result<RecordBatch> {
    let schema = rows.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (f, c) in schema.fields().iter().zip(rows.columns()) {
        match table.field_with_name(f.name()) {
            Ok(t) if t.data_type() != f.data_type() && !is_change_column(f.name()) => {
                let cast = arrow::compute::cast(c, t.data_type()).map_err(|e| {
                    LakehouseError::Schema(format!(
                        "{name}: column `{}` ({}) cannot be written as {}: {e}",
                        f.name(),
                        f.data_type(),
                        t.data_type()
                    ))
                })?;
                fields.push(Arc::new(
                    f.as_ref().clone().with_data_type(t.data_type().clone()),
                ));
                columns.push(cast);
            }
            _ => {
                fields.push(f.clone());
                columns.push(c.clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)
        .map_err(|e| LakehouseError::Schema(format!("{name}: {e}")))
}

/// Applies one batch of net changes in a single commit; a batch whose transaction the table
/// already holds is skipped (returns no version).
pub async fn apply(table: &mut DeltaTable, mut changes: NetChanges) -> Result<ApplyReport> {
    let name = table.table_url().to_string();
    if !changes.txns.is_empty() {
        let snapshot = table.snapshot().map_err(LakehouseError::delta(&name))?;
        let mut all_done = true;
        for (app, version) in &changes.txns {
            let done = snapshot
                .transaction_version(table.log_store().as_ref(), app)
                .await
                .map_err(LakehouseError::delta(&name))?;
            all_done &= done.is_some_and(|v| v >= *version);
        }
        if all_done {
            return Ok(ApplyReport::default());
        }
    }
    // New source columns first, in a commit of their own (no data changes).
    if let Some(schema) = evolved_schema(table, &changes.rows, &name)? {
        delta::commit(
            table,
            CommitRequest {
                new_schema: Some(schema),
                ..Default::default()
            },
        )
        .await?;
        table.load().await.map_err(LakehouseError::delta(&name))?;
    }
    changes.rows = align(changes.rows, &delta::table_schema(table)?, &name)?;
    // Key changes whose new row lacks values: they are the target's under the old key.
    changes.rows = carry::from_old_keys(table, changes.rows, &changes.keys, &name).await?;
    let ops = changes
        .rows
        .column_by_name(OP_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| {
            LakehouseError::Schema(format!("changes for {name} have no {OP_COLUMN} column"))
        })?;
    let is_upsert: BooleanArray = ops.iter().map(|o| Some(o != Some("DELETE"))).collect();
    if changes.truncated {
        return overwrite_with(table, &changes, &is_upsert).await;
    }
    // Only new keys: the target mirrors the source as of the batch's start, where none of
    // them existed, so the rows are appended without a MERGE (which would read the table).
    if !ops.is_empty() && ops.iter().all(|o| o == Some("INSERT")) {
        return append(table, &changes).await;
    }
    if changes.rows.num_rows() == 0 {
        return Ok(ApplyReport::default());
    }
    if rewrite::applicable(table, &changes)
        && let Some(report) = rewrite::apply(table, &changes, &is_upsert).await?
    {
        return Ok(report);
    }
    let columns = data_columns(&changes.rows);
    // MERGE reads unchanged values as one flag column per column (the rows' `_unchanged`
    // lists), so the update keeps the target's value where a flag is set.
    let flags = carry::unchanged_flags(&changes.rows)?;
    let unchanged: Vec<String> = flags
        .iter()
        .map(|(i, _)| changes.rows.schema().field(*i).name().clone())
        .collect();
    let mut source_rows = changes.rows.clone();
    for (i, flag) in flags {
        let field = format!(
            "{}{}",
            carry::FLAG_PREFIX,
            source_rows.schema().field(i).name()
        );
        let mut fields = source_rows.schema().fields().to_vec();
        let mut cols = source_rows.columns().to_vec();
        fields.push(Arc::new(arrow::datatypes::Field::new(
            field,
            arrow::datatypes::DataType::Boolean,
            true,
        )));
        cols.push(Arc::new(flag));
        source_rows = RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), cols)
            .map_err(|e| LakehouseError::Schema(format!("{name}: {e}")))?;
    }
    let ctx = SessionContext::new();
    let source = ctx.read_batch(source_rows)?;
    let mut predicate = changes
        .keys
        .iter()
        .map(|k| format!("t.{q} = s.{q}", q = quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    // The batch's key range as literals lets the MERGE skip files whose statistics lie
    // outside it (changes are often to recent rows).
    if let [key] = changes.keys.as_slice()
        && let Some((lo, hi)) = key_range(&changes.rows, key)
    {
        let q = quote(key);
        predicate.push_str(&format!(" AND t.{q} >= {lo} AND t.{q} <= {hi}"));
    }
    let props = CommitProperties::default()
        .with_application_transactions(
            changes
                .txns
                .iter()
                .map(|(app, version)| Transaction::new(app, *version))
                .collect(),
        )
        .with_metadata(changes.metadata.clone());
    let (merged, metrics) = table
        .clone()
        .merge(source, predicate)
        .with_source_alias("s")
        .with_target_alias("t")
        .with_commit_properties(props)
        .when_matched_delete(|d| d.predicate(format!("s.{} = 'DELETE'", quote(OP_COLUMN))))
        .map_err(LakehouseError::delta(&name))?
        .when_matched_update(|mut u| {
            for c in &columns {
                let q = quote(c);
                let value = if unchanged.contains(c) {
                    format!(
                        "CASE WHEN s.{f} THEN t.{q} ELSE s.{q} END",
                        f = quote(&format!("{}{c}", carry::FLAG_PREFIX))
                    )
                } else {
                    format!("s.{q}")
                };
                u = u.update(Column::new_unqualified(c.as_str()), value);
            }
            u
        })
        .map_err(LakehouseError::delta(&name))?
        .when_not_matched_insert(|mut i| {
            i = i.predicate(format!("s.{} <> 'DELETE'", quote(OP_COLUMN)));
            for c in &columns {
                i = i.set(
                    Column::new_unqualified(c.as_str()),
                    format!("s.{}", quote(c)),
                );
            }
            i
        })
        .map_err(LakehouseError::delta(&name))?
        .await
        .map_err(LakehouseError::delta(&name))?;
    *table = merged;
    Ok(ApplyReport {
        version: Some(delta::table_version(table)),
        inserted: metrics.num_target_rows_inserted as u64,
        updated: metrics.num_target_rows_updated as u64,
        deleted: metrics.num_target_rows_deleted as u64,
    })
}

/// The smallest and largest value of an integer key column.
fn key_range(rows: &RecordBatch, key: &str) -> Option<(i64, i64)> {
    let column = rows.column_by_name(key)?;
    if !column.data_type().is_integer() {
        return None;
    }
    let as_i64 = arrow::compute::cast(column, &arrow::datatypes::DataType::Int64).ok()?;
    let values = as_i64.as_primitive::<arrow::datatypes::Int64Type>();
    Some((arrow::compute::min(values)?, arrow::compute::max(values)?))
}

/// The rows of a batch without the change columns.
fn data_only(rows: &RecordBatch, name: &str) -> Result<RecordBatch> {
    let keep: Vec<usize> = rows
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !is_change_column(f.name()))
        .map(|(i, _)| i)
        .collect();
    rows.project(&keep)
        .map_err(|e| LakehouseError::Schema(format!("{name}: {e}")))
}

/// A batch of inserts only: appended in one commit with the batch's transaction.
async fn append(table: &mut DeltaTable, changes: &NetChanges) -> Result<ApplyReport> {
    write_rows(table, changes, &changes.rows, WriteMode::Append).await
}

/// A truncate in the batch: the table becomes exactly the batch's upserts, in one overwrite.
async fn overwrite_with(
    table: &mut DeltaTable,
    changes: &NetChanges,
    is_upsert: &BooleanArray,
) -> Result<ApplyReport> {
    let name = table.table_url().to_string();
    let kept = filter_record_batch(&changes.rows, is_upsert)
        .map_err(|e| LakehouseError::Schema(format!("{name}: {e}")))?;
    write_rows(table, changes, &kept, WriteMode::Overwrite).await
}

/// Writes `rows` (change columns dropped) in one commit carrying the batch's transaction.
async fn write_rows(
    table: &mut DeltaTable,
    changes: &NetChanges,
    rows: &RecordBatch,
    mode: WriteMode,
) -> Result<ApplyReport> {
    let name = table.table_url().to_string();
    let rows = data_only(rows, &name)?;
    let mut writer = TableWriter::new(table, delta::table_schema(table)?)?;
    writer.write(&rows).await?;
    let inserted = writer.rows();
    let adds = writer.finish().await?;
    let version = delta::commit(
        table,
        CommitRequest {
            adds,
            mode,
            app_metadata: changes.metadata.clone(),
            txns: changes.txns.clone(),
            ..Default::default()
        },
    )
    .await?;
    table.load().await.map_err(LakehouseError::delta(&name))?;
    Ok(ApplyReport {
        version: Some(version),
        inserted,
        ..Default::default()
    })
}
