//! A job checked whole: what each task does, when it runs, and how it is retried.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use confluo_core::jobs::{Dependency, IngestTask, JobConfig, RunIf, TaskConfig};

use crate::error::{JobError, Result};
use crate::template::{self, Ref};

/// What a task does.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskKind {
    /// SQL; the first row of the result becomes the task's values.
    Sql(String),
    /// A SQL file, relative to the project.
    SqlFile(String),
    /// A shell command.
    Shell(String),
    /// A pipeline update.
    Pipeline {
        /// The pipeline.
        name: String,
        /// Rebuild every dataset.
        full_refresh: bool,
        /// Update only these datasets (all when empty).
        refresh: Vec<String>,
        /// Rebuild these datasets from scratch.
        full_refresh_selection: Vec<String>,
    },
    /// An `ingest:` entry's sync.
    Sync(String),
    /// Files into a table.
    Ingest(IngestTask),
    /// A SQL condition: its outcome picks which dependents run.
    Condition(String),
    /// Another job.
    RunJob(String),
    /// Data quality monitors (all when empty).
    Monitor(Vec<String>),
    /// The inner task once per input.
    ForEach {
        /// Where the inputs come from.
        inputs: ForEachInputs,
        /// Iterations at once.
        concurrency: usize,
        /// What each iteration does (its key is the for-each task's).
        task: Box<Task>,
    },
}

/// Where a `for_each` task's inputs come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ForEachInputs {
    /// Given in the job.
    List(Vec<String>),
    /// Each row's first column.
    Sql(String),
}

/// The most iterations one `for_each` task runs.
pub const MAX_ITERATIONS: usize = 10_000;

impl TaskKind {
    /// Its name, as in `confluo.yaml`.
    pub fn label(&self) -> &'static str {
        match self {
            TaskKind::Sql(_) => "sql",
            TaskKind::SqlFile(_) => "sql_file",
            TaskKind::Shell(_) => "shell",
            TaskKind::Pipeline { .. } => "pipeline",
            TaskKind::Sync(_) => "sync",
            TaskKind::Ingest(_) => "ingest",
            TaskKind::Condition(_) => "condition",
            TaskKind::RunJob(_) => "run_job",
            TaskKind::Monitor(_) => "monitor",
            TaskKind::ForEach { .. } => "for_each",
        }
    }
}

/// A checked task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Its key.
    pub key: String,
    /// What it does.
    pub kind: TaskKind,
    /// Its dependencies.
    pub depends_on: Vec<Dependency>,
    /// When it runs.
    pub run_if: RunIf,
    /// Attempts after the first.
    pub retries: u32,
    /// Wait before the first retry.
    pub backoff: Duration,
    /// Limit per attempt.
    pub timeout: Option<Duration>,
    /// Whether a timed-out attempt is retried.
    pub retry_on_timeout: bool,
}

/// A checked job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its name.
    pub name: String,
    /// Parameters and defaults.
    pub parameters: BTreeMap<String, String>,
    /// Limit on the whole run.
    pub timeout: Option<Duration>,
    /// Its schedule, checked.
    pub schedule: Option<crate::schedule::Schedule>,
    /// What else starts it, checked.
    pub trigger: Option<crate::trigger::Trigger>,
    /// Runs that may run at once; more wait, queued.
    pub max_concurrent_runs: u32,
    /// Who hears of its runs.
    pub notifications: Vec<confluo_core::jobs::NotificationConfig>,
    /// A run longer than this sends the `duration` notifications.
    pub duration_warning: Option<Duration>,
    /// The service principal its tasks run as.
    pub run_as: Option<String>,
    /// The tasks, in the order written.
    pub tasks: Vec<Task>,
}

/// The wait before the first retry when none is given.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);

pub(crate) fn duration(job: &str, what: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text).map_err(|e| JobError::Invalid {
        job: job.into(),
        message: format!("{what}: `{text}` is not a duration ({e}); write e.g. 30s, 5m, 2h"),
    })
}

