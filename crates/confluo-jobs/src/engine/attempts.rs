//! A task's attempts: each recorded as it starts and ends, retried with backoff.

use std::time::{Duration, Instant};

use confluo_lakehouse::{Metastore, TaskAttempt};
use tokio::sync::watch;

use super::events::{RunEvent, TaskOutcome};
use super::scope::Scope;
use super::{Launcher, now_ms};
use crate::error::Result;
use crate::spec::Task;

/// The longest wait between two attempts, however many there were.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// A small spread (±20 %) so retries of many tasks do not start in step.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let spread = (nanos % 401) as f64 / 1000.0 - 0.2;
    d.mul_f64(1.0 + spread)
}

pub(super) struct Ended {
    pub(super) outcome: TaskOutcome,
    pub(super) values: Option<serde_json::Value>,
    pub(super) condition: Option<bool>,
}

/// Runs a task's attempts until one succeeds, the retries are spent, or the run is
/// cancelled.
#[allow(clippy::too_many_arguments)]
pub(super) async fn attempts(
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
            Ok(kind) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let run = launcher.run(&kind, task.timeout, cancel.clone(), Some(tx));
                tokio::pin!(run);
                tokio::select! {
                    done = &mut run => done,
                    Ok(process) = rx => {
                        // Kept while it runs, so a worker resuming this run after this one
                        // was killed can stop it.
                        ms.set_attempt_process(&run_id, &task.key, attempt as i64, &process)
                            .await?;
                        run.await
                    }
                }
            }
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
