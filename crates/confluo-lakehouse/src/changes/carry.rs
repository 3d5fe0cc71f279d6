//! Values a change did not send, carried from the row it replaces.
//!
//! A change row may leave values out (`_unchanged` lists them: PostgreSQL's unchanged TOAST,
//! MySQL's minimal row images); the row keeps its earlier values there. That earlier row is
//! the target's row under the same key, or, when the change moved the row to a new key
//! (`_old_key` is set), the target's row under the old key. The same-key case is read by
//! the apply paths themselves (the rewrite reads the replaced rows, MERGE keeps `t.col`);
//! the old-key case is resolved here first, by one keyed read of the target.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListBuilder, RecordBatch, StringBuilder, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::JoinType;
use datafusion::prelude::{Expr, SessionContext};
use deltalake::DeltaTable;

use super::{OLD_KEY_COLUMN, OP_COLUMN, UNCHANGED_COLUMN, is_change_column};
use crate::error::{LakehouseError, Result};

/// Prefix of the per-column flags MERGE reads (internal to one apply).
pub(super) const FLAG_PREFIX: &str = "__unchanged_";

/// Column of a [`rows_by_key`] lookup naming the lookup row a target row answers.
pub const LOOKUP_ROW: &str = "__lookup_row";

fn lookup_key(k: &str) -> String {
    format!("__lookup_{k}")
}

fn schema_err(name: &str) -> impl Fn(arrow::error::ArrowError) -> LakehouseError + '_ {
    move |e| LakehouseError::Schema(format!("{name}: {e}"))
}

/// For each data column some row lists in `_unchanged`, its position in `rows` and a flag
/// per row (set where that row did not send it). Upserts only; names that are not columns
/// of `rows` are ignored.
pub(super) fn unchanged_flags(rows: &RecordBatch) -> Result<Vec<(usize, BooleanArray)>> {
    let Some(lists) = rows.column_by_name(UNCHANGED_COLUMN) else {
        return Ok(Vec::new());
    };
    let lists = arrow::compute::cast(lists, &confluo_connectors::changes::unchanged_type())
        .map_err(|e| {
            LakehouseError::Schema(format!(
                "`{UNCHANGED_COLUMN}` must be a list of column names, not {}: {e}",
                lists.data_type()
            ))
        })?;
    let lists = lists.as_list::<i32>();
    let names = lists.values().as_string::<i32>();
    let schema = rows.schema();
    let mut flags: Vec<(usize, Vec<bool>)> = Vec::new();
    for row in 0..rows.num_rows() {
        if lists.is_null(row) {
            continue;
        }
        let (start, end) = (
            lists.value_offsets()[row] as usize,
            lists.value_offsets()[row + 1] as usize,
        );
        for n in start..end {
            if names.is_null(n) {
                continue;
            }
            let Ok(col) = schema.index_of(names.value(n)) else {
                continue;
            };
            if is_change_column(schema.field(col).name()) {
                continue;
            }
            let at = match flags.iter().position(|(c, _)| *c == col) {
                Some(at) => at,
                None => {
                    flags.push((col, vec![false; rows.num_rows()]));
                    flags.len() - 1
                }
            };
            flags[at].1[row] = true;
        }
    }
    let upsert: Vec<bool> = match rows.column_by_name(OP_COLUMN) {
        Some(ops) => {
            let ops = arrow::compute::cast(ops, &DataType::Utf8).map_err(schema_err("changes"))?;
            ops.as_string::<i32>()
                .iter()
                .map(|o| o != Some("DELETE"))
                .collect()
        }
        None => vec![true; rows.num_rows()],
    };
    Ok(flags
        .into_iter()
        .map(|(c, f)| {
            let f: BooleanArray = f.iter().zip(&upsert).map(|(f, u)| Some(*f && *u)).collect();
            (c, f)
        })
        .collect())
}

