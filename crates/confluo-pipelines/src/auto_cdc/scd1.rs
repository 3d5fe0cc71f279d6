//! SCD type 1: one row per key. Per batch, the newest event of each key wins; it is applied
//! when it is newer than what the state table says the target holds for that key (and newer
//! than the last truncate); the state is merged first, then the target, both under the
//! batch's transaction.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int8Array, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::functions_window::expr_fn::{first_value, row_number};
use datafusion::logical_expr::expr::NullTreatment;
use datafusion::logical_expr::{ExprFunctionExt, JoinType, WindowFrame};
use datafusion::prelude::{DataFrame, Expr, SessionContext, coalesce, lit};
use deltalake::DeltaTable;
use serde_json::{Value, json};

use confluo_lakehouse::delta::{self, CommitRequest};
use confluo_lakehouse::{Lakehouse, LakehouseError, NewTable, TableInfo, TableVersion};

use super::{
    ApplyStats, OP, OP_DELETE, OP_TRUNCATE, OP_UPSERT, Resolved, SEQ, Txn, check_keys,
    commit_properties, ident, mem, project_to_target, qcol, state_table_name, txn_version,
};
use crate::error::Result;

/// State column: true for a tombstone, false for a live key, NULL for a truncate floor.
pub(crate) const DELETED: &str = "__cdc_deleted";
const APPLY: &str = "__cdc_apply";
/// Key of the batch record in the state table's commits.
const CDC_KEY: &str = "confluo.cdc";
const RN: &str = "__cdc_rn";

fn sk(k: &str) -> String {
    format!("__cdc_s_{k}")
}

async fn scalar(df: DataFrame) -> Result<ScalarValue> {
    let b = df.collect().await?;
    match b.iter().find(|b| b.num_rows() > 0) {
        Some(b) => Ok(ScalarValue::try_from_array(b.column(0), 0)?),
        None => Ok(ScalarValue::Null),
    }
}

/// Opens the state table, creating it (keys, sequence, tombstone flag) on first use.
async fn state_table(
    lh: &Lakehouse,
    target: &TableInfo,
    target_schema: &Schema,
    r: &Resolved,
    seq_type: &DataType,
) -> Result<(TableInfo, DeltaTable)> {
    let name = state_table_name(&target.name);
    if let Some(info) = lh.metastore().get_table(&name).await? {
        let t = lh.open_delta(&info, TableVersion::Latest).await?;
        return Ok((info, t));
    }
    let mut fields: Vec<Field> = r
        .keys
        .iter()
        .map(|k| {
            let dt = target_schema
                .field_with_name(k)
                .map(|f| f.data_type().clone())
                .unwrap_or(DataType::Utf8);
            Field::new(k, dt, true)
        })
        .collect();
    fields.push(Field::new(SEQ, seq_type.clone(), true));
    fields.push(Field::new(DELETED, DataType::Boolean, true));
    let schema = delta::delta_compatible_schema(&Schema::new(fields));
    Ok(lh
        .create_table(NewTable {
            name,
            schema: schema.as_ref().clone(),
            partition_by: vec![],
            comment: Some(format!(
                "AUTO CDC state of {}: last sequence applied per key and tombstones of deleted keys (internal)",
                target.name
            )),
            properties: [
                ("pipelines.hidden".to_string(), "true".to_string()),
                ("pipelines.cdcTarget".to_string(), target.name.to_string()),
            ]
            .into_iter()
            .collect(),
            location: None,
        })
        .await?)
}

/// The rows merged into the state table: one per applied event, plus the truncate floor.
fn state_rows(
    applied: &[RecordBatch],
    keys: &[String],
    schema: &SchemaRef,
    truncate_at: Option<&ScalarValue>,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    let one = Int8Array::new_scalar(OP_DELETE);
    for b in applied {
        if b.num_rows() == 0 {
            continue;
        }
        let mut cols: Vec<ArrayRef> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let c = b.column_by_name(k).expect("applied rows carry the keys");
            cols.push(cast(c, schema.field(i).data_type())?);
        }
        let seq = b
            .column_by_name(SEQ)
            .expect("applied rows carry the sequence");
        cols.push(cast(seq, schema.field(keys.len()).data_type())?);
        let op = b.column_by_name(OP).expect("applied rows carry the kind");
        let deleted: BooleanArray = datafusion::arrow::compute::kernels::cmp::eq(op, &one)?;
        cols.push(Arc::new(deleted));
        out.push(RecordBatch::try_new(schema.clone(), cols)?);
    }
    if let Some(t) = truncate_at {
        let mut cols: Vec<ArrayRef> = Vec::new();
        for i in 0..keys.len() {
            cols.push(datafusion::arrow::array::new_null_array(
                schema.field(i).data_type(),
                1,
            ));
        }
        cols.push(cast(
            &t.to_array_of_size(1)?,
            schema.field(keys.len()).data_type(),
        )?);
        cols.push(Arc::new(BooleanArray::new_null(1)));
        out.push(RecordBatch::try_new(schema.clone(), cols)?);
    }
    Ok(out)
}

