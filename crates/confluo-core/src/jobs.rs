//! Jobs in `confluo.yaml`: tasks with dependencies, run conditions, retries and timeouts.
//!
//! Only the shape lives here (unknown keys are errors with their line and column); the
//! checks that need the whole job (names, cycles, durations, parameters) are
//! `confluo-jobs`'.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A job: tasks run in dependency order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Parameters and their defaults; `confluo jobs run JOB --param k=v` overrides them.
    /// Tasks read them as `{{job.parameters.k}}`.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// A limit on the whole run (`2h`, `30m`); tasks still running then are stopped.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Run on a cron schedule (under `confluo serve`).
    #[serde(default)]
    pub schedule: Option<ScheduleConfig>,
    /// Run when something happens (under `confluo serve`): files arrive, a table gets a
    /// new version, another job ends, or continuously. A job has a schedule or a trigger.
    #[serde(default)]
    pub trigger: Option<TriggerConfig>,
    /// Runs of the job that may run at once (default 1); more wait, queued, in order.
    #[serde(default)]
    pub max_concurrent_runs: Option<u32>,
    /// Who hears of the job's runs, and when.
    #[serde(default)]
    pub notifications: Vec<NotificationConfig>,
    /// A run longer than this (`30m`) sends the `duration` notifications, once.
    #[serde(default)]
    pub duration_warning: Option<String>,
    /// The service principal the job's tasks run as (`confluo users add NAME
    /// --service-principal`): their SQL sessions are that principal's, and what they create
    /// is owned by it. Without it, tasks run as whoever runs the scheduler.
    #[serde(default)]
    pub run_as: Option<String>,
    /// The tasks.
    pub tasks: Vec<TaskConfig>,
}

/// A cron schedule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// A cron expression: 5 fields (minute hour day-of-month month day-of-week) or 6 with
    /// seconds first; `@daily`, `@hourly` and the like work too.
    pub cron: String,
    /// The time zone the expression is read in (an IANA name; default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// What to do with ticks missed while no scheduler ran.
    #[serde(default)]
    pub missed: MissedPolicy,
    /// With `missed: all`, at most this many of them (the latest; default 10).
    #[serde(default)]
    pub max_catch_up: Option<u32>,
}

/// What starts a job besides a schedule: exactly one of the keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// New files under a folder.
    #[serde(default)]
    pub file_arrival: Option<FileArrivalTrigger>,
    /// New versions of Delta tables.
    #[serde(default)]
    pub table_update: Option<TableUpdateTrigger>,
    /// The end of another job's runs.
    #[serde(default)]
    pub job_completion: Option<JobCompletionTrigger>,
    /// A new run as soon as the last one ended (failures back off).
    #[serde(default)]
    pub continuous: bool,
}

/// `file_arrival:` a run for the files that appeared under `path` since the last run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileArrivalTrigger {
    /// A folder of the project (or an absolute one), or an object-store URL
    /// (`s3://bucket/landing/`) read with the project's storage options.
    pub path: String,
    /// The least time between two runs (default 0: at the next poll).
    #[serde(default)]
    pub min_interval: Option<String>,
    /// A file counts once it has not changed for this long (default 2s), so a file still
    /// being written is not picked up half-way.
    #[serde(default)]
    pub wait_after_last_change: Option<String>,
}

/// `table_update:` a run when any of `tables` has a new version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableUpdateTrigger {
    /// Lakehouse tables (`schema.table` or three parts).
    pub tables: Vec<String>,
    /// The least time between two runs (default 0).
    #[serde(default)]
    pub min_interval: Option<String>,
}

/// `job_completion:` a run after each run of `job` that ended in one of `on`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobCompletionTrigger {
    /// The upstream job.
    pub job: String,
    /// Its end states that start this job (`succeeded`, `failed`, `timed_out`,
    /// `cancelled`; default `[succeeded]`).
    #[serde(default)]
    pub on: Vec<String>,
}

/// A notification: where it goes and which moments of a run send it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotificationConfig {
    /// Moments: `start`, `success`, `failure` (failed, timed out or cancelled), `duration`
    /// (the run passed `duration_warning`).
    pub on: Vec<NotifyOn>,
    /// An HTTP(S) URL that gets the run as JSON in a POST.
    #[serde(default)]
    pub webhook: Option<String>,
    /// With `webhook`: a key (`${env:NAME}`) to sign each body with HMAC-SHA256, sent in
    /// `X-Confluo-Signature`.
    #[serde(default)]
    pub secret: Option<String>,
    /// E-mail addresses, sent through the project's `smtp:` server.
    #[serde(default)]
    pub email: Vec<String>,
}

/// A moment of a run that sends notifications.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    /// The run started.
    Start,
    /// The run succeeded.
    Success,
    /// The run failed, timed out or was cancelled.
    Failure,
    /// The run passed the job's `duration_warning`.
    Duration,
}

