//! `confluo monitor run | status | profile`: data quality checks of lakehouse tables.

use std::process::ExitCode;

use crate::render::{grid as table, moment as time};
use clap::{Args, Subcommand, ValueEnum};

use super::{CmdResult, Context};
use crate::report::CliError;
use confluo_quality::run::transition_word;
use confluo_quality::{MonitorReport, QualityError, Status};
use confluo_sql::SqlSession;

/// How to print.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MonitorFormat {
    /// A table.
    Table,
    /// JSON.
    Json,
}

/// `confluo monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(subcommand)]
    command: MonitorCommand,
}

#[derive(Debug, Subcommand)]
enum MonitorCommand {
    /// Run the monitors of confluo.yaml (all, or those of the tables named): evaluate their
    /// checks, keep failing rows, record results and metrics, send alerts. Exits 1 when a
    /// check fails or cannot be evaluated.
    Run {
        /// Tables, as named under `monitors:`.
        tables: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = MonitorFormat::Table)]
        format: MonitorFormat,
        /// Also write every check's status and the anomaly scores to this file in
        /// Prometheus' text format (for node_exporter's textfile collector).
        #[arg(long, value_name = "FILE")]
        textfile: Option<std::path::PathBuf>,
    },
    /// Replay the anomaly monitors over the stored history: what would have alerted.
    Backtest {
        /// Tables, as named under `monitors:` (default: every monitor with anomalies).
        tables: Vec<String>,
        /// Print every value judged, not only those that would have alerted.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = MonitorFormat::Table)]
        format: MonitorFormat,
    },
    /// The latest status of every check, and since when it holds.
    Status {
        /// Only these tables.
        tables: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = MonitorFormat::Table)]
        format: MonitorFormat,
    },
    /// Profile a table now (counts, nulls, distinct values, min/max/mean/stddev,
    /// quartiles, lengths, top values) and record it in system.quality.metrics.
    Profile {
        /// The table.
        table: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = MonitorFormat::Table)]
        format: MonitorFormat,
    },
}

fn quality_error(e: QualityError) -> CliError {
    CliError::from(anyhow::anyhow!("{e}"))
}

/// `confluo monitor ...`.
pub async fn run(ctx: &Context, args: MonitorArgs) -> CmdResult {
    match args.command {
        MonitorCommand::Run {
            tables,
            format,
            textfile,
        } => run_monitors(ctx, &tables, format, textfile.as_deref()).await,
        MonitorCommand::Backtest {
            tables,
            all,
            format,
        } => backtest(ctx, &tables, all, format).await,
        MonitorCommand::Status { tables, format } => status(ctx, &tables, format).await,
        MonitorCommand::Profile { table, format } => profile(ctx, &table, format).await,
    }
}

