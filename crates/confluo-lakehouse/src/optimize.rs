//! Compaction of a Delta table's small files: `OPTIMIZE` (bin-packing, or Z-order over
//! columns) and the automatic compaction of streaming targets. Both rewrite files without
//! changing data (`dataChange: false`) in one commit; a concurrent append is not in conflict
//! with it, and a file another writer removed meanwhile makes the commit fail, not lose rows.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::optimize::OptimizeType;
use deltalake::{DeltaTable, FilterLiteral, FilterOp, FilterValue};
use serde_json::Value;

use crate::delta;
use crate::error::{LakehouseError, Result};

/// Target size of compacted files when the table does not set `delta.targetFileSize`.
pub const DEFAULT_TARGET_SIZE: u64 = 128 << 20;

/// Small files a streaming target gathers before it is compacted, unless the table sets
/// `confluo.autoCompact.minNumFiles` (Databricks' auto-compaction uses the same 50).
pub const DEFAULT_MIN_FILES: usize = 50;

/// A comparison of `OPTIMIZE ... WHERE`, on a partition column.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionPredicate {
    /// The partition column.
    pub column: String,
    /// `=`, `!=`, `<`, `<=`, `>`, `>=`, `in` or `not in`.
    pub op: String,
    /// The value (one, or the set for `in` / `not in`), as partition values are written.
    pub values: Vec<String>,
}

/// What to compact, and how.
#[derive(Debug, Clone, Default)]
pub struct OptimizeRequest {
    /// Only partitions matching all of these.
    pub predicates: Vec<PartitionPredicate>,
    /// Z-order the rewritten files over these columns (empty: bin-packing).
    pub zorder: Vec<String>,
    /// Target file size in bytes (default: the table's `delta.targetFileSize`, else 128 MiB).
    pub target_size: Option<u64>,
}

/// What a compaction did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OptimizeReport {
    /// Files written.
    pub files_added: u64,
    /// Files replaced.
    pub files_removed: u64,
    /// Bytes written.
    pub bytes_added: i64,
    /// Bytes replaced.
    pub bytes_removed: i64,
    /// Partitions with at least one file rewritten.
    pub partitions_optimized: u64,
    /// Files looked at.
    pub files_considered: usize,
    /// Files left as they were.
    pub files_skipped: usize,
    /// The version committed (none when nothing needed rewriting).
    pub version: Option<i64>,
}

/// Compacts `table` as `req` says; returns the table as of the compaction.
pub async fn optimize(
    table: DeltaTable,
    req: &OptimizeRequest,
    metadata: BTreeMap<String, Value>,
) -> Result<(DeltaTable, OptimizeReport)> {
    let name = table.table_url().to_string();
    let schema = delta::table_schema(&table)?;
    let partitions: Vec<String> = table
        .snapshot()
        .map_err(LakehouseError::delta(&name))?
        .metadata()
        .partition_columns()
        .to_vec();
    for p in &req.predicates {
        if !partitions.iter().any(|c| c == &p.column) {
            return Err(LakehouseError::Invalid(if partitions.is_empty() {
                format!(
                    "OPTIMIZE ... WHERE: `{}` is not a partition column; the table is not \
                     partitioned, so OPTIMIZE compacts all of it (leave out WHERE)",
                    p.column
                )
            } else {
                format!(
                    "OPTIMIZE ... WHERE may only name partition columns ({}), not `{}`",
                    partitions.join(", "),
                    p.column
                )
            }));
        }
    }
    for c in &req.zorder {
        if schema.field_with_name(c).is_err() {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(LakehouseError::Invalid(format!(
                "ZORDER BY: no column `{c}`{}",
                confluo_core::suggest::hint(&confluo_core::suggest::nearest(c, names))
            )));
        }
        if partitions.iter().any(|p| p == c) {
            return Err(LakehouseError::Invalid(format!(
                "ZORDER BY: `{c}` is a partition column; every file holds one value of it already"
            )));
        }
    }
    let filters: Vec<FilterLiteral<'_>> = req
        .predicates
        .iter()
        .map(|p| {
            let op: FilterOp =
                p.op.parse()
                    .map_err(|e| LakehouseError::Invalid(format!("OPTIMIZE ... WHERE: {e}")))?;
            let value = if matches!(op, FilterOp::In | FilterOp::NotIn) {
                FilterValue::Set(p.values.iter().map(String::as_str).collect())
            } else {
                FilterValue::Scalar(p.values.first().map_or("", String::as_str))
            };
            Ok((p.column.as_str(), op, value))
        })
        .collect::<Result<_>>()?;
    let target = req
        .target_size
        .or_else(|| configured(&table, "delta.targetFileSize").and_then(|s| parse_size(&s)))
        .unwrap_or(DEFAULT_TARGET_SIZE);
    let mut meta: std::collections::HashMap<String, Value> = metadata.into_iter().collect();
    meta.insert("engineInfo".into(), Value::String(delta::engine_info()));
    let before = delta::table_version(&table);
    let (table, m) = table
        .optimize()
        .with_filters(&filters)
        .with_type(if req.zorder.is_empty() {
            OptimizeType::Compact
        } else {
            OptimizeType::ZOrder(req.zorder.clone())
        })
        .with_target_size(NonZeroU64::new(target).unwrap_or(NonZeroU64::MIN))
        .with_commit_properties(CommitProperties::default().with_metadata(meta))
        .await
        .map_err(LakehouseError::delta(&name))?;
    let after = delta::table_version(&table);
    let report = OptimizeReport {
        files_added: m.num_files_added,
        files_removed: m.num_files_removed,
        bytes_added: m.files_added.total_size,
        bytes_removed: m.files_removed.total_size,
        partitions_optimized: m.partitions_optimized,
        files_considered: m.total_considered_files,
        files_skipped: m.total_files_skipped,
        version: (after > before).then_some(after),
    };
    Ok((table, report))
}

/// Whether a streaming target is due for compaction: auto-compaction is on (table property
/// `delta.autoOptimize.autoCompact`, on unless `false`) and at least `minNumFiles` of its
/// files are under half the target size.
pub fn due(table: &DeltaTable, properties: &BTreeMap<String, String>) -> Result<bool> {
    let on = properties
        .get("delta.autoOptimize.autoCompact")
        .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    if !on {
        return Ok(false);
    }
    let target = properties
        .get("delta.targetFileSize")
        .and_then(|s| parse_size(s))
        .unwrap_or(DEFAULT_TARGET_SIZE);
    let min_files = properties
        .get("confluo.autoCompact.minNumFiles")
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_MIN_FILES)
        .max(2);
    let name = table.table_url().to_string();
    let snapshot = table.snapshot().map_err(LakehouseError::delta(&name))?;
    let small = snapshot
        .log_data()
        .iter()
        .filter(|f| (f.size() as u64) < target / 2)
        .count();
    Ok(small >= min_files)
}

fn configured(table: &DeltaTable, key: &str) -> Option<String> {
    let snapshot = table.snapshot().ok()?;
    snapshot.metadata().configuration().get(key).cloned()
}

/// `134217728`, `128mb`, `1 GiB`, ... as bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let digits = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: f64 = n.parse().ok()?;
    let scale = match unit.trim().trim_end_matches("ib").trim_end_matches('b') {
        "" => 1u64,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    Some((n * scale as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_databricks_writes_them() {
        assert_eq!(parse_size("134217728"), Some(128 << 20));
        assert_eq!(parse_size("128mb"), Some(128 << 20));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("lots"), None);
    }
}
