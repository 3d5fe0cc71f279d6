//! `ANALYZE TABLE ... COMPUTE STATISTICS`.
//!
//! Delta keeps per-file statistics (row counts; per-column null counts, minimums and
//! maximums) in its log on every write, and that is what queries prune with, so there is
//! nothing to refresh. The statement reports the table's figures from the log (`NOSCAN`,
//! or no clause) and, with `FOR COLUMNS` / `FOR ALL COLUMNS`, computes each column's
//! statistics in one scan. Nothing is stored: the figures are always the latest.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::sql::sqlparser::ast::{Ident, ObjectName};

use super::describe::{out, strings};
use crate::error::{Result, SqlError};
use crate::session::{SqlOutput, SqlSession, normalize};
use confluo_lakehouse::delta::{self, type_name};
use confluo_lakehouse::{LakehouseError, TableVersion};

fn ints(name: &str, values: Vec<Option<i64>>) -> (Field, ArrayRef) {
    (
        Field::new(name, DataType::Int64, true),
        Arc::new(Int64Array::from(values)),
    )
}

/// Whether `min`/`max` are defined on the type (not on structs, lists or maps).
fn ordered(dt: &DataType) -> bool {
    !matches!(
        dt,
        DataType::Struct(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Map(..)
    )
}

pub(super) async fn analyze(
    s: &SqlSession,
    name: ObjectName,
    columns: Option<Vec<Ident>>,
) -> Result<SqlOutput> {
    let lh = s.lakehouse();
    let t = s.table_name(&name)?;
    let info = lh.table(&t).await?;
    let table = lh.open_delta(&info, TableVersion::Latest).await?;
    let snap = table.snapshot().map_err(LakehouseError::delta(&t))?;
    let Some(asked) = columns else {
        let files: Vec<_> = snap.log_data().iter().collect();
        let rows: Option<i64> = files
            .iter()
            .map(|f| f.num_records().map(|n| n as i64))
            .sum();
        let size: i64 = files.iter().map(|f| f.size()).sum();
        return out(
            s,
            vec![
                strings("table", vec![Some(t.to_string())]),
                ints("version", vec![Some(snap.version() as i64)]),
                ints("num_files", vec![Some(files.len() as i64)]),
                ints("num_rows", vec![rows]),
                ints("size_in_bytes", vec![Some(size)]),
            ],
        );
    };
    let schema = delta::table_schema(&table)?;
    let fields: Vec<&Field> = if asked.is_empty() {
        schema.fields().iter().map(|f| f.as_ref()).collect()
    } else {
        asked
            .iter()
            .map(|c| {
                let want = normalize(c);
                schema
                    .fields()
                    .iter()
                    .find(|f| f.name() == &want || f.name().eq_ignore_ascii_case(&want))
                    .map(|f| f.as_ref())
                    .ok_or_else(|| {
                        let names = schema.fields().iter().map(|f| f.name().as_str());
                        SqlError::plan(
                            format!(
                                "ANALYZE TABLE {t}: no column `{want}`{}",
                                confluo_core::suggest::hint(&confluo_core::suggest::nearest(
                                    &want, names
                                ))
                            ),
                            Some(c.span.start).filter(|l| l.line > 0),
                        )
                    })
            })
            .collect::<Result<_>>()?
    };
    // One scan: for each column its null count, distinct count (approximate for integers
    // and strings), min and max.
    let mut select = vec!["count(*)".to_string()];
    for f in &fields {
        let q = format!("`{}`", f.name().replace('`', "``"));
        select.push(format!("count(*) - count({q})"));
        let dt = f.data_type();
        if dt.is_integer()
            || matches!(
                dt,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        {
            select.push(format!("approx_distinct({q})"));
        } else if ordered(dt) {
            // approx_distinct has no sketch for these types.
            select.push(format!("count(DISTINCT {q})"));
        } else {
            select.push("CAST(NULL AS BIGINT)".into());
        }
        if ordered(dt) {
            select.push(format!("CAST(min({q}) AS STRING)"));
            select.push(format!("CAST(max({q}) AS STRING)"));
        } else {
            select.push("CAST(NULL AS STRING)".into());
            select.push("CAST(NULL AS STRING)".into());
        }
    }
    let sql = format!(
        "SELECT {} FROM `{}`.`{}`.`{}`",
        select.join(", "),
        t.catalog.as_str(),
        t.schema.as_str(),
        t.table.as_str()
    );
    // Planned on the context directly: the catalogs are registered there, and going back
    // through the session's statement path would make `execute` recursive.
    let batches = s.context().sql(&sql).await?.collect().await?;
    let row = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| SqlError::plan(format!("ANALYZE TABLE {t}: the scan gave no row"), None))?;
    let text = |i: usize| -> Option<String> {
        let a = row.column(i);
        if a.is_null(0) {
            return None;
        }
        datafusion::arrow::util::display::array_value_to_string(a, 0).ok()
    };
    let int = |i: usize| text(i).and_then(|v| v.parse::<i64>().ok());
    let total = int(0);
    let mut names = vec![];
    let mut types = vec![];
    let (mut nulls, mut distinct, mut mins, mut maxs) = (vec![], vec![], vec![], vec![]);
    for (k, f) in fields.iter().enumerate() {
        let base = 1 + 4 * k;
        names.push(Some(f.name().clone()));
        types.push(Some(type_name(f.data_type()).to_lowercase()));
        nulls.push(int(base));
        distinct.push(int(base + 1));
        mins.push(text(base + 2));
        maxs.push(text(base + 3));
    }
    let n = fields.len();
    out(
        s,
        vec![
            strings("col_name", names),
            strings("data_type", types),
            ints("num_rows", vec![total; n]),
            ints("num_nulls", nulls),
            ints("distinct_count", distinct),
            strings("min", mins),
            strings("max", maxs),
        ],
    )
}
