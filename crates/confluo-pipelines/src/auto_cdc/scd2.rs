//! SCD type 2: every version of a key, `__START_AT` to `__END_AT`. The history of the keys a
//! batch touches is rebuilt from their stored versions and the new events, in sequence order,
//! so an event arriving late lands in its place; the rebuilt history replaces theirs in one
//! MERGE.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int8Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::JoinType;
use datafusion::prelude::{DataFrame, Expr, SessionContext, cast, lit};
use deltalake::DeltaTable;
use serde_json::Value;

use confluo_lakehouse::delta::{self, CommitRequest};
use confluo_lakehouse::{LakehouseError, TableInfo};

use super::scd1::col_name;
use super::{
    ApplyStats, END_AT, OP, OP_DELETE, OP_UPSERT, Resolved, SEQ, START_AT, Txn, check_keys,
    commit_properties, ident, mem, qcol,
};
use crate::error::Result;

/// 0 for a stored version, 1 for a new event: on equal sequences the stored one wins, so a
/// redelivered event changes nothing.
const ORIGIN: &str = "__cdc_origin";
/// In the MERGE source: 1 for "drop this key's history", 0 for "insert this version".
const ACTION: &str = "__cdc_action";

fn typed_null(dt: &DataType) -> Expr {
    cast(lit(ScalarValue::Null), dt.clone())
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn apply(
    ctx: &SessionContext,
    target: &TableInfo,
    table: DeltaTable,
    events: DataFrame,
    r: &Resolved,
    txn: &Txn,
    metadata: HashMap<String, Value>,
) -> Result<ApplyStats> {
    let target_schema = delta::table_schema(&table)?;
    let user: Vec<Field> = target_schema
        .fields()
        .iter()
        .filter(|f| f.name() != START_AT && f.name() != END_AT)
        .map(|f| f.as_ref().clone())
        .collect();
    let seq_type = target_schema
        .field_with_name(START_AT)
        .map(|f| f.data_type().clone())
        .unwrap_or_else(|_| r.sequence_type.clone());
    let cast_to = |e: Expr, dt: &DataType, name: &str| cast(e, dt.clone()).alias(name);

    // New events, in the target's types.
    let mut sel: Vec<Expr> = user
        .iter()
        .map(|f| cast_to(ident(f.name()), f.data_type(), f.name()))
        .collect();
    sel.push(cast_to(ident(SEQ), &seq_type, SEQ));
    sel.push(ident(OP));
    sel.push(lit(1i8).alias(ORIGIN));
    let new = events.select(sel)?;
    let uschema: SchemaRef = Arc::new(new.schema().as_arrow().clone());
    let new = new.collect().await?;
    check_keys(&new, &r.keys, target)?;
    let mut stats = ApplyStats::default();
    for b in &new {
        stats.changes += b.num_rows() as u64;
        if let Some(ops) = b
            .column_by_name(OP)
            .and_then(|c| c.as_any().downcast_ref::<Int8Array>())
        {
            for op in ops.iter().flatten() {
                if op == OP_DELETE {
                    stats.deleted += 1;
                } else {
                    stats.upserted += 1;
                }
            }
        }
    }
    if stats.changes == 0 {
        stats.version = delta::commit(
            &table,
            CommitRequest {
                app_metadata: metadata,
                txns: vec![(txn.app_id.clone(), txn.version)],
                ..Default::default()
            },
        )
        .await?;
        return Ok(stats);
    }
    let new_df = mem(ctx, uschema.clone(), new)?;
    let kname = |k: &str| format!("__cdc_k_{k}");
    let affected = new_df
        .clone()
        .aggregate(r.keys.iter().map(|k| ident(k)).collect(), vec![])?
        .select(
            r.keys
                .iter()
                .map(|k| ident(k).alias(kname(k)))
                .collect::<Vec<Expr>>(),
        )?;

    // The stored history of the affected keys.
    let stored = ctx.read_table(table.table_provider().await?)?;
    let on: Vec<Expr> = r
        .keys
        .iter()
        .map(|k| ident(k).eq(ident(&kname(k))))
        .collect();
    let hist = stored
        .join_on(affected.clone(), JoinType::LeftSemi, on)?
        .collect()
        .await?;
    let hist = mem(ctx, target_schema.clone(), hist)?;
    // Each stored version is an upsert at its start; a version that ends with no successor
    // starting there was ended by a delete.
    let mut ups: Vec<Expr> = user.iter().map(|f| ident(f.name())).collect();
    ups.push(ident(START_AT).alias(SEQ));
    ups.push(lit(OP_UPSERT).alias(OP));
    ups.push(lit(0i8).alias(ORIGIN));
    let ups = hist.clone().select(ups)?;
    let starts = hist.clone().select(
        r.keys
            .iter()
            .map(|k| ident(k).alias(kname(k)))
            .chain([ident(START_AT).alias("__cdc_st")])
            .collect::<Vec<Expr>>(),
    )?;
    let mut on: Vec<Expr> = r
        .keys
        .iter()
        .map(|k| ident(k).eq(ident(&kname(k))))
        .collect();
    on.push(ident(END_AT).eq(ident("__cdc_st")));
    let mut dels: Vec<Expr> = user
        .iter()
        .map(|f| {
            if r.keys.contains(f.name()) {
                ident(f.name())
            } else {
                typed_null(f.data_type()).alias(f.name())
            }
        })
        .collect();
    dels.push(ident(END_AT).alias(SEQ));
    dels.push(lit(OP_DELETE).alias(OP));
    dels.push(lit(0i8).alias(ORIGIN));
    let dels = hist
        .filter(ident(END_AT).is_not_null())?
        .join_on(starts, JoinType::LeftAnti, on)?
        .select(dels)?;
    let mut order: Vec<_> = r.keys.iter().map(|k| ident(k).sort(true, true)).collect();
    order.push(ident(SEQ).sort(true, true));
    order.push(ident(ORIGIN).sort(true, true));
    let all = ups
        .union(dels)?
        .union(new_df)?
        .sort(order)?
        .collect()
        .await?;
    let all = match all.first() {
        Some(b) => concat_batches(&b.schema(), &all)?,
        None => RecordBatch::new_empty(uschema.clone()),
    };
    let history = rebuild(&all, &user, r)?;

    // Swap the keys' history: one marker row per key deletes its stored versions, the
    // rebuilt versions are inserted.
    let mut markers: Vec<Expr> = user
        .iter()
        .map(|f| {
            if r.keys.contains(f.name()) {
                cast_to(ident(&kname(f.name())), f.data_type(), f.name())
            } else {
                typed_null(f.data_type()).alias(f.name())
            }
        })
        .collect();
    markers.push(typed_null(&seq_type).alias(START_AT));
    markers.push(typed_null(&seq_type).alias(END_AT));
    markers.push(lit(1i8).alias(ACTION));
    let markers = affected.select(markers)?;
    let mut rows: Vec<Expr> = target_schema
        .fields()
        .iter()
        .map(|f| ident(f.name()))
        .collect();
    rows.push(lit(0i8).alias(ACTION));
    let rows = mem(ctx, history.schema(), vec![history])?.select(rows)?;
    let src = markers.union(rows)?;
    let predicate = r
        .keys
        .iter()
        .map(|k| qcol("t", k).eq(qcol("s", k)))
        .fold(qcol("s", ACTION).eq(lit(1i8)), Expr::and);
    let names: Vec<String> = target_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let (t, _) = table
        .merge(src, predicate)
        .with_source_alias("s")
        .with_target_alias("t")
        .with_session_state(Arc::new(ctx.state()))
        .with_commit_properties(commit_properties(Some(txn), metadata))
        .when_matched_delete(|d| d)
        .and_then(|m| {
            m.when_not_matched_insert(|mut i| {
                i = i.predicate(qcol("s", ACTION).eq(lit(0i8)));
                for c in &names {
                    i = i.set(col_name(c), qcol("s", c));
                }
                i
            })
        })
        .map_err(LakehouseError::delta(&target.name))?
        .await
        .map_err(LakehouseError::delta(&target.name))?;
    stats.version = t.version().map_or(0, |v| v as i64);
    Ok(stats)
}

fn rows_of(batch: &RecordBatch, names: &[String]) -> Result<Rows> {
    let cols: Vec<ArrayRef> = names
        .iter()
        .map(|n| batch.column_by_name(n).expect("column present").clone())
        .collect();
    let conv = RowConverter::new(
        cols.iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    Ok(conv.convert_columns(&cols)?)
}

/// Walks events sorted by key, sequence and origin and returns the versions they make:
/// the user columns, `__START_AT` and `__END_AT`.
fn rebuild(all: &RecordBatch, user: &[Field], r: &Resolved) -> Result<RecordBatch> {
    let n = all.num_rows();
    let keys = rows_of(all, &r.keys)?;
    let seq = all.column_by_name(SEQ).expect("sequence").clone();
    let seqs = rows_of(all, &[SEQ.to_string()])?;
    let ops = all
        .column_by_name(OP)
        .and_then(|c| c.as_any().downcast_ref::<Int8Array>().cloned())
        .expect("kind is Int8");
    let origin = all
        .column_by_name(ORIGIN)
        .and_then(|c| c.as_any().downcast_ref::<Int8Array>().cloned())
        .expect("origin is Int8");

    // IGNORE NULL UPDATES: a new event's NULL takes the value the key had just before.
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(user.len());
    for f in user {
        let c = all.column_by_name(f.name()).expect("user column").clone();
        if !r.spec.ignore_null_updates || r.keys.contains(f.name()) || c.null_count() == 0 {
            columns.push(c);
            continue;
        }
        let mut idx: Vec<u32> = Vec::with_capacity(n);
        let mut last: Option<u32> = None;
        for i in 0..n {
            if i > 0 && keys.row(i) != keys.row(i - 1) {
                last = None;
            }
            if ops.value(i) == OP_DELETE {
                last = None;
                idx.push(i as u32);
                continue;
            }
            let v = match last {
                Some(p) if origin.value(i) == 1 && c.is_null(i) => p,
                _ => i as u32,
            };
            idx.push(v);
            last = Some(v);
        }
        columns.push(take(&c, &UInt32Array::from(idx), None)?);
    }
    let user: Vec<Field> = user
        .iter()
        .zip(&columns)
        .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), true))
        .collect();
    let filled = RecordBatch::try_new(Arc::new(Schema::new(user.clone())), columns.clone())?;
    // With nothing tracked, every change is an in-place update.
    let tracked = if r.tracked.is_empty() {
        None
    } else {
        Some(rows_of(&filled, &r.tracked)?)
    };
    let unchanged = |a: u32, b: usize| match &tracked {
        None => true,
        Some(t) => t.row(a as usize) == t.row(b),
    };

    let mut data: Vec<u32> = Vec::new();
    let mut start: Vec<u32> = Vec::new();
    let mut end: Vec<Option<u32>> = Vec::new();
    // The open version: (row holding its values, row that opened it).
    let mut open: Option<(u32, u32)> = None;
    for i in 0..n {
        let same_key = i > 0 && keys.row(i) == keys.row(i - 1);
        if !same_key {
            if let Some((d, s)) = open.take() {
                data.push(d);
                start.push(s);
                end.push(None);
            }
        } else if seqs.row(i) == seqs.row(i - 1) {
            continue; // the same event again
        }
        if ops.value(i) == OP_DELETE {
            if let Some((d, s)) = open.take() {
                data.push(d);
                start.push(s);
                end.push(Some(i as u32));
            }
            continue;
        }
        match open {
            Some((d, s)) if unchanged(d, i) => {
                // Only untracked columns changed: the version is updated in place.
                open = Some((i as u32, s));
            }
            Some((d, s)) => {
                data.push(d);
                start.push(s);
                end.push(Some(i as u32));
                open = Some((i as u32, i as u32));
            }
            None => open = Some((i as u32, i as u32)),
        }
    }
    if let Some((d, s)) = open.take() {
        data.push(d);
        start.push(s);
        end.push(None);
    }
    let data = UInt32Array::from(data);
    let mut out: Vec<ArrayRef> = Vec::with_capacity(user.len() + 2);
    for c in &columns {
        out.push(take(c, &data, None)?);
    }
    out.push(take(&seq, &UInt32Array::from(start), None)?);
    out.push(take(&seq, &UInt32Array::from(end), None)?);
    let mut fields = user.to_vec();
    fields.push(Field::new(START_AT, seq.data_type().clone(), true));
    fields.push(Field::new(END_AT, seq.data_type().clone(), true));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), out)?)
}
