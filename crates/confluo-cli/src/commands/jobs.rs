//! `confluo jobs`: list the project's jobs, run one now, and read the history of runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::render::{grid as table, moment as time};
use clap::{Args, Subcommand, ValueEnum};

use confluo_jobs::engine::{self, Launcher, RunOptions, RunReport};
use confluo_jobs::{Job, JobError};
use confluo_lakehouse::JobRun;

use super::{CmdResult, Context};
use crate::report::CliError;

/// How to print.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum JobsFormat {
    /// A table (and, for `run`, one line per event).
    Table,
    /// JSON.
    Json,
}

/// `confluo jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    command: JobsCommand,
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// List the jobs in confluo.yaml (each checked: dependencies, cycles, parameters).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = JobsFormat::Table)]
        format: JobsFormat,
    },
    /// Run a job now and wait for it; the exit code says whether it succeeded.
    Run {
        /// The job.
        job: String,
        /// A parameter for this run (`--param day=2026-01-01`), over the job's default.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = key_value)]
        params: Vec<(String, String)>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = JobsFormat::Table)]
        format: JobsFormat,
    },
    /// Repair an ended run in place: its failed, timed-out, cancelled and skipped tasks
    /// run again, with everything downstream of them; tasks that succeeded keep their
    /// results.
    Repair {
        /// The run's id (or a prefix of it).
        run: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = JobsFormat::Table)]
        format: JobsFormat,
    },
    /// Run a job once per logical time over a range (its schedule's ticks, or one per
    /// day); times that ran in an earlier backfill are not run again.
    Backfill {
        /// The job.
        job: String,
        /// First logical time: a date (2026-01-01, midnight UTC) or an RFC 3339 time.
        #[arg(long, value_parser = confluo_jobs::backfill::parse_time)]
        from: chrono::DateTime<chrono::Utc>,
        /// Last logical time (included).
        #[arg(long, value_parser = confluo_jobs::backfill::parse_time)]
        to: chrono::DateTime<chrono::Utc>,
        /// Runs at a time.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// A parameter for every run (`--param k=v`).
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = key_value)]
        params: Vec<(String, String)>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = JobsFormat::Table)]
        format: JobsFormat,
    },
    /// Stop a running run, from any process sharing the metastore: its worker stops its
    /// tasks within a few seconds and the run ends cancelled.
    Cancel {
        /// The run's id (or a prefix of it).
        run: String,
    },
    /// Pause a job's schedule or trigger: `confluo serve` starts no run of it until it is
    /// resumed.
    Pause {
        /// The job.
        job: String,
    },
    /// Resume a paused job; ticks passed meanwhile follow its `missed` policy, files and
    /// table versions that arrived meanwhile start a run.
    Resume {
        /// The job.
        job: String,
    },
    /// Create a job in the metastore from its YAML (what would sit under its name in
    /// `jobs:`), checked first: every worker sharing the metastore runs it, no edit of
    /// confluo.yaml needed.
    Create {
        /// The job's name.
        job: String,
        /// The YAML file (`-` for stdin).
        #[arg(long)]
        file: PathBuf,
        /// Replace a job created before under this name.
        #[arg(long)]
        replace: bool,
    },
    /// Delete a job created with `confluo jobs create` (its runs stay in the history).
    Delete {
        /// The job.
        job: String,
    },
    /// Past runs, newest first.
    Runs {
        /// Only this job's.
        job: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = JobsFormat::Table)]
        format: JobsFormat,
    },
    /// One run: its tasks, every attempt, how each ended.
    Show {
        /// The run's id (or a prefix of it).
        run: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = JobsFormat::Table)]
        format: JobsFormat,
    },
    /// What a run's tasks printed (every attempt).
    Logs {
        /// The run's id (or a prefix of it).
        run: String,
        /// Only this task's.
        task: Option<String>,
    },
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

fn jobs_error(e: JobError) -> CliError {
    CliError::from(anyhow::anyhow!("{e}"))
}

