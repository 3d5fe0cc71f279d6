//! The scheduler `confluo serve` runs: fires each due tick of every schedule and each event
//! of every trigger exactly once, starts queued runs as their jobs have room, and resumes
//! runs whose worker stopped or vanished.
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
use confluo_lakehouse::{JobRun, Lakehouse, Metastore};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::engine::{self, Launcher, RunEvent, RunOptions, RunReport};
use crate::error::{JobError, Result};
use crate::notify::Notifier;
use crate::spec::Job;
use crate::trigger;

/// What happens under the scheduler, for its log.
pub type Observer = Arc<dyn Fn(&str, &RunEvent) + Send + Sync>;

/// The scheduler's clock: the wall clock, or a simulated one for tests that run days of
/// schedules in minutes.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    Arc::new(Utc::now)
}

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
    /// What time it is, for schedules and triggers.
    pub clock: Clock,
    /// Sends the jobs' notifications.
    pub notifier: Notifier,
    /// Turns true to stop: no new runs, running tasks are stopped and their runs left
    /// `interrupted` for the next worker.
    pub shutdown: watch::Receiver<bool>,
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The runs this worker is running, by id, and their runners.
#[derive(Default)]
struct Running {
    set: JoinSet<(String, String, Result<RunReport>)>,
    ids: std::collections::HashSet<String>,
}

fn spawn_run(
    runs: &mut Running,
    ms: &Metastore,
    job: &Job,
    run: JobRun,
    resume: bool,
    options: &ServeOptions,
    observe: &Observer,
) {
    runs.ids.insert(run.run_id.clone());
    let (ms, job, observe) = (ms.clone(), job.clone(), observe.clone());
    let run_options = RunOptions {
        launcher: options.launcher.clone(),
        parameters: BTreeMap::new(),
        trigger: run.trigger.clone(),
        worker: options.worker.clone(),
        cancelled_as: "interrupted",
        cancel: options.shutdown.clone(),
        lease: options.lease,
        notifier: options.notifier.clone(),
    };
    runs.set.spawn(async move {
        let name = job.name.clone();
        let on_event = |e: &RunEvent| observe(&name, e);
        let report = if resume {
            engine::resume(&ms, &job, &run, run_options, &on_event).await
        } else {
            engine::run_fired(&ms, &job, &run, run_options, &on_event).await
        };
        (job.name.clone(), run.run_id.clone(), report)
    });
}

/// Runs the scheduler until `options.shutdown` turns true; returns once every run it
/// started has ended or been interrupted. `jobs` holds the jobs to serve, read at each
/// poll, so the caller may change them while it runs. `on_error` hears of passes that failed (they are
/// tried again at the next poll) and of runs whose runner failed (resumed after the lease).
pub async fn serve(
    lh: &Lakehouse,
    jobs: watch::Receiver<Arc<BTreeMap<String, Job>>>,
    options: ServeOptions,
    observe: Observer,
    on_report: &(dyn Fn(&RunReport) + Sync),
    on_error: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let mut shutdown = options.shutdown.clone();
    let mut runs = Running::default();
    loop {
        if *shutdown.borrow() {
            break;
        }
        // A metastore that fails for a moment (a busy SQLite, a PostgreSQL restart) must not
        // stop the scheduler: nothing a failed pass did not commit happened, and the next
        // poll tries again.
        // The jobs as of now: the caller reloads them (a job created, edited or deleted).
        let current = jobs.borrow().clone();
        for e in poll(lh, &current, &options, &observe, &mut runs).await {
            on_error(&format!("{e}; trying again in {:?}", options.poll));
        }
        // Wait for the next poll, a shutdown, or a run's end (a slot came free: a queued
        // run may start now rather than at the next poll). A cron tick due before the next
        // poll wakes the loop at the tick itself: a schedule's runs start within
        // milliseconds of their tick, not up to a poll interval late.
        let wait = next_tick(&current, (options.clock)())
            .map_or(options.poll, |until| until.min(options.poll));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
            Some(done) = runs.set.join_next() => finished(&mut runs.ids, done, on_report, on_error),
        }
    }
    // Shutting down: the runs' tasks were told to stop with the same signal.
    while let Some(done) = runs.set.join_next().await {
        finished(&mut runs.ids, done, on_report, on_error);
    }
    Ok(())
}

/// How long until the next tick of any schedule among `jobs` (a few milliseconds past it,
/// so the tick is due when the loop wakes).
fn next_tick(jobs: &BTreeMap<String, Job>, now: DateTime<Utc>) -> Option<Duration> {
    jobs.values()
        .filter_map(|j| j.schedule.as_ref()?.next(now))
        .min()
        .and_then(|t| (t - now).to_std().ok())
        .map(|d| d + Duration::from_millis(5))
}

fn finished(
    ids: &mut std::collections::HashSet<String>,
    done: std::result::Result<(String, String, Result<RunReport>), tokio::task::JoinError>,
    on_report: &(dyn Fn(&RunReport) + Sync),
    on_error: &(dyn Fn(&str) + Sync),
) {
    match done {
        Ok((_, id, Ok(report))) => {
            ids.remove(&id);
            on_report(&report)
        }
        // The run stays `running` without heartbeats: after the lease a worker resumes it.
        Ok((job, id, Err(e))) => {
            ids.remove(&id);
            on_error(&format!(
                "job `{job}`: {e}; its run is resumed once its lease lapses"
            ))
        }
        Err(e) => on_error(&format!("a run's runner stopped: {e}")),
    }
}

/// One pass: resume the runs a stopped or vanished worker left, fire what schedules and
/// triggers have due, and start queued runs their jobs have room for. A failure in one
/// job's trigger does not hold up the others; the failures are returned.
async fn poll(
    lh: &Lakehouse,
    jobs: &BTreeMap<String, Job>,
    options: &ServeOptions,
    observe: &Observer,
    runs: &mut Running,
) -> Vec<JobError> {
    let ms = lh.metastore();
    let mut errors = Vec::new();
    let stale = millis(Utc::now()) - options.lease.as_millis() as i64;
    match ms.orphaned_job_runs(stale).await {
        Ok(orphans) => {
            for run in orphans {
                // A run of this worker's own whose heartbeat is late (a busy metastore) is
                // not an orphan.
                let Some(job) = jobs
                    .get(&run.job)
                    .filter(|_| !runs.ids.contains(&run.run_id))
                else {
                    continue;
                };
                match ms.claim_job_run(&run.run_id, &options.worker, stale).await {
                    Ok(true) => spawn_run(runs, ms, job, run, true, options, observe),
                    Ok(false) => {}
                    Err(e) => errors.push(e.into()),
                }
            }
        }
        Err(e) => errors.push(e.into()),
    }
    let now = (options.clock)();
    for job in jobs.values() {
        if job.schedule.is_none() && job.trigger.is_none() {
            continue;
        }
        if let Err(e) = trigger::fire_due(lh, &options.launcher.project, job, now).await {
            errors.push(e);
        }
    }
    if *options.shutdown.borrow() {
        return errors;
    }
    match ms.queued_job_runs(stale).await {
        Ok(queued) => {
            for run in queued {
                let Some(job) = jobs.get(&run.job) else {
                    continue;
                };
                match ms
                    .start_queued_run(
                        &run.run_id,
                        &job.name,
                        job.max_concurrent_runs,
                        &options.worker,
                        stale,
                    )
                    .await
                {
                    Ok(true) => spawn_run(runs, ms, job, run, false, options, observe),
                    Ok(false) => {}
                    Err(e) => errors.push(e.into()),
                }
            }
        }
        Err(e) => errors.push(e.into()),
    }
    errors
}
