//! The body of a run: tasks start as their dependencies end, heartbeats keep the run's
//! lease, cancels and timeouts stop it, notifications go out, and its end is recorded.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use confluo_core::jobs::NotifyOn;
use confluo_lakehouse::{Metastore, TaskAttempt};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::attempts::{Ended, attempts};
use super::events::{RunEvent, RunReport, TaskOutcome, moment_name};
use super::for_each::for_each;
use super::scope::Scope;
use super::{HEARTBEAT, RunOptions, now_ms};
use crate::error::{JobError, Result};
use crate::run_if::decide;
use crate::spec::{Job, Task, TaskKind};

/// Tasks of one run that may run at once.
const PARALLEL_TASKS: usize = 4;

/// A task that keeps how it ended in an earlier pass of the run (a repair).
#[derive(Debug, Clone)]
pub(super) struct Kept {
    pub(super) state: String,
    pub(super) values: Option<serde_json::Value>,
}

/// What a run starts from: nothing, or the tasks a repair keeps.
#[derive(Debug, Clone, Default)]
pub(super) struct Prior {
    pub(super) kept: HashMap<String, Kept>,
    pub(super) next_attempt: HashMap<String, u32>,
}

/// Runs the tasks of `run_id` that `prior` does not keep, to the end.
#[allow(clippy::too_many_arguments)]
pub(super) async fn execute(
    ms: &Metastore,
    job: &Job,
    run_id: String,
    params: BTreeMap<String, String>,
    logical_ms: Option<i64>,
    trigger: BTreeMap<String, String>,
    options: RunOptions,
    prior: Prior,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<RunReport> {
    let start = Instant::now();
    let mut options = options;
    if let Some(name) = &job.run_as {
        // The principal is checked at each run: it may have been removed since the job was
        // written. A run that cannot run as it says is recorded as failed, naming why.
        let refused = match ms.get_principal(name).await? {
            Some(p) if p.kind == "service_principal" => None,
            Some(p) => Some(format!(
                "job `{}` runs as `{name}`, which is a {}, not a service principal",
                job.name,
                p.kind.replace('_', " ")
            )),
            None => Some(format!(
                "job `{}` runs as `{name}`, which does not exist\n  hint: confluo users add {name} --service-principal",
                job.name
            )),
        };
        if let Some(message) = refused {
            ms.end_job_run(&run_id, "failed", Some(&message)).await?;
            return Err(JobError::Invalid {
                job: job.name.clone(),
                message,
            });
        }
        options.launcher.run_as = Some(name.clone());
    }
    on_event(&RunEvent::Started {
        run_id: run_id.clone(),
    });
    let notice = |event: &str, state: &str, message: Option<String>, tasks: Vec<TaskOutcome>| {
        crate::notify::RunNotice {
            event: event.into(),
            job: job.name.clone(),
            run_id: run_id.clone(),
            state: state.into(),
            message,
            trigger: trigger.get("type").cloned().unwrap_or_default(),
            logical_time: logical_ms
                .and_then(chrono::DateTime::from_timestamp_millis)
                .unwrap_or_else(chrono::Utc::now)
                .to_rfc3339(),
            duration_ms: start.elapsed().as_millis() as u64,
            tasks,
        }
    };
    let tell = |moment: NotifyOn, deliveries: Vec<crate::notify::Delivery>| {
        for (to, result) in deliveries {
            on_event(&RunEvent::Notified {
                moment: moment_name(moment).into(),
                to,
                error: result.err(),
            });
        }
    };
    if job
        .notifications
        .iter()
        .any(|n| n.on.contains(&NotifyOn::Start))
    {
        let n = notice("run.started", "running", None, vec![]);
        tell(
            NotifyOn::Start,
            options.notifier.send(job, NotifyOn::Start, &n).await,
        );
    }
    let mut warned = false;
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
        trigger: trigger.clone(),
        values: HashMap::new(),
        input: None,
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
    // Three heartbeats per lease, so a live worker never looks gone.
    let mut beat = tokio::time::interval(
        HEARTBEAT
            .min(options.lease / 3)
            .max(Duration::from_millis(50)),
    );
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
            let first = prior.next_attempt.get(&t.key).copied().unwrap_or(1).max(1);
            if let TaskKind::ForEach { .. } = &t.kind {
                running.spawn(for_each(
                    ms.clone(),
                    options.launcher.clone(),
                    run_id.clone(),
                    t.clone(),
                    first,
                    prior.next_attempt.clone(),
                    scope.clone(),
                    stop_rx.clone(),
                    ev_tx.clone(),
                ));
                continue;
            }
            running.spawn(attempts(
                ms.clone(),
                options.launcher.clone(),
                run_id.clone(),
                t.clone(),
                first,
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
        let warn_at = async {
            match job.duration_warning {
                Some(w) if !warned => {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(start + w)).await
                }
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
            _ = warn_at => {
                warned = true;
                if job.notifications.iter().any(|n| n.on.contains(&NotifyOn::Duration)) {
                    let n = notice(
                        "run.duration_warning",
                        "running",
                        Some(format!(
                            "still running after {}",
                            humantime::format_duration(job.duration_warning.unwrap_or_default())
                        )),
                        report.clone(),
                    );
                    tell(NotifyOn::Duration, options.notifier.send(job, NotifyOn::Duration, &n).await);
                }
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
    // An interrupted run is not over: the next worker resumes it and notifies its end.
    if state != "interrupted" {
        let moment = if state == "succeeded" {
            NotifyOn::Success
        } else {
            NotifyOn::Failure
        };
        if job.notifications.iter().any(|n| n.on.contains(&moment)) {
            let n = notice(
                &format!("run.{state}"),
                state,
                message.clone(),
                report.clone(),
            );
            tell(moment, options.notifier.send(job, moment, &n).await);
        }
    }
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
