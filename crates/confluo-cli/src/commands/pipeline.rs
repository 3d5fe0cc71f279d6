//! `confluo validate`, `run`, `runs` and `events`: declarative pipelines.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::{Args, ValueEnum};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use confluo_core::Project;
use confluo_lakehouse::Lakehouse;
use confluo_pipelines::dialect::DatasetKind;
use confluo_pipelines::graph::Catalog;
use confluo_pipelines::run::{DatasetReport, Observer, Status};
use confluo_pipelines::{Pipeline, PipelineError, RunOptions, Runner, event_log};
use confluo_sql::SqlSession;

use super::{CmdResult, Context};
use crate::progress::count;
use crate::render;
use crate::report::CliError;

/// How to print the graph.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// Readable text.
    Text,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

/// `confluo validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The pipeline (default: the project's only one).
    #[arg(long)]
    pipeline: Option<String>,
    /// How to print the graph.
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    format: GraphFormat,
}

/// `confluo run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline (default: the project's only one).
    #[arg(long)]
    pipeline: Option<String>,
    /// Rebuild every dataset from scratch.
    #[arg(long, conflicts_with_all = ["refresh", "full_refresh_selection"])]
    full_refresh: bool,
    /// Update only these datasets (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
    refresh: Vec<String>,
    /// Rebuild these datasets from scratch (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
    full_refresh_selection: Vec<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    /// Keep updating, one update per trigger interval, until Ctrl-C (change feeds and
    /// streaming tables stay current). A failed update is retried with backoff.
    #[arg(long, conflicts_with_all = ["refresh", "full_refresh_selection"])]
    continuous: bool,
    /// With `--continuous`: the time between the starts of two updates.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: std::time::Duration,
}

impl Default for RunArgs {
    fn default() -> Self {
        RunArgs {
            pipeline: None,
            full_refresh: false,
            refresh: vec![],
            full_refresh_selection: vec![],
            json: false,
            continuous: false,
            interval: std::time::Duration::from_secs(5),
        }
    }
}

impl RunArgs {
    /// Update everything in the project's only pipeline, as `confluo run` does.
    pub fn everything() -> Self {
        Self::default()
    }
}

/// `confluo runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The pipeline (default: the project's only one).
    #[arg(long)]
    pipeline: Option<String>,
}

/// `confluo events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The pipeline (default: the project's only one).
    #[arg(long)]
    pipeline: Option<String>,
    /// The update (an id or its prefix; default: the latest).
    #[arg(long)]
    update: Option<String>,
}

struct MetastoreNames {
    names: Vec<(confluo_core::TableName, String)>,
}

impl Catalog for MetastoreNames {
    fn exists(&self, name: &confluo_core::TableName) -> bool {
        self.names.iter().any(|(n, _)| n == name)
    }
    fn names(&self) -> Vec<String> {
        self.names.iter().map(|(_, s)| s.clone()).collect()
    }
}

/// Turns a pipeline error into a CLI error with the source line under it.
fn pipeline_error(project: &Project, e: PipelineError) -> CliError {
    let source = e.pos().and_then(|pos| {
        std::fs::read_to_string(project.root.join(&pos.file))
            .ok()
            .map(|text| {
                (
                    text,
                    pos.file.display().to_string(),
                    pos.line as usize,
                    pos.column as usize,
                )
            })
    });
    match source {
        Some((text, label, line, col)) => CliError {
            error: anyhow::anyhow!(
                "{e}\n{}",
                crate::report::snippet(&text, &label, line, col).trim_end()
            ),
            source: None,
        },
        None => CliError::from(anyhow::anyhow!("{e}")),
    }
}

async fn load(
    ctx: &Context,
    name: Option<&str>,
) -> Result<(Project, Arc<Lakehouse>, Pipeline), CliError> {
    let (project, lh) = ctx.lakehouse().await?;
    let (pname, config) =
        confluo_pipelines::select(&project, name).map_err(|e| pipeline_error(&project, e))?;
    let names = lh
        .metastore()
        .list_tables(None, None)
        .await?
        .into_iter()
        .map(|t| {
            let s = t.name.to_string();
            (t.name, s)
        })
        .collect();
    let pipeline = confluo_pipelines::load(&project, &pname, &config, &MetastoreNames { names })
        .map_err(|e| pipeline_error(&project, e))?;
    Ok((project, lh, pipeline))
}