/// The SMTP server e-mail notifications go through (`smtp:` in `confluo.yaml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The server's host name.
    pub host: String,
    /// Its port (default 587 with `starttls`, 465 with `tls`, 25 with `none`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (the default), `tls` (implicit TLS) or `none` (a relay on a trusted
    /// network, or a test server).
    #[serde(default)]
    pub security: SmtpSecurity,
    /// The sender address.
    pub from: String,
    /// A user name, when the server asks for one.
    #[serde(default)]
    pub username: Option<String>,
    /// Its password (`${env:NAME}`).
    #[serde(default)]
    pub password: Option<String>,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Upgrade a plain connection with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte.
    Tls,
    /// No encryption.
    None,
}

/// What happens to schedule ticks that passed while no scheduler ran (a restart, a pause).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Run each missed tick (up to `max_catch_up`, the latest ones).
    All,
    /// Run the latest missed tick once (the default).
    #[default]
    Last,
    /// Run none: wait for the next tick.
    None,
}

/// One task: exactly one of `sql`, `sql_file`, `shell`, `pipeline`, `sync`, `ingest`,
/// `condition`, `run_job`, `monitor` or `for_each` says what it does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// The task's name within the job (a `for_each`'s inner task may leave it out).
    #[serde(default)]
    pub key: String,
    /// Tasks that must be done first.
    #[serde(default)]
    pub depends_on: Vec<Dependency>,
    /// When the task runs, given how its dependencies ended.
    #[serde(default)]
    pub run_if: RunIf,
    /// Attempts after the first when it fails.
    #[serde(default)]
    pub retries: u32,
    /// Wait before the first retry (`10s`); each next wait doubles, with jitter.
    #[serde(default)]
    pub retry_backoff: Option<String>,
    /// A limit per attempt (`15m`); the attempt is stopped when it passes.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Retry an attempt that timed out (by default a timeout is final).
    #[serde(default)]
    pub retry_on_timeout: bool,
    /// SQL to run; the first row of the result becomes the task's values.
    #[serde(default)]
    pub sql: Option<String>,
    /// A SQL file (relative to the project) to run as a script.
    #[serde(default)]
    pub sql_file: Option<String>,
    /// A shell command (`sh -c`), run in the project folder.
    #[serde(default)]
    pub shell: Option<String>,
    /// A pipeline to update.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// With `pipeline`: rebuild every dataset.
    #[serde(default)]
    pub full_refresh: bool,
    /// With `pipeline`: update only these datasets.
    #[serde(default)]
    pub refresh: Vec<String>,
    /// With `pipeline`: rebuild these datasets from scratch (and update the rest).
    #[serde(default)]
    pub full_refresh_selection: Vec<String>,
    /// An `ingest:` entry to sync.
    #[serde(default)]
    pub sync: Option<String>,
    /// Files to load into a table.
    #[serde(default)]
    pub ingest: Option<IngestTask>,
    /// A SQL condition; its outcome (`true` or `false`) picks which dependents run.
    #[serde(default)]
    pub condition: Option<String>,
    /// Another job to run as this task.
    #[serde(default)]
    pub run_job: Option<String>,
    /// A task run once per input.
    #[serde(default)]
    pub for_each: Option<Box<ForEachTask>>,
    /// Data quality monitors to run (tables named under `monitors:`; `[]` runs them all).
    /// The task fails when a check fails.
    #[serde(default)]
    pub monitor: Option<Vec<String>>,
}

/// `for_each:` the inner `task` runs once per input (read in it as `{{input}}`), at most
/// `concurrency` at a time; the for-each task succeeds when every iteration did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ForEachTask {
    /// The inputs, as a list.
    #[serde(default)]
    pub inputs: Option<Vec<String>>,
    /// Or a query: each row's first column is an input.
    #[serde(default)]
    pub sql: Option<String>,
    /// Iterations at once (default 1).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// What each iteration does: a task without `key` or `depends_on`.
    pub task: TaskConfig,
}

/// `ingest:` of a task: files into a table, as `confluo ingest` loads them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IngestTask {
    /// A file, folder or glob.
    pub path: String,
    /// The target table.
    pub into: String,
    /// The format, when not guessed from the names.
    #[serde(default)]
    pub format: Option<String>,
}

/// A dependency: a task's key, or a condition task's key with the outcome that lets this
/// task run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Dependency {
    /// `- load`
    Task(String),
    /// `- {task: check, outcome: true}`
    Outcome {
        /// The condition task.
        task: String,
        /// The outcome this task needs.
        outcome: bool,
    },
}

impl Dependency {
    /// The task depended on.
    pub fn task(&self) -> &str {
        match self {
            Dependency::Task(t) | Dependency::Outcome { task: t, .. } => t,
        }
    }
}

/// When a task runs, given how its dependencies ended (Lakeflow Jobs' names).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunIf {
    /// Every dependency succeeded (the default).
    #[default]
    AllSuccess,
    /// At least one dependency succeeded.
    AtLeastOneSuccess,
    /// No dependency failed (some may have been skipped).
    NoneFailed,
    /// Every dependency finished, however.
    AllDone,
    /// At least one dependency failed.
    AtLeastOneFailed,
    /// Every dependency failed.
    AllFailed,
}