fn kind_of(job: &str, t: &TaskConfig) -> Result<TaskKind> {
    let mut kinds: Vec<TaskKind> = Vec::new();
    if let Some(s) = &t.sql {
        kinds.push(TaskKind::Sql(s.clone()));
    }
    if let Some(s) = &t.sql_file {
        kinds.push(TaskKind::SqlFile(s.clone()));
    }
    if let Some(s) = &t.shell {
        kinds.push(TaskKind::Shell(s.clone()));
    }
    if let Some(p) = &t.pipeline {
        kinds.push(TaskKind::Pipeline {
            name: p.clone(),
            full_refresh: t.full_refresh,
            refresh: t.refresh.clone(),
            full_refresh_selection: t.full_refresh_selection.clone(),
        });
    }
    if let Some(s) = &t.sync {
        kinds.push(TaskKind::Sync(s.clone()));
    }
    if let Some(i) = &t.ingest {
        kinds.push(TaskKind::Ingest(i.clone()));
    }
    if let Some(c) = &t.condition {
        kinds.push(TaskKind::Condition(c.clone()));
    }
    if let Some(j) = &t.run_job {
        kinds.push(TaskKind::RunJob(j.clone()));
    }
    if let Some(m) = &t.monitor {
        kinds.push(TaskKind::Monitor(m.clone()));
    }
    if let Some(f) = &t.for_each {
        let inner = &f.task;
        let at = format!("task `{}`: for_each", t.key);
        let invalid = |m: String| JobError::Invalid {
            job: job.into(),
            message: format!("{at}: {m}"),
        };
        if inner.for_each.is_some() {
            return Err(invalid(
                "its task is a for_each too; nest a `run_job` of a job with a for_each instead"
                    .into(),
            ));
        }
        if !inner.depends_on.is_empty() {
            return Err(invalid(
                "its task runs once per input and has no `depends_on` of its own; put it on the for_each task".into(),
            ));
        }
        if inner.condition.is_some() {
            return Err(invalid("its task cannot be a condition".into()));
        }
        let inputs = match (&f.inputs, &f.sql) {
            (Some(list), None) => ForEachInputs::List(list.clone()),
            (None, Some(sql)) => ForEachInputs::Sql(sql.clone()),
            _ => {
                return Err(invalid(
                    "give `inputs: [...]` or `sql:` (each row's first column is an input), one of them".into(),
                ));
            }
        };
        let concurrency = f.concurrency.unwrap_or(1);
        if !(1..=100).contains(&concurrency) {
            return Err(invalid(format!("concurrency {concurrency}: give 1 to 100")));
        }
        kinds.push(TaskKind::ForEach {
            inputs,
            concurrency: concurrency as usize,
            task: Box::new(build_task(job, inner, &t.key)?),
        });
    }
    let invalid = |message: String| JobError::Invalid {
        job: job.into(),
        message,
    };
    if (t.full_refresh || !t.refresh.is_empty() || !t.full_refresh_selection.is_empty())
        && t.pipeline.is_none()
    {
        return Err(invalid(format!(
            "task `{}`: `full_refresh`, `refresh` and `full_refresh_selection` are for `pipeline` tasks",
            t.key
        )));
    }
    if t.full_refresh && !(t.refresh.is_empty() && t.full_refresh_selection.is_empty()) {
        return Err(invalid(format!(
            "task `{}`: `full_refresh` rebuilds every dataset; give it or a selection (`refresh`, `full_refresh_selection`), not both",
            t.key
        )));
    }
    match kinds.len() {
        1 => Ok(kinds.remove(0)),
        0 => Err(invalid(format!(
            "task `{}` does nothing: give it one of sql, sql_file, shell, pipeline, sync, ingest, condition, run_job, monitor, for_each",
            t.key
        ))),
        _ => Err(invalid(format!(
            "task `{}` has {}: a task does one thing; split it into tasks",
            t.key,
            kinds
                .iter()
                .map(TaskKind::label)
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}

/// A task from its configuration, named `key`.
fn build_task(job: &str, t: &TaskConfig, key: &str) -> Result<Task> {
    Ok(Task {
        key: key.to_string(),
        kind: kind_of(job, t)?,
        depends_on: t.depends_on.clone(),
        run_if: t.run_if,
        retries: t.retries,
        backoff: match &t.retry_backoff {
            Some(b) => duration(job, &format!("task `{key}` retry_backoff"), b)?,
            None => DEFAULT_BACKOFF,
        },
        timeout: t
            .timeout
            .as_deref()
            .map(|d| duration(job, &format!("task `{key}` timeout"), d))
            .transpose()?,
        retry_on_timeout: t.retry_on_timeout,
    })
}

/// The texts of a task that may hold `{{...}}` references, with whether each is inside a
/// `for_each` iteration (where `{{input}}` is set).
pub(crate) fn scoped_texts(kind: &TaskKind) -> Vec<(&str, bool)> {
    match kind {
        TaskKind::ForEach { inputs, task, .. } => {
            let mut out: Vec<(&str, bool)> = match inputs {
                ForEachInputs::List(l) => l.iter().map(|i| (i.as_str(), false)).collect(),
                ForEachInputs::Sql(s) => vec![(s.as_str(), false)],
            };
            out.extend(texts(&task.kind).into_iter().map(|t| (t, true)));
            out
        }
        other => texts(other).into_iter().map(|t| (t, false)).collect(),
    }
}

/// The texts of a task that may hold `{{...}}` references.
pub(crate) fn texts(kind: &TaskKind) -> Vec<&str> {
    match kind {
        TaskKind::ForEach { .. } => scoped_texts(kind).into_iter().map(|(t, _)| t).collect(),
        TaskKind::Sql(s)
        | TaskKind::SqlFile(s)
        | TaskKind::Shell(s)
        | TaskKind::Condition(s)
        | TaskKind::Sync(s)
        | TaskKind::RunJob(s) => vec![s],
        TaskKind::Pipeline { name, .. } => vec![name],
        TaskKind::Ingest(i) => vec![&i.path, &i.into],
        TaskKind::Monitor(tables) => tables.iter().map(String::as_str).collect(),
    }
}

impl Job {
    /// Checks job `name` of `jobs` whole: task keys unique, each task one kind, every
    /// dependency known and no cycle, durations readable, `run_job` naming another job, and
    /// every `{{...}}` naming a declared parameter or a value of an upstream task.
    pub fn check(name: &str, jobs: &BTreeMap<String, JobConfig>) -> Result<Job> {
        let Some(cfg) = jobs.get(name) else {
            let near = confluo_core::suggest::nearest(name, jobs.keys().map(String::as_str));
            return Err(JobError::NotFound(format!(
                "no job `{name}` in confluo.yaml{}",
                confluo_core::suggest::hint(&near)
            )));
        };
        let invalid = |message: String| JobError::Invalid {
            job: name.into(),
            message,
        };
        if cfg.tasks.is_empty() {
            return Err(invalid("it has no tasks".into()));
        }
        let mut tasks = Vec::with_capacity(cfg.tasks.len());
        let mut seen = BTreeSet::new();
        for t in &cfg.tasks {
            if t.key.trim().is_empty() {
                return Err(invalid("a task has no `key`; every task needs one".into()));
            }
            if !seen.insert(t.key.as_str()) {
                return Err(invalid(format!("two tasks are called `{}`", t.key)));
            }
            let task = build_task(name, t, &t.key)?;
            let runs = match &task.kind {
                TaskKind::RunJob(other) => Some(other),
                TaskKind::ForEach { task, .. } => match &task.kind {
                    TaskKind::RunJob(other) => Some(other),
                    _ => None,
                },
                _ => None,
            };
            if let Some(other) = runs {
                if other == name {
                    return Err(invalid(format!("task `{}` runs its own job", t.key)));
                }
                if !jobs.contains_key(other) {
                    let near =
                        confluo_core::suggest::nearest(other, jobs.keys().map(String::as_str));
                    return Err(invalid(format!(
                        "task `{}`: no job `{other}` to run{}",
                        t.key,
                        confluo_core::suggest::hint(&near)
                    )));
                }
            }
            tasks.push(task);
        }
        let by_key: HashMap<&str, &Task> = tasks.iter().map(|t| (t.key.as_str(), t)).collect();
        for t in &tasks {
            for d in &t.depends_on {
                let Some(up) = by_key.get(d.task()) else {
                    let near = confluo_core::suggest::nearest(d.task(), by_key.keys().copied());
                    return Err(invalid(format!(
                        "task `{}` depends on `{}`, which is not a task of the job{}",
                        t.key,
                        d.task(),
                        confluo_core::suggest::hint(&near)
                    )));
                };
                if matches!(d, Dependency::Outcome { .. })
                    && !matches!(up.kind, TaskKind::Condition(_))
                {
                    return Err(invalid(format!(
                        "task `{}` waits for an outcome of `{}`, which is not a condition task",
                        t.key, up.key
                    )));
                }
            }
        }
        let job = Job {
            name: name.into(),
            schedule: cfg
                .schedule
                .as_ref()
                .map(|s| crate::schedule::Schedule::parse(name, s))
                .transpose()?,
            parameters: cfg.parameters.clone(),
            timeout: cfg
                .timeout
                .as_deref()
                .map(|d| duration(name, "timeout", d))
                .transpose()?,
            trigger: cfg
                .trigger
                .as_ref()
                .map(|t| crate::trigger::Trigger::check(name, t, jobs))
                .transpose()?,
            max_concurrent_runs: match cfg.max_concurrent_runs {
                Some(0) => {
                    return Err(invalid(
                        "max_concurrent_runs: 0 would never run; give at least 1".into(),
                    ));
                }
                n => n.unwrap_or(1),
            },
            notifications: cfg.notifications.clone(),
            run_as: cfg.run_as.clone(),
            duration_warning: cfg
                .duration_warning
                .as_deref()
                .map(|d| duration(name, "duration_warning", d))
                .transpose()?,
            tasks,
        };
        if job.schedule.is_some() && job.trigger.is_some() {
            return Err(invalid(
                "it has both `schedule:` and `trigger:`; a job has one of them (make a second job that runs this one with a `run_job` task)".into(),
            ));
        }
        crate::notify::check(&job).map_err(invalid)?;
        job.order().map_err(invalid)?;
        for t in &job.tasks {
            let upstream = job.upstream(&t.key);
            for (text, in_loop) in scoped_texts(&t.kind) {
                for r in template::references(text)
                    .map_err(|e| invalid(format!("task `{}`: {e}", t.key)))?
                {
                    match r {
                        Ref::Input if !in_loop => {
                            return Err(invalid(format!(
                                "task `{}` uses {{{{input}}}}, which only a for_each task's inner task has",
                                t.key
                            )));
                        }
                        Ref::Parameter(p) if !job.parameters.contains_key(&p) => {
                            let near = confluo_core::suggest::nearest(
                                &p,
                                job.parameters.keys().map(String::as_str),
                            );
                            return Err(invalid(format!(
                                "task `{}` uses parameter `{p}`, which the job does not declare under `parameters:`{}",
                                t.key,
                                confluo_core::suggest::hint(&near)
                            )));
                        }
                        Ref::Trigger(key)
                            if !crate::trigger::passes(job.trigger.as_ref(), &key) =>
                        {
                            return Err(invalid(format!(
                                "task `{}` uses {{{{job.trigger.{key}}}}}, which {}",
                                t.key,
                                crate::trigger::passed_keys(job.trigger.as_ref())
                            )));
                        }
                        Ref::TaskValue(k, _) if !upstream.contains(&k) => {
                            return Err(invalid(format!(
                                "task `{}` uses a value of `{k}`, which does not run before it: add it to depends_on (directly or through another task)",
                                t.key
                            )));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(job)
    }

    /// Checks what the tasks name against the project: a `pipeline` among its pipelines
    /// (when it lists them), a `sync` among its ingest entries, a `sql_file` that exists.
    /// Names built from `{{...}}` are known only at run time and are left to it.
    pub fn check_targets(&self, project: &confluo_core::Project) -> Result<()> {
        let invalid = |message: String| JobError::Invalid {
            job: self.name.clone(),
            message,
        };
        let hint = |name: &str, names: &mut dyn Iterator<Item = &String>| {
            let names: Vec<&str> = names.map(String::as_str).collect();
            confluo_core::suggest::hint(&confluo_core::suggest::nearest(name, names))
        };
        if project.config.smtp.is_none()
            && let Some(n) = self.notifications.iter().find(|n| !n.email.is_empty())
        {
            return Err(invalid(format!(
                "notifications to {} need an SMTP server: add `smtp:` (host, port, from) to confluo.yaml",
                n.email.join(", ")
            )));
        }
        for t in &self.tasks {
            match &t.kind {
                TaskKind::Pipeline { name, .. }
                    if !name.contains("{{")
                        && !project.config.pipelines.is_empty()
                        && !project.config.pipelines.contains_key(name) =>
                {
                    return Err(invalid(format!(
                        "task `{}` updates pipeline `{name}`, which confluo.yaml does not define{}",
                        t.key,
                        hint(name, &mut project.config.pipelines.keys())
                    )));
                }
                TaskKind::Sync(entry)
                    if !entry.contains("{{") && !project.config.ingest.contains_key(entry) =>
                {
                    return Err(invalid(format!(
                        "task `{}` syncs `{entry}`, which is not an ingest entry of confluo.yaml{}",
                        t.key,
                        hint(entry, &mut project.config.ingest.keys())
                    )));
                }
                TaskKind::Monitor(tables)
                    if tables.is_empty() && project.config.monitors.is_empty() =>
                {
                    return Err(invalid(format!(
                        "task `{}` runs the monitors, but confluo.yaml has no `monitors:`",
                        t.key
                    )));
                }
                TaskKind::Monitor(tables) => {
                    let unknown = tables
                        .iter()
                        .find(|m| !m.contains("{{") && !project.config.monitors.contains_key(*m));
                    if let Some(m) = unknown {
                        return Err(invalid(format!(
                            "task `{}` runs the monitor of `{m}`, which confluo.yaml does not define{}",
                            t.key,
                            hint(m, &mut project.config.monitors.keys())
                        )));
                    }
                }
                TaskKind::SqlFile(file)
                    if !file.contains("{{") && !project.root.join(file).is_file() =>
                {
                    return Err(invalid(format!(
                        "task `{}` runs {file}, which is not a file in the project",
                        t.key
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Task keys in an order where each comes after its dependencies, or the cycle.
    pub fn order(&self) -> std::result::Result<Vec<String>, String> {
        let mut done: Vec<String> = Vec::new();
        let mut left: Vec<&Task> = self.tasks.iter().collect();
        while !left.is_empty() {
            let before = left.len();
            left.retain(|t| {
                if t.depends_on
                    .iter()
                    .all(|d| done.iter().any(|x| x == d.task()))
                {
                    done.push(t.key.clone());
                    false
                } else {
                    true
                }
            });
            if left.len() == before {
                let names: Vec<&str> = left.iter().map(|t| t.key.as_str()).collect();
                return Err(format!(
                    "its tasks depend on each other in a cycle: {}",
                    names.join(", ")
                ));
            }
        }
        Ok(done)
    }

    /// Every task that must end before `key` starts.
    pub fn upstream(&self, key: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![key.to_string()];
        while let Some(k) = stack.pop() {
            if let Some(t) = self.tasks.iter().find(|t| t.key == k) {
                for d in &t.depends_on {
                    if out.insert(d.task().to_string()) {
                        stack.push(d.task().to_string());
                    }
                }
            }
        }
        out
    }

    /// The task `key`.
    pub fn task(&self, key: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(yaml: &str) -> BTreeMap<String, JobConfig> {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn checks_a_job_whole() {
        let j = jobs(
            "nightly:\n  parameters: {day: '2026-01-01'}\n  tasks:\n    - {key: load, shell: 'echo {{job.parameters.day}}'}\n    - {key: check, sql: 'SELECT 1 AS n', depends_on: [load], retries: 2, retry_backoff: 1s}\n    - {key: big, condition: '{{tasks.check.values.n}} > 0', depends_on: [check]}\n    - {key: tell, shell: 'echo big', depends_on: [{task: big, outcome: true}]}\n",
        );
        let job = Job::check("nightly", &j).unwrap();
        assert_eq!(job.order().unwrap(), vec!["load", "check", "big", "tell"]);
        assert_eq!(job.task("check").unwrap().backoff, Duration::from_secs(1));
        let err = |yaml: &str| Job::check("j", &jobs(yaml)).unwrap_err().to_string();
        assert!(err("j:\n  tasks:\n    - {key: a, shell: x, depends_on: [b]}\n    - {key: b, shell: x, depends_on: [a]}\n").contains("cycle"));
        assert!(err("j:\n  tasks:\n    - {key: a, shell: x, depends_on: [lod]}\n    - {key: load, shell: x}\n").contains("did you mean"));
        assert!(err("j:\n  tasks:\n    - {key: a, shell: x, sql: y}\n").contains("sql and shell"));
        assert!(err("j:\n  tasks:\n    - {key: a}\n").contains("does nothing"));
        assert!(
            err("j:\n  tasks:\n    - {key: a, shell: 'echo {{job.parameters.dya}}'}\n")
                .contains("does not declare")
        );
        assert!(err("j:\n  tasks:\n    - {key: a, shell: 'echo {{tasks.b.values.n}}'}\n    - {key: b, sql: 'SELECT 1'}\n").contains("does not run before it"));
        assert!(
            err("j:\n  tasks:\n    - {key: a, shell: x, timeout: soon}\n")
                .contains("not a duration")
        );
        assert!(err("j:\n  tasks:\n    - {key: a, shell: x}\n    - {key: b, shell: x, depends_on: [{task: a, outcome: true}]}\n").contains("not a condition task"));
        assert!(err("j:\n  tasks:\n    - {key: a, run_job: j}\n").contains("its own job"));
    }
}
