//! AUTO CDC (`APPLY CHANGES INTO`): a change feed applied to a streaming table by key, in the
//! order of a sequence column, as SCD type 1 (the current row per key) or SCD type 2 (every
//! version of a key, with `__START_AT` / `__END_AT`).
//!
//! [`apply_changes`] is source-agnostic: it takes any [`DataFrame`] of change rows (a
//! streaming table of change records, or a connector's change stream with `_op`, `_lsn` and
//! `_commit_ts`) and applies one batch with one Delta commit on the target carrying the
//! application transaction `txn(app_id, version)`, so a batch is never applied twice.
//!
//! Out-of-order events are resolved by the sequence:
//! - SCD 1 keeps a hidden state table `<target>__cdc_state` (key columns, `__cdc_seq`,
//!   `__cdc_deleted`): the last sequence applied per key, and a tombstone for deleted keys, so a
//!   late event never overwrites a newer one nor resurrects a deleted row, while readers of the
//!   target see only live rows. A `TRUNCATE` leaves a row with NULL keys and NULL
//!   `__cdc_deleted` whose sequence is a floor below which every event is late. The state
//!   is committed first (with the same transaction), the target second; a redo that finds the
//!   state already committed reads the state as it was before that batch (time travel), so the
//!   redo makes the same decisions as the interrupted run.
//! - SCD 2 needs no state: the history in the target is the state. The affected keys' history
//!   is rebuilt from their stored versions plus the new events (a delete is a version that
//!   ends without a successor) and swapped in with one MERGE.
//!
//! Not yet: several AUTO CDC flows into one target; expectations on a target; a `STRUCT`
//! sequence; reading a target through `STREAM` downstream (its MERGEs rewrite files, as in
//! Lakeflow without `skipChangeCommits`). A batch is held in memory while it is applied.

use std::collections::HashMap;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::ExprSchemable;
use datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit, when};
use deltalake::DeltaTable;
use serde_json::Value;

use confluo_lakehouse::changes::{OLD_KEY_COLUMN, UNCHANGED_COLUMN};
use confluo_lakehouse::delta;
use confluo_lakehouse::{Lakehouse, TableInfo, TableVersion};

use crate::error::{PipelineError, Result};

pub(crate) use pipeline::{check_graph, target_schema};

mod pipeline;
mod scd1;
mod scd2;
pub mod syntax;
mod unchanged;

/// Column holding an event's sequence while a batch is applied.
pub(crate) const SEQ: &str = "__cdc_seq";
/// Column holding an event's kind while a batch is applied: 0 upsert, 1 delete, 2 truncate.
pub(crate) const OP: &str = "__cdc_op";
/// SCD 2: the sequence at which a version became current.
pub const START_AT: &str = "__START_AT";
/// SCD 2: the sequence at which a version stopped being current (NULL while it is).
pub const END_AT: &str = "__END_AT";

pub(crate) const OP_UPSERT: i8 = 0;
pub(crate) const OP_DELETE: i8 = 1;
pub(crate) const OP_TRUNCATE: i8 = 2;

/// How a target keeps its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScdType {
    /// One row per key, updated in place.
    #[default]
    One,
    /// Every version of a key, with `__START_AT` / `__END_AT`.
    Two,
}

/// `COLUMNS ...` / `TRACK HISTORY ON ...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ColumnSelection {
    /// Every column (`*`, or the clause left out).
    #[default]
    All,
    /// Only these.
    Only(Vec<String>),
    /// `* EXCEPT (...)`.
    Except(Vec<String>),
}

/// What an AUTO CDC flow does, independent of where its changes come from.
#[derive(Debug, Clone, Default)]
pub struct AutoCdcSpec {
    /// `KEYS (...)`: the columns identifying a row.
    pub keys: Vec<String>,
    /// `SEQUENCE BY`: an SQL expression over the change rows ordering the events of a key.
    pub sequence_by: String,
    /// `IGNORE NULL UPDATES`: a NULL in an update keeps the target's value.
    pub ignore_null_updates: bool,
    /// `APPLY AS DELETE WHEN`: an SQL condition marking delete events.
    pub apply_as_deletes: Option<String>,
    /// `APPLY AS TRUNCATE WHEN`: an SQL condition marking truncate events (SCD 1 only).
    pub apply_as_truncates: Option<String>,
    /// `COLUMNS`: which change columns the target keeps.
    pub columns: ColumnSelection,
    /// `STORED AS SCD TYPE n`.
    pub scd_type: ScdType,
    /// `TRACK HISTORY ON`: SCD 2 columns whose change makes a new version (others are
    /// updated in place).
    pub track_history: ColumnSelection,
}