fn seconds(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// `confluo jobs ...`.
pub async fn run(ctx: &Context, args: JobsArgs) -> CmdResult {
    match args.command {
        JobsCommand::List { format } => list(ctx, format).await,
        JobsCommand::Create { job, file, replace } => create(ctx, &job, &file, replace).await,
        JobsCommand::Delete { job } => delete(ctx, &job).await,
        JobsCommand::Run {
            job,
            params,
            format,
        } => run_job(ctx, &job, params, format).await,
        JobsCommand::Repair { run, format } => repair(ctx, &run, format).await,
        JobsCommand::Backfill {
            job,
            from,
            to,
            concurrency,
            params,
            format,
        } => backfill(ctx, &job, from, to, concurrency, params, format).await,
        JobsCommand::Cancel { run } => cancel(ctx, &run).await,
        JobsCommand::Pause { job } => pause(ctx, &job, true).await,
        JobsCommand::Resume { job } => pause(ctx, &job, false).await,
        JobsCommand::Runs { job, limit, format } => runs(ctx, job, limit, format).await,
        JobsCommand::Show { run, format } => show(ctx, &run, format).await,
        JobsCommand::Logs { run, task } => logs(ctx, &run, task).await,
    }
}

/// Every job's definition: confluo.yaml's and the metastore's.
async fn configs(
    project: &confluo_core::Project,
    lh: &confluo_lakehouse::Lakehouse,
) -> Result<BTreeMap<String, confluo_core::jobs::JobConfig>, CliError> {
    confluo_jobs::definitions::all(project, lh.metastore())
        .await
        .map_err(jobs_error)
}

async fn create(ctx: &Context, name: &str, file: &std::path::Path, replace: bool) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    let yaml = if file == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| CliError::from(anyhow::anyhow!("cannot read {}: {e}", file.display())))?
    };
    let replaced = confluo_jobs::definitions::create(
        &project,
        lh.metastore(),
        name,
        &yaml,
        replace,
        &confluo_lakehouse::lakehouse::current_user(),
    )
    .await
    .map_err(jobs_error)?;
    println!(
        "job {name} {} in the metastore",
        if replaced { "replaced" } else { "created" }
    );
    Ok(ExitCode::SUCCESS)
}

