//! Anomaly monitors: where each metric's history comes from, and the newest value judged
//! against it.
//!
//! `volume` and `freshness` read the table's own Delta log (rows written per commit, gaps
//! between commits), so they work from the first run on a table with history. Column
//! metrics (`null_percent`, `distinct_count`, `mean`) and `row_count` are measured at each
//! run and kept in `system.quality.metrics`, one value per table version.

use serde::Serialize;

use confluo_core::quality::{AnomalyConfig, Threshold};
use confluo_lakehouse::delta;
use confluo_sql::SqlSession;

use crate::anomaly::{self, Detector, Direction, Point, Score, Seasonality};
use crate::checks::{CheckResult, Status, Target, floats, query};
use crate::error::{QualityError, Result};
use crate::sql::{ident, literal};
use crate::store::{self, Metric};

/// What an anomaly monitor watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Watched {
    /// Rows written per commit.
    Volume,
    /// The gap since the last commit, against past gaps.
    Freshness,
    /// Rows in the table.
    RowCount,
    /// Null percent of a column.
    NullPercent,
    /// Approximate distinct values of a column.
    DistinctCount,
    /// Mean of a numeric column.
    Mean,
    /// A pipeline update's duration (the monitored table is its event log).
    UpdateDuration,
    /// Rows an update wrote.
    UpdateRows,
    /// Percent of the records an update's expectations checked that failed them.
    ExpectationFailureRate,
}

impl Watched {
    /// The name in `system.quality.metrics` (shared with profiles).
    pub fn metric_name(self) -> &'static str {
        match self {
            Watched::Volume => "rows_written",
            Watched::Freshness => "commit_gap_seconds",
            Watched::RowCount => "row_count",
            Watched::NullPercent => "null_percent",
            Watched::DistinctCount => "approx_distinct",
            Watched::Mean => "mean",
            Watched::UpdateDuration => "update_duration_seconds",
            Watched::UpdateRows => "update_rows",
            Watched::ExpectationFailureRate => "expectation_failure_percent",
        }
    }
}

/// One checked anomaly monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// Its name.
    pub name: String,
    /// What it watches.
    pub watched: Watched,
    /// The column, for column metrics.
    pub column: Option<String>,
    /// The detector's settings.
    pub detector: Detector,
    /// The status an anomaly gives.
    pub level: Status,
}

impl Anomaly {
    /// Checks one entry of `anomalies:`.
    pub fn check(at: &str, a: &AnomalyConfig) -> Result<Anomaly> {
        let err = |m: String| QualityError::Config(format!("{at} ({}): {m}", a.metric));
        let watched = match a.metric.as_str() {
            "volume" => Watched::Volume,
            "freshness" => Watched::Freshness,
            "row_count" => Watched::RowCount,
            "null_percent" => Watched::NullPercent,
            "distinct_count" => Watched::DistinctCount,
            "mean" => Watched::Mean,
            "update_duration" => Watched::UpdateDuration,
            "update_rows" => Watched::UpdateRows,
            "expectation_failure_rate" => Watched::ExpectationFailureRate,
            other => {
                return Err(QualityError::Config(format!(
                    "{at}: unknown metric `{other}`; watch volume, freshness, row_count, null_percent, distinct_count, mean, or on a pipeline's event log update_duration, update_rows, expectation_failure_rate"
                )));
            }
        };
        let column_metric = matches!(
            watched,
            Watched::NullPercent | Watched::DistinctCount | Watched::Mean
        );
        if column_metric && a.column.is_none() {
            return Err(err("needs `column`".into()));
        }
        if !column_metric && a.column.is_some() {
            return Err(err("`column` does not apply: it watches the table".into()));
        }
        let seasonality = match a.seasonality.as_deref() {
            None => Seasonality::Auto,
            Some(s) => Seasonality::parse(s).ok_or_else(|| {
                err(format!(
                    "`seasonality: {s}`: write auto, none, hour_of_day or day_of_week"
                ))
            })?,
        };
        let direction = match a.direction.as_deref() {
            None if watched == Watched::Freshness => Direction::Up,
            None | Some("both") => Direction::Both,
            Some("up") => Direction::Up,
            Some("down") => Direction::Down,
            Some(d) => return Err(err(format!("`direction: {d}`: write both, up or down"))),
        };
        let min_change = match &a.min_change {
            None => 0.0,
            Some(Threshold::Number(n)) => *n,
            Some(Threshold::Text(t)) => match t.trim().parse::<f64>() {
                Ok(n) => n,
                Err(_) => humantime::parse_duration(t.trim())
                    .map(|d| d.as_secs_f64())
                    .map_err(|_| err(format!("`min_change: {t}` is not a number or a duration")))?,
            },
        };
        let threshold = a.sensitivity.unwrap_or(4.0);
        if !(threshold > 0.0 && threshold.is_finite()) {
            return Err(err(format!(
                "`sensitivity: {threshold}`: give a number above 0 (robust standard deviations; default 4)"
            )));
        }
        let min_history = a.min_history.unwrap_or(10);
        if min_history < 3 {
            return Err(err("`min_history` must be at least 3".into()));
        }
        let level = match a.level.as_deref() {
            None | Some("fail") => Status::Fail,
            Some("warn") => Status::Warn,
            Some(l) => return Err(err(format!("`level: {l}`: write warn or fail"))),
        };
        let name = a.name.clone().unwrap_or_else(|| match &a.column {
            Some(c) => format!("anomaly({}({c}))", a.metric),
            None => format!("anomaly({})", a.metric),
        });
        Ok(Anomaly {
            name,
            watched,
            column: a.column.clone(),
            detector: Detector {
                min_history,
                threshold,
                min_change,
                seasonality,
                direction,
                ..Detector::default()
            },
            level,
        })
    }