/// The clause an [`SpecError`] is about, so a parser can point at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clause {
    /// `KEYS`.
    Keys,
    /// `SEQUENCE BY`.
    SequenceBy,
    /// `APPLY AS DELETE WHEN`.
    Deletes,
    /// `APPLY AS TRUNCATE WHEN`.
    Truncates,
    /// `COLUMNS`.
    Columns,
    /// `TRACK HISTORY ON`.
    TrackHistory,
}

/// A spec that does not fit the change rows' columns.
#[derive(Debug, Clone)]
pub struct SpecError {
    /// Which clause.
    pub clause: Clause,
    /// What is wrong, with a hint.
    pub message: String,
}

/// A spec checked against the change rows' schema.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The spec.
    pub spec: AutoCdcSpec,
    /// Key columns, as the change rows spell them.
    pub keys: Vec<String>,
    /// The target's user-visible columns, in the change rows' order.
    pub columns: Vec<String>,
    /// SCD 2: the columns whose change makes a new version.
    pub tracked: Vec<String>,
    /// The type of the sequence.
    pub sequence_type: DataType,
    /// The target's schema: `columns` (+ `__START_AT`, `__END_AT` for SCD 2), all nullable.
    pub target_schema: SchemaRef,
}

fn find_column(schema: &Schema, name: &str) -> Option<String> {
    let fields = schema.fields();
    fields
        .iter()
        .find(|f| f.name() == name)
        .or_else(|| fields.iter().find(|f| f.name().eq_ignore_ascii_case(name)))
        .map(|f| f.name().clone())
}

fn unknown(clause: Clause, what: &str, name: &str, schema: &Schema) -> SpecError {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    SpecError {
        clause,
        message: format!(
            "{what} `{name}` is not a column of the change rows{}\n  hint: the change rows have {}",
            confluo_core::suggest::hint(&confluo_core::suggest::nearest(
                name,
                names.iter().copied()
            )),
            names.join(", ")
        ),
    }
}

fn select(
    sel: &ColumnSelection,
    schema: &Schema,
    clause: Clause,
    what: &str,
) -> std::result::Result<Vec<String>, SpecError> {
    // `_unchanged` and `_old_key` say how to apply a row, they are not part of it.
    let all: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != UNCHANGED_COLUMN && n != OLD_KEY_COLUMN)
        .collect();
    match sel {
        ColumnSelection::All => Ok(all),
        ColumnSelection::Only(list) => {
            let mut found = Vec::new();
            for n in list {
                found.push(find_column(schema, n).ok_or_else(|| unknown(clause, what, n, schema))?);
            }
            Ok(all.into_iter().filter(|c| found.contains(c)).collect())
        }
        ColumnSelection::Except(list) => {
            let mut found = Vec::new();
            for n in list {
                found.push(find_column(schema, n).ok_or_else(|| unknown(clause, what, n, schema))?);
            }
            Ok(all.into_iter().filter(|c| !found.contains(c)).collect())
        }
    }
}

