//! Drift between two versions of a table: its schema (columns added, removed, retyped,
//! from the Delta log) and a column's distribution (the population stability index over
//! the baseline's deciles, or its most common values, with the Kolmogorov–Smirnov distance
//! over the same bins).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};

use confluo_connectors::arrow_types::type_name;
use confluo_lakehouse::TableVersion;
use confluo_sql::SqlSession;

use crate::checks::{CheckResult, Target, errored, floats, measured, query};
use crate::spec::{Baseline, Check};
use crate::sql::{ident, literal, table as table_sql};

/// Bins of a categorical column: its most common values in the baseline, and the rest.
const CATEGORIES: usize = 20;
/// Stands in for an empty bin's share, so the index stays finite.
const EMPTY_SHARE: f64 = 1e-4;

fn previous(target: &Target, baseline: Baseline) -> Option<i64> {
    match baseline {
        Baseline::Previous => target.previous_version,
        Baseline::Version(v) => Some(v),
    }
}

/// Columns added, removed or retyped since the version the monitor last checked.
pub async fn schema_drift(session: &SqlSession, target: &Target, check: &Check) -> CheckResult {
    let Some(before) = target.previous_version else {
        let mut r = measured(check, String::new(), 0.0, None, None);
        r.message = format!("first run: version {} is the baseline", target.version);
        return r;
    };
    let lh = session.lakehouse();
    let old = async {
        let info = lh.table(&target.name).await?;
        let t = lh.open_delta(&info, TableVersion::Version(before)).await?;
        confluo_lakehouse::delta::table_schema(&t)
    }
    .await;
    let old = match old {
        Ok(s) => s,
        Err(e) => return errored(check, format!("cannot read version {before}: {e}")),
    };
    let mut changes = Vec::new();
    for f in target.schema.fields() {
        match old.field_with_name(f.name()) {
            Err(_) => changes.push(format!("added `{}` {}", f.name(), type_name(f.data_type()))),
            Ok(o) if type_name(o.data_type()) != type_name(f.data_type()) => changes.push(format!(
                "retyped `{}` {} → {}",
                f.name(),
                type_name(o.data_type()),
                type_name(f.data_type())
            )),
            Ok(_) => {}
        }
    }
    for o in old.fields() {
        if target.schema.field_with_name(o.name()).is_err() {
            changes.push(format!("removed `{}`", o.name()));
        }
    }
    let mut r = measured(check, String::new(), changes.len() as f64, None, None);
    r.message = if changes.is_empty() {
        format!("no change since version {before}")
    } else {
        format!("since version {before}: {}", changes.join("; "))
    };
    r
}

/// The population stability index and the KS distance of two histograms over the same bins.
pub fn psi_and_ks(expected: &[f64], actual: &[f64]) -> (f64, f64) {
    let (te, ta) = (expected.iter().sum::<f64>(), actual.iter().sum::<f64>());
    if te <= 0.0 || ta <= 0.0 {
        return (0.0, 0.0);
    }
    let (mut psi, mut ks, mut ce, mut ca) = (0.0, 0.0f64, 0.0, 0.0);
    for (e, a) in expected.iter().zip(actual) {
        let (pe, pa) = ((e / te).max(EMPTY_SHARE), (a / ta).max(EMPTY_SHARE));
        psi += (pa - pe) * (pa / pe).ln();
        ce += e / te;
        ca += a / ta;
        ks = ks.max((ce - ca).abs());
    }
    (psi, ks)
}

/// A column's distribution now against the baseline version.
pub async fn distribution_drift(
    session: &SqlSession,
    target: &Target,
    check: &Check,
    column: &str,
    baseline: Baseline,
) -> CheckResult {
    let Some(before) = previous(target, baseline) else {
        let mut r = measured(check, String::new(), 0.0, None, None);
        r.message = format!("first run: version {} is the baseline", target.version);
        return r;
    };
    match drift(session, target, column, before).await {
        Ok((psi, ks, bins)) => {
            let mut r = measured(check, String::new(), psi, None, None);
            r.message = format!("PSI {psi:.3}, KS {ks:.3} against version {before} ({bins} bins)");
            r
        }
        Err(e) => errored(check, e),
    }
}