/// Runs the project's monitors (those of `tables`, or all), prints what they found, and
/// returns failure when a check failed or could not run.
pub async fn run_monitors(
    ctx: &Context,
    tables: &[String],
    format: MonitorFormat,
    textfile: Option<&std::path::Path>,
) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    let monitors = confluo_quality::monitors(&project, tables).map_err(quality_error)?;
    if monitors.is_empty() {
        return Err(anyhow::anyhow!(
            "no monitors in confluo.yaml\n  hint: add one, e.g.\n    monitors:\n      gold.orders:\n        checks:\n          - {{check: row_count, fail: \"< 1\"}}"
        )
        .into());
    }
    let session = SqlSession::new(lh)
        .await
        .map_err(|e| CliError::sql(e, "", "monitor"))?;
    let reports = confluo_quality::run_all(&session, &monitors, &project.config)
        .await
        .map_err(quality_error)?;
    let ok = passed(&reports);
    if let Some(path) = textfile {
        let states = session.lakehouse().metastore().check_states(None).await?;
        confluo_quality::prometheus::write_textfile(
            path,
            &confluo_quality::prometheus::render(&states, &reports),
        )
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    if format == MonitorFormat::Json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_reports(&reports, ctx.quiet);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Whether no check failed or erred.
pub fn passed(reports: &[MonitorReport]) -> bool {
    let worst = reports
        .iter()
        .map(MonitorReport::worst)
        .max()
        .unwrap_or(Status::Pass);
    !matches!(worst, Status::Fail | Status::Error)
}

/// Runs the monitors of `tables` (as named under `monitors:`), for commands that run them
/// after their own work (`confluo run` with `monitors: true`).
pub async fn monitor_tables(
    project: &confluo_core::Project,
    lh: std::sync::Arc<confluo_lakehouse::Lakehouse>,
    tables: &[String],
) -> Result<Vec<MonitorReport>, CliError> {
    let monitors = confluo_quality::monitors(project, tables).map_err(quality_error)?;
    let session = SqlSession::new(lh)
        .await
        .map_err(|e| CliError::sql(e, "", "monitor"))?;
    confluo_quality::run_all(&session, &monitors, &project.config)
        .await
        .map_err(quality_error)
}

fn value(r: &confluo_quality::CheckResult) -> String {
    let threshold = match (&r.warn, &r.fail) {
        (Some(w), Some(f)) => format!("warn {w}, fail {f}"),
        (Some(w), None) => format!("warn {w}"),
        (None, Some(f)) => format!("fail {f}"),
        (None, None) => String::new(),
    };
    format!("{}\n{threshold}", r.message).trim().to_string()
}

/// Prints what monitor runs found: a table of results, then kept rows, alerts, problems.
pub fn print_reports(reports: &[MonitorReport], quiet: bool) {
    let mut rows = Vec::new();
    for rep in reports {
        for r in &rep.results {
            rows.push(vec![
                rep.table.clone(),
                if r.slice.is_empty() {
                    r.check.clone()
                } else {
                    format!("{} [{}]", r.check, r.slice)
                },
                r.dimension.clone(),
                r.status.as_str().to_uppercase(),
                value(r),
            ]);
        }
    }
    println!(
        "{}",
        table(&["TABLE", "CHECK", "DIMENSION", "STATUS", "FOUND"], rows)
    );
    for rep in reports {
        let mut lines = Vec::new();
        if rep.failing_rows_kept > 0
            && let Some(f) = &rep.failures_table
        {
            lines.push(format!(
                "{} failing rows kept: SELECT * FROM {f} WHERE _run_id = '{}'",
                rep.failing_rows_kept, rep.run_id
            ));
        }
        if rep.failing_rows_expired > 0 {
            lines.push(format!(
                "{} failing rows past their retention deleted",
                rep.failing_rows_expired
            ));
        }
        for a in &rep.alerts {
            lines.push(match &a.error {
                None => format!(
                    "alert {} for {} sent to {}",
                    transition_word(a.transition),
                    a.check,
                    a.to
                ),
                Some(e) => format!(
                    "alert {} for {} NOT sent to {}: {e}",
                    transition_word(a.transition),
                    a.check,
                    a.to
                ),
            });
        }
        for p in &rep.problems {
            lines.push(format!("problem: {p}"));
        }
        if !quiet || !rep.problems.is_empty() {
            for l in lines {
                eprintln!("{}: {l}", rep.table);
            }
        }
    }
}

async fn status(ctx: &Context, tables: &[String], format: MonitorFormat) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    let mut wanted = Vec::new();
    for t in tables {
        wanted.push(lh.resolve(t)?.to_string());
    }
    let _ = &project;
    let states: Vec<_> = lh
        .metastore()
        .check_states(None)
        .await?
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.contains(&s.monitor))
        .collect();
    if format == MonitorFormat::Json {
        let rows: Vec<serde_json::Value> = states
            .iter()
            .map(|s| {
                serde_json::json!({
                    "table": s.monitor, "check": s.check, "slice": s.slice,
                    "status": s.status, "since": time(s.since_ms), "checked": time(s.checked_ms),
                    "table_version": s.table_version, "value": s.value, "message": s.message,
                    "alert_open": s.notified_status, "run_id": s.run_id,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if states.is_empty() {
        println!("no checks have run yet: confluo monitor run");
        return Ok(ExitCode::SUCCESS);
    }
    let rows = states
        .iter()
        .map(|s| {
            vec![
                s.monitor.clone(),
                if s.slice.is_empty() {
                    s.check.clone()
                } else {
                    format!("{} [{}]", s.check, s.slice)
                },
                s.status.to_uppercase(),
                time(s.since_ms),
                time(s.checked_ms),
                s.table_version.map(|v| v.to_string()).unwrap_or_default(),
                s.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "TABLE", "CHECK", "STATUS", "SINCE", "CHECKED", "VERSION", "FOUND"
            ],
            rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

async fn profile(ctx: &Context, name: &str, format: MonitorFormat) -> CmdResult {
    let (_project, lh) = ctx.lakehouse().await?;
    let resolved = lh.resolve(name)?;
    let target = confluo_quality::run::open_target(&lh, &resolved)
        .await
        .map_err(quality_error)?;
    let session = SqlSession::new(lh.clone())
        .await
        .map_err(|e| CliError::sql(e, "", "monitor"))?;
    let (run_id, metrics) = confluo_quality::run::profile_and_record(&session, &target)
        .await
        .map_err(quality_error)?;
    if format == MonitorFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "table": target.name.to_string(), "table_version": target.version,
                "run_id": run_id, "metrics": metrics,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let names = [
        "null_percent",
        "approx_distinct",
        "min",
        "max",
        "mean",
        "stddev",
        "p50",
        "mean_length",
        "top_values",
    ];
    let mut rows = Vec::new();
    for (column, ms) in confluo_quality::profile::by_column(&metrics) {
        if column.is_empty() {
            continue;
        }
        let get = |m: &str| {
            ms.iter()
                .find(|x| x.metric == m)
                .map(|x| match (&x.value, &x.text) {
                    (Some(v), _) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", *v as i64),
                    (Some(v), _) => format!("{v:.4}"),
                    (None, Some(t)) => t.clone(),
                    _ => String::new(),
                })
                .unwrap_or_default()
        };
        let mut row = vec![column.clone()];
        row.extend(names.iter().map(|n| get(n)));
        rows.push(row);
    }
    let rows_total = metrics
        .iter()
        .find(|m| m.column.is_none() && m.metric == "row_count")
        .and_then(|m| m.value)
        .unwrap_or(0.0);
    println!(
        "{} version {}: {} rows",
        target.name, target.version, rows_total as i64
    );
    let mut header = vec!["COLUMN"];
    header.extend([
        "NULL %",
        "DISTINCT≈",
        "MIN",
        "MAX",
        "MEAN",
        "STDDEV",
        "MEDIAN≈",
        "MEAN LEN",
        "TOP VALUES",
    ]);
    println!("{}", table(&header, rows));
    Ok(ExitCode::SUCCESS)
}

async fn backtest(ctx: &Context, tables: &[String], all: bool, format: MonitorFormat) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    let monitors: Vec<_> = confluo_quality::monitors(&project, tables)
        .map_err(quality_error)?
        .into_iter()
        .filter(|m| !m.anomalies.is_empty())
        .collect();
    if monitors.is_empty() {
        return Err(anyhow::anyhow!(
            "no monitor has `anomalies:` to replay\n  hint: add one, e.g. `anomalies: [{{metric: volume}}]`"
        )
        .into());
    }
    let session = SqlSession::new(lh.clone())
        .await
        .map_err(|e| CliError::sql(e, "", "monitor"))?;
    let mut all_rows = Vec::new();
    let mut json = Vec::new();
    for m in &monitors {
        let name = lh.resolve(&m.table)?;
        let target = confluo_quality::run::open_target(&lh, &name)
            .await
            .map_err(quality_error)?;
        let replayed = confluo_quality::anomalies::backtest(&session, &target, &m.anomalies)
            .await
            .map_err(quality_error)?;
        for a in &m.anomalies {
            let mine: Vec<_> = replayed.iter().filter(|r| r.check == a.name).collect();
            let judged = mine.iter().filter(|r| r.score.is_some()).count();
            let alerts = mine
                .iter()
                .filter(|r| r.score.as_ref().is_some_and(|s| s.anomalous))
                .count();
            json.push(serde_json::json!({
                "table": name.to_string(), "check": a.name, "values": mine.len(),
                "judged": judged, "would_alert": alerts,
                "replayed": mine.iter().filter(|r| all || r.score.as_ref().is_some_and(|s| s.anomalous)).collect::<Vec<_>>(),
            }));
            if format == MonitorFormat::Table {
                println!(
                    "{name} {}: {} values, {judged} judged, {alerts} would have alerted",
                    a.name,
                    mine.len()
                );
            }
            for r in mine {
                let Some(sc) = &r.score else {
                    if all {
                        all_rows.push(vec![
                            name.to_string(),
                            a.name.clone(),
                            time(r.at_ms),
                            String::new(),
                            String::new(),
                            String::new(),
                            "learning".into(),
                        ]);
                    }
                    continue;
                };
                if all || sc.anomalous {
                    all_rows.push(vec![
                        name.to_string(),
                        a.name.clone(),
                        time(r.at_ms),
                        format!("{:.3}", sc.value),
                        format!("{:.3}", sc.expected),
                        format!("{:+.1}", sc.score),
                        if sc.anomalous {
                            "ALERT".into()
                        } else {
                            "ok".into()
                        },
                    ]);
                }
            }
        }
    }
    if format == MonitorFormat::Json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else if !all_rows.is_empty() {
        println!(
            "{}",
            table(
                &["TABLE", "CHECK", "AT", "VALUE", "EXPECTED", "ROBUST Z", ""],
                all_rows
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}