    fn dimension(&self) -> &'static str {
        match self.watched {
            Watched::Volume | Watched::RowCount => "volume",
            Watched::Freshness => "freshness",
            Watched::NullPercent => "completeness",
            Watched::DistinctCount => "uniqueness",
            Watched::Mean => "accuracy",
            Watched::UpdateDuration => "freshness",
            Watched::UpdateRows => "volume",
            Watched::ExpectationFailureRate => "validity",
        }
    }
}

/// The data commits of a table (newest last): (time, rows written).
async fn commits(session: &SqlSession, target: &Target, limit: usize) -> Result<Vec<(i64, f64)>> {
    let lh = session.lakehouse();
    let info = lh.table(&target.name).await?;
    let table = lh
        .open_delta(
            &info,
            confluo_lakehouse::TableVersion::Version(target.version),
        )
        .await?;
    let mut out: Vec<(i64, f64)> = delta::history(&table, Some(limit))
        .await?
        .into_iter()
        .filter(|h| {
            !matches!(
                h.operation.as_str(),
                "OPTIMIZE" | "VACUUM START" | "VACUUM END" | "CREATE TABLE" | "SET TBLPROPERTIES"
            )
        })
        .filter_map(|h| {
            let rows = h.metrics.get("numOutputRows").and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })?;
            Some((h.timestamp?.timestamp_millis(), rows))
        })
        .collect();
    out.reverse();
    Ok(out)
}

/// The metric's series (oldest first) and its current value: the last point is current.
async fn series(
    session: &SqlSession,
    target: &Target,
    a: &Anomaly,
) -> Result<(Vec<Point>, Option<Point>, Option<Metric>)> {
    let window = a.detector.window + 1;
    match a.watched {
        Watched::Volume => {
            let mut pts: Vec<Point> = commits(session, target, window)
                .await?
                .into_iter()
                .map(|(at_ms, value)| Point { at_ms, value })
                .collect();
            let current = pts.pop();
            Ok((pts, current, None))
        }
        Watched::UpdateDuration | Watched::UpdateRows | Watched::ExpectationFailureRate => {
            let mut pts = updates(session, target, a.watched).await?;
            if pts.len() > window {
                pts.drain(..pts.len() - window);
            }
            let current = pts.pop();
            Ok((pts, current, None))
        }
        Watched::Freshness => {
            let c = commits(session, target, window).await?;
            // Each gap is filed under the moment it began: "after a 6 pm commit, the next
            // one comes at 8 am" is what seasonality must learn.
            let pts: Vec<Point> = c
                .windows(2)
                .map(|w| Point {
                    at_ms: w[0].0,
                    value: (w[1].0 - w[0].0) as f64 / 1000.0,
                })
                .collect();
            let current = c.last().map(|(at, _)| Point {
                at_ms: *at,
                value: (target.now_ms - at) as f64 / 1000.0,
            });
            Ok((pts, current, None))
        }
        _ => {
            let metric = a.watched.metric_name();
            let column = a.column.as_deref();
            let expr = match (a.watched, column) {
                (Watched::RowCount, _) => "count(*)".to_string(),
                (Watched::NullPercent, Some(c)) => format!(
                    "CASE WHEN count(*) = 0 THEN 0 ELSE (count(*) - count(t.{c})) * 100.0 / count(*) END",
                    c = ident(c)
                ),
                (Watched::DistinctCount, Some(c)) => {
                    let dt = target
                        .schema
                        .field_with_name(c)
                        .map(|f| f.data_type().clone())
                        .unwrap_or(arrow::datatypes::DataType::Utf8);
                    crate::profile::distinct_expr(&format!("t.{}", ident(c)), &dt)
                }
                (Watched::Mean, Some(c)) => format!("avg(CAST(t.{} AS DOUBLE))", ident(c)),
                _ => unreachable!("column metrics have a column"),
            };
            let now = crate::checks::lakehouse_value(
                session,
                &format!("SELECT {expr} AS v FROM {}", target.from_clause()),
            )
            .await
            .map_err(QualityError::Config)?;
            let history =
                stored_history(session, target, metric, column, a.detector.window).await?;
            Ok((
                history,
                now.map(|value| Point {
                    at_ms: target.now_ms,
                    value,
                }),
                now.map(|value| Metric {
                    column: a.column.clone(),
                    metric: metric.into(),
                    value: Some(value),
                    text: None,
                }),
            ))
        }
    }
}

