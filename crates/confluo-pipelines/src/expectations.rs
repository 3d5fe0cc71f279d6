//! Expectations applied to a flow's batches: counted per expectation, failing rows kept
//! (warn), left out (drop), moved to quarantine, or stopping the update (fail).
//!
//! The conditions are evaluated by DataFusion as extra boolean columns of the flow's plan;
//! here each batch is split by those columns. A condition that is NULL counts as failed,
//! as a filter would treat it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringBuilder};
use datafusion::arrow::compute::{filter_record_batch, not, or_kleene};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::dialect::{Action, Expectation};
use crate::error::{PipelineError, Result};

/// The column holding, in a quarantine table, the expectations a row failed.
pub const FAILED_COLUMN: &str = "_failed_expectations";

/// Passed and failed counts of one expectation over an update.
#[derive(Debug, Default)]
pub struct Counts {
    /// Rows that met the condition.
    pub passed: AtomicU64,
    /// Rows that did not.
    pub failed: AtomicU64,
}

/// The expectations of a dataset with their running counts.
#[derive(Debug)]
pub struct Checker {
    dataset: String,
    expectations: Vec<Expectation>,
    counts: Vec<Counts>,
    data_columns: usize,
}

/// What one batch became.
pub struct Split {
    /// Rows for the table.
    pub keep: RecordBatch,
    /// Rows for the quarantine table (with [`FAILED_COLUMN`]).
    pub quarantine: Option<RecordBatch>,
    /// Rows left out by DROP ROW.
    pub dropped: u64,
}

impl Checker {
    /// A checker for batches whose first `data_columns` columns are the data and the rest
    /// are the expectations' conditions, in order.
    pub fn new(dataset: &str, expectations: Vec<Expectation>, data_columns: usize) -> Self {
        let counts = expectations.iter().map(|_| Counts::default()).collect();
        Checker {
            dataset: dataset.to_string(),
            expectations,
            counts,
            data_columns,
        }
    }

    /// The expectations.
    pub fn expectations(&self) -> &[Expectation] {
        &self.expectations
    }

    /// `(passed, failed)` of expectation `i`.
    pub fn counts(&self, i: usize) -> (u64, u64) {
        (
            self.counts[i].passed.load(Ordering::Relaxed),
            self.counts[i].failed.load(Ordering::Relaxed),
        )
    }

    /// Whether any expectation quarantines.
    pub fn quarantines(&self) -> bool {
        self.expectations
            .iter()
            .any(|e| e.action == Action::Quarantine)
    }

