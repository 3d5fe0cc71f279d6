//! One run of a job: tasks start as soon as their dependencies ended and their `run_if`
//! holds, each attempt recorded in the metastore as it starts and as it ends.

mod attempts;
mod events;
mod execute;
mod for_each;
mod scope;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use confluo_lakehouse::{JobRun, Metastore, TaskAttempt};
use tokio::sync::watch;

pub use self::events::{RunEvent, RunReport, TaskOutcome};
use self::execute::{Kept, Prior, execute};
use crate::error::{JobError, Result};
pub use crate::exec::Launcher;
use crate::spec::{Job, texts};
use crate::template;

/// How often a running run tells the metastore its worker is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a worker may stay silent before its runs count as orphaned, when not set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// How often a queued run looks for a free slot.
const QUEUE_POLL: Duration = Duration::from_millis(500);

/// This process as a worker: `host:pid`.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where tasks run.
    pub launcher: Launcher,
    /// Parameters given for this run (over the job's defaults).
    pub parameters: BTreeMap<String, String>,
    /// What started the run (`manual`).
    pub trigger: String,
    /// Who runs it (`host:pid`), as recorded with the run and its heartbeats.
    pub worker: String,
    /// What a cancelled run ends as: `cancelled` (a user stopped it) or `interrupted` (a
    /// worker shutting down; the next one resumes it).
    pub cancelled_as: &'static str,
    /// Turns true to cancel the run: running tasks are stopped, the rest do not start.
    pub cancel: watch::Receiver<bool>,
    /// How long a worker may stay silent before its runs stop holding their job's slots.
    pub lease: Duration,
    /// Sends the job's notifications.
    pub notifier: crate::notify::Notifier,
}