/// Checks a spec against the change rows (their columns, the types of the sequence and the
/// conditions) and works out the target's schema. Nothing is read.
pub fn resolve(
    spec: &AutoCdcSpec,
    changes: &DataFrame,
) -> std::result::Result<Resolved, SpecError> {
    let schema = changes.schema().as_arrow();
    if spec.keys.is_empty() {
        return Err(SpecError {
            clause: Clause::Keys,
            message: "AUTO CDC needs KEYS (...): the columns that identify a row".into(),
        });
    }
    let mut keys = Vec::new();
    for k in &spec.keys {
        keys.push(find_column(schema, k).ok_or_else(|| unknown(Clause::Keys, "key", k, schema))?);
    }
    let seq = changes
        .parse_sql_expr(&spec.sequence_by)
        .map_err(|e| SpecError {
            clause: Clause::SequenceBy,
            message: format!(
                "SEQUENCE BY {}: {}",
                spec.sequence_by,
                confluo_sql::error::clean_datafusion(&e)
            ),
        })?;
    let sequence_type = seq.get_type(changes.schema()).map_err(|e| SpecError {
        clause: Clause::SequenceBy,
        message: format!(
            "SEQUENCE BY {}: {}",
            spec.sequence_by,
            confluo_sql::error::clean_datafusion(&e)
        ),
    })?;
    if matches!(
        sequence_type,
        DataType::Struct(_) | DataType::List(_) | DataType::Map(_, _) | DataType::Null
    ) {
        return Err(SpecError {
            clause: Clause::SequenceBy,
            message: format!(
                "SEQUENCE BY {} is of type {sequence_type}; a sequence must be a number, string, date or timestamp",
                spec.sequence_by
            ),
        });
    }
    for (clause, cond) in [
        (Clause::Deletes, &spec.apply_as_deletes),
        (Clause::Truncates, &spec.apply_as_truncates),
    ] {
        if let Some(c) = cond {
            let e = changes.parse_sql_expr(c).map_err(|e| SpecError {
                clause,
                message: format!("{c}: {}", confluo_sql::error::clean_datafusion(&e)),
            })?;
            let t = e.get_type(changes.schema()).map_err(|e| SpecError {
                clause,
                message: format!("{c}: {}", confluo_sql::error::clean_datafusion(&e)),
            })?;
            if !matches!(t, DataType::Boolean | DataType::Null) {
                return Err(SpecError {
                    clause,
                    message: format!("{c} is of type {t}, not a condition (BOOLEAN)"),
                });
            }
        }
    }
    if spec.apply_as_truncates.is_some() && spec.scd_type == ScdType::Two {
        return Err(SpecError {
            clause: Clause::Truncates,
            message: "APPLY AS TRUNCATE WHEN is only supported with SCD TYPE 1 (as in Lakeflow)\n  hint: remove it, or store the target as SCD TYPE 1".into(),
        });
    }
    let columns = select(&spec.columns, schema, Clause::Columns, "column")?;
    for k in &keys {
        if !columns.contains(k) {
            return Err(SpecError {
                clause: Clause::Columns,
                message: format!("key `{k}` is left out by COLUMNS; the target must keep its keys"),
            });
        }
    }
    for c in &columns {
        if c.eq_ignore_ascii_case(START_AT) || c.eq_ignore_ascii_case(END_AT) {
            return Err(SpecError {
                clause: Clause::Columns,
                message: format!(
                    "the change rows have a column `{c}`, a name AUTO CDC reserves for SCD 2 history\n  hint: leave it out with COLUMNS * EXCEPT ({c})"
                ),
            });
        }
    }
    let tracked = if spec.scd_type == ScdType::Two {
        let t = select(&spec.track_history, schema, Clause::TrackHistory, "column")?;
        t.into_iter().filter(|c| columns.contains(c)).collect()
    } else {
        if spec.track_history != ColumnSelection::All {
            return Err(SpecError {
                clause: Clause::TrackHistory,
                message: "TRACK HISTORY ON applies to SCD TYPE 2 targets only\n  hint: add STORED AS SCD TYPE 2, or remove TRACK HISTORY ON".into(),
            });
        }
        vec![]
    };
    let mut fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            let f = schema.field_with_name(c).expect("column resolved above");
            Field::new(c, f.data_type().clone(), true)
        })
        .collect();
    if spec.scd_type == ScdType::Two {
        fields.push(Field::new(START_AT, sequence_type.clone(), true));
        fields.push(Field::new(END_AT, sequence_type.clone(), true));
    }
    Ok(Resolved {
        spec: spec.clone(),
        keys,
        columns,
        tracked,
        sequence_type,
        target_schema: std::sync::Arc::new(Schema::new(fields)),
    })
}

/// The application transaction a batch is committed with.
#[derive(Debug, Clone)]
pub struct Txn {
    /// Who applies (e.g. `confluo:<pipeline>:<flow>`).
    pub app_id: String,
    /// The batch number; each is applied at most once.
    pub version: i64,
}

/// What applying one batch did.
#[derive(Debug, Clone, Default)]
pub struct ApplyStats {
    /// Change rows read.
    pub changes: u64,
    /// Keys inserted or updated (SCD 1), or versions written (SCD 2).
    pub upserted: u64,
    /// Keys deleted (SCD 1) or versions closed by a delete (SCD 2).
    pub deleted: u64,
    /// Events older than what the target already holds, left out.
    pub late: u64,
    /// Whether the batch truncated the target.
    pub truncated: bool,
    /// The target's Delta version after the commit.
    pub version: i64,
    /// The transaction was already committed: nothing was done.
    pub already_applied: bool,
}

/// The hidden table that keeps SCD 1 tombstones and last sequences of a target.
pub fn state_table_name(target: &confluo_core::TableName) -> confluo_core::TableName {
    confluo_core::TableName::new(
        target.catalog.as_str(),
        target.schema.as_str(),
        format!("{}__cdc_state", target.table.as_str()),
    )
}

