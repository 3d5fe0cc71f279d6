//! One monitor run: evaluate the checks against the table's newest version, keep the
//! failing rows, append results and metrics to the metric store, then update each
//! check's status and send the alerts its change calls for.
//!
//! The history is appended before the statuses move, so a run killed half-way loses no
//! result; the next run re-evaluates and, at worst, repeats an alert.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use confluo_core::ProjectConfig;
use confluo_core::jobs::SmtpConfig;
use confluo_lakehouse::TableVersion;
use confluo_lakehouse::delta;
use confluo_lakehouse::metastore::CheckState;
use confluo_sql::SqlSession;

use crate::alerts::{self, Notice, Transition};
use crate::checks::{self, CheckResult, Status, Target};
use crate::error::Result;
use crate::profile;
use crate::spec::Monitor;
use crate::store::{self, Metric, RunRecord};

/// An alert that went out (or could not).
#[derive(Debug, Clone, Serialize)]
pub struct AlertSent {
    /// The check.
    pub check: String,
    /// Its slice.
    pub slice: String,
    /// Why.
    pub transition: Transition,
    /// Where to.
    pub to: String,
    /// Why it could not be delivered.
    pub error: Option<String>,
}

/// What one monitor run found and did.
#[derive(Debug, Clone, Serialize)]
pub struct MonitorReport {
    /// The run.
    pub run_id: String,
    /// The table (resolved name).
    pub table: String,
    /// The version checked (-1 when the table could not be read).
    pub table_version: i64,
    /// Every check's outcome.
    pub results: Vec<CheckResult>,
    /// Metrics recorded (the profile, when the monitor profiles).
    pub metrics: Vec<Metric>,
    /// Failing rows appended to `failures_table`.
    pub failing_rows_kept: u64,
    /// Where failing rows are kept.
    pub failures_table: Option<String>,
    /// Failing rows deleted for being older than the retention.
    pub failing_rows_expired: u64,
    /// Alerts sent.
    pub alerts: Vec<AlertSent>,
    /// What went wrong beside the checks (failing rows not kept, the history not written).
    pub problems: Vec<String>,
    /// How long it took.
    pub duration_ms: u64,
}

impl MonitorReport {
    /// The worst status among the results.
    pub fn worst(&self) -> Status {
        self.results
            .iter()
            .map(|r| r.status)
            .max()
            .unwrap_or(Status::Pass)
    }
}

