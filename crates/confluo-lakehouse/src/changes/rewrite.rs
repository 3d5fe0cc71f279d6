//! Applying a batch of net changes by rewriting only the data files its keys touch, without
//! a join: the batch's keys go into a hash table; each data file whose key range can hold one
//! of them is scanned on its key columns alone; the files that do hold one are copied without
//! those rows (the Parquet reader skips them), the batch's upserts are written beside them,
//! and one commit removes the old files and adds the new ones with the batch's transaction.
//!
//! It is what a Delta MERGE does for a plain table (copy-on-write; delta-rs writes no
//! deletion vectors), in about the time it takes to decode and re-encode the touched files:
//! a CDC batch is usually a few thousand keys against a table of millions of rows, where the
//! general MERGE plan (a full join over every column) is several times slower. Tables it does
//! not cover (column mapping, deletion vectors, partitions, change data feed, constraints,
//! duplicate or null keys) go through MERGE. Values the source did not send (unchanged TOAST)
//! are read from the replaced rows and carried over.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use bytes::Bytes;
use deltalake::DeltaTable;
use deltalake::kernel::Remove;
use deltalake::protocol::{DeltaOperation, MergePredicate};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};

use super::{ApplyReport, NetChanges, carry, data_only};
use crate::delta::{self, CommitRequest, WriteMode};
use crate::error::{LakehouseError, Result};
use crate::write::TableWriter;

/// Rows decoded per Parquet batch while copying a file.
const READ_BATCH_ROWS: usize = 64 * 1024;

/// Whether the table and batch are ones this path applies exactly as MERGE would: plain
/// files (reader version 1, no partitions, no change data feed, no constraints) and keys
/// that are never null in the batch (uniqueness is checked when they are indexed).
pub(super) fn applicable(table: &DeltaTable, changes: &NetChanges) -> bool {
    let Ok(snapshot) = table.snapshot() else {
        return false;
    };
    let protocol = snapshot.protocol();
    let metadata = snapshot.metadata();
    let config = metadata.configuration();
    if protocol.min_reader_version() > 1
        || protocol.min_writer_version() > 2
        || !metadata.partition_columns().is_empty()
        || config
            .get("delta.enableChangeDataFeed")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || config.keys().any(|k| k.starts_with("delta.constraints."))
    {
        return false;
    }
    let rows = &changes.rows;
    !changes.keys.is_empty()
        && changes.keys.iter().all(|k| {
            rows.column_by_name(k)
                .is_some_and(|c| c.null_count() == 0 && !c.data_type().is_nested())
        })
}

/// The batch's keys as rows of one converter, looked up by their bytes.
struct KeyIndex {
    converter: RowConverter,
    columns: Vec<String>,
    schema: SchemaRef,
    /// Key bytes → row of the batch.
    rows: HashMap<Vec<u8>, usize>,
}

impl KeyIndex {
    /// `None` when two rows of the batch share a key (MERGE reports that itself).
    fn new(batch: &RecordBatch, keys: &[String], name: &str) -> Result<Option<Self>> {
        let fields: Vec<_> = keys
            .iter()
            .map(|k| {
                batch
                    .schema()
                    .field_with_name(k)
                    .cloned()
                    .map_err(|e| LakehouseError::Schema(format!("{name}: key `{k}`: {e}")))
            })
            .collect::<Result<_>>()?;
        let converter = RowConverter::new(
            fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )
        .map_err(|e| LakehouseError::Schema(format!("{name}: {e}")))?;
        let columns: Vec<_> = keys
            .iter()
            .map(|k| batch.column_by_name(k).expect("checked above").clone())
            .collect();
        let converted = converter
            .convert_columns(&columns)
            .map_err(|e| LakehouseError::Schema(format!("{name}: {e}")))?;
        let mut rows = HashMap::with_capacity(batch.num_rows());
        for (i, row) in converted.iter().enumerate() {
            if rows.insert(row.as_ref().to_vec(), i).is_some() {
                return Ok(None);
            }
        }
        Ok(Some(KeyIndex {
            converter,
            columns: keys.to_vec(),
            schema: Arc::new(arrow::datatypes::Schema::new(fields)),
            rows,
        }))
    }

