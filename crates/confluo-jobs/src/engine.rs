//! One run of a job: tasks start as soon as their dependencies ended and their `run_if`
//! holds, each attempt recorded in the metastore as it starts and as it ends.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use confluo_lakehouse::{JobRun, Metastore, TaskAttempt};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{JobError, Result};
pub use crate::exec::Launcher;
use crate::run_if::decide;
use crate::spec::{Job, Task, TaskKind, texts};
use crate::template::{self, Ref};

/// How often a running run tells the metastore its worker is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// This process as a worker: `host:pid`.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Tasks of one run that may run at once.
const PARALLEL_TASKS: usize = 4;
/// The longest wait between two attempts, however many there were.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

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
}

/// What happens during a run, for displays.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run started.
    Started {
        /// Its id.
        run_id: String,
    },
    /// An attempt of a task started.
    TaskStarted {
        /// The task.
        task: String,
        /// 1 for the first.
        attempt: u32,
    },
    /// A task will be tried again.
    Retrying {
        /// The task.
        task: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: String,
        /// The wait before the next.
        wait_ms: u64,
    },
    /// A task ended for good.
    TaskEnded(TaskOutcome),
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

impl std::fmt::Display for RunEvent {
    /// One line, as `confluo jobs run` and `confluo serve` print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunEvent::Started { run_id } => write!(f, "run {run_id}"),
            RunEvent::TaskStarted { task, attempt: 1 } => write!(f, "  {task}: started"),
            RunEvent::TaskStarted { task, attempt } => {
                write!(f, "  {task}: attempt {attempt} started")
            }
            RunEvent::Retrying {
                task,
                attempt,
                error,
                wait_ms,
            } => write!(
                f,
                "  {task}: attempt {attempt} failed ({error}); retrying in {}",
                seconds(*wait_ms)
            ),
            RunEvent::TaskEnded(o) => {
                write!(f, "  {}: {}", o.task, o.state.replace('_', " "))?;
                if o.attempts > 0 {
                    write!(f, " in {}", seconds(o.duration_ms))?;
                }
                if let Some(m) = &o.message {
                    write!(f, ": {m}")?;
                }
                Ok(())
            }
        }
    }
}

/// How a task ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskOutcome {
    /// The task.
    pub task: String,
    /// `succeeded`, `failed`, `timed_out`, `cancelled`, `skipped` (its `run_if` did not
    /// hold) or `excluded` (a condition chose the other branch).
    pub state: String,
    /// Attempts made (0 when it did not run).
    pub attempts: u32,
    /// Why it ended so.
    pub message: Option<String>,
    /// Time from its first start to its end.
    pub duration_ms: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Its id.
    pub run_id: String,
    /// The job.
    pub job: String,
    /// The moment it stands for (a schedule's tick or a backfill's date), if any.
    pub logical_ms: Option<i64>,
    /// `succeeded`, `failed`, `cancelled` or `timed_out`.
    pub state: String,
    /// Why it ended so.
    pub message: Option<String>,
    /// Every task, in the order they ended.
    pub tasks: Vec<TaskOutcome>,
    /// Its length.
    pub duration_ms: u64,
}

/// What the tasks of a run may refer to.
#[derive(Debug, Clone)]
struct Scope {
    job: String,
    run_id: String,
    start_time: String,
    logical_time: String,
    parameters: BTreeMap<String, String>,
    values: HashMap<String, serde_json::Value>,
}