/// The version of the application transaction `app_id` committed in `table`, if any.
pub(crate) async fn txn_version(table: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    table
        .snapshot()
        .map_err(|e| PipelineError::Config(e.to_string()))?
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| PipelineError::Config(e.to_string()))
}

/// The change rows as events: the target's columns, the sequence ([`SEQ`]) and the kind
/// ([`OP`]), with conditions evaluated over the full change row (they may read columns the
/// target leaves out).
fn events(changes: DataFrame, r: &Resolved) -> Result<DataFrame> {
    let seq = changes.parse_sql_expr(&r.spec.sequence_by)?;
    let mut op: Expr = lit(OP_UPSERT);
    if let Some(c) = &r.spec.apply_as_deletes {
        let cond = changes.parse_sql_expr(c)?;
        op = when(cond, lit(OP_DELETE)).otherwise(op)?;
    }
    if let Some(c) = &r.spec.apply_as_truncates {
        let cond = changes.parse_sql_expr(c)?;
        op = when(cond, lit(OP_TRUNCATE)).otherwise(op)?;
    }
    let mut exprs: Vec<Expr> = r.columns.iter().map(|c| ident(c)).collect();
    exprs.push(seq.alias(SEQ));
    exprs.push(op.alias(OP));
    for control in [UNCHANGED_COLUMN, OLD_KEY_COLUMN] {
        if changes.schema().has_column_with_unqualified_name(control) {
            exprs.push(ident(control));
        }
    }
    Ok(changes.select(exprs)?)
}

/// Batches as a frame. Batches carry the schema they were produced with (a Delta scan's
/// string views, nullability), which wins over the one planned for them.
pub(crate) fn mem(
    ctx: &SessionContext,
    schema: SchemaRef,
    batches: Vec<datafusion::arrow::array::RecordBatch>,
) -> Result<DataFrame> {
    let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
    let t = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
    Ok(ctx.read_table(std::sync::Arc::new(t))?)
}

/// A column by its exact name (no case folding, no parsing of dots).
pub(crate) fn ident(name: &str) -> Expr {
    Expr::Column(datafusion::common::Column::new_unqualified(name))
}

/// A column of the MERGE's source (`s`) or target (`t`).
pub(crate) fn qcol(alias: &str, name: &str) -> Expr {
    Expr::Column(datafusion::common::Column::new(Some(alias), name))
}

/// Applies one batch of change rows to an AUTO CDC target (already created with
/// [`Resolved::target_schema`]) with one Delta commit carrying `txn` and `metadata` (extra
/// `commitInfo` entries). A transaction the target already holds is not applied again.
pub async fn apply_changes(
    lh: &Lakehouse,
    target: &TableInfo,
    changes: DataFrame,
    spec: &AutoCdcSpec,
    txn: &Txn,
    metadata: HashMap<String, Value>,
) -> Result<ApplyStats> {
    let table = lh.open_delta(target, TableVersion::Latest).await?;
    if txn_version(&table, &txn.app_id)
        .await?
        .is_some_and(|v| v >= txn.version)
    {
        return Ok(ApplyStats {
            already_applied: true,
            version: delta::table_version(&table),
            ..Default::default()
        });
    }
    let r = resolve(spec, &changes).map_err(|e| {
        PipelineError::Config(format!("AUTO CDC into {}: {}", target.name, e.message))
    })?;
    // New source columns the target keeps are added to it first (a metadata-only commit:
    // a redo finds them there and skips it).
    let current = delta::table_schema(&table)?;
    let wanted = delta::delta_compatible_schema(&r.target_schema);
    let table = match delta::evolve_schema(&current, &wanted, &target.name.to_string())? {
        Some(evolved) => {
            delta::commit(
                &table,
                delta::CommitRequest {
                    new_schema: Some(evolved),
                    ..Default::default()
                },
            )
            .await?;
            lh.open_delta(target, TableVersion::Latest).await?
        }
        None => table,
    };
    let (state, plan) = changes.into_parts();
    let ctx = SessionContext::new_with_state(state);
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| PipelineError::Config(e.to_string()))?;
    let events = events(DataFrame::new(ctx.state(), plan), &r)?;
    let events = unchanged::resolve(&ctx, events, &r, &table).await?;
    let stats = match r.spec.scd_type {
        ScdType::One => scd1::apply(lh, &ctx, target, table, events, &r, txn, metadata).await?,
        ScdType::Two => scd2::apply(&ctx, target, table, events, &r, txn, metadata).await?,
    };
    failpoint("auto_cdc.after_target_commit");
    Ok(stats)
}