    /// For each row of `keys` (the key columns as read from a file), the batch row holding
    /// its key.
    fn lookup(&self, keys: &RecordBatch, name: &str) -> Result<Vec<Option<usize>>> {
        let columns = self
            .columns
            .iter()
            .zip(self.schema.fields())
            .map(|(k, f)| {
                let c = keys.column_by_name(k).ok_or_else(|| {
                    LakehouseError::Schema(format!("{name}: a data file has no key column `{k}`"))
                })?;
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    arrow::compute::cast(c, f.data_type()).map_err(|e| {
                        LakehouseError::Schema(format!("{name}: key `{k}` in a data file: {e}"))
                    })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let converted = self
            .converter
            .convert_columns(&columns)
            .map_err(|e| LakehouseError::Schema(format!("{name}: {e}")))?;
        Ok(converted
            .iter()
            .map(|r| self.rows.get(r.as_ref()).copied())
            .collect())
    }
}

/// A data file that holds keys of the batch, and which of its rows.
struct Touched {
    path: ObjectPath,
    remove: Remove,
    /// Positions (in file order, ascending) of the rows the batch replaces or deletes, each
    /// with the batch row that replaces or deletes it.
    hits: Vec<(usize, usize)>,
    rows: usize,
}

/// Applies the batch (already aligned to the table schema, its transaction not yet in the
/// table) by rewriting the files its keys touch. `is_upsert` marks the rows to write.
pub(super) async fn apply(
    table: &mut DeltaTable,
    changes: &NetChanges,
    is_upsert: &BooleanArray,
) -> Result<Option<ApplyReport>> {
    let name = table.table_url().to_string();
    let Some(index) = KeyIndex::new(&changes.rows, &changes.keys, &name)? else {
        return Ok(None);
    };
    let store = table.log_store().object_store(None);
    let range = match changes.keys.as_slice() {
        [key] => super::key_range(&changes.rows, key).map(|r| (key.as_str(), r)),
        _ => None,
    };
    let candidates: Vec<_> = {
        let snapshot = table.snapshot().map_err(LakehouseError::delta(&name))?;
        snapshot
            .log_data()
            .iter()
            .filter(|f| match (range, f.stats()) {
                (Some((key, (lo, hi))), Some(stats)) => may_hold(&stats, key, lo, hi),
                _ => true,
            })
            .map(|f| (f.object_store_path(), f.remove_action(true)))
            .collect()
    };
    let started = std::time::Instant::now();
    let files = candidates.len();
    // Which rows of which files the batch replaces: the key columns alone are read.
    let mut found = vec![false; changes.rows.num_rows()];
    let mut touched = Vec::new();
    for (path, remove) in candidates {
        let data = fetch(&store, &path, &name).await?;
        let (hits, rows) = matching_positions(data, &path, &index, &mut found, &name)?;
        if !hits.is_empty() {
            touched.push(Touched {
                path,
                remove,
                hits,
                rows,
            });
        }
    }
    let scanned = started.elapsed();
    let mut report = ApplyReport::default();
    for (i, f) in found.iter().enumerate() {
        match (is_upsert.value(i), *f) {
            (true, true) => report.updated += 1,
            (true, false) => report.inserted += 1,
            (false, true) => report.deleted += 1,
            (false, false) => {}
        }
    }
    let rows = carry_unchanged(&store, &touched, &changes.rows, is_upsert, table, &name).await?;
    let upserts = data_only(
        &filter_record_batch(&rows, is_upsert)
            .map_err(|e| LakehouseError::Schema(format!("{name}: {e}")))?,
        &name,
    )?;
    // Deletes of keys the table does not hold leave nothing to write; the commit still
    // records the batch's transaction so it is not applied again.
    let mut writer = TableWriter::new(table, delta::table_schema(table)?)?;
    // Decoding the kept rows (a blocking task) and encoding them (here) run side by side.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(4);
    let copier = {
        let store = store.clone();
        let name = name.clone();
        let files: Vec<_> = touched
            .iter()
            .map(|t| {
                (
                    t.path.clone(),
                    t.hits.iter().map(|h| h.0).collect::<Vec<_>>(),
                    t.rows,
                )
            })
            .collect();
        tokio::spawn(async move {
            for (path, positions, rows) in files {
                let copied = match fetch(&store, &path, &name).await {
                    Ok(data) => {
                        let tx = tx.clone();
                        let table = name.clone();
                        tokio::task::spawn_blocking(move || {
                            copy_kept_rows(data, &path, &positions, rows, &tx, &table)
                        })
                        .await
                        .unwrap_or_else(|e| {
                            Err(LakehouseError::Invalid(format!(
                                "{name}: copying data files failed: {e}"
                            )))
                        })
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = copied {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        })
    };
    while let Some(batch) = rx.recv().await {
        writer.write(&batch?).await?;
    }
    copier
        .await
        .map_err(|e| LakehouseError::Invalid(format!("{name}: copying data files failed: {e}")))?;
    writer.write(&upserts).await?;
    let written = writer.rows();
    let adds = writer.finish().await?;
    let copied = started.elapsed();
    let keys = changes.keys.join(", ");
    let touched_files = touched.len();
    let version = delta::commit(
        table,
        CommitRequest {
            adds,
            removes: touched.into_iter().map(|t| t.remove).collect(),
            mode: WriteMode::Append,
            operation: Some(DeltaOperation::Merge {
                predicate: None,
                merge_predicate: Some(format!("target keys ({keys}) = source keys")),
                matched_predicates: vec![
                    MergePredicate {
                        action_type: "delete".into(),
                        predicate: Some("_op = 'DELETE'".into()),
                    },
                    MergePredicate {
                        action_type: "update".into(),
                        predicate: None,
                    },
                ],
                not_matched_predicates: vec![MergePredicate {
                    action_type: "insert".into(),
                    predicate: Some("_op <> 'DELETE'".into()),
                }],
                not_matched_by_source_predicates: vec![],
            }),
            metrics: Some(serde_json::json!({
                "numTargetRowsInserted": report.inserted,
                "numTargetRowsUpdated": report.updated,
                "numTargetRowsDeleted": report.deleted,
                "numOutputRows": written,
            })),
            app_metadata: changes.metadata.clone(),
            txns: changes.txns.clone(),
            ..Default::default()
        },
    )
    .await?;
    table.load().await.map_err(LakehouseError::delta(&name))?;
    tracing::debug!(
        table = %name,
        files,
        rewritten = touched_files,
        rows_written = written,
        scan_s = scanned.as_secs_f64(),
        write_s = (copied - scanned).as_secs_f64(),
        commit_s = (started.elapsed() - copied).as_secs_f64(),
        "changes applied by rewriting the files their keys touch"
    );
    report.version = Some(version);
    Ok(Some(report))
}

/// Whether a file whose statistics are `stats` may hold a key in `lo..=hi` (no statistics
/// for the key: it may).
fn may_hold(stats: &str, key: &str, lo: i64, hi: i64) -> bool {
    let Ok(stats) = serde_json::from_str::<serde_json::Value>(stats) else {
        return true;
    };
    let min = stats["minValues"][key].as_i64();
    let max = stats["maxValues"][key].as_i64();
    match (min, max) {
        (Some(min), Some(max)) => max >= lo && min <= hi,
        _ => true,
    }
}

/// The bytes of one data file.
async fn fetch(store: &Arc<dyn ObjectStore>, path: &ObjectPath, name: &str) -> Result<Bytes> {
    async { store.get(path).await?.bytes().await }
        .await
        .map_err(|e| LakehouseError::Invalid(format!("{name}: cannot read data file {path}: {e}")))
}

fn file_error(name: &str, path: &ObjectPath, e: impl std::fmt::Display) -> LakehouseError {
    LakehouseError::Invalid(format!("{name}: data file {path}: {e}"))
}

/// The positions of the rows of one file whose key is in the batch (marking those batch
/// rows found), and the file's row count.
fn matching_positions(
    data: Bytes,
    path: &ObjectPath,
    index: &KeyIndex,
    found: &mut [bool],
    name: &str,
) -> Result<(Vec<(usize, usize)>, usize)> {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(data).map_err(|e| file_error(name, path, e))?;
    let roots = index
        .columns
        .iter()
        .map(|k| {
            builder.schema().index_of(k).map_err(|_| {
                LakehouseError::Schema(format!("{name}: data file {path} has no key column `{k}`"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(|e| file_error(name, path, e))?;
    let mut hits = Vec::new();
    let mut offset = 0;
    for batch in reader {
        let batch = batch.map_err(|e| file_error(name, path, e))?;
        for (i, hit) in index.lookup(&batch, name)?.into_iter().enumerate() {
            if let Some(row) = hit {
                found[row] = true;
                hits.push((offset + i, row));
            }
        }
        offset += batch.num_rows();
    }
    Ok((hits, offset))
}

/// The batch with every value the source did not send (listed in its `_unchanged`)
/// replaced by the value of the row it replaces, read from the touched files. A flagged row
/// whose key the table does not hold keeps the batch's value, as with MERGE's insert.
async fn carry_unchanged(
    store: &Arc<dyn ObjectStore>,
    touched: &[Touched],
    rows: &RecordBatch,
    is_upsert: &BooleanArray,
    table: &DeltaTable,
    name: &str,
) -> Result<RecordBatch> {
    let schema = rows.schema();
    let flags = carry::unchanged_flags(rows)?;
    let flagged = |row: usize| is_upsert.value(row) && flags.iter().any(|(_, f)| f.value(row));
    // The old rows of the flagged batch rows, file by file, and which batch row each is.
    let table_schema = delta::table_schema(table)?;
    let mut old = Vec::new();
    let mut old_of = vec![None; rows.num_rows()];
    let mut count = 0;
    for t in touched {
        let wanted: Vec<(usize, usize)> = t
            .hits
            .iter()
            .copied()
            .filter(|&(_, row)| flagged(row))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        for &(_, row) in &wanted {
            old_of[row] = Some(count);
            count += 1;
        }
        let selection =
            RowSelection::from_consecutive_ranges(wanted.iter().map(|&(p, _)| p..p + 1), t.rows);
        let data = fetch(store, &t.path, name).await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(data)
            .map_err(|e| file_error(name, &t.path, e))?
            .with_row_selection(selection)
            .build()
            .map_err(|e| file_error(name, &t.path, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| file_error(name, &t.path, e))?;
            old.push(
                deltalake::kernel::schema::cast_record_batch(
                    &batch,
                    table_schema.clone(),
                    true,
                    true,
                )
                .map_err(|e| file_error(name, &t.path, e))?,
            );
        }
    }
    if count == 0 {
        return Ok(rows.clone());
    }
    let old = arrow::compute::concat_batches(&table_schema, &old)
        .map_err(|e| LakehouseError::Schema(format!("{name}: {e}")))?;
    if old.num_rows() != count {
        return Err(LakehouseError::Invalid(format!(
            "{name}: read {} replaced rows for unchanged values, expected {count}",
            old.num_rows()
        )));
    }
    let mut columns = rows.columns().to_vec();
    for (target, flag) in &flags {
        let field = schema.field(*target);
        let Some(previous) = old.column_by_name(field.name()) else {
            continue;
        };
        let previous = if previous.data_type() == field.data_type() {
            previous.clone()
        } else {
            arrow::compute::cast(previous, field.data_type())
                .map_err(|e| LakehouseError::Schema(format!("{name}: {e}")))?
        };
        let indices: Vec<(usize, usize)> = (0..rows.num_rows())
            .map(|row| match old_of[row] {
                Some(k) if flag.value(row) => (1, k),
                _ => (0, row),
            })
            .collect();
        columns[*target] =
            arrow::compute::interleave(&[columns[*target].as_ref(), previous.as_ref()], &indices)
                .map_err(|e| LakehouseError::Schema(format!("{name}: {e}")))?;
    }
    RecordBatch::try_new(schema, columns)
        .map_err(|e| LakehouseError::Schema(format!("{name}: {e}")))
}

/// Reads one file without the rows at `positions` and sends its batches on.
fn copy_kept_rows(
    data: Bytes,
    path: &ObjectPath,
    positions: &[usize],
    rows: usize,
    tx: &tokio::sync::mpsc::Sender<Result<RecordBatch>>,
    name: &str,
) -> Result<()> {
    // The runs of rows between the replaced ones.
    let starts = std::iter::once(0).chain(positions.iter().map(|p| p + 1));
    let ends = positions.iter().copied().chain(std::iter::once(rows));
    let kept = starts.zip(ends).map(|(start, end)| start..end);
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)
        .map_err(|e| file_error(name, path, e))?
        .with_row_selection(RowSelection::from_consecutive_ranges(kept, rows))
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(|e| file_error(name, path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| file_error(name, path, e))?;
        if tx.blocking_send(Ok(batch)).is_err() {
            break;
        }
    }
    Ok(())
}