async fn drift(
    session: &SqlSession,
    target: &Target,
    column: &str,
    before: i64,
) -> Result<(f64, f64, usize), String> {
    let numeric = target
        .schema
        .field_with_name(column)
        .map(|f| f.data_type().is_numeric())
        .unwrap_or(false);
    let c = ident(column);
    let at = |v: i64| format!("{} VERSION AS OF {v} AS t", table_sql(&target.name));
    // The bins, from the baseline.
    let bin_expr = if numeric {
        let cuts: Vec<String> = (1..10)
            .map(|i| {
                format!(
                    "approx_percentile_cont({}) WITHIN GROUP (ORDER BY CAST(t.{c} AS DOUBLE)) AS q{i}",
                    i as f64 / 10.0
                )
            })
            .collect();
        let b = query(
            session,
            &format!("SELECT {} FROM {}", cuts.join(", "), at(before)),
        )
        .await?;
        let row = b
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or("the baseline has no rows")?;
        let mut qs: Vec<f64> = Vec::new();
        for i in 1..10 {
            if let Some(Some(q)) = floats(row, &format!("q{i}"))?.first()
                && qs.last().is_none_or(|l| q > l)
            {
                qs.push(*q);
            }
        }
        if qs.is_empty() {
            return Err(format!(
                "column `{column}` has no values in version {before}"
            ));
        }
        let mut case = String::from("CASE WHEN t.");
        case.push_str(&c);
        case.push_str(" IS NULL THEN -1");
        for (i, q) in qs.iter().enumerate() {
            case.push_str(&format!(" WHEN CAST(t.{c} AS DOUBLE) < {q:?} THEN {i}"));
        }
        case.push_str(&format!(" ELSE {} END", qs.len()));
        case
    } else {
        let sql = format!(
            "SELECT CAST(t.{c} AS VARCHAR) AS v FROM {} WHERE t.{c} IS NOT NULL GROUP BY t.{c} ORDER BY count(*) DESC, v LIMIT {CATEGORIES}",
            at(before)
        );
        let b = query(session, &sql).await?;
        let mut values = Vec::new();
        for batch in &b {
            let v = arrow::compute::cast(batch.column(0), &DataType::Utf8)
                .map_err(|e| e.to_string())?;
            let v = v.as_string::<i32>();
            for r in 0..batch.num_rows() {
                values.push(v.value(r).to_string());
            }
        }
        let mut case = format!("CASE WHEN t.{c} IS NULL THEN -1");
        for (i, v) in values.iter().enumerate() {
            case.push_str(&format!(
                " WHEN CAST(t.{c} AS VARCHAR) = {} THEN {i}",
                literal(v)
            ));
        }
        case.push_str(&format!(" ELSE {} END", values.len()));
        case
    };
    let hist = |v: i64| {
        format!(
            "SELECT {bin_expr} AS bin, count(*) AS n FROM {} GROUP BY 1 ORDER BY 1",
            at(v)
        )
    };
    let read = |b: Vec<arrow::array::RecordBatch>| -> Result<std::collections::BTreeMap<i64, f64>, String> {
        let mut out = std::collections::BTreeMap::new();
        for batch in &b {
            let bins = arrow::compute::cast(batch.column(0), &DataType::Float64).map_err(|e| e.to_string())?;
            let bins = bins.as_primitive::<Float64Type>();
            let n = floats(batch, "n")?;
            for (r, count) in n.iter().enumerate() {
                if !bins.is_null(r) {
                    out.insert(bins.value(r) as i64, count.unwrap_or(0.0));
                }
            }
        }
        Ok(out)
    };
    let base = read(query(session, &hist(before)).await?)?;
    let now = read(query(session, &hist(target.version)).await?)?;
    let keys: std::collections::BTreeSet<i64> = base.keys().chain(now.keys()).copied().collect();
    let e: Vec<f64> = keys
        .iter()
        .map(|k| base.get(k).copied().unwrap_or(0.0))
        .collect();
    let a: Vec<f64> = keys
        .iter()
        .map(|k| now.get(k).copied().unwrap_or(0.0))
        .collect();
    let (psi, ks) = psi_and_ks(&e, &a);
    Ok((psi, ks, keys.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_zero_for_the_same_shape_and_grows_with_a_shift() {
        let (psi, ks) = psi_and_ks(&[10.0, 20.0, 30.0], &[1.0, 2.0, 3.0]);
        assert!(psi.abs() < 1e-12 && ks.abs() < 1e-12);
        let (psi, ks) = psi_and_ks(&[25.0, 25.0, 25.0, 25.0], &[5.0, 15.0, 30.0, 50.0]);
        assert!(psi > 0.25, "{psi}");
        assert!((ks - 0.3).abs() < 1e-9, "{ks}");
    }
}