/// A crash on purpose: `CONFLUO_FAILPOINT=<name>` aborts the process at the point so named,
/// which is how tests reach the moments between the commits of a batch deterministically.
pub(crate) fn failpoint(name: &str) {
    if std::env::var("CONFLUO_FAILPOINT").is_ok_and(|v| v == name) {
        std::process::abort();
    }
}

/// Opens an AUTO CDC target, creating it with the schema [`resolve`] works out from the
/// change rows when it does not exist yet (for callers outside a pipeline, e.g. managed
/// ingestion).
pub async fn ensure_target(
    lh: &Lakehouse,
    name: &confluo_core::TableName,
    spec: &AutoCdcSpec,
    changes: &DataFrame,
    properties: std::collections::BTreeMap<String, String>,
) -> Result<TableInfo> {
    if let Some(info) = lh.metastore().get_table(name).await? {
        return Ok(info);
    }
    let r = resolve(spec, changes)
        .map_err(|e| PipelineError::Config(format!("AUTO CDC into {name}: {}", e.message)))?;
    let schema = delta::delta_compatible_schema(&r.target_schema);
    let (info, _) = lh
        .create_table(confluo_lakehouse::NewTable {
            name: name.clone(),
            schema: schema.as_ref().clone(),
            partition_by: vec![],
            comment: None,
            properties,
            location: None,
        })
        .await?;
    Ok(info)
}

/// Forgets an SCD 1 target's tombstones and sequences (before a full refresh rebuilds it).
pub async fn reset_state(lh: &Lakehouse, target: &confluo_core::TableName) -> Result<()> {
    let name = state_table_name(target);
    if let Some(info) = lh.metastore().get_table(&name).await? {
        let t = lh.open_delta(&info, TableVersion::Latest).await?;
        delta::commit(
            &t,
            delta::CommitRequest {
                mode: delta::WriteMode::Overwrite,
                ..Default::default()
            },
        )
        .await?;
    }
    Ok(())
}

/// Commit properties: the transaction and the caller's `commitInfo` entries.
pub(crate) fn commit_properties(
    txn: Option<&Txn>,
    metadata: HashMap<String, Value>,
) -> deltalake::kernel::transaction::CommitProperties {
    let mut metadata = metadata;
    metadata.insert("engineInfo".into(), Value::String(delta::engine_info()));
    let props = deltalake::kernel::transaction::CommitProperties::default().with_metadata(metadata);
    match txn {
        Some(t) => props.with_application_transaction(deltalake::kernel::Transaction::new(
            &t.app_id, t.version,
        )),
        None => props,
    }
}

/// Fails when a key column is NULL in an event: such a row could never be matched again.
pub(crate) fn check_keys(
    batches: &[datafusion::arrow::array::RecordBatch],
    keys: &[String],
    target: &TableInfo,
) -> Result<()> {
    for b in batches {
        for k in keys {
            let Ok(c) = b.column_by_name(k).ok_or(()) else {
                continue;
            };
            if c.null_count() > 0 {
                return Err(PipelineError::Config(format!(
                    "AUTO CDC into {}: {} change row(s) have a NULL key `{k}`\n  hint: filter them out in the source, or mark them with APPLY AS DELETE WHEN / APPLY AS TRUNCATE WHEN",
                    target.name,
                    c.null_count()
                )));
            }
        }
    }
    Ok(())
}

/// The target's columns cast to the types the Delta table stores.
pub(crate) fn project_to_target(
    df: DataFrame,
    target: &Schema,
    extra: &[&str],
) -> Result<DataFrame> {
    let mut exprs = Vec::new();
    for f in target.fields() {
        let have = df
            .schema()
            .as_arrow()
            .field_with_name(f.name())
            .ok()
            .cloned();
        let e = match have {
            Some(h) if h.data_type() == f.data_type() => ident(f.name()),
            Some(_) => {
                datafusion::prelude::cast(ident(f.name()), f.data_type().clone()).alias(f.name())
            }
            None => datafusion::prelude::cast(
                lit(datafusion::common::ScalarValue::Null),
                f.data_type().clone(),
            )
            .alias(f.name()),
        };
        exprs.push(e);
    }
    for x in extra {
        exprs.push(col(format!("\"{x}\"")));
    }
    Ok(df.select(exprs)?)
}