/// `confluo validate`: parse, resolve and plan every flow; print the graph.
pub async fn validate(ctx: &Context, args: ValidateArgs) -> CmdResult {
    let (project, lh, pipeline) = load(ctx, args.pipeline.as_deref()).await?;
    let runner = Runner::new(&project, lh, &pipeline)
        .await
        .map_err(|e| pipeline_error(&project, e))?;
    runner
        .validate()
        .await
        .map_err(|e| pipeline_error(&project, e))?;
    match args.format {
        GraphFormat::Text => {
            print!("{}", pipeline.render_text());
            eprintln!(
                "\nvalid: {} datasets, {} flows, {} files",
                pipeline.datasets.len(),
                pipeline.flows.len(),
                pipeline.files.len()
            );
        }
        GraphFormat::Dot => print!("{}", pipeline.render_dot()),
        GraphFormat::Mermaid => print!("{}", pipeline.render_mermaid()),
    }
    Ok(ExitCode::SUCCESS)
}

/// A running dataset's spinner, row counter and start time.
type Bar = (ProgressBar, Arc<AtomicU64>, Instant);

/// The live display: one line per running dataset.
struct LiveDisplay {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, Bar>>,
    hidden: bool,
}

impl LiveDisplay {
    fn new(hidden: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        LiveDisplay {
            multi,
            bars: Mutex::new(HashMap::new()),
            hidden,
        }
    }

    fn tick(&self) {
        for (bar, rows, t0) in self.bars.lock().expect("bars").values() {
            let n = rows.load(Ordering::Relaxed);
            let secs = t0.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "{} rows, {} rows/s",
                count(n),
                count((n as f64 / secs) as u64)
            ));
        }
    }
}

impl Observer for LiveDisplay {
    fn started(&self, key: &str, kind: DatasetKind, rows: Arc<AtomicU64>) {
        if self.hidden {
            return;
        }
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("{key} ({})", kind.label()));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        self.bars
            .lock()
            .expect("bars")
            .insert(key.to_string(), (bar, rows, Instant::now()));
    }

    fn finished(&self, r: &DatasetReport) {
        if let Some((bar, _, _)) = self.bars.lock().expect("bars").remove(&r.key) {
            bar.finish_and_clear();
        }
    }
}

