//! `confluo serve`: the long-running process. For now it runs the project's job schedules
//! (and resumes runs a stopped worker left); the SQL endpoint and the UI join it later.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use confluo_jobs::Job;
use confluo_jobs::engine::{self, Launcher};
use confluo_jobs::scheduler::{self, ServeOptions};

use super::{CmdResult, Context};
use crate::report::CliError;

/// `confluo serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// How often schedules are looked at.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    poll: std::time::Duration,
    /// How long a run's worker may stay silent before another worker takes it over.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    lease: std::time::Duration,
}

/// Runs until SIGTERM or Ctrl-C: stops the running tasks, leaves their runs `interrupted`
/// (the next `confluo serve` resumes them) and exits 0.
pub async fn run(ctx: &Context, args: ServeArgs) -> CmdResult {
    // First: a SIGTERM while the project and metastore open must still stop it cleanly.
    let stop_rx = crate::signals::stop_requested();
    let (project, lh) = ctx.lakehouse().await?;
    let jobs = load(ctx, &lh)
        .await
        .map_err(|e| CliError::from(anyhow::anyhow!("{e}")))?;
    let scheduled: Vec<String> = jobs
        .values()
        .filter_map(|j| match (&j.schedule, &j.trigger) {
            (Some(s), _) => Some(format!("{} ({})", j.name, s.text)),
            (None, Some(t)) => Some(format!("{} ({})", j.name, t.describe())),
            (None, None) => None,
        })
        .collect();
    let (jobs_tx, jobs_rx) = tokio::sync::watch::channel(Arc::new(jobs));
    tokio::spawn(reload(ctx.clone(), lh.clone(), jobs_tx));
    let worker = engine::worker_name();
    println!(
        "confluo serve: worker {worker}; {} triggered job{}{}",
        scheduled.len(),
        if scheduled.len() == 1 { "" } else { "s" },
        if scheduled.is_empty() {
            String::new()
        } else {
            format!(": {}", scheduled.join(", "))
        }
    );
    let quiet = ctx.quiet;
    let observe: scheduler::Observer = Arc::new(move |job: &str, e| {
        if !quiet {
            println!("[{job}] {e}");
        }
    });
    scheduler::serve(
        &lh,
        jobs_rx,
        ServeOptions {
            launcher: Launcher {
                confluo: std::env::current_exe()?,
                project: project.root.clone(),
            },
            worker,
            poll: args.poll,
            lease: args.lease,
            clock: clock()?,
            notifier: confluo_jobs::notify::Notifier::new(project.config.smtp.clone()),
            shutdown: stop_rx,
        },
        observe,
        &|r| {
            println!(
                "[{}] run {} {}{}",
                r.job,
                r.run_id,
                r.state.replace('_', " "),
                r.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )
        },
        &|e| eprintln!("confluo serve: {e}"),
    )
    .await
    .map_err(|e| CliError::from(anyhow::anyhow!("{e}")))?;
    println!("confluo serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The scheduler's clock: the wall clock, unless `CONFLUO_SIMULATED_CLOCK` is set to
/// `ANCHOR_MS:START_MS:SPEED` (tests only): then the time is `START_MS` at the real moment
/// `ANCHOR_MS` and runs `SPEED` times faster, the same for every process that reads it, so
/// a test can SIGKILL and restart `confluo serve` over simulated days of schedules.
fn clock() -> Result<scheduler::Clock, CliError> {
    let Ok(text) = std::env::var("CONFLUO_SIMULATED_CLOCK") else {
        return Ok(scheduler::wall_clock());
    };
    let parts: Vec<f64> = text.split(':').filter_map(|p| p.parse().ok()).collect();
    let [anchor, start, speed] = parts[..] else {
        return Err(CliError::from(anyhow::anyhow!(
            "CONFLUO_SIMULATED_CLOCK `{text}`: write ANCHOR_MS:START_MS:SPEED"
        )));
    };
    Ok(Arc::new(move || {
        let real = chrono::Utc::now().timestamp_millis() as f64;
        let simulated = start + (real - anchor) * speed;
        chrono::DateTime::from_timestamp_millis(simulated as i64).unwrap_or_else(chrono::Utc::now)
    }))
}

/// The project's jobs (confluo.yaml's and the metastore's), each checked.
async fn load(
    ctx: &Context,
    lh: &confluo_lakehouse::Lakehouse,
) -> Result<BTreeMap<String, Job>, String> {
    let project = ctx.project().map_err(|e| format!("{:#}", e.error))?;
    confluo_jobs::definitions::checked(&project, lh.metastore())
        .await
        .map_err(|e| e.to_string())
}

/// How often `confluo serve` reads the jobs again.
const RELOAD: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads the jobs again every few seconds, so a job created or deleted with `confluo jobs
/// create|delete`, or edited in confluo.yaml, is served without a restart. A definition
/// that no longer checks is reported once and the jobs as they were are kept.
async fn reload(
    ctx: Context,
    lh: Arc<confluo_lakehouse::Lakehouse>,
    tx: tokio::sync::watch::Sender<Arc<BTreeMap<String, Job>>>,
) {
    let mut last_error = String::new();
    loop {
        tokio::time::sleep(RELOAD).await;
        match load(&ctx, &lh).await {
            Ok(jobs) => {
                last_error.clear();
                // A checked job has no equality of its own; its debug text covers every field.
                let changed = format!("{:?}", **tx.borrow()) != format!("{jobs:?}");
                if changed {
                    println!(
                        "confluo serve: jobs reloaded: {}",
                        jobs.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                    if tx.send(Arc::new(jobs)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                if e != last_error {
                    eprintln!(
                        "confluo serve: the jobs no longer check ({e}); serving them as they were"
                    );
                    last_error = e;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}
