//! The metric store and failing rows, as Delta tables appended to and never overwritten:
//! `system.quality.check_results` (every check's outcome), `system.quality.metrics` (row
//! counts, commit times and profiles) and `<table>_failures` beside each monitored table.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::StreamExt;

use confluo_core::TableName;
use confluo_lakehouse::delta::{self, CommitRequest};
use confluo_lakehouse::write::TableWriter;
use confluo_lakehouse::{Lakehouse, NewTable, TableVersion};
use confluo_sql::{SqlOutput, SqlSession};

use crate::checks::{CheckResult, Target, reference_bad, reference_join, resolve_table};
use crate::error::Result;
use crate::spec::{Check, Kind};
use crate::sql::{ident, literal};

/// The catalog and schema of the metric store.
pub const STORE_CATALOG: &str = "system";
/// Its schema.
pub const STORE_SCHEMA: &str = "quality";
/// Check outcomes.
pub const CHECK_RESULTS: &str = "check_results";
/// Metrics: row counts, commit times, profiles.
pub const METRICS: &str = "metrics";

fn ts(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

/// `system.quality.check_results`' columns.
pub fn check_results_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("table_version", DataType::Int64, true),
        Field::new("check_name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("dimension", DataType::Utf8, false),
        Field::new("slice", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("bad_rows", DataType::Int64, true),
        Field::new("checked_rows", DataType::Int64, true),
        Field::new("warn_if", DataType::Utf8, true),
        Field::new("fail_if", DataType::Utf8, true),
        Field::new("message", DataType::Utf8, true),
        ts("checked_at"),
    ]))
}

/// `system.quality.metrics`' columns.
pub fn metrics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("table_version", DataType::Int64, true),
        Field::new("column_name", DataType::Utf8, true),
        Field::new("slice", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("text_value", DataType::Utf8, true),
        ts("computed_at"),
    ]))
}

/// One metric of a table (or of one of its columns).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Metric {
    /// The column, or `None` for the table.
    pub column: Option<String>,
    /// `row_count`, `null_count`, `approx_distinct`, `mean`, `p50`, `top_values`, …
    pub metric: String,
    /// Its number.
    pub value: Option<f64>,
    /// Its text (min/max of strings, top values as JSON).
    pub text: Option<String>,
}

/// What one run of one monitor writes.
pub struct RunRecord<'a> {
    /// The run.
    pub run_id: &'a str,
    /// The table and version.
    pub target: &'a Target,
    /// When (µs since the epoch).
    pub at_us: i64,
}

impl RunRecord<'_> {
    /// The columns every metric-store row starts with, for `n` rows: the run, the table,
    /// the version.
    fn leading_columns(&self, n: usize) -> Vec<ArrayRef> {
        let table = self.target.name.to_string();
        vec![
            Arc::new(StringArray::from_iter_values((0..n).map(|_| self.run_id))),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|_| table.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|_| self.target.version),
            )),
        ]
    }

    /// The run's moment, for `n` rows.
    fn at_column(&self, n: usize) -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values((0..n).map(|_| self.at_us))
                .with_timezone("UTC"),
        )
    }
}

/// Opens (creating when missing) a table of the metric store.
async fn store_table(
    lh: &Lakehouse,
    table: &str,
    schema: SchemaRef,
) -> Result<deltalake::DeltaTable> {
    let name = TableName::new(STORE_CATALOG, STORE_SCHEMA, table);
    if let Some(info) = lh.metastore().get_table(&name).await? {
        return Ok(lh.open_delta(&info, TableVersion::Latest).await?);
    }
    let ms = lh.metastore();
    ms.create_catalog(STORE_CATALOG, Some("Confluo's own records"), None, true)
        .await?;
    ms.create_schema(
        STORE_CATALOG,
        STORE_SCHEMA,
        Some("data quality: check results and metrics, appended by every monitor run"),
        None,
        true,
    )
    .await?;
    match lh
        .create_table(NewTable {
            name: name.clone(),
            schema: schema.as_ref().clone(),
            partition_by: vec![],
            comment: Some(format!(
                "data quality {table}, appended by `confluo monitor run`"
            )),
            properties: Default::default(),
            location: None,
        })
        .await
    {
        Ok((_, t)) => Ok(t),
        // Another monitor run created it in the meantime.
        Err(confluo_lakehouse::LakehouseError::AlreadyExists { .. }) => {
            let info = lh.table(&name).await?;
            Ok(lh.open_delta(&info, TableVersion::Latest).await?)
        }
        Err(e) => Err(e.into()),
    }
}