/// The parameters of a run: the job's defaults with `given` over them.
pub fn parameters(job: &Job, given: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mut out = job.parameters.clone();
    for (k, v) in given {
        if !out.contains_key(k) {
            let near = confluo_core::suggest::nearest(k, job.parameters.keys().map(String::as_str));
            return Err(JobError::Invalid {
                job: job.name.clone(),
                message: format!(
                    "no parameter `{k}`: the job declares {}{}",
                    if job.parameters.is_empty() {
                        "none".to_string()
                    } else {
                        job.parameters
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    confluo_core::suggest::hint(&near)
                ),
            });
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn check_references(job: &Job) -> Result<()> {
    for t in &job.tasks {
        for text in texts(&t.kind) {
            template::references(text).map_err(|e| JobError::Invalid {
                job: job.name.clone(),
                message: format!("task `{}`: {e}", t.key),
            })?;
        }
    }
    Ok(())
}

/// Runs `job` once, to the end.
pub async fn run(
    ms: &Metastore,
    job: &Job,
    options: RunOptions,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<RunReport> {
    let params = parameters(job, &options.parameters)?;
    check_references(job)?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    ms.start_job_run(
        &run_id,
        &job.name,
        &options.trigger,
        &serde_json::to_value(&params).unwrap_or_default(),
        &options.worker,
    )
    .await?;
    if let Some(report) = wait_turn(ms, job, &run_id, None, &options, on_event).await? {
        return Ok(report);
    }
    let trigger = BTreeMap::from([("type".to_string(), options.trigger.clone())]);
    execute(
        ms,
        job,
        run_id,
        params,
        None,
        trigger,
        options,
        Prior::default(),
        on_event,
    )
    .await
}

/// Waits until queued run `run_id` takes a slot of its job (then it is `running`), or
/// returns how it ended while it waited: cancelled by the caller or by
/// `confluo jobs cancel`.
pub async fn wait_turn(
    ms: &Metastore,
    job: &Job,
    run_id: &str,
    logical_ms: Option<i64>,
    options: &RunOptions,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<Option<RunReport>> {
    let start = Instant::now();
    let mut cancel = options.cancel.clone();
    let mut told = false;
    loop {
        let stale = now_ms() - options.lease.as_millis() as i64;
        if ms
            .start_queued_run(
                run_id,
                &job.name,
                job.max_concurrent_runs,
                &options.worker,
                stale,
            )
            .await?
        {
            return Ok(None);
        }
        let run = ms.job_run(run_id).await?.into_iter().next();
        if let Some(run) = run.filter(|r| r.state != "queued") {
            // Cancelled while queued (or started by a scheduler that took it over).
            return Ok(Some(RunReport {
                run_id: run_id.into(),
                job: job.name.clone(),
                logical_ms,
                state: run.state,
                message: run.message,
                tasks: vec![],
                duration_ms: start.elapsed().as_millis() as u64,
            }));
        }
        if !told {
            on_event(&RunEvent::Queued {
                run_id: run_id.into(),
                max_concurrent_runs: job.max_concurrent_runs,
            });
            told = true;
        }
        ms.heartbeat(run_id, &options.worker).await?;
        tokio::select! {
            _ = tokio::time::sleep(QUEUE_POLL) => {}
            _ = async { let _ = cancel.wait_for(|v| *v).await; } => {
                let message = "cancelled while queued";
                ms.end_job_run(run_id, "cancelled", Some(message)).await?;
                return Ok(Some(RunReport {
                    run_id: run_id.into(),
                    job: job.name.clone(),
                    logical_ms,
                    state: "cancelled".into(),
                    message: Some(message.into()),
                    tasks: vec![],
                    duration_ms: start.elapsed().as_millis() as u64,
                }));
            }
        }
    }
}

/// Runs a run a trigger recorded already (its parameters and logical time are the run's).
pub async fn run_fired(
    ms: &Metastore,
    job: &Job,
    run: &JobRun,
    options: RunOptions,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<RunReport> {
    check_references(job)?;
    execute(
        ms,
        job,
        run.run_id.clone(),
        run_parameters(run),
        run.logical_ms,
        trigger_of(run),
        options,
        Prior::default(),
        on_event,
    )
    .await
}

/// What a recorded run's trigger passed, with its type.
fn trigger_of(run: &JobRun) -> BTreeMap<String, String> {
    let mut t = run.trigger_info.clone();
    t.insert("type".into(), run.trigger.clone());
    t
}

fn run_parameters(run: &JobRun) -> BTreeMap<String, String> {
    run.parameters
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Repairs an ended run, in place: its failed, timed-out, cancelled and skipped tasks run
/// again (as new attempts, the earlier ones kept in its history), and every task downstream
/// of them; the tasks that succeeded keep their result and values.
pub async fn repair(
    ms: &Metastore,
    job: &Job,
    run: &JobRun,
    options: RunOptions,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<RunReport> {
    let run_id = run.run_id.as_str();
    if matches!(run.state.as_str(), "running" | "interrupted") {
        return Err(JobError::Invalid {
            job: job.name.clone(),
            message: format!("run {run_id} has not ended: repair it once it has"),
        });
    }
    redo(
        ms,
        job,
        run,
        &[
            "failed",
            "timed_out",
            "cancelled",
            "skipped",
            "running",
            "interrupted",
        ],
        true,
        options,
        on_event,
    )
    .await
}

/// Resumes a run its worker left (stopped, or gone without a word) and this worker claimed:
/// the tasks that were running or not started yet run (again), the others keep how they
/// ended.
pub async fn resume(
    ms: &Metastore,
    job: &Job,
    run: &JobRun,
    options: RunOptions,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<RunReport> {
    redo(
        ms,
        job,
        run,
        &["running", "interrupted", "cancelled"],
        false,
        options,
        on_event,
    )
    .await
}

/// Runs again the tasks of `run` whose latest attempt ended in one of `states` (or never
/// started), with everything downstream of them; `reopen` marks an ended run running again.
async fn redo(
    ms: &Metastore,
    job: &Job,
    run: &JobRun,
    states: &[&str],
    reopen: bool,
    options: RunOptions,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<RunReport> {
    check_references(job)?;
    let run_id = run.run_id.as_str();
    let attempts = ms.task_attempts(run_id).await?;
    let mut latest: HashMap<String, &TaskAttempt> = HashMap::new();
    let mut prior = Prior::default();
    for a in &attempts {
        let next = prior.next_attempt.entry(a.task.clone()).or_insert(1);
        *next = (*next).max(a.attempt as u32 + 1);
        match latest.get(&a.task) {
            Some(l) if l.attempt > a.attempt => {}
            _ => {
                latest.insert(a.task.clone(), a);
            }
        }
    }
    let mut again: Vec<String> = job
        .tasks
        .iter()
        .filter(|t| {
            latest
                .get(&t.key)
                .is_none_or(|a| states.contains(&a.state.as_str()))
        })
        .map(|t| t.key.clone())
        .collect();
    for t in &job.tasks {
        if !again.contains(&t.key) && job.upstream(&t.key).iter().any(|u| again.contains(u)) {
            again.push(t.key.clone());
        }
    }
    if again.is_empty() && run.state != "running" && run.state != "interrupted" {
        return Err(JobError::Invalid {
            job: job.name.clone(),
            message: format!("run {run_id} has nothing to repair: every task succeeded"),
        });
    }
    for t in &job.tasks {
        if !again.contains(&t.key)
            && let Some(a) = latest.get(&t.key)
        {
            prior.kept.insert(
                t.key.clone(),
                Kept {
                    state: a.state.clone(),
                    values: a.values.clone(),
                },
            );
        }
    }
    // Attempts its worker never finished (killed mid-task) end now, as `interrupted`: the
    // task runs again as a new attempt, and nothing stays `running` for ever. Their
    // processes, when they ran on this machine and still run, are stopped first, so the
    // old attempt does not go on beside the new one.
    let host = |w: &str| w.rsplit_once(':').map(|(h, _)| h.to_string());
    let same_host = run.worker.as_deref().and_then(host) == host(&options.worker);
    let mut stopped = std::collections::HashSet::new();
    if same_host {
        for (task, attempt, process) in ms.running_attempt_processes(&run.run_id).await? {
            if crate::exec::kill_group(&process) {
                stopped.insert((task, attempt));
            }
        }
    }
    for a in attempts.iter().filter(|a| a.state == "running") {
        let mut ended = a.clone();
        ended.state = "interrupted".into();
        ended.message = Some(format!(
            "its worker stopped during this attempt{}; {} runs the task again",
            if stopped.contains(&(a.task.clone(), a.attempt)) {
                " (its processes were stopped)"
            } else {
                ""
            },
            options.worker
        ));
        ended.ended_ms = Some(now_ms());
        ms.record_task_attempt(&ended).await?;
    }
    if reopen {
        ms.reopen_job_run(run_id, &options.worker).await?;
    }
    execute(
        ms,
        job,
        run_id.to_string(),
        run_parameters(run),
        run.logical_ms,
        trigger_of(run),
        options,
        prior,
        on_event,
    )
    .await
}