/// The state's version before the commits of batch `txn` (the crashed run's and any redo's).
async fn version_before_batch(state: &DeltaTable, txn: &Txn) -> Result<i64> {
    let mut v = delta::table_version(state);
    while v > 0 {
        let info = delta::read_commit_info(state, v).await?;
        let ours = info.as_ref().and_then(|i| i.get(CDC_KEY)).is_some_and(|c| {
            c.get("batch").and_then(Value::as_i64) == Some(txn.version)
                && c.get("app_id").and_then(Value::as_str) == Some(txn.app_id.as_str())
        });
        if !ours {
            break;
        }
        v -= 1;
    }
    Ok(v)
}

fn on_keys(keys: &[String]) -> Expr {
    keys.iter()
        .map(|k| qcol("t", k).eq(qcol("s", k)))
        .reduce(Expr::and)
        .expect("at least one key")
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn apply(
    lh: &Lakehouse,
    ctx: &SessionContext,
    target: &TableInfo,
    table: DeltaTable,
    events: DataFrame,
    r: &Resolved,
    txn: &Txn,
    metadata: HashMap<String, Value>,
) -> Result<ApplyStats> {
    let target_schema = delta::table_schema(&table)?;
    let events = events.cache().await?;
    let mut stats = ApplyStats {
        changes: events.clone().count().await? as u64,
        ..Default::default()
    };

    // A truncate drops everything sequenced before it, in this batch and for good.
    let mut truncate_at = None;
    let events = if r.spec.apply_as_truncates.is_some() {
        let t = scalar(
            events
                .clone()
                .filter(ident(OP).eq(lit(OP_TRUNCATE)))?
                .aggregate(vec![], vec![max(ident(SEQ))])?,
        )
        .await?;
        let mut keep = ident(OP).not_eq(lit(OP_TRUNCATE));
        if !t.is_null() {
            keep = keep.and(ident(SEQ).gt(lit(t.clone())));
            truncate_at = Some(t);
        }
        events.filter(keep)?
    } else {
        events
    };
    stats.truncated = truncate_at.is_some();

    // The newest event of each key.
    let keys: Vec<Expr> = r.keys.iter().map(|k| ident(k)).collect();
    let rn = row_number()
        .partition_by(keys.clone())
        .order_by(vec![ident(SEQ).sort(false, false)])
        .build()?;
    let mut windows = vec![rn.alias(RN)];
    let mut picked: Vec<Expr> = Vec::new();
    for c in &r.columns {
        if r.spec.ignore_null_updates && !r.keys.contains(c) {
            // IGNORE NULL UPDATES inside a batch: the newest non-NULL value of the key.
            let nn = format!("__cdc_nn_{c}");
            windows.push(
                first_value(ident(c))
                    .partition_by(keys.clone())
                    .order_by(vec![ident(SEQ).sort(false, false)])
                    .window_frame(WindowFrame::new(None))
                    .null_treatment(NullTreatment::IgnoreNulls)
                    .build()?
                    .alias(&nn),
            );
            picked.push(ident(&nn).alias(c));
        } else {
            picked.push(ident(c));
        }
    }
    picked.push(ident(SEQ));
    picked.push(ident(OP));
    let winners = events
        .window(windows)?
        .filter(ident(RN).eq(lit(1u64)))?
        .select(picked)?;
    let mut cols: Vec<Expr> = r.columns.iter().map(|c| ident(c)).collect();
    cols.push(ident(SEQ));
    cols.push(ident(OP));

    // What the target already holds, as of before this batch.
    let (state_info, state) = state_table(lh, target, &target_schema, r, &r.sequence_type).await?;
    let state_done = txn_version(&state, &txn.app_id)
        .await?
        .is_some_and(|v| v >= txn.version);
    let base = if state_done {
        // The state already holds this batch (a crash came before the target's commit):
        // decide as the interrupted run did, against the state before it.
        let v = version_before_batch(&state, txn).await?;
        lh.open_delta(&state_info, TableVersion::Version(v)).await?
    } else {
        state.clone()
    };
    let base_df = ctx.read_table(base.table_provider().await?)?;
    let floor = scalar(
        base_df
            .clone()
            .filter(ident(DELETED).is_null())?
            .aggregate(vec![], vec![max(ident(SEQ))])?,
    )
    .await?;
    let mut sel: Vec<Expr> = r.keys.iter().map(|k| ident(k).alias(sk(k))).collect();
    sel.push(ident(SEQ).alias(sk(SEQ)));
    let known = base_df.filter(ident(DELETED).is_not_null())?.select(sel)?;
    let on: Vec<Expr> = r.keys.iter().map(|k| ident(k).eq(ident(&sk(k)))).collect();
    let mut newer = ident(&sk(SEQ)).is_null().or(ident(SEQ).gt(ident(&sk(SEQ))));
    if !floor.is_null() {
        newer = newer.and(ident(SEQ).gt(lit(floor)));
    }
    cols.push(newer.alias(APPLY));
    let decided = winners.join_on(known, JoinType::Left, on)?.select(cols)?;
    let decided_schema: SchemaRef = Arc::new(decided.schema().as_arrow().clone());
    let decided = decided.collect().await?;
    check_keys(&decided, &r.keys, target)?;
    let mut applied = Vec::new();
    for b in &decided {
        let mask = b
            .column_by_name(APPLY)
            .expect("decision column")
            .as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .unwrap_or_else(|| BooleanArray::from(vec![true; b.num_rows()]));
        let keep = filter_record_batch(b, &mask)?;
        stats.late += (b.num_rows() - keep.num_rows()) as u64;
        let ops = keep
            .column_by_name(OP)
            .expect("kind column")
            .as_any()
            .downcast_ref::<Int8Array>()
            .cloned()
            .unwrap_or_else(|| Int8Array::from(vec![OP_UPSERT; keep.num_rows()]));
        for op in ops.iter().flatten() {
            match op {
                OP_DELETE => stats.deleted += 1,
                _ => stats.upserted += 1,
            }
        }
        applied.push(keep);
    }

    // 1. The state, under the batch's transaction. A redo whose state is already committed
    // merges again without the transaction: its input is a superset of the crashed run's
    // (streams only grow), its winners are at least as new, so setting them is idempotent.
    let sschema = delta::table_schema(&state)?;
    let rows = state_rows(&applied, &r.keys, &sschema, truncate_at.as_ref())?;
    let mark = HashMap::from([(
        CDC_KEY.to_string(),
        json!({"target": target.name.to_string(), "app_id": txn.app_id, "batch": txn.version}),
    )]);
    let props = commit_properties((!state_done).then_some(txn), mark.clone());
    if rows.iter().any(|b| b.num_rows() > 0) {
        let src = mem(ctx, sschema.clone(), rows)?;
        let mut insert: Vec<String> = r.keys.clone();
        insert.push(SEQ.into());
        insert.push(DELETED.into());
        state
            .clone()
            .merge(src, on_keys(&r.keys))
            .with_source_alias("s")
            .with_target_alias("t")
            .with_session_state(Arc::new(ctx.state()))
            .with_commit_properties(props)
            .when_matched_update(|u| {
                u.update(col_name(SEQ), qcol("s", SEQ))
                    .update(col_name(DELETED), qcol("s", DELETED))
            })
            .and_then(|m| {
                m.when_not_matched_insert(|mut i| {
                    for c in &insert {
                        i = i.set(col_name(c), qcol("s", c));
                    }
                    i
                })
            })
            .map_err(LakehouseError::delta(&state_info.name))?
            .await
            .map_err(LakehouseError::delta(&state_info.name))?;
    } else if !state_done {
        delta::commit(
            &state,
            CommitRequest {
                txns: vec![(txn.app_id.clone(), txn.version)],
                app_metadata: mark,
                ..Default::default()
            },
        )
        .await?;
    }
    super::failpoint("auto_cdc.after_state_commit");

    // 2. The target: one MERGE (or an empty commit that records the batch as read).
    let nothing = applied.iter().all(|b| b.num_rows() == 0) && truncate_at.is_none();
    if nothing {
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
    let src = project_to_target(mem(ctx, decided_schema, applied)?, &target_schema, &[OP])?;
    let values: Vec<String> = target_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let ignore_nulls = r.spec.ignore_null_updates;
    let key_set = r.keys.clone();
    let mut m = table
        .merge(src, on_keys(&r.keys))
        .with_source_alias("s")
        .with_target_alias("t")
        .with_session_state(Arc::new(ctx.state()))
        .with_commit_properties(commit_properties(Some(txn), metadata))
        .when_matched_delete(|d| d.predicate(qcol("s", OP).eq(lit(OP_DELETE))))
        .and_then(|m| {
            m.when_matched_update(|mut u| {
                u = u.predicate(qcol("s", OP).eq(lit(OP_UPSERT)));
                for c in values.iter().filter(|c| !key_set.contains(c)) {
                    let v = if ignore_nulls {
                        coalesce(vec![qcol("s", c), qcol("t", c)])
                    } else {
                        qcol("s", c)
                    };
                    u = u.update(col_name(c), v);
                }
                u
            })
        })
        .and_then(|m| {
            m.when_not_matched_insert(|mut i| {
                i = i.predicate(qcol("s", OP).eq(lit(OP_UPSERT)));
                for c in &values {
                    i = i.set(col_name(c), qcol("s", c));
                }
                i
            })
        })
        .map_err(LakehouseError::delta(&target.name))?;
    if truncate_at.is_some() {
        m = m
            .when_not_matched_by_source_delete(|d| d)
            .map_err(LakehouseError::delta(&target.name))?;
    }
    let (t, _metrics) = m.await.map_err(LakehouseError::delta(&target.name))?;
    stats.version = t.version().map_or(0, |v| v as i64);
    Ok(stats)
}

/// A MERGE column by its exact name.
pub(crate) fn col_name(name: &str) -> datafusion::common::Column {
    datafusion::common::Column::new_unqualified(name)
}