async fn delete(ctx: &Context, name: &str) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    if project.config.jobs.contains_key(name) {
        return Err(CliError::from(anyhow::anyhow!(
            "job `{name}` is defined in confluo.yaml; remove it there"
        )));
    }
    if !lh.metastore().delete_job_definition(name).await? {
        return Err(CliError::from(anyhow::anyhow!(
            "no job `{name}` in the metastore (`confluo jobs list` shows every job)"
        )));
    }
    println!("job {name} deleted; its runs stay in the history");
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Context, format: JobsFormat) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    let checked: Vec<Job> = confluo_jobs::definitions::checked(&project, lh.metastore())
        .await
        .map_err(jobs_error)?
        .into_values()
        .collect();
    if format == JobsFormat::Json {
        let list: Vec<_> = checked
            .iter()
            .map(|j| {
                serde_json::json!({
                    "job": j.name,
                    "trigger": trigger_text(j),
                    "max_concurrent_runs": j.max_concurrent_runs,
                    "parameters": j.parameters,
                    "tasks": j.tasks.iter().map(|t| serde_json::json!({
                        "task": t.key,
                        "kind": t.kind.label(),
                        "depends_on": t.depends_on.iter().map(|d| d.task()).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if checked.is_empty() {
        println!("no jobs: add them under `jobs:` in confluo.yaml");
        return Ok(ExitCode::SUCCESS);
    }
    let rows = checked
        .iter()
        .map(|j| {
            let order = j.order().unwrap_or_default();
            vec![
                j.name.clone(),
                trigger_text(j),
                order.join(" → "),
                j.parameters
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["job", "trigger", "tasks", "parameters"], rows)
    );
    Ok(ExitCode::SUCCESS)
}

/// How a job starts besides `confluo jobs run`: its schedule or its trigger.
fn trigger_text(j: &Job) -> String {
    match (&j.schedule, &j.trigger) {
        (Some(s), _) => format!("cron {}", s.text),
        (None, Some(t)) => t.describe(),
        (None, None) => "manual".into(),
    }
}

fn options(
    project: &confluo_core::Project,
    params: Vec<(String, String)>,
) -> Result<RunOptions, CliError> {
    Ok(RunOptions {
        launcher: Launcher {
            confluo: std::env::current_exe()?,
            project: project.root.clone(),
            run_as: None,
        },
        parameters: params.into_iter().collect::<BTreeMap<_, _>>(),
        trigger: "manual".into(),
        worker: engine::worker_name(),
        cancelled_as: "cancelled",
        cancel: crate::signals::stop_requested(),
        lease: engine::DEFAULT_LEASE,
        notifier: confluo_jobs::notify::Notifier::new(project.config.smtp.clone()),
    })
}

fn finish(report: &RunReport, format: JobsFormat) -> CmdResult {
    if format == JobsFormat::Json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!(
            "{} {} in {}{}",
            report.job,
            report.state.replace('_', " "),
            seconds(report.duration_ms as i64),
            report
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    Ok(if report.state == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_job(
    ctx: &Context,
    name: &str,
    params: Vec<(String, String)>,
    format: JobsFormat,
) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    let job = Job::check(name, &configs(&project, &lh).await?).map_err(jobs_error)?;
    job.check_targets(&project).map_err(jobs_error)?;
    let quiet = ctx.quiet || format == JobsFormat::Json;
    let report = engine::run(lh.metastore(), &job, options(&project, params)?, &|e| {
        if !quiet {
            println!("{e}")
        }
    })
    .await
    .map_err(jobs_error)?;
    finish(&report, format)
}

async fn repair(ctx: &Context, id: &str, format: JobsFormat) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    let run = one_run(&lh, id).await?;
    let job = Job::check(&run.job, &configs(&project, &lh).await?).map_err(jobs_error)?;
    let quiet = ctx.quiet || format == JobsFormat::Json;
    let report = engine::repair(
        lh.metastore(),
        &job,
        &run,
        options(&project, vec![])?,
        &|e| {
            if !quiet {
                println!("{e}")
            }
        },
    )
    .await
    .map_err(jobs_error)?;
    finish(&report, format)
}

#[allow(clippy::too_many_arguments)]
async fn backfill(
    ctx: &Context,
    name: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    concurrency: usize,
    params: Vec<(String, String)>,
    format: JobsFormat,
) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    let job = Job::check(name, &configs(&project, &lh).await?).map_err(jobs_error)?;
    job.check_targets(&project).map_err(jobs_error)?;
    let times = confluo_jobs::backfill::logical_times(&job, from, to).map_err(jobs_error)?;
    let mut options = options(&project, params)?;
    options.trigger = "backfill".into();
    let quiet = ctx.quiet || format == JobsFormat::Json;
    let report = confluo_jobs::backfill::backfill(
        lh.metastore(),
        &job,
        &times,
        concurrency,
        options,
        &|e| {
            if !quiet {
                println!("{e}")
            }
        },
    )
    .await
    .map_err(jobs_error)?;
    let failed = report.ran.iter().filter(|r| r.state != "succeeded").count();
    if format == JobsFormat::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut rows: Vec<Vec<String>> = Vec::new();
        for r in &report.ran {
            rows.push(vec![
                r.logical_ms.map(time).unwrap_or_default(),
                r.run_id.clone(),
                r.state.clone(),
                r.message.clone().unwrap_or_default(),
            ]);
        }
        for run in &report.already {
            rows.push(vec![
                run.logical_ms.map(time).unwrap_or_default(),
                run.run_id.clone(),
                format!("{} (ran before)", run.state),
                String::new(),
            ]);
        }
        rows.sort();
        println!(
            "{}",
            table(&["logical time", "run", "state", "message"], rows)
        );
        println!(
            "{name}: {} run{} ({} failed), {} ran before",
            report.ran.len(),
            if report.ran.len() == 1 { "" } else { "s" },
            failed,
            report.already.len()
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn cancel(ctx: &Context, id: &str) -> CmdResult {
    let (_, lh) = ctx.lakehouse().await?;
    let run = one_run(&lh, id).await?;
    match lh.metastore().request_cancel(&run.run_id).await?.as_deref() {
        Some("running") => {
            // Its worker stops it at its next heartbeat; wait to say how it ended.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let now = one_run(&lh, &run.run_id).await?;
                if now.state != "running" {
                    println!("run {} {}", now.run_id, now.state.replace('_', " "));
                    return Ok(ExitCode::SUCCESS);
                }
                if std::time::Instant::now() > deadline {
                    println!(
                        "run {}: cancel asked; its worker ({}) has not stopped it yet",
                        now.run_id,
                        now.worker.unwrap_or_default()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        Some(state) => {
            println!("run {} {state}", run.run_id);
            Ok(ExitCode::SUCCESS)
        }
        None => Err(CliError::from(anyhow::anyhow!(
            "run {} has ended already ({})",
            run.run_id,
            run.state.replace('_', " ")
        ))),
    }
}

async fn pause(ctx: &Context, name: &str, paused: bool) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    let job = Job::check(name, &configs(&project, &lh).await?).map_err(jobs_error)?;
    if job.schedule.is_none() && job.trigger.is_none() {
        return Err(CliError::from(anyhow::anyhow!(
            "job `{name}` has no schedule or trigger to {}",
            if paused { "pause" } else { "resume" }
        )));
    }
    lh.metastore().set_trigger_paused(name, paused).await?;
    println!(
        "{name}: {} {}",
        if job.schedule.is_some() {
            "schedule"
        } else {
            "trigger"
        },
        if paused { "paused" } else { "resumed" }
    );
    Ok(ExitCode::SUCCESS)
}

fn run_rows(runs: &[JobRun]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|r| {
            vec![
                r.run_id.clone(),
                r.job.clone(),
                r.trigger.clone(),
                r.state.clone(),
                time(r.started_ms),
                r.ended_ms
                    .map(|e| seconds(e - r.started_ms))
                    .unwrap_or_default(),
                r.message.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

async fn runs(ctx: &Context, job: Option<String>, limit: usize, format: JobsFormat) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    if let Some(j) = &job
        && !project.config.jobs.contains_key(j)
    {
        Job::check(j, &configs(&project, &lh).await?).map_err(jobs_error)?;
    }
    let runs = lh.metastore().job_runs(job.as_deref(), limit).await?;
    if format == JobsFormat::Json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else if runs.is_empty() {
        println!("no runs");
    } else {
        println!(
            "{}",
            table(
                &[
                    "run", "job", "trigger", "state", "started", "took", "message"
                ],
                run_rows(&runs)
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn one_run(lh: &confluo_lakehouse::Lakehouse, id: &str) -> Result<JobRun, CliError> {
    let mut found = lh.metastore().job_run(id).await?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(CliError::from(anyhow::anyhow!(
            "no run `{id}`: `confluo jobs runs` lists them"
        ))),
        _ => Err(CliError::from(anyhow::anyhow!(
            "`{id}` starts more than one run's id: give more of it"
        ))),
    }
}

async fn show(ctx: &Context, id: &str, format: JobsFormat) -> CmdResult {
    let (_, lh) = ctx.lakehouse().await?;
    let run = one_run(&lh, id).await?;
    let attempts = lh.metastore().task_attempts(&run.run_id).await?;
    if format == JobsFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"run": run, "tasks": attempts}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}",
        table(
            &[
                "run", "job", "trigger", "state", "started", "took", "message"
            ],
            run_rows(std::slice::from_ref(&run))
        )
    );
    let rows = attempts
        .iter()
        .map(|a| {
            vec![
                a.task.clone(),
                if a.attempt == 0 {
                    "-".into()
                } else {
                    a.attempt.to_string()
                },
                a.state.clone(),
                time(a.started_ms),
                a.ended_ms
                    .map(|e| seconds(e - a.started_ms))
                    .unwrap_or_default(),
                a.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                a.values.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                a.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "task", "attempt", "state", "started", "took", "exit", "values", "message"
            ],
            rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

async fn logs(ctx: &Context, id: &str, task: Option<String>) -> CmdResult {
    let (_, lh) = ctx.lakehouse().await?;
    let run = one_run(&lh, id).await?;
    let attempts = lh.metastore().task_attempts(&run.run_id).await?;
    if let Some(t) = &task
        && !attempts.iter().any(|a| &a.task == t)
    {
        let names: Vec<&str> = attempts.iter().map(|a| a.task.as_str()).collect();
        return Err(CliError::from(anyhow::anyhow!(
            "run {} has no task `{t}`{}",
            run.run_id,
            confluo_core::suggest::hint(&confluo_core::suggest::nearest(t, names.into_iter()))
        )));
    }
    for a in attempts
        .iter()
        .filter(|a| task.as_ref().is_none_or(|t| &a.task == t) && a.attempt > 0)
    {
        println!("=== {} attempt {} ({}) ===", a.task, a.attempt, a.state);
        let log = a.log.as_deref().unwrap_or_default();
        print!("{log}");
        if !log.is_empty() && !log.ends_with('\n') {
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}