/// `confluo run`: update the pipeline.
pub async fn run(ctx: &Context, args: RunArgs) -> CmdResult {
    if args.continuous {
        return run_continuously(ctx, args).await;
    }
    let (project, lh, pipeline) = load(ctx, args.pipeline.as_deref()).await?;
    let runner = Runner::new(&project, lh.clone(), &pipeline)
        .await
        .map_err(|e| pipeline_error(&project, e))?;
    let options = RunOptions {
        full_refresh: args.full_refresh,
        refresh: args.refresh,
        full_refresh_selection: args.full_refresh_selection,
    };
    let display = Arc::new(LiveDisplay::new(ctx.quiet || args.json));
    let ticker = {
        let d = display.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                d.tick();
            }
        })
    };
    let result = runner.run(&options, display.as_ref()).await;
    ticker.abort();
    let report = result.map_err(|e| pipeline_error(&project, e))?;
    // `monitors: true`: the monitors of the tables this update wrote run after it.
    let quality = match project.config.pipelines.get(&report.pipeline) {
        Some(cfg) if cfg.monitors && report.ok() => {
            let tables: Vec<String> = project
                .config
                .monitors
                .keys()
                .filter(|t| {
                    lh.resolve(t).is_ok_and(|name| {
                        let name = name.to_string();
                        report.datasets.iter().any(|d| d.key == name)
                    })
                })
                .cloned()
                .collect();
            if tables.is_empty() {
                None
            } else {
                Some(super::monitor::monitor_tables(&project, lh.clone(), &tables).await?)
            }
        }
        _ => None,
    };
    let quality_ok = quality.as_ref().is_none_or(|r| super::monitor::passed(r));
    if args.json {
        let mut out = serde_json::json!({
            "update_id": report.update_id,
            "pipeline": report.pipeline,
            "ok": report.ok(),
            "duration_ms": report.duration.as_millis() as u64,
            "datasets": report.datasets.iter().map(DatasetReport::metrics).collect::<Vec<_>>(),
        });
        if let Some(q) = &quality {
            out["quality"] = serde_json::to_value(q)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_summary(&report);
        if let Some(q) = &quality {
            super::monitor::print_reports(q, ctx.quiet);
        }
    }
    Ok(if report.ok() && quality_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `confluo run --continuous`: an update per trigger interval until Ctrl-C. Each update
/// prints one line (or one JSON object); a failed update is reported and retried with
/// backoff, so a source that restarts or a network outage is ridden out.
async fn run_continuously(ctx: &Context, args: RunArgs) -> CmdResult {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let mut first = true;
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let (project, lh, pipeline) = load(ctx, args.pipeline.as_deref()).await?;
        let options = RunOptions {
            full_refresh: args.full_refresh && first,
            refresh: vec![],
            full_refresh_selection: vec![],
        };
        first = false;
        let display = LiveDisplay::new(true);
        let outcome = match Runner::new(&project, lh, &pipeline).await {
            Ok(runner) => runner.run(&options, &display).await,
            Err(e) => Err(e),
        };
        let wait = match outcome {
            Ok(report) => {
                failures = if report.ok() { 0 } else { failures + 1 };
                let written: u64 = report.datasets.iter().map(|d| d.rows_written).sum();
                let updated: Vec<&str> = report
                    .datasets
                    .iter()
                    .filter(|d| d.status == Status::Completed)
                    .map(|d| d.key.as_str())
                    .collect();
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "update_id": report.update_id,
                            "ok": report.ok(),
                            "duration_ms": report.duration.as_millis() as u64,
                            "rows_written": written,
                            "datasets": report.datasets.iter().map(DatasetReport::metrics).collect::<Vec<_>>(),
                        })
                    );
                } else if !ctx.quiet {
                    println!(
                        "{} update {}: {} in {:.2} s, {} rows written{}",
                        chrono::Local::now().format("%H:%M:%S"),
                        &report.update_id[..8.min(report.update_id.len())],
                        if report.ok() { "ok" } else { "FAILED" },
                        report.duration.as_secs_f64(),
                        written,
                        if updated.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", updated.join(", "))
                        }
                    );
                }
                if report.ok() {
                    args.interval.saturating_sub(started.elapsed())
                } else {
                    backoff(args.interval, failures)
                }
            }
            Err(e) => {
                failures += 1;
                let wait = backoff(args.interval, failures);
                eprint!(
                    "{}",
                    crate::report::format_error(&pipeline_error(&project, e))
                );
                eprintln!("retrying in {:.0} s", wait.as_secs_f64());
                wait
            }
        };
        let until = Instant::now() + wait;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100).min(until - Instant::now())).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Wait after `failures` failed updates in a row: the interval, doubled each time, at most
/// a minute.
fn backoff(interval: std::time::Duration, failures: u32) -> std::time::Duration {
    (interval * 2u32.saturating_pow(failures.min(6))).min(std::time::Duration::from_secs(60))
}

fn print_summary(report: &confluo_pipelines::UpdateReport) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "dataset",
            "kind",
            "status",
            "rows written",
            "dropped",
            "quarantined",
            "expectations",
            "time",
        ]);
    for d in &report.datasets {
        if d.status == Status::NotSelected {
            continue;
        }
        let exp: Vec<String> = d
            .expectations
            .iter()
            .map(|e| {
                format!(
                    "{} ({}): {} passed, {} failed",
                    e.name,
                    e.action,
                    count(e.passed),
                    count(e.failed)
                )
            })
            .collect();
        t.add_row(vec![
            d.key.clone(),
            d.kind.label().to_string(),
            d.status.label().to_string(),
            count(d.rows_written),
            count(d.rows_dropped),
            count(d.rows_quarantined),
            exp.join("\n"),
            format!("{:.2}s", d.duration.as_secs_f64()),
        ]);
    }
    println!("{t}");
    for d in report
        .datasets
        .iter()
        .filter(|d| d.rows_upserted + d.rows_deleted > 0)
    {
        println!(
            "{}: {} upserted, {} deleted (AUTO CDC)",
            d.key,
            count(d.rows_upserted),
            count(d.rows_deleted)
        );
    }
    for d in &report.datasets {
        match &d.status {
            Status::Failed(_) => eprintln!("error: {}", d.failure().unwrap_or_default()),
            Status::Skipped(u) => eprintln!("skipped: {} (upstream {u} failed)", d.key),
            _ => {}
        }
    }
    let changed = report
        .datasets
        .iter()
        .filter(|d| d.status == Status::Completed)
        .count();
    println!(
        "update {} {} in {:.2}s: {changed} dataset(s) updated, {} up to date",
        &report.update_id,
        if report.ok() { "completed" } else { "FAILED" },
        report.duration.as_secs_f64(),
        report
            .datasets
            .iter()
            .filter(|d| d.status == Status::UpToDate)
            .count()
    );
}

