//! The declared columns of a dataset — `CREATE OR REFRESH STREAMING TABLE t (id INT NOT NULL
//! COMMENT '...', total DECIMAL(10,2), day DATE GENERATED ALWAYS AS (CAST(ts AS DATE)))
//! AS ...` — define its table: each column takes its declared type (a value that cannot be
//! stored in it losslessly fails the update, naming the column, the value and both types),
//! generated columns are computed from the query's row, `NOT NULL` is enforced (as a
//! `FAIL UPDATE` expectation, so the failure shows the row) and comments are kept.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::{CastOptions, can_cast_types, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::{DataFrame, col};
use datafusion::sql::sqlparser::ast::{ColumnDef, ColumnOption};

use crate::error::{PipelineError, Pos, Result};

/// The schema the declared columns define (`None`: the dataset declares none).
pub fn schema(columns: &[ColumnDef], dataset: &str, pos: &Pos) -> Result<Option<SchemaRef>> {
    if columns.is_empty() {
        return Ok(None);
    }
    let s = confluo_sql::statements::declared_columns(columns)
        .map_err(|e| PipelineError::at(pos.clone(), format!("{dataset}: {e}")))?;
    Ok(Some(Arc::new(
        confluo_lakehouse::delta::delta_compatible_schema(&s)
            .as_ref()
            .clone(),
    )))
}

/// The query's rows in the declared columns: each column taken by name (or computed, when
/// generated) and stored as its declared type.
pub fn apply(
    df: DataFrame,
    columns: &[ColumnDef],
    declared: &Schema,
    dataset: &str,
    pos: &Pos,
) -> Result<DataFrame> {
    let at = |message: String| PipelineError::at(pos.clone(), format!("{dataset}: {message}"));
    let query: Vec<(String, DataType)> = df
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let mut exprs: Vec<Expr> = Vec::with_capacity(columns.len());
    for (c, field) in columns.iter().zip(declared.fields()) {
        let name = field.name();
        let generated = c.options.iter().find_map(|o| match &o.option {
            ColumnOption::Generated {
                generation_expr: Some(e),
                ..
            } => Some(e.to_string()),
            _ => None,
        });
        let (source, source_type) = match generated {
            Some(text) => {
                let e = df.parse_sql_expr(&text).map_err(|e| {
                    at(format!(
                        "generated column `{name}` ({text}): {}",
                        confluo_sql::error::clean_datafusion(&e)
                    ))
                })?;
                let (_, f) = e
                    .to_field(df.schema())
                    .map_err(|e| at(format!("generated column `{name}` ({text}): {e}")))?;
                (e, f.data_type().clone())
            }
            None => match query.iter().find(|(q, _)| q.eq_ignore_ascii_case(name)) {
                Some((q, t)) => (col(format!("\"{q}\"")), t.clone()),
                None => {
                    let names: Vec<&str> = query.iter().map(|(q, _)| q.as_str()).collect();
                    let near = confluo_core::suggest::nearest(name, names.iter().copied());
                    return Err(at(format!(
                        "declared column `{name}` is not among the query's columns ({}){}",
                        names.join(", "),
                        if near.is_empty() {
                            "\n  hint: name it in the query (… AS ".to_string()
                                + name
                                + "), or declare it GENERATED ALWAYS AS (expr)"
                        } else {
                            confluo_core::suggest::hint(&near)
                        }
                    )));
                }
            },
        };
        let to = field.data_type();
        let expr = if &source_type == to {
            source
        } else if can_cast_types(&source_type, to) {
            ScalarUDF::new_from_impl(DeclaredCast::new(dataset, name, &source_type, to))
                .call(vec![source])
        } else {
            return Err(at(format!(
                "declared column `{name}` is {} but the query gives {}, which cannot be stored as it",
                sql_type(to),
                sql_type(&source_type)
            )));
        };
        exprs.push(expr.alias(name));
    }
    Ok(df.select(exprs)?)
}

/// A type as SQL writes it (`DECIMAL(10,2)`, `STRING`, ...).
fn sql_type(t: &DataType) -> String {
    confluo_lakehouse::delta::type_name(t).to_ascii_uppercase()
}

/// Stores one column's values as its declared type, or fails the update on the first value
/// that does not fit or would change (`12.345` as `DECIMAL(10,2)`, `'x'` as `INT`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct DeclaredCast {
    dataset: String,
    column: String,
    from: DataType,
    to: DataType,
    signature: Signature,
}

impl DeclaredCast {
    fn new(dataset: &str, column: &str, from: &DataType, to: &DataType) -> Self {
        DeclaredCast {
            dataset: dataset.to_string(),
            column: column.to_string(),
            from: from.clone(),
            to: to.clone(),
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    /// The first value that fails, as text.
    fn failure(&self, values: &ArrayRef, cast: Option<&ArrayRef>) -> Option<String> {
        let fmt = ArrayFormatter::try_new(values.as_ref(), &FormatOptions::default()).ok()?;
        let bad = (0..values.len()).find(|&i| {
            values.is_valid(i)
                && match cast {
                    Some(c) => c.is_null(i),
                    None => true,
                }
        })?;
        Some(fmt.value(bad).to_string())
    }

    fn error(&self, value: &str, why: &str) -> DataFusionError {
        DataFusionError::Execution(format!(
            "{}: declared column `{}` is {} but the query gives {} {value}, which {why}\n  hint: fix the value in the source or the query, or declare the column with a type that holds it",
            self.dataset,
            self.column,
            sql_type(&self.to),
            sql_type(&self.from),
        ))
    }
}

impl ScalarUDFImpl for DeclaredCast {
    fn name(&self) -> &str {
        "declared_cast"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(self.to.clone())
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let n = args.number_rows;
        let values = match args.args.into_iter().next() {
            Some(v) => v.into_array(n)?,
            None => {
                return Err(DataFusionError::Internal(
                    "declared_cast takes one value".into(),
                ));
            }
        };
        // Values that do not fit come back null from a safe cast: any such non-null value
        // fails the update.
        let safe = CastOptions {
            safe: true,
            ..Default::default()
        };
        let cast = cast_with_options(&values, &self.to, &safe)?;
        if cast.null_count() > values.null_count()
            && let Some(v) = self.failure(&values, Some(&cast))
        {
            return Err(self.error(&v, "does not fit"));
        }
        // Between numbers, a value must come back as it went in (no rounding away digits).
        if self.from.is_numeric() && self.to.is_numeric() {
            let back = cast_with_options(&cast, &self.from, &safe)?;
            let same = datafusion::arrow::compute::kernels::cmp::not_distinct(&back, &values)?;
            if let Some(i) = (0..same.len()).find(|&i| !same.value(i)) {
                let one = values.slice(i, 1);
                let v = self.failure(&one, None).unwrap_or_default();
                return Err(self.error(&v, "would lose digits"));
            }
        }
        Ok(ColumnarValue::Array(cast))
    }
}