impl Scope {
    fn value(&self, r: &Ref) -> std::result::Result<String, String> {
        match r {
            Ref::Parameter(p) => self
                .parameters
                .get(p)
                .cloned()
                .ok_or_else(|| format!("no parameter `{p}`")),
            Ref::Run(w) => Ok(match w.as_str() {
                "run_id" => self.run_id.clone(),
                "start_time" => self.start_time.clone(),
                "logical_time" => self.logical_time.clone(),
                _ => self.job.clone(),
            }),
            Ref::TaskValue(k, v) => {
                let row = self.values.get(k).and_then(|r| r.as_object());
                match row.and_then(|r| r.get(v)) {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(serde_json::Value::Null) => Ok(String::new()),
                    Some(other) => Ok(other.to_string()),
                    None => Err(format!(
                        "task `{k}` gave no value `{v}` ({})",
                        match row {
                            Some(r) if !r.is_empty() => format!(
                                "its values: {}",
                                r.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                            _ => "it gave no values: only a SQL task's first row does".into(),
                        }
                    )),
                }
            }
        }
    }

    /// The task with every `{{...}}` of its texts replaced.
    fn render(&self, kind: &TaskKind) -> std::result::Result<TaskKind, String> {
        let r = |t: &str| template::render(t, &|x| self.value(x));
        Ok(match kind {
            TaskKind::Sql(s) => TaskKind::Sql(r(s)?),
            TaskKind::SqlFile(s) => TaskKind::SqlFile(r(s)?),
            TaskKind::Shell(s) => TaskKind::Shell(r(s)?),
            TaskKind::Condition(s) => TaskKind::Condition(r(s)?),
            TaskKind::Sync(s) => TaskKind::Sync(r(s)?),
            TaskKind::RunJob(s) => TaskKind::RunJob(r(s)?),
            TaskKind::Pipeline { name, full_refresh } => TaskKind::Pipeline {
                name: r(name)?,
                full_refresh: *full_refresh,
            },
            TaskKind::Ingest(i) => TaskKind::Ingest(confluo_core::jobs::IngestTask {
                path: r(&i.path)?,
                into: r(&i.into)?,
                format: i.format.clone(),
            }),
        })
    }
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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A small spread (±20 %) so retries of many tasks do not start in step.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let spread = (nanos % 401) as f64 / 1000.0 - 0.2;
    d.mul_f64(1.0 + spread)
}

struct Ended {
    outcome: TaskOutcome,
    values: Option<serde_json::Value>,
    condition: Option<bool>,
}

/// Runs a task's attempts until one succeeds, the retries are spent, or the run is
/// cancelled.
#[allow(clippy::too_many_arguments)]
async fn attempts(
    ms: Metastore,
    launcher: Launcher,
    run_id: String,
    task: Task,
    first: u32,
    scope: Scope,
    cancel: watch::Receiver<bool>,
    events: tokio::sync::mpsc::UnboundedSender<RunEvent>,
) -> Result<Ended> {
    let started = Instant::now();
    let mut attempt = first - 1;
    loop {
        attempt += 1;
        // Retries count from this run's (or this repair's) first attempt.
        let tries = attempt - first + 1;
        let started_ms = now_ms();
        let mut record = TaskAttempt {
            run_id: run_id.clone(),
            task: task.key.clone(),
            attempt: attempt as i64,
            state: "running".into(),
            message: None,
            exit_code: None,
            values: None,
            log: None,
            started_ms,
            ended_ms: None,
        };
        ms.record_task_attempt(&record).await?;
        let _ = events.send(RunEvent::TaskStarted {
            task: task.key.clone(),
            attempt,
        });
        let result = match scope.render(&task.kind) {
            Ok(kind) => launcher.run(&kind, task.timeout, cancel.clone()).await,
            Err(e) => crate::exec::Attempt {
                error: Some(e),
                ..Default::default()
            },
        };
        let state = if result.cancelled {
            "cancelled"
        } else if result.timed_out {
            "timed_out"
        } else if result.error.is_some() {
            "failed"
        } else {
            "succeeded"
        };
        record.state = state.into();
        record.message = result.error.clone();
        record.exit_code = result.exit_code;
        record.values = result.values.clone();
        record.log = Some(result.log.clone());
        record.ended_ms = Some(now_ms());
        ms.record_task_attempt(&record).await?;
        let retry = match state {
            "failed" => tries <= task.retries,
            "timed_out" => task.retry_on_timeout && tries <= task.retries,
            _ => false,
        };
        if !retry {
            return Ok(Ended {
                outcome: TaskOutcome {
                    task: task.key.clone(),
                    state: state.into(),
                    attempts: attempt,
                    message: result.error,
                    duration_ms: started.elapsed().as_millis() as u64,
                },
                values: result.values,
                condition: result.outcome,
            });
        }
        let wait = jittered(
            task.backoff
                .saturating_mul(1u32 << (tries - 1).min(16))
                .min(MAX_BACKOFF),
        );
        let _ = events.send(RunEvent::Retrying {
            task: task.key.clone(),
            attempt,
            error: result.error.unwrap_or_default(),
            wait_ms: wait.as_millis() as u64,
        });
        let mut c = cancel.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = async { let _ = c.wait_for(|v| *v).await; } => {}
        }
        if *cancel.borrow() {
            return Ok(Ended {
                outcome: TaskOutcome {
                    task: task.key.clone(),
                    state: "cancelled".into(),
                    attempts: attempt,
                    message: Some("cancelled while waiting to retry".into()),
                    duration_ms: started.elapsed().as_millis() as u64,
                },
                values: None,
                condition: None,
            });
        }
    }
}