/// Runs `monitor` once.
pub async fn run_monitor(
    session: &SqlSession,
    monitor: &Monitor,
    project: &ProjectConfig,
) -> Result<MonitorReport> {
    let smtp = project.smtp.as_ref();
    let started = Instant::now();
    let lh = session.lakehouse().clone();
    let run_id = uuid::Uuid::now_v7().to_string();
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();
    let at_us = now.timestamp_micros();
    let mut report = MonitorReport {
        run_id: run_id.clone(),
        table: monitor.table.clone(),
        table_version: -1,
        results: vec![],
        metrics: vec![],
        failing_rows_kept: 0,
        failures_table: None,
        failing_rows_expired: 0,
        alerts: vec![],
        problems: vec![],
        duration_ms: 0,
    };
    let previous_version = async {
        let name = lh.resolve(&monitor.table).ok()?;
        lh.metastore()
            .check_states(Some(&name.to_string()))
            .await
            .ok()?
            .iter()
            .filter_map(|s| s.table_version)
            .max()
    }
    .await;
    let opened = async {
        let name = lh.resolve(&monitor.table)?;
        Ok::<_, crate::QualityError>(Target {
            now_ms,
            previous_version,
            ..open_target(&lh, &name).await?
        })
    }
    .await;
    let target = match opened {
        Ok(t) => t,
        Err(e) => {
            // The table itself is the problem: every check reports it, and alerts.
            let why = format!("cannot read {}: {e}", monitor.table);
            report.results = monitor
                .checks
                .iter()
                .map(|c| CheckResult {
                    check: c.name.clone(),
                    kind: c.label.clone(),
                    dimension: c.dimension.clone(),
                    slice: String::new(),
                    status: Status::Error,
                    value: None,
                    bad_rows: None,
                    checked_rows: None,
                    warn: c.warn.map(|w| w.to_string()),
                    fail: c.fail.map(|f| f.to_string()),
                    message: why.clone(),
                })
                .chain(monitor.anomalies.iter().map(|a| CheckResult {
                    check: a.name.clone(),
                    kind: "anomaly".into(),
                    dimension: String::new(),
                    slice: String::new(),
                    status: Status::Error,
                    value: None,
                    bad_rows: None,
                    checked_rows: None,
                    warn: None,
                    fail: None,
                    message: why.clone(),
                }))
                .collect();
            settle(session, monitor, &mut report, smtp, now_ms).await?;
            report.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
    };
    report.table = target.name.to_string();
    report.table_version = target.version;
    report.results =
        checks::evaluate(session, &target, &monitor.checks, &project.connections).await;
    let (anomaly_results, anomaly_metrics) =
        crate::anomalies::evaluate(session, &target, &monitor.anomalies).await;
    report.results.extend(anomaly_results);
    let record = RunRecord {
        run_id: &run_id,
        target: &target,
        at_us,
    };

    // Failing rows, for the checks that judge rows and did not pass.
    if let Some(retention) = monitor.failures_retention {
        let failing: Vec<&crate::spec::Check> = monitor
            .checks
            .iter()
            .filter(|c| c.keeps_rows())
            .filter(|c| {
                report
                    .results
                    .iter()
                    .any(|r| r.check == c.name && matches!(r.status, Status::Warn | Status::Fail))
            })
            .collect();
        if !failing.is_empty() {
            report.failures_table = Some(store::failures_table(&target.name).to_string());
            match store::keep_failing_rows(session, &record, &failing).await {
                Ok(n) => report.failing_rows_kept = n,
                Err(e) => report
                    .problems
                    .push(format!("failing rows were not kept: {e}")),
            }
        }
        match store::expire_failing_rows(&lh, &target.name, retention, at_us).await {
            Ok(n) => report.failing_rows_expired = n,
            Err(e) => report.problems.push(e),
        }
    }

    // Metrics: the profile, or at least the row count and the commit's age.
    let mut metrics = if monitor.profile {
        match profile::profile(session, &target).await {
            Ok(m) => m,
            Err(e) => {
                report.problems.push(format!("the profile failed: {e}"));
                vec![]
            }
        }
    } else {
        let rows = report
            .results
            .iter()
            .find(|r| r.kind == "row_count" && r.slice.is_empty())
            .and_then(|r| r.value);
        let rows = match rows {
            Some(r) => Some(r),
            None => count(session, &target).await,
        };
        vec![Metric {
            column: None,
            metric: "row_count".into(),
            value: rows,
            text: None,
        }]
    };
    metrics.extend(anomaly_metrics);
    if let Some(ms) = target.committed_ms {
        metrics.push(Metric {
            column: None,
            metric: "commit_age_seconds".into(),
            value: Some((now_ms - ms) as f64 / 1000.0),
            text: None,
        });
    }
    store::append_results(&lh, &record, &report.results).await?;
    store::append_metrics(&lh, &record, "", &metrics).await?;
    report.metrics = metrics;
    settle(session, monitor, &mut report, smtp, now_ms).await?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

async fn count(session: &SqlSession, target: &Target) -> Option<f64> {
    let sql = format!("SELECT count(*) FROM {}", target.from_clause());
    checks::lakehouse_value(session, &sql).await.ok().flatten()
}

/// Moves each check's status in the metastore and sends the alerts that calls for.
async fn settle(
    session: &SqlSession,
    monitor: &Monitor,
    report: &mut MonitorReport,
    smtp: Option<&SmtpConfig>,
    now_ms: i64,
) -> Result<()> {
    let ms = session.lakehouse().metastore();
    let key = report.table.clone();
    let previous: HashMap<(String, String), CheckState> = ms
        .check_states(Some(&key))
        .await?
        .into_iter()
        .map(|s| ((s.check.clone(), s.slice.clone()), s))
        .collect();
    let names: Vec<String> = monitor
        .checks
        .iter()
        .map(|c| c.name.clone())
        .chain(monitor.anomalies.iter().map(|a| a.name.clone()))
        .collect();
    ms.forget_checks(&key, &names).await?;
    for r in &report.results {
        let prev = previous.get(&(r.check.clone(), r.slice.clone()));
        let mut decision = alerts::decide(prev, r.status, now_ms, monitor.snooze);
        if let Some(t) = decision.transition
            && !monitor.alerts.is_empty()
        {
            let announced = prev.and_then(|p| p.notified_status.clone());
            let notice = Notice::new(
                &report.table,
                report.table_version,
                r,
                t,
                announced.clone(),
                report
                    .failures_table
                    .clone()
                    .filter(|_| r.bad_rows.unwrap_or(0) > 0),
                &report.run_id,
                now_ms,
            );
            let sent = alerts::deliver(
                &monitor.alerts,
                &notice,
                announced.as_deref() == Some("warn"),
                smtp,
            )
            .await;
            // Nothing got through: keep the alert unannounced so the next run tries again.
            if !sent.is_empty() && sent.iter().all(|(_, r)| r.is_err()) {
                decision.notified_status = prev.and_then(|p| p.notified_status.clone());
                decision.notified_ms = prev.and_then(|p| p.notified_ms);
            }
            for (to, outcome) in sent {
                report.alerts.push(AlertSent {
                    check: r.check.clone(),
                    slice: r.slice.clone(),
                    transition: t,
                    to,
                    error: outcome.err(),
                });
            }
        }
        let since_ms = match prev {
            Some(p) if p.status == r.status.as_str() => p.since_ms,
            _ => now_ms,
        };
        ms.put_check_state(&CheckState {
            monitor: key.clone(),
            check: r.check.clone(),
            slice: r.slice.clone(),
            status: r.status.as_str().to_string(),
            since_ms,
            checked_ms: now_ms,
            run_id: report.run_id.clone(),
            table_version: (report.table_version >= 0).then_some(report.table_version),
            value: r.value,
            message: Some(r.message.clone()),
            notified_status: decision.notified_status,
            notified_ms: decision.notified_ms,
        })
        .await?;
    }
    Ok(())
}

/// Runs each monitor in turn.
pub async fn run_all(
    session: &SqlSession,
    monitors: &[Monitor],
    project: &ProjectConfig,
) -> Result<Vec<MonitorReport>> {
    let mut out = Vec::with_capacity(monitors.len());
    for m in monitors {
        out.push(run_monitor(session, m, project).await?);
    }
    Ok(out)
}

/// `Transition` as the word shown in reports.
pub fn transition_word(t: Transition) -> &'static str {
    match t {
        Transition::Opened => "opened",
        Transition::Changed => "changed",
        Transition::Reminder => "reminder",
        Transition::Resolved => "resolved",
    }
}

/// The newest version of table `name`, as checks and profiles read it.
pub async fn open_target(
    lh: &confluo_lakehouse::Lakehouse,
    name: &confluo_core::TableName,
) -> Result<Target> {
    let info = lh.table(name).await?;
    let table = lh.open_delta(&info, TableVersion::Latest).await?;
    let committed_ms = delta::history(&table, Some(1))
        .await?
        .first()
        .and_then(|h| h.timestamp)
        .map(|t| t.timestamp_millis());
    Ok(Target {
        name: name.clone(),
        version: delta::table_version(&table),
        schema: delta::table_schema(&table)?,
        committed_ms,
        now_ms: chrono::Utc::now().timestamp_millis(),
        previous_version: None,
    })
}

/// Profiles `target` now and appends the profile to `system.quality.metrics`; returns the
/// run id and the metrics.
pub async fn profile_and_record(
    session: &SqlSession,
    target: &Target,
) -> Result<(String, Vec<Metric>)> {
    let metrics = profile::profile(session, target).await?;
    let run_id = uuid::Uuid::now_v7().to_string();
    store::append_metrics(
        session.lakehouse(),
        &RunRecord {
            run_id: &run_id,
            target,
            at_us: chrono::Utc::now().timestamp_micros(),
        },
        "",
        &metrics,
    )
    .await?;
    Ok((run_id, metrics))
}