/// One value per ended update of the pipeline whose event log `target` is, oldest first.
async fn updates(session: &SqlSession, target: &Target, watched: Watched) -> Result<Vec<Point>> {
    for needed in ["update_id", "event_type", "details", "timestamp"] {
        if target.schema.field_with_name(needed).is_err() {
            return Err(QualityError::Config(format!(
                "{} is not a pipeline's event log (no `{needed}` column): update metrics watch `<pipeline>_event_log`",
                target.name
            )));
        }
    }
    let sql = format!(
        "SELECT update_id, date_part('epoch', timestamp) AS at, event_type, details FROM {} \
         WHERE event_type IN ('create_update', 'flow_progress', 'update_completed', 'update_failed')",
        target.from_clause()
    );
    let batches = query(session, &sql).await.map_err(QualityError::Config)?;
    #[derive(Default)]
    struct Update {
        start: Option<f64>,
        duration_ms: Option<f64>,
        rows: f64,
        passed: f64,
        failed: f64,
    }
    let mut by_id: std::collections::HashMap<String, Update> = Default::default();
    for b in &batches {
        use arrow::array::{Array, AsArray};
        let ids = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let at = floats(b, "at").map_err(QualityError::Config)?;
        let kinds = arrow::compute::cast(b.column(2), &arrow::datatypes::DataType::Utf8)?;
        let kinds = kinds.as_string::<i32>();
        let details = arrow::compute::cast(b.column(3), &arrow::datatypes::DataType::Utf8)?;
        let details = details.as_string::<i32>();
        for (r, started) in at.iter().enumerate() {
            let u = by_id.entry(ids.value(r).to_string()).or_default();
            let d: serde_json::Value = if details.is_null(r) {
                serde_json::Value::Null
            } else {
                serde_json::from_str(details.value(r)).unwrap_or_default()
            };
            let num = |k: &str| d.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
            match kinds.value(r) {
                "create_update" => u.start = started.map(|t| u.start.map_or(t, |s: f64| s.min(t))),
                "update_completed" | "update_failed" => u.duration_ms = Some(num("duration_ms")),
                _ => {
                    u.rows += num("rows_written") + num("rows_upserted");
                    for e in d
                        .get("expectations")
                        .and_then(|e| e.as_array())
                        .into_iter()
                        .flatten()
                    {
                        u.passed += e
                            .get("passed")
                            .and_then(serde_json::Value::as_f64)
                            .unwrap_or(0.0);
                        u.failed += e
                            .get("failed")
                            .and_then(serde_json::Value::as_f64)
                            .unwrap_or(0.0);
                    }
                }
            }
        }
    }
    let mut out: Vec<Point> = by_id
        .into_values()
        .filter_map(|u| {
            let start = u.start?;
            let duration = u.duration_ms?;
            let value = match watched {
                Watched::UpdateDuration => duration / 1000.0,
                Watched::UpdateRows => u.rows,
                _ if u.passed + u.failed > 0.0 => u.failed * 100.0 / (u.passed + u.failed),
                _ => return None,
            };
            Some(Point {
                at_ms: (start * 1000.0) as i64,
                value,
            })
        })
        .collect();
    out.sort_by_key(|p| p.at_ms);
    Ok(out)
}

