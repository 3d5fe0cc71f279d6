//! Profiles: per column counts, nulls, approximate distinct values, min/max/mean/stddev
//! and quartiles of numbers, lengths of strings, in one scan of the table (DataFusion
//! aggregates); then the most common values of low-cardinality columns.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};

use confluo_sql::SqlSession;

use crate::checks::Target;
use crate::error::{QualityError, Result};
use crate::sql::ident;
use crate::store::Metric;

/// Columns with at most this many distinct values get their most common values.
const TOP_VALUES_MAX_DISTINCT: f64 = 10_000.0;
/// How many common values are kept.
const TOP_VALUES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Number,
    Text,
    Temporal,
    Boolean,
    Other,
}

fn class(dt: &DataType) -> Class {
    use DataType::*;
    match dt {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32
        | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => {
            Class::Number
        }
        Utf8 | LargeUtf8 | Utf8View => Class::Text,
        Date32 | Date64 | Timestamp(..) | Time32(_) | Time64(_) => Class::Temporal,
        Boolean => Class::Boolean,
        _ => Class::Other,
    }
}

/// `approx_distinct` of column expression `c`: integers and text as they are, other types
/// (floats, decimals, dates, booleans) by their text, which `approx_distinct` takes.
pub fn distinct_expr(c: &str, dt: &DataType) -> String {
    use DataType::*;
    match dt {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Utf8 | LargeUtf8
        | Utf8View => format!("approx_distinct({c})"),
        _ => format!("approx_distinct(CAST({c} AS VARCHAR))"),
    }
}

/// One aggregate of the scan: which column, which metric, numeric or text.
struct Item {
    column: Option<String>,
    metric: &'static str,
    expr: String,
    text: bool,
}

fn items(target: &Target) -> Vec<Item> {
    let mut out = vec![Item {
        column: None,
        metric: "row_count",
        expr: "count(*)".into(),
        text: false,
    }];
    for f in target.schema.fields() {
        let name = f.name().to_string();
        let c = format!("t.{}", ident(&name));
        let num = format!("CAST({c} AS DOUBLE)");
        let mut add = |metric: &'static str, expr: String, text: bool| {
            out.push(Item {
                column: Some(name.clone()),
                metric,
                expr,
                text,
            })
        };
        let k = class(f.data_type());
        add("non_null_count", format!("count({c})"), false);
        if k != Class::Other {
            add("approx_distinct", distinct_expr(&c, f.data_type()), false);
        }
        match k {
            Class::Number => {
                add("min", format!("min({num})"), false);
                add("max", format!("max({num})"), false);
                add("mean", format!("avg({num})"), false);
                add("stddev", format!("stddev({num})"), false);
                for (m, p) in [("p25", 0.25), ("p50", 0.5), ("p75", 0.75)] {
                    add(
                        m,
                        format!("approx_percentile_cont({p}) WITHIN GROUP (ORDER BY {num})"),
                        false,
                    );
                }
            }
            Class::Text => {
                add("min", format!("min({c})"), true);
                add("max", format!("max({c})"), true);
                add("min_length", format!("min(character_length({c}))"), false);
                add("mean_length", format!("avg(character_length({c}))"), false);
                add("max_length", format!("max(character_length({c}))"), false);
            }
            Class::Temporal => {
                add("min", format!("CAST(min({c}) AS VARCHAR)"), true);
                add("max", format!("CAST(max({c}) AS VARCHAR)"), true);
            }
            Class::Boolean => {
                add(
                    "true_count",
                    format!("sum(CASE WHEN {c} THEN 1 ELSE 0 END)"),
                    false,
                );
            }
            Class::Other => {}
        }
    }
    out
}

/// Profiles `target`: table and column metrics, by one scan, then top values.
pub async fn profile(session: &SqlSession, target: &Target) -> Result<Vec<Metric>> {
    let items = items(target);
    let select: Vec<String> = items
        .iter()
        .enumerate()
        .map(|(i, it)| format!("{} AS __m{i}", it.expr))
        .collect();
    let sql = format!("SELECT {} FROM {}", select.join(", "), target.from_clause());
    let batches = session.query(&sql).await?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| QualityError::Config("the profile query returned no row".into()))?;
    let mut out = Vec::with_capacity(items.len() + 2 * target.schema.fields().len());
    let mut rows = 0.0;
    for (i, it) in items.iter().enumerate() {
        let col = batch.column(i);
        let (value, text) = if it.text {
            let s = arrow::compute::cast(col, &DataType::Utf8)?;
            let s = s.as_string::<i32>();
            (None, (!s.is_null(0)).then(|| s.value(0).to_string()))
        } else {
            (number(col)?, None)
        };
        if it.metric == "row_count" {
            rows = value.unwrap_or(0.0);
        }
        if it.metric == "non_null_count" {
            let nulls = rows - value.unwrap_or(0.0);
            out.push(Metric {
                column: it.column.clone(),
                metric: "null_count".into(),
                value: Some(nulls),
                text: None,
            });
            out.push(Metric {
                column: it.column.clone(),
                metric: "null_percent".into(),
                value: Some(if rows > 0.0 {
                    nulls * 100.0 / rows
                } else {
                    0.0
                }),
                text: None,
            });
            continue;
        }
        out.push(Metric {
            column: it.column.clone(),
            metric: it.metric.into(),
            value,
            text,
        });
    }
    // Most common values, for columns with few distinct values.
    let few: Vec<String> = out
        .iter()
        .filter(|m| {
            m.metric == "approx_distinct"
                && m.value
                    .is_some_and(|v| v > 0.0 && v <= TOP_VALUES_MAX_DISTINCT)
        })
        .filter_map(|m| m.column.clone())
        .filter(|c| {
            target
                .schema
                .field_with_name(c)
                .is_ok_and(|f| matches!(class(f.data_type()), Class::Text | Class::Boolean))
        })
        .collect();
    for c in few {
        let sql = format!(
            "SELECT CAST(t.{col} AS VARCHAR) AS v, count(*) AS n FROM {from} WHERE t.{col} IS NOT NULL \
             GROUP BY t.{col} ORDER BY n DESC, v LIMIT {TOP_VALUES}",
            col = ident(&c),
            from = target.from_clause()
        );
        let batches = session.query(&sql).await?;
        let mut top = Vec::new();
        for b in &batches {
            let v = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
            let v = v.as_string::<i32>();
            let n = arrow::compute::cast(b.column(1), &DataType::Float64)?;
            let n = n.as_primitive::<Float64Type>();
            for r in 0..b.num_rows() {
                top.push(serde_json::json!({"value": v.value(r), "count": n.value(r) as i64}));
            }
        }
        out.push(Metric {
            column: Some(c),
            metric: "top_values".into(),
            value: None,
            text: Some(serde_json::Value::Array(top).to_string()),
        });
    }
    Ok(out)
}

fn number(col: &dyn Array) -> Result<Option<f64>> {
    let f = arrow::compute::cast(col, &DataType::Float64)?;
    let f = f.as_primitive::<Float64Type>();
    Ok((!f.is_null(0))
        .then(|| f.value(0))
        .filter(|v| v.is_finite()))
}

/// Reads a profile's metrics back per column, for printing.
pub fn by_column(metrics: &[Metric]) -> Vec<(String, Vec<&Metric>)> {
    let mut out: Vec<(String, Vec<&Metric>)> = Vec::new();
    for m in metrics {
        let key = m.column.clone().unwrap_or_default();
        match out.iter_mut().find(|(c, _)| *c == key) {
            Some((_, v)) => v.push(m),
            None => out.push((key, vec![m])),
        }
    }
    out
}