/// The target's rows whose key equals a row of `lookup` (the key columns, named as the
/// table's, typed as the table stores them), each with [`LOOKUP_ROW`] saying which lookup
/// row (0-based) it answers. `filter` narrows the target first (e.g. the open versions of an
/// SCD 2 history).
pub async fn rows_by_key(
    table: &DeltaTable,
    keys: &[String],
    lookup: RecordBatch,
    filter: Option<Expr>,
) -> Result<Vec<RecordBatch>> {
    let name = table.table_url().to_string();
    let ctx = SessionContext::new();
    let mut target = ctx.read_table(table.table_provider().await?)?;
    if let Some(f) = filter {
        target = target.filter(f)?;
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for k in keys {
        let c = lookup.column_by_name(k).ok_or_else(|| {
            LakehouseError::Schema(format!("{name}: the lookup has no key column `{k}`"))
        })?;
        fields.push(Field::new(lookup_key(k), c.data_type().clone(), true));
        columns.push(c.clone());
    }
    fields.push(Field::new(LOOKUP_ROW, DataType::UInt32, false));
    columns.push(Arc::new(UInt32Array::from_iter_values(
        0..lookup.num_rows() as u32,
    )));
    let lookup =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(schema_err(&name))?;
    let left: Vec<&str> = keys.iter().map(String::as_str).collect();
    let right: Vec<String> = keys.iter().map(|k| lookup_key(k)).collect();
    let right: Vec<&str> = right.iter().map(String::as_str).collect();
    let joined = target.join(
        ctx.read_batch(lookup)?,
        JoinType::Inner,
        &left,
        &right,
        None,
    )?;
    Ok(joined.collect().await?)
}

/// The rows with the values that key changes did not send read from the target's rows under
/// their old keys, and those names taken out of their `_unchanged` lists (a key the target
/// does not hold has nothing to carry: the values stay as sent).
pub(super) async fn from_old_keys(
    table: &DeltaTable,
    rows: RecordBatch,
    keys: &[String],
    name: &str,
) -> Result<RecordBatch> {
    let (Some(old), Some(lists)) = (
        rows.column_by_name(OLD_KEY_COLUMN),
        rows.column_by_name(UNCHANGED_COLUMN),
    ) else {
        return Ok(rows);
    };
    let lists = arrow::compute::cast(lists, &confluo_connectors::changes::unchanged_type())
        .map_err(schema_err(name))?;
    let (Some(old), Some(lists)) = (old.as_struct_opt(), lists.as_list_opt::<i32>()) else {
        return Ok(rows);
    };
    let flags = unchanged_flags(&rows)?;
    let needed: Vec<usize> = (0..rows.num_rows())
        .filter(|&i| old.is_valid(i) && flags.iter().any(|(_, f)| f.value(i)))
        .collect();
    if needed.is_empty() {
        return Ok(rows);
    }
    // The old keys, typed as the rows' own key columns (which are the table's).
    let take = UInt32Array::from_iter_values(needed.iter().map(|&i| i as u32));
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for k in keys {
        let own = rows
            .column_by_name(k)
            .ok_or_else(|| LakehouseError::Schema(format!("{name}: no key column `{k}`")))?;
        let before = old.column_by_name(k).ok_or_else(|| {
            LakehouseError::Schema(format!("{name}: `{OLD_KEY_COLUMN}` has no key `{k}`"))
        })?;
        let before = arrow::compute::take(before, &take, None).map_err(schema_err(name))?;
        let before = arrow::compute::cast(&before, own.data_type()).map_err(schema_err(name))?;
        fields.push(Field::new(k, own.data_type().clone(), true));
        columns.push(before);
    }
    let lookup =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(schema_err(name))?;
    let found = rows_by_key(table, keys, lookup, None).await?;
    let found = match found.first() {
        Some(first) => {
            arrow::compute::concat_batches(&first.schema(), &found).map_err(schema_err(name))?
        }
        None => RecordBatch::new_empty(rows.schema()),
    };
    // Batch row → row of `found` holding its old row.
    let mut at: HashMap<usize, usize> = HashMap::new();
    if let Some(answers) = found.column_by_name(LOOKUP_ROW) {
        let answers = answers.as_primitive::<arrow::datatypes::UInt32Type>();
        for (j, l) in answers.values().iter().enumerate() {
            at.insert(needed[*l as usize], j);
        }
    }
    let mut out = rows.columns().to_vec();
    for (col, flag) in &flags {
        let field = rows.schema().field(*col).clone();
        let Some(previous) = found.column_by_name(field.name()) else {
            continue;
        };
        let previous =
            arrow::compute::cast(previous, field.data_type()).map_err(schema_err(name))?;
        let indices: Vec<(usize, usize)> = (0..rows.num_rows())
            .map(|i| match at.get(&i) {
                Some(&j) if flag.value(i) => (1, j),
                _ => (0, i),
            })
            .collect();
        out[*col] = arrow::compute::interleave(&[out[*col].as_ref(), previous.as_ref()], &indices)
            .map_err(schema_err(name))?;
    }
    // The resolved rows send every value now.
    let mut rebuilt = ListBuilder::new(StringBuilder::new());
    let names = lists.values().as_string::<i32>();
    for i in 0..rows.num_rows() {
        if lists.is_null(i) || needed.binary_search(&i).is_ok() {
            rebuilt.append_null();
            continue;
        }
        let (start, end) = (
            lists.value_offsets()[i] as usize,
            lists.value_offsets()[i + 1] as usize,
        );
        for n in start..end {
            rebuilt
                .values()
                .append_option(names.is_valid(n).then(|| names.value(n)));
        }
        rebuilt.append(true);
    }
    let at_lists = rows
        .schema()
        .index_of(UNCHANGED_COLUMN)
        .map_err(schema_err(name))?;
    let rebuilt: ArrayRef = Arc::new(rebuilt.finish());
    out[at_lists] = arrow::compute::cast(&rebuilt, rows.schema().field(at_lists).data_type())
        .map_err(schema_err(name))?;
    RecordBatch::try_new(rows.schema(), out).map_err(schema_err(name))
}