/// One value per earlier table version of a stored metric (the first measured), oldest
/// first; empty before the metric store exists.
async fn stored_history(
    session: &SqlSession,
    target: &Target,
    metric: &str,
    column: Option<&str>,
    window: usize,
) -> Result<Vec<Point>> {
    let lh = session.lakehouse();
    let store_name =
        confluo_core::TableName::new(store::STORE_CATALOG, store::STORE_SCHEMA, store::METRICS);
    if lh.metastore().get_table(&store_name).await?.is_none() {
        return Ok(vec![]);
    }
    let column_filter = match column {
        Some(c) => format!("column_name = {}", literal(c)),
        None => "column_name IS NULL".into(),
    };
    let sql = format!(
        "SELECT table_version, min(date_part('epoch', computed_at)) AS at, first_value(value ORDER BY computed_at) AS v \
         FROM system.quality.metrics WHERE table_name = {t} AND metric = {m} AND {column_filter} AND slice = '' \
         AND table_version < {version} AND value IS NOT NULL \
         GROUP BY table_version ORDER BY table_version DESC LIMIT {window}",
        t = literal(&target.name.to_string()),
        m = literal(metric),
        version = target.version,
    );
    let batches = query(session, &sql).await.map_err(QualityError::Config)?;
    let mut out = Vec::new();
    for b in &batches {
        let at = floats(b, "at").map_err(QualityError::Config)?;
        let v = floats(b, "v").map_err(QualityError::Config)?;
        for (a, v) in at.into_iter().zip(v) {
            if let (Some(a), Some(v)) = (a, v) {
                out.push(Point {
                    at_ms: (a * 1000.0) as i64,
                    value: v,
                });
            }
        }
    }
    out.sort_by_key(|p| p.at_ms);
    Ok(out)
}

fn result_of(a: &Anomaly, status: Status, value: Option<f64>, message: String) -> CheckResult {
    CheckResult {
        check: a.name.clone(),
        kind: "anomaly".into(),
        dimension: a.dimension().into(),
        slice: String::new(),
        status,
        value,
        bad_rows: None,
        checked_rows: None,
        warn: None,
        fail: Some(format!("|robust z| >= {}", a.detector.threshold)),
        message,
    }
}

/// Judges each anomaly monitor's newest value; returns the results, their scores (for
/// metrics) and the values to record.
pub async fn evaluate(
    session: &SqlSession,
    target: &Target,
    anomalies: &[Anomaly],
) -> (Vec<CheckResult>, Vec<Metric>) {
    let mut results = Vec::new();
    let mut metrics = Vec::new();
    for a in anomalies {
        if let Some(c) = &a.column
            && target.schema.field_with_name(c).is_err()
        {
            results.push(result_of(
                a,
                Status::Error,
                None,
                format!("column `{c}` does not exist"),
            ));
            continue;
        }
        let (history, current, record) = match series(session, target, a).await {
            Ok(s) => s,
            Err(e) => {
                results.push(result_of(a, Status::Error, None, e.to_string()));
                continue;
            }
        };
        metrics.extend(record);
        let Some(current) = current else {
            results.push(result_of(a, Status::Pass, None, "no value yet".into()));
            continue;
        };
        match a.detector.score(&history, current) {
            None => results.push(result_of(
                a,
                Status::Pass,
                Some(current.value),
                format!(
                    "learning: {} of {} values of history",
                    history.len(),
                    a.detector.min_history
                ),
            )),
            Some(s) => {
                metrics.push(Metric {
                    column: a.column.clone(),
                    metric: format!("anomaly_score:{}", a.name),
                    value: Some(s.score),
                    text: None,
                });
                let status = if s.anomalous { a.level } else { Status::Pass };
                let what = if s.anomalous { "anomaly: " } else { "" };
                results.push(result_of(
                    a,
                    status,
                    Some(current.value),
                    format!("{what}{}", anomaly::describe(&s)),
                ));
            }
        }
    }
    (results, metrics)
}

/// One replayed value of a backtest.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    /// The anomaly monitor.
    pub check: String,
    /// When.
    pub at_ms: i64,
    /// The verdict (`None` while learning).
    pub score: Option<Score>,
}

/// Replays each anomaly monitor over its stored history: what would have alerted.
pub async fn backtest(
    session: &SqlSession,
    target: &Target,
    anomalies: &[Anomaly],
) -> Result<Vec<Replayed>> {
    let mut out = Vec::new();
    for a in anomalies {
        let (mut history, current, _) = series(session, target, a).await?;
        // The current gap of `freshness` is still growing: it is not history.
        if a.watched != Watched::Freshness {
            history.extend(current);
        }
        for (p, s) in a.detector.backtest(&history) {
            out.push(Replayed {
                check: a.name.clone(),
                at_ms: p.at_ms,
                score: s,
            });
        }
    }
    Ok(out)
}
