//! Values the change rows did not send (`_unchanged`: PostgreSQL's unchanged TOAST, MySQL's
//! minimal row images), filled in before a batch is applied. Each such value is the key's
//! previous value: that of the newest earlier event of the same key in the batch, or, for
//! the first event of a key, the target's (SCD 1: its row; SCD 2: its open version). When a
//! change moved the row to a new key (`_old_key`), the previous value is the old key's.
//!
//! Events are taken in sequence order, so a chain of events in one batch each inherit what
//! the one before resolved. An event arriving late (older than the target's version) reads
//! the target's current value; change feeds of databases arrive in order.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int8Array, RecordBatch, StructArray, UInt32Array,
};
use datafusion::arrow::compute::{
    SortColumn, cast, concat_batches, interleave, lexsort_to_indices,
};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::prelude::{DataFrame, SessionContext};
use deltalake::DeltaTable;

use confluo_lakehouse::changes::{LOOKUP_ROW, OLD_KEY_COLUMN, UNCHANGED_COLUMN, rows_by_key};
use confluo_lakehouse::delta;

use super::{END_AT, OP, OP_TRUNCATE, OP_UPSERT, Resolved, SEQ, ScdType, ident, mem};
use crate::error::{PipelineError, Result};

/// Where an event's missing values come from.
#[derive(Clone, Copy)]
enum Source {
    /// Sent in full (or nothing to carry from).
    Sent,
    /// An earlier event of the batch (its position).
    Event(usize),
    /// The target's row of this lookup.
    Target(usize),
}

fn invalid(message: String) -> PipelineError {
    PipelineError::Config(message)
}

/// The events with every value they did not send filled in, and without `_unchanged` and
/// `_old_key`. Events without those columns pass as they are.
pub(super) async fn resolve(
    ctx: &SessionContext,
    events: DataFrame,
    r: &Resolved,
    table: &DeltaTable,
) -> Result<DataFrame> {
    let schema = events.schema().as_arrow().clone();
    if schema.index_of(UNCHANGED_COLUMN).is_err() {
        return Ok(events);
    }
    let batches = events.collect().await?;
    let out_schema: SchemaRef = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| f.name() != UNCHANGED_COLUMN && f.name() != OLD_KEY_COLUMN)
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let batch = concat_batches(&Arc::new(schema), &batches)?;
    let filled = fill(batch, r, table).await?;
    let filled = filled.project(
        &out_schema
            .fields()
            .iter()
            .map(|f| filled.schema().index_of(f.name()))
            .collect::<std::result::Result<Vec<_>, _>>()?,
    )?;
    mem(ctx, out_schema, vec![filled])
}

