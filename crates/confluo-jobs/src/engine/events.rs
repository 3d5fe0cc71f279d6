//! What a run reports: events as they happen, and how tasks and the run ended.

use confluo_core::jobs::NotifyOn;
use serde::Serialize;

/// What happens during a run, for displays.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run waits for a slot of its job (`max_concurrent_runs` are running).
    Queued {
        /// Its id.
        run_id: String,
        /// The job's slots.
        max_concurrent_runs: u32,
    },
    /// The run started.
    Started {
        /// Its id.
        run_id: String,
    },
    /// A notification was sent (or could not be).
    Notified {
        /// `start`, `success`, `failure` or `duration`.
        moment: String,
        /// Where to.
        to: String,
        /// Why it was not delivered.
        error: Option<String>,
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
            RunEvent::Queued {
                run_id,
                max_concurrent_runs,
            } => write!(
                f,
                "run {run_id} queued: {max_concurrent_runs} run{} of the job already running (max_concurrent_runs)",
                if *max_concurrent_runs == 1 { "" } else { "s" }
            ),
            RunEvent::Notified {
                moment,
                to,
                error: None,
            } => write!(f, "  notified {to} ({moment})"),
            RunEvent::Notified {
                moment,
                to,
                error: Some(e),
            } => write!(f, "  could not notify {to} ({moment}): {e}"),
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

pub(super) fn moment_name(m: NotifyOn) -> &'static str {
    match m {
        NotifyOn::Start => "start",
        NotifyOn::Success => "success",
        NotifyOn::Failure => "failure",
        NotifyOn::Duration => "duration",
    }
}