    /// The quarantine table's schema for a data schema.
    pub fn quarantine_schema(data: &Schema) -> SchemaRef {
        let mut fields: Vec<Field> = data.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(FAILED_COLUMN, DataType::Utf8, true));
        Arc::new(Schema::new(fields))
    }

    /// Splits a batch (data columns followed by condition columns).
    pub fn apply(&self, batch: &RecordBatch, data_schema: &SchemaRef) -> Result<Split> {
        let rows = batch.num_rows();
        let columns = batch.columns()[..self.data_columns].to_vec();
        // The table's NOT NULL columns are enforced as Databricks does: a row without the
        // value fails the update, and is shown.
        for (f, c) in data_schema.fields().iter().zip(&columns) {
            if !f.is_nullable() && c.null_count() > 0 {
                let first = (0..rows).find(|&r| c.is_null(r)).unwrap_or(0);
                return Err(PipelineError::ExpectationFailed {
                    dataset: self.dataset.clone(),
                    expectation: format!("{} NOT NULL", f.name()),
                    condition: format!("{} IS NOT NULL", f.name()),
                    failed: c.null_count() as u64,
                    row: row_json(&loosened(data_schema, &columns)?, first),
                });
            }
        }
        if self.expectations.is_empty() {
            return Ok(Split {
                keep: RecordBatch::try_new(data_schema.clone(), columns)?,
                quarantine: None,
                dropped: 0,
            });
        }
        // failed[i][row]: condition false or null.
        let mut failed: Vec<BooleanArray> = Vec::with_capacity(self.expectations.len());
        for (i, e) in self.expectations.iter().enumerate() {
            let col = batch.column(self.data_columns + i);
            let cond = col.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| {
                PipelineError::Config(format!(
                    "expectation `{}` of {}: the condition `{}` is not a boolean",
                    e.name, self.dataset, e.condition
                ))
            })?;
            let fail: BooleanArray = cond.iter().map(|v| Some(!v.unwrap_or(false))).collect();
            let n_fail = fail.true_count() as u64;
            self.counts[i].failed.fetch_add(n_fail, Ordering::Relaxed);
            self.counts[i]
                .passed
                .fetch_add(rows as u64 - n_fail, Ordering::Relaxed);
            if e.action == Action::Fail && n_fail > 0 {
                let first = (0..rows).find(|&r| fail.value(r)).unwrap_or(0);
                return Err(PipelineError::ExpectationFailed {
                    dataset: self.dataset.clone(),
                    expectation: e.name.clone(),
                    condition: e.condition.clone(),
                    failed: n_fail,
                    row: row_json(&loosened(data_schema, &columns)?, first),
                });
            }
            failed.push(fail);
        }
        let data = RecordBatch::try_new(data_schema.clone(), columns)?;
        let any_of = |action: Action| -> Result<Option<BooleanArray>> {
            let mut acc: Option<BooleanArray> = None;
            for (i, e) in self.expectations.iter().enumerate() {
                if e.action == action {
                    acc = Some(match acc {
                        None => failed[i].clone(),
                        Some(a) => or_kleene(&a, &failed[i])?,
                    });
                }
            }
            Ok(acc)
        };
        let drop = any_of(Action::Drop)?;
        let quarantine = any_of(Action::Quarantine)?;
        let removed = match (&drop, &quarantine) {
            (Some(d), Some(q)) => Some(or_kleene(d, q)?),
            (Some(d), None) => Some(d.clone()),
            (None, Some(q)) => Some(q.clone()),
            (None, None) => None,
        };
        let keep = match &removed {
            Some(r) => filter_record_batch(&data, &not(r)?)?,
            None => data.clone(),
        };
        let quarantined = match &quarantine {
            Some(q) if q.true_count() > 0 => {
                // A row dropped by DROP ROW is not also quarantined.
                let mask = match &drop {
                    Some(d) => datafusion::arrow::compute::and(q, &not(d)?)?,
                    None => q.clone(),
                };
                if mask.true_count() == 0 {
                    None
                } else {
                    let mut names = StringBuilder::new();
                    for r in 0..rows {
                        if !mask.value(r) {
                            continue;
                        }
                        let failed_names: Vec<&str> = self
                            .expectations
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| failed[*i].value(r))
                            .map(|(_, e)| e.name.as_str())
                            .collect();
                        names.append_value(failed_names.join(","));
                    }
                    let rows_q = filter_record_batch(&data, &mask)?;
                    let mut cols: Vec<ArrayRef> = rows_q.columns().to_vec();
                    cols.push(Arc::new(names.finish()));
                    Some(RecordBatch::try_new(
                        Self::quarantine_schema(data_schema),
                        cols,
                    )?)
                }
            }
            _ => None,
        };
        let dropped = match &drop {
            Some(d) => d.true_count() as u64,
            None => 0,
        };
        Ok(Split {
            keep,
            quarantine: quarantined,
            dropped,
        })
    }
}

/// One row of a batch as a JSON object, for error messages.
pub fn row_json(batch: &RecordBatch, row: usize) -> String {
    let one = batch.slice(row, 1);
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
        if w.write(&one).is_err() || w.finish().is_err() {
            return format!("(row {row})");
        }
    }
    String::from_utf8_lossy(&buf).trim().to_string()
}

/// The columns as a batch whose schema allows nulls everywhere, to show a row that breaks
/// the table's NOT NULL columns.
fn loosened(schema: &SchemaRef, columns: &[ArrayRef]) -> Result<RecordBatch> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.to_vec(),
    )?)
}
