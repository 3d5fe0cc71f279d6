//! `OPTIMIZE t [WHERE ...] [ZORDER BY (...)]`: compaction of a table's small files, as in
//! Databricks — the predicate names partition columns only.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Ident, ObjectName, Value};
use serde_json::json;

use crate::error::{Result, SqlError};
use crate::session::{SqlOutput, SqlSession};
use confluo_lakehouse::TableVersion;
use confluo_lakehouse::optimize::{self, OptimizeRequest, PartitionPredicate};

/// The table property `CLUSTER BY` records its columns in (comma-separated).
pub const CLUSTERING_COLUMNS: &str = "clusteringColumns";

pub(super) async fn optimize(
    s: &SqlSession,
    name: ObjectName,
    predicate: Option<Box<Expr>>,
    zorder: Vec<Ident>,
) -> Result<SqlOutput> {
    let lh = s.lakehouse();
    let t = s.table_name(&name)?;
    let info = lh.table(&t).await?;
    let mut predicates = Vec::new();
    if let Some(p) = &predicate {
        partition_predicates(p, &mut predicates)?;
    }
    // Without ZORDER BY, a table declared with CLUSTER BY is clustered on its columns: as
    // with liquid clustering, OPTIMIZE is when the clustering happens.
    let zorder: Vec<String> = if zorder.is_empty() {
        info.properties
            .get(CLUSTERING_COLUMNS)
            .map(|c| {
                c.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        zorder.into_iter().map(|i| i.value).collect()
    };
    let req = OptimizeRequest {
        predicates,
        zorder,
        target_size: None,
    };
    let table = lh.open_delta(&info, TableVersion::Latest).await?;
    let metadata = BTreeMap::from([(
        "confluo.optimize".to_string(),
        json!({"zorder": req.zorder, "where": predicate.as_ref().map(|p| p.to_string())}),
    )]);
    let (_, report) = optimize::optimize(table, &req, metadata).await?;
    lh.metastore().touch_table(&t).await?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("num_files_added", DataType::Int64, false),
        Field::new("num_files_removed", DataType::Int64, false),
        Field::new("bytes_added", DataType::Int64, false),
        Field::new("bytes_removed", DataType::Int64, false),
        Field::new("partitions_optimized", DataType::Int64, false),
        Field::new("files_considered", DataType::Int64, false),
        Field::new("files_skipped", DataType::Int64, false),
        Field::new("version", DataType::Int64, true),
    ]));
    let int = |v: i64| Arc::new(Int64Array::from(vec![v])) as ArrayRef;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![info.location.clone()])),
            int(report.files_added as i64),
            int(report.files_removed as i64),
            int(report.bytes_added),
            int(report.bytes_removed),
            int(report.partitions_optimized as i64),
            int(report.files_considered as i64),
            int(report.files_skipped as i64),
            Arc::new(Int64Array::from(vec![report.version])),
        ],
    )
    .map_err(|e| SqlError::plan(e.to_string(), None))?;
    s.rows(schema, vec![batch])
}

/// The comparisons of `WHERE`, joined by AND, each a column against literals.
fn partition_predicates(e: &Expr, out: &mut Vec<PartitionPredicate>) -> Result<()> {
    let unsupported = || {
        SqlError::plan(
            format!(
                "OPTIMIZE ... WHERE: `{e}` is not a comparison of a partition column with a value \
             (=, !=, <, <=, >, >=, IN, NOT IN, joined by AND)"
            ),
            None,
        )
    };
    match e {
        Expr::Nested(inner) => partition_predicates(inner, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            partition_predicates(left, out)?;
            partition_predicates(right, out)
        }
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::Eq => "=",
                BinaryOperator::NotEq => "!=",
                BinaryOperator::Lt => "<",
                BinaryOperator::LtEq => "<=",
                BinaryOperator::Gt => ">",
                BinaryOperator::GtEq => ">=",
                _ => return Err(unsupported()),
            };
            let (column, value) = match (column(left), literal(right)) {
                (Some(c), Some(v)) => (c, v),
                _ => return Err(unsupported()),
            };
            out.push(PartitionPredicate {
                column,
                op: op.to_string(),
                values: vec![value],
            });
            Ok(())
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let column = column(expr).ok_or_else(unsupported)?;
            let values = list
                .iter()
                .map(literal)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(unsupported)?;
            out.push(PartitionPredicate {
                column,
                op: if *negated { "not in" } else { "in" }.to_string(),
                values,
            });
            Ok(())
        }
        _ => Err(unsupported()),
    }
}

fn column(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        },
        Expr::UnaryOp { op, expr } if op.to_string() == "-" => {
            literal(expr).map(|v| format!("-{v}"))
        }
        _ => None,
    }
}