/// A task that keeps how it ended in an earlier pass of the run (a repair).
#[derive(Debug, Clone)]
struct Kept {
    state: String,
    values: Option<serde_json::Value>,
}

/// What a run starts from: nothing, or the tasks a repair keeps.
#[derive(Debug, Clone, Default)]
struct Prior {
    kept: HashMap<String, Kept>,
    next_attempt: HashMap<String, u32>,
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
    execute(
        ms,
        job,
        run_id,
        params,
        None,
        options,
        Prior::default(),
        on_event,
    )
    .await
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
        options,
        Prior::default(),
        on_event,
    )
    .await
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
        &["failed", "timed_out", "cancelled", "skipped", "running"],
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
        &["running", "cancelled"],
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
    if reopen {
        ms.reopen_job_run(run_id, &options.worker).await?;
    }
    execute(
        ms,
        job,
        run_id.to_string(),
        run_parameters(run),
        run.logical_ms,
        options,
        prior,
        on_event,
    )
    .await
}

/// Runs the tasks of `run_id` that `prior` does not keep, to the end.
#[allow(clippy::too_many_arguments)]
async fn execute(
    ms: &Metastore,
    job: &Job,
    run_id: String,
    params: BTreeMap<String, String>,
    logical_ms: Option<i64>,
    options: RunOptions,
    prior: Prior,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<RunReport> {
    let start = Instant::now();
    on_event(&RunEvent::Started {
        run_id: run_id.clone(),
    });
    // The run's own cancel: the caller's, or the run's timeout.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut caller = options.cancel.clone();
    let deadline = job.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut scope = Scope {
        job: job.name.clone(),
        run_id: run_id.clone(),
        start_time: chrono::Utc::now().to_rfc3339(),
        logical_time: logical_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or_else(chrono::Utc::now)
            .to_rfc3339(),
        parameters: params,
        values: HashMap::new(),
    };
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut ended: HashMap<String, (String, Option<bool>)> = HashMap::new();
    let mut report: Vec<TaskOutcome> = Vec::new();
    for (key, k) in &prior.kept {
        // A condition's outcome is in its values (the row it computed).
        let outcome = k
            .values
            .as_ref()
            .and_then(|v| v.get("outcome"))
            .and_then(|o| o.as_str())
            .map(|o| o == "true");
        ended.insert(key.clone(), (k.state.clone(), outcome));
        if let Some(v) = &k.values {
            scope.values.insert(key.clone(), v.clone());
        }
    }
    let mut pending: Vec<&Task> = job
        .tasks
        .iter()
        .filter(|t| !prior.kept.contains_key(&t.key))
        .collect();
    let mut running: JoinSet<Result<Ended>> = JoinSet::new();
    let mut stopped: Option<&'static str> = None;
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Start (or settle) every task whose dependencies all ended.
        let mut i = 0;
        while i < pending.len() {
            let t = pending[i];
            if !t.depends_on.iter().all(|d| ended.contains_key(d.task())) {
                i += 1;
                continue;
            }
            let verdict = match stopped {
                Some(why) => Some(("cancelled", format!("not started: the run was {why}"))),
                None => decide(t, &ended),
            };
            if let Some((state, message)) = verdict {
                pending.remove(i);
                let now = now_ms();
                ms.record_task_attempt(&TaskAttempt {
                    run_id: run_id.clone(),
                    task: t.key.clone(),
                    attempt: 0,
                    state: state.into(),
                    message: Some(message.clone()),
                    exit_code: None,
                    values: None,
                    log: None,
                    started_ms: now,
                    ended_ms: Some(now),
                })
                .await?;
                let o = TaskOutcome {
                    task: t.key.clone(),
                    state: state.into(),
                    attempts: 0,
                    message: Some(message),
                    duration_ms: 0,
                };
                on_event(&RunEvent::TaskEnded(o.clone()));
                ended.insert(t.key.clone(), (state.into(), None));
                report.push(o);
                i = 0;
                continue;
            }
            if running.len() >= PARALLEL_TASKS {
                break;
            }
            pending.remove(i);
            running.spawn(attempts(
                ms.clone(),
                options.launcher.clone(),
                run_id.clone(),
                t.clone(),
                prior.next_attempt.get(&t.key).copied().unwrap_or(1).max(1),
                scope.clone(),
                stop_rx.clone(),
                ev_tx.clone(),
            ));
        }
        if running.is_empty() && pending.is_empty() {
            break;
        }
        let limit = async {
            match deadline {
                Some(d) if stopped.is_none() => tokio::time::sleep_until(d).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = beat.tick() => {
                ms.heartbeat(&run_id, &options.worker).await?;
                // `confluo jobs cancel RUN`, from any process sharing the metastore.
                if stopped.is_none() && ms.cancel_asked(&run_id).await? {
                    stopped = Some("cancelled on request");
                    let _ = stop_tx.send(true);
                }
            }
            Some(joined) = running.join_next() => {
                let done = joined.map_err(|e| JobError::Invalid {
                    job: job.name.clone(),
                    message: format!("a task's runner stopped: {e}"),
                })??;
                while let Ok(e) = ev_rx.try_recv() {
                    on_event(&e);
                }
                if let Some(v) = &done.values {
                    scope.values.insert(done.outcome.task.clone(), v.clone());
                }
                ended.insert(done.outcome.task.clone(), (done.outcome.state.clone(), done.condition));
                on_event(&RunEvent::TaskEnded(done.outcome.clone()));
                report.push(done.outcome);
            }
            Some(e) = ev_rx.recv() => on_event(&e),
            // The guard `wait_for` returns must not live in the select (it is not Send).
            _ = async { let _ = caller.wait_for(|v| *v).await; }, if stopped.is_none() => {
                stopped = Some("cancelled");
                let _ = stop_tx.send(true);
            }
            _ = limit => {
                stopped = Some("timed out");
                let _ = stop_tx.send(true);
            }
        }
    }
    while let Ok(e) = ev_rx.try_recv() {
        on_event(&e);
    }
    let first_failure = report
        .iter()
        .find(|o| matches!(o.state.as_str(), "failed" | "timed_out"));
    let (state, message) = match (stopped, first_failure) {
        (Some("cancelled"), _) if options.cancelled_as == "interrupted" => (
            "interrupted",
            Some(format!(
                "its worker {} stopped; the next one resumes it",
                options.worker
            )),
        ),
        (Some("cancelled"), _) => ("cancelled", Some("cancelled".to_string())),
        (Some("cancelled on request"), _) => (
            "cancelled",
            Some("cancelled on request (confluo jobs cancel)".to_string()),
        ),
        (Some(_), _) => (
            "timed_out",
            Some(format!(
                "the run passed its timeout of {}",
                humantime::format_duration(job.timeout.unwrap_or_default())
            )),
        ),
        (None, Some(f)) => (
            "failed",
            Some(format!(
                "task `{}` {}: {}",
                f.task,
                f.state.replace('_', " "),
                f.message.clone().unwrap_or_default()
            )),
        ),
        (None, None) => ("succeeded", None),
    };
    ms.end_job_run(&run_id, state, message.as_deref()).await?;
    Ok(RunReport {
        run_id,
        job: job.name.clone(),
        logical_ms,
        state: state.into(),
        message,
        tasks: report,
        duration_ms: start.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_jitter() {
        let d = jittered(Duration::from_secs(10));
        assert!(
            d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
            "{d:?}"
        );
    }
}