async fn fill(batch: RecordBatch, r: &Resolved, table: &DeltaTable) -> Result<RecordBatch> {
    let n = batch.num_rows();
    // As a plain list of strings, whatever the reader made of it (a Delta scan's views).
    let lists = batch
        .column_by_name(UNCHANGED_COLUMN)
        .and_then(|c| cast(c, &confluo_connectors::changes::unchanged_type()).ok())
        .ok_or_else(|| {
            invalid(format!(
                "`{UNCHANGED_COLUMN}` must be a list of column names"
            ))
        })?;
    let lists = lists.as_list::<i32>().clone();
    let ops = batch
        .column_by_name(OP)
        .and_then(|c| c.as_any().downcast_ref::<Int8Array>())
        .cloned()
        .ok_or_else(|| invalid("AUTO CDC events have no kind".into()))?;
    // Per data column (not a key), which events did not send it.
    let mut flags: Vec<(usize, Vec<bool>)> = Vec::new();
    for i in 0..n {
        if lists.is_null(i) || ops.value(i) != OP_UPSERT {
            continue;
        }
        let names = lists.value(i);
        let names = names.as_string::<i32>();
        for name in names.iter().flatten() {
            let Some(c) = r
                .columns
                .iter()
                .find(|c| c.as_str() == name)
                .filter(|c| !r.keys.contains(c))
                .and_then(|c| batch.schema().index_of(c).ok())
            else {
                continue;
            };
            match flags.iter_mut().find(|(col, _)| *col == c) {
                Some((_, f)) => f[i] = true,
                None => {
                    let mut f = vec![false; n];
                    f[i] = true;
                    flags.push((c, f));
                }
            }
        }
    }
    if flags.is_empty() {
        return Ok(batch);
    }
    let flagged = |i: usize| flags.iter().any(|(_, f)| f[i]);

    // Keys as comparable rows, in the target's key types.
    let target_schema = delta::table_schema(table)?;
    let key_types: Vec<DataType> = r
        .keys
        .iter()
        .map(|k| {
            target_schema
                .field_with_name(k)
                .map(|f| f.data_type().clone())
                .or_else(|_| {
                    batch
                        .schema()
                        .field_with_name(k)
                        .map(|f| f.data_type().clone())
                })
        })
        .collect::<std::result::Result<_, _>>()?;
    let converter = RowConverter::new(
        key_types
            .iter()
            .map(|t| SortField::new(t.clone()))
            .collect(),
    )?;
    let typed = |columns: Vec<ArrayRef>| -> Result<Vec<ArrayRef>> {
        columns
            .iter()
            .zip(&key_types)
            .map(|(c, t)| Ok(cast(c, t)?))
            .collect()
    };
    let own_columns = typed(
        r.keys
            .iter()
            .map(|k| {
                batch
                    .column_by_name(k)
                    .cloned()
                    .expect("events carry the keys")
            })
            .collect(),
    )?;
    let own = converter.convert_columns(&own_columns)?;
    let old: Option<(StructArray, Vec<ArrayRef>)> = match batch.column_by_name(OLD_KEY_COLUMN) {
        Some(c) => {
            let s = c
                .as_struct_opt()
                .ok_or_else(|| invalid(format!("`{OLD_KEY_COLUMN}` must be a struct of the keys")))?
                .clone();
            let cols = r
                .keys
                .iter()
                .map(|k| {
                    s.column_by_name(k)
                        .cloned()
                        .ok_or_else(|| invalid(format!("`{OLD_KEY_COLUMN}` has no key `{k}`")))
                })
                .collect::<Result<Vec<_>>>()?;
            let cols = typed(cols)?;
            Some((s, cols))
        }
        None => None,
    };
    let old_rows = match &old {
        Some((_, cols)) => Some(converter.convert_columns(cols)?),
        None => None,
    };

    // Sequence order, ties in batch order.
    let positions: ArrayRef = Arc::new(UInt32Array::from_iter_values(0..n as u32));
    let seq = batch
        .column_by_name(SEQ)
        .cloned()
        .ok_or_else(|| invalid("AUTO CDC events have no sequence".into()))?;
    let order = lexsort_to_indices(
        &[
            SortColumn {
                values: seq,
                options: None,
            },
            SortColumn {
                values: positions,
                options: None,
            },
        ],
        None,
    )?;

    // Pass 1: each flagged event's source; the target keys to read.
    let mut sources = vec![Source::Sent; n];
    let mut last: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut lookups: Vec<(Vec<u8>, usize)> = Vec::new();
    let mut lookup_of: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut truncated = false;
    for &i in order.values() {
        let i = i as usize;
        if ops.value(i) == OP_TRUNCATE {
            last.clear();
            truncated = true;
            continue;
        }
        let own_key = own.row(i).as_ref().to_vec();
        if ops.value(i) == OP_UPSERT && flagged(i) {
            let from = match (&old, &old_rows) {
                (Some((s, _)), Some(rows)) if s.is_valid(i) => rows.row(i).as_ref().to_vec(),
                _ => own_key.clone(),
            };
            sources[i] = match last.get(&from) {
                Some(&j) => Source::Event(j),
                None if truncated => Source::Sent,
                None => {
                    let next = lookup_of.len();
                    let l = *lookup_of.entry(from.clone()).or_insert_with(|| {
                        lookups.push((from, i));
                        next
                    });
                    Source::Target(l)
                }
            };
        }
        if ops.value(i) == OP_UPSERT {
            last.insert(own_key, i);
        }
    }

    // The target's rows of those keys (SCD 2: their open versions).
    let mut found_at: HashMap<usize, usize> = HashMap::new();
    let mut found = RecordBatch::new_empty(Arc::new(target_schema.as_ref().clone()));
    if !lookups.is_empty() {
        let take = UInt32Array::from_iter_values(lookups.iter().map(|(_, i)| *i as u32));
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for (k, (t, own_col)) in r.keys.iter().zip(key_types.iter().zip(&own_columns)) {
            let source = match &old {
                Some((s, cols)) => {
                    // Per lookup: the old key where the event has one, else its own.
                    let pick: Vec<(usize, usize)> = lookups
                        .iter()
                        .map(|(_, i)| if s.is_valid(*i) { (1, *i) } else { (0, *i) })
                        .collect();
                    let idx = r.keys.iter().position(|x| x == k).expect("a key");
                    interleave(&[own_col.as_ref(), cols[idx].as_ref()], &pick)?
                }
                None => datafusion::arrow::compute::take(own_col, &take, None)?,
            };
            fields.push(datafusion::arrow::datatypes::Field::new(k, t.clone(), true));
            columns.push(source);
        }
        let lookup = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let filter = (r.spec.scd_type == ScdType::Two).then(|| ident(END_AT).is_null());
        let rows = rows_by_key(table, &r.keys, lookup, filter).await?;
        if let Some(first) = rows.first() {
            found = concat_batches(&first.schema(), &rows)?;
        }
        if let Some(answers) = found.column_by_name(LOOKUP_ROW) {
            let answers = answers.as_primitive::<datafusion::arrow::datatypes::UInt32Type>();
            for (row, l) in answers.values().iter().enumerate() {
                found_at.insert(*l as usize, row);
            }
        }
    }

    // Pass 2: each flagged value points at the value it inherits, in sequence order.
    let mut columns = batch.columns().to_vec();
    for (c, flag) in &flags {
        let field = batch.schema().field(*c).clone();
        let previous = match found.column_by_name(field.name()) {
            Some(p) => cast(p, field.data_type())?,
            None => datafusion::arrow::array::new_null_array(field.data_type(), 0),
        };
        let mut pointer: Vec<(usize, usize)> = (0..n).map(|i| (0, i)).collect();
        for &i in order.values() {
            let i = i as usize;
            if !flag[i] {
                continue;
            }
            pointer[i] = match sources[i] {
                Source::Event(j) => pointer[j],
                Source::Target(l) => match found_at.get(&l) {
                    Some(&row) => (1, row),
                    None => (0, i),
                },
                Source::Sent => (0, i),
            };
        }
        columns[*c] = interleave(&[columns[*c].as_ref(), previous.as_ref()], &pointer)?;
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}