async fn event_session(
    ctx: &Context,
    name: Option<&str>,
) -> Result<(SqlSession, confluo_core::TableName), CliError> {
    let (project, lh) = ctx.lakehouse().await?;
    let (pname, config) =
        confluo_pipelines::select(&project, name).map_err(|e| pipeline_error(&project, e))?;
    let (catalog, schema) = confluo_pipelines::graph::target_schema(&project, &config);
    let table = event_log::table_name(&catalog, &schema, &pname);
    if lh.metastore().get_table(&table).await?.is_none() {
        return Err(CliError::from(anyhow::anyhow!(
            "pipeline {pname} has not run yet (no event log {table})\n  hint: confluo run"
        )));
    }
    let session = SqlSession::new(lh).await?;
    Ok((session, table))
}

/// `confluo runs`: the pipeline's updates, newest first.
pub async fn runs(ctx: &Context, args: RunsArgs) -> CmdResult {
    let (session, table) = event_session(ctx, args.pipeline.as_deref()).await?;
    let batches = confluo_pipelines::run::list_updates(&session, &table)
        .await
        .map_err(|e| CliError::from(anyhow::anyhow!("{e}")))?;
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => {
            println!("no updates");
            return Ok(ExitCode::SUCCESS);
        }
    };
    println!("{}", render::table(&schema, &batches)?);
    Ok(ExitCode::SUCCESS)
}

/// `confluo events`: a readable account of one update.
pub async fn events(ctx: &Context, args: EventsArgs) -> CmdResult {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::util::display::ArrayFormatter;
    let (session, table) = event_session(ctx, args.pipeline.as_deref()).await?;
    let batches = confluo_pipelines::run::update_events(&session, &table, args.update.as_deref())
        .await
        .map_err(|e| CliError::from(anyhow::anyhow!("{e}")))?;
    let mut printed = 0;
    for b in &batches {
        let opts = datafusion::arrow::util::display::FormatOptions::default();
        let ts = ArrayFormatter::try_new(b.column(0).as_ref(), &opts)?;
        // Strings may come back as Utf8View; read them all as Utf8.
        let cols: Vec<datafusion::arrow::array::ArrayRef> = b
            .columns()
            .iter()
            .map(|c| {
                datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Utf8)
            })
            .collect::<Result<_, _>>()?;
        let s = |i: usize, r: usize| -> Option<String> {
            let c = cols[i].as_string::<i32>();
            (!c.is_null(r)).then(|| c.value(r).to_string())
        };
        for r in 0..b.num_rows() {
            let what = match (s(3, r), s(4, r)) {
                (Some(d), Some(f)) => format!(" [{d} / {f}]"),
                (Some(d), None) => format!(" [{d}]"),
                _ => String::new(),
            };
            println!(
                "{} {:5} {:16}{} {}",
                ts.value(r),
                s(1, r).unwrap_or_default(),
                s(2, r).unwrap_or_default(),
                what,
                s(5, r).unwrap_or_default()
            );
            if let Some(d) = s(6, r) {
                println!("      details: {d}");
            }
            if let Some(e) = s(7, r) {
                println!("      error: {e}");
            }
            printed += 1;
        }
    }
    if printed == 0 {
        println!("no events for that update");
    }
    Ok(ExitCode::SUCCESS)
}
