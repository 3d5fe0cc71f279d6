//! The scheduler `confluo serve` runs: fires each due tick of every scheduled job exactly
//! once, and resumes runs whose worker stopped or vanished.
//!
//! A tick becomes a run in the same metastore transaction that moves the schedule's cursor,
//! under a key made of the job and the tick; a second worker (or this one after a crash)
//! that sees the same tick finds the key taken. Each run keeps a lease by heartbeat; a run
//! whose lease lapsed (its worker was killed) or that its worker interrupted on shutdown is
//! claimed by the next worker and resumed, its unfinished tasks run again as new attempts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use confluo_lakehouse::{JobRun, Metastore};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::engine::{self, Launcher, RunEvent, RunOptions, RunReport};
use crate::error::Result;
use crate::spec::Job;

/// What happens under the scheduler, for its log.
pub type Observer = Arc<dyn Fn(&str, &RunEvent) + Send + Sync>;

/// How the scheduler runs.
#[derive(Clone)]
pub struct ServeOptions {
    /// Where tasks run.
    pub launcher: Launcher,
    /// This worker's name (`host:pid`).
    pub worker: String,
    /// How often schedules are looked at.
    pub poll: Duration,
    /// How long a run's worker may stay silent before another takes the run over.
    pub lease: Duration,
    /// Turns true to stop: no new runs, running tasks are stopped and their runs left
    /// `interrupted` for the next worker.
    pub shutdown: watch::Receiver<bool>,
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The key a tick's run is recorded under: one run per job and tick, ever.
pub fn run_key(job: &str, tick: DateTime<Utc>) -> String {
    format!("cron:{job}:{}", millis(tick))
}

fn spawn_run(
    runs: &mut JoinSet<(String, Result<RunReport>)>,
    ms: &Metastore,
    job: &Job,
    run: JobRun,
    resume: bool,
    options: &ServeOptions,
    observe: &Observer,
) {
    let (ms, job, observe) = (ms.clone(), job.clone(), observe.clone());
    let run_options = RunOptions {
        launcher: options.launcher.clone(),
        parameters: BTreeMap::new(),
        trigger: "cron".into(),
        worker: options.worker.clone(),
        cancelled_as: "interrupted",
        cancel: options.shutdown.clone(),
    };
    runs.spawn(async move {
        let name = job.name.clone();
        let on_event = |e: &RunEvent| observe(&name, e);
        let report = if resume {
            engine::resume(&ms, &job, &run, run_options, &on_event).await
        } else {
            engine::run_fired(&ms, &job, &run, run_options, &on_event).await
        };
        (job.name.clone(), report)
    });
}

/// Runs the scheduler until `options.shutdown` turns true; returns once every run it
/// started has ended or been interrupted. `on_error` hears of passes that failed (they are
/// tried again at the next poll) and of runs whose runner failed (resumed after the lease).
pub async fn serve(
    ms: &Metastore,
    jobs: &BTreeMap<String, Job>,
    options: ServeOptions,
    observe: Observer,
    on_report: &(dyn Fn(&RunReport) + Sync),
    on_error: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let mut shutdown = options.shutdown.clone();
    let mut runs: JoinSet<(String, Result<RunReport>)> = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        // A metastore that fails for a moment (a busy SQLite, a PostgreSQL restart) must not
        // stop the scheduler: nothing a failed pass did not commit happened, and the next
        // poll tries again.
        if let Err(e) = poll(ms, jobs, &options, &observe, &mut runs).await {
            on_error(&format!("{e}; trying again in {:?}", options.poll));
        }
        // Wait for the next poll, a shutdown, or a run's end.
        let sleep = tokio::time::sleep(options.poll);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = shutdown.changed() => break,
                Some(done) = runs.join_next() => finished(done, on_report, on_error),
            }
        }
    }
    // Shutting down: the runs' tasks were told to stop with the same signal.
    while let Some(done) = runs.join_next().await {
        finished(done, on_report, on_error);
    }
    Ok(())
}

fn finished(
    done: std::result::Result<(String, Result<RunReport>), tokio::task::JoinError>,
    on_report: &(dyn Fn(&RunReport) + Sync),
    on_error: &(dyn Fn(&str) + Sync),
) {
    match done {
        Ok((_, Ok(report))) => on_report(&report),
        // The run stays `running` without heartbeats: after the lease a worker resumes it.
        Ok((job, Err(e))) => on_error(&format!(
            "job `{job}`: {e}; its run is resumed once its lease lapses"
        )),
        Err(e) => on_error(&format!("a run's runner stopped: {e}")),
    }
}

/// One pass: resume the runs a stopped or vanished worker left, then fire due ticks.
async fn poll(
    ms: &Metastore,
    jobs: &BTreeMap<String, Job>,
    options: &ServeOptions,
    observe: &Observer,
    runs: &mut JoinSet<(String, Result<RunReport>)>,
) -> Result<()> {
    let now = Utc::now();
    let stale = millis(now) - options.lease.as_millis() as i64;
    for run in ms.orphaned_job_runs(stale).await? {
        let Some(job) = jobs.get(&run.job) else {
            continue;
        };
        if ms
            .claim_job_run(&run.run_id, &options.worker, stale)
            .await?
        {
            spawn_run(runs, ms, job, run, true, options, observe);
        }
    }
    for (name, job) in jobs {
        let Some(schedule) = &job.schedule else {
            continue;
        };
        let (due, cursor) = match ms.trigger_state(name).await? {
            // A schedule starts when it is first served: ticks before are not missed.
            None => (vec![], now),
            // Paused: the cursor stays; on resume the ticks passed meanwhile follow the
            // missed-tick policy, as after a restart.
            Some((_, true)) => continue,
            Some((c, false)) => {
                let c = DateTime::from_timestamp_millis(c).unwrap_or(now);
                let (due, next) = schedule.due(c, now);
                if due.is_empty() && next == c {
                    continue;
                }
                (due, next)
            }
        };
        let defaults = serde_json::to_value(&job.parameters).unwrap_or_default();
        let planned: Vec<(String, String, i64)> = due
            .iter()
            .map(|t| {
                (
                    run_key(name, *t),
                    uuid::Uuid::now_v7().simple().to_string(),
                    millis(*t),
                )
            })
            .collect();
        for run_id in ms
            .fire_trigger(name, millis(cursor), &planned, &defaults, &options.worker)
            .await?
        {
            if let Some(run) = ms.job_run(&run_id).await?.into_iter().next() {
                spawn_run(runs, ms, job, run, false, options, observe);
            }
        }
    }
    Ok(())
}