async fn append(
    table: &deltalake::DeltaTable,
    schema: SchemaRef,
    batch: RecordBatch,
) -> Result<()> {
    let mut writer = TableWriter::new(table, schema)?;
    writer.write(&batch).await?;
    let adds = writer.finish().await?;
    delta::commit(
        table,
        CommitRequest {
            adds,
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

fn texts<T>(rows: &[T], f: impl Fn(&T) -> Option<String>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

/// Appends a run's check results to `system.quality.check_results` (one commit).
pub async fn append_results(
    lh: &Lakehouse,
    run: &RunRecord<'_>,
    results: &[CheckResult],
) -> Result<()> {
    if results.is_empty() {
        return Ok(());
    }
    let schema = check_results_schema();
    let n = results.len();
    let mut columns = run.leading_columns(n);
    columns.extend([
        texts(results, |r| Some(r.check.clone())),
        texts(results, |r| Some(r.kind.clone())),
        texts(results, |r| Some(r.dimension.clone())),
        texts(results, |r| Some(r.slice.clone())),
        texts(results, |r| Some(r.status.as_str().to_string())),
        Arc::new(results.iter().map(|r| r.value).collect::<Float64Array>()),
        Arc::new(results.iter().map(|r| r.bad_rows).collect::<Int64Array>()),
        Arc::new(
            results
                .iter()
                .map(|r| r.checked_rows)
                .collect::<Int64Array>(),
        ),
        texts(results, |r| r.warn.clone()),
        texts(results, |r| r.fail.clone()),
        texts(results, |r| Some(r.message.clone())),
        run.at_column(n),
    ]);
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let table = store_table(lh, CHECK_RESULTS, schema.clone()).await?;
    append(&table, schema, batch).await
}

/// Appends metrics (of the whole table when `slice` is empty) to `system.quality.metrics`.
pub async fn append_metrics(
    lh: &Lakehouse,
    run: &RunRecord<'_>,
    slice: &str,
    metrics: &[Metric],
) -> Result<()> {
    if metrics.is_empty() {
        return Ok(());
    }
    let schema = metrics_schema();
    let n = metrics.len();
    let mut columns = run.leading_columns(n);
    columns.extend([
        texts(metrics, |m| m.column.clone()),
        Arc::new(StringArray::from_iter_values((0..n).map(|_| slice))),
        texts(metrics, |m| Some(m.metric.clone())),
        Arc::new(metrics.iter().map(|m| m.value).collect::<Float64Array>()),
        texts(metrics, |m| m.text.clone()),
        run.at_column(n),
    ]);
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let table = store_table(lh, METRICS, schema.clone()).await?;
    append(&table, schema, batch).await
}

/// The failing-rows table of `table`: `<table>_failures` in the same schema.
pub fn failures_table(table: &TableName) -> TableName {
    TableName::new(
        table.catalog.as_str(),
        table.schema.as_str(),
        format!("{}_failures", table.table.as_str()),
    )
}

/// The columns every failing row carries before the table's own.
fn failure_meta() -> Vec<Field> {
    vec![
        Field::new("_run_id", DataType::Utf8, false),
        Field::new("_check", DataType::Utf8, false),
        ts("_failed_at"),
        Field::new("_table_version", DataType::Int64, false),
    ]
}

/// The query selecting a row check's failing rows, with the columns of [`failure_meta`].
async fn failing_rows_sql(
    session: &SqlSession,
    run: &RunRecord<'_>,
    check: &Check,
) -> std::result::Result<Option<String>, String> {
    let target = run.target;
    let meta = format!(
        "{run} AS _run_id, {check} AS _check, to_timestamp_micros({at}) AS _failed_at, \
         CAST({version} AS BIGINT) AS _table_version, t.*",
        run = literal(run.run_id),
        check = literal(&check.name),
        at = run.at_us,
        version = target.version,
    );
    let filter = check
        .filter
        .as_deref()
        .map(|f| format!("({f}) AND "))
        .unwrap_or_default();
    Ok(Some(match &check.kind {
        Kind::Duplicate { columns } => {
            let keys: Vec<&String> = check.group_by.iter().chain(columns).collect();
            let inner: Vec<String> = keys
                .iter()
                .enumerate()
                .map(|(i, c)| format!("t.{} AS __d{i}", ident(c)))
                .collect();
            let group: Vec<String> = keys.iter().map(|c| format!("t.{}", ident(c))).collect();
            let on: Vec<String> = keys
                .iter()
                .enumerate()
                .map(|(i, c)| format!("t.{} = d.__d{i}", ident(c)))
                .collect();
            format!(
                "SELECT {meta} FROM {from} JOIN (SELECT {inner} FROM {from}{w} GROUP BY {group} HAVING count(*) > 1) d ON {on}{w2}",
                from = target.from_clause(),
                inner = inner.join(", "),
                w = check
                    .filter
                    .as_deref()
                    .map(|f| format!(" WHERE ({f})"))
                    .unwrap_or_default(),
                group = group.join(", "),
                on = on.join(" AND "),
                w2 = check
                    .filter
                    .as_deref()
                    .map(|f| format!(" WHERE ({f})"))
                    .unwrap_or_default(),
            )
        }
        // The query's own rows, with its own columns.
        Kind::FailingRows { query } => format!("SELECT {} FROM ({query}) t", meta),
        Kind::References { column, table, to } => {
            let other = resolve_table(session, table).await?;
            format!(
                "SELECT {meta} FROM {from} {join} WHERE {filter}{bad}",
                from = target.from_clause(),
                join = reference_join(&other, column, to),
                bad = reference_bad(column),
            )
        }
        _ => match check.bad_row() {
            Some(bad) => format!(
                "SELECT {meta} FROM {from} WHERE {filter}({bad})",
                from = target.from_clause()
            ),
            None => return Ok(None),
        },
    }))
}

/// Appends the failing rows of `checks` (those that warned or failed and judge rows) to
/// `<table>_failures`, in one commit, streamed: every failing row is kept, not a sample.
/// Returns the rows written.
pub async fn keep_failing_rows(
    session: &SqlSession,
    run: &RunRecord<'_>,
    checks: &[&Check],
) -> std::result::Result<u64, String> {
    if checks.is_empty() {
        return Ok(0);
    }
    let lh = session.lakehouse();
    let name = failures_table(&run.target.name);
    let mut fields = failure_meta();
    fields.extend(
        run.target
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true)),
    );
    let mut wanted = delta::delta_compatible_schema(&Schema::new(fields));
    // The queries first: a `failing_rows` query may bring columns of its own, which the
    // failures table gains rather than loses.
    let source = format!("failing rows of {}", run.target.name);
    let mut streams = Vec::new();
    for check in checks {
        let Some(sql) = failing_rows_sql(session, run, check).await? else {
            continue;
        };
        if let SqlOutput::Rows(stream) =
            session.run_script(&sql).await.map_err(|e| e.to_string())?
        {
            // Only columns the table lacks: the known ones are cast as they are written.
            let new: Vec<_> = stream
                .schema()
                .fields()
                .iter()
                .filter(|f| wanted.field_with_name(f.name()).is_err())
                .cloned()
                .collect();
            if let Some(more) = delta::evolve_schema(&wanted, &Schema::new(new), &source)
                .map_err(|e| e.to_string())?
            {
                wanted = more;
            }
            streams.push(stream);
        }
    }
    let (table, schema, evolved) = match lh
        .metastore()
        .get_table(&name)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(info) => {
            let table = lh
                .open_delta(&info, TableVersion::Latest)
                .await
                .map_err(|e| e.to_string())?;
            let have = delta::table_schema(&table).map_err(|e| e.to_string())?;
            match delta::evolve_schema(&have, &wanted, &source).map_err(|e| e.to_string())? {
                Some(new) => (table, new.clone(), Some(new)),
                None => (table, have, None),
            }
        }
        None => {
            let (_, table) = lh
                .create_table(NewTable {
                    name: name.clone(),
                    schema: wanted.as_ref().clone(),
                    partition_by: vec![],
                    comment: Some(format!(
                        "rows of {} that failed its quality checks (confluo monitor run)",
                        run.target.name
                    )),
                    properties: Default::default(),
                    location: None,
                })
                .await
                .map_err(|e| e.to_string())?;
            (table, wanted.clone(), None)
        }
    };
    let mut writer = TableWriter::new(&table, schema).map_err(|e| e.to_string())?;
    for mut stream in streams {
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| e.to_string())?;
            writer.write(&batch).await.map_err(|e| e.to_string())?;
        }
    }
    let rows = writer.rows();
    let adds = writer.finish().await.map_err(|e| e.to_string())?;
    if adds.is_empty() && evolved.is_none() {
        return Ok(0);
    }
    delta::commit(
        &table,
        CommitRequest {
            adds,
            new_schema: evolved,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(rows)
}

/// Deletes failing rows older than `retention` from `<table>_failures`; returns how many.
pub async fn expire_failing_rows(
    lh: &Lakehouse,
    table: &TableName,
    retention: std::time::Duration,
    now_us: i64,
) -> std::result::Result<u64, String> {
    let name = failures_table(table);
    let Some(info) = lh
        .metastore()
        .get_table(&name)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(0);
    };
    let delta_table = lh
        .open_delta(&info, TableVersion::Latest)
        .await
        .map_err(|e| e.to_string())?;
    let cutoff = now_us - retention.as_micros() as i64;
    // A typed literal, zoned like the column: the Delta kernel compares them as they are.
    let predicate = datafusion::prelude::col("_failed_at").lt(datafusion::prelude::lit(
        datafusion::scalar::ScalarValue::TimestampMicrosecond(Some(cutoff), Some("UTC".into())),
    ));
    let (_, metrics) = delta_table
        .delete()
        .with_predicate(predicate)
        .await
        .map_err(|e| format!("cannot expire failing rows of {table}: {e}"))?;
    Ok(metrics.num_deleted_rows.unwrap_or(0) as u64)
}
