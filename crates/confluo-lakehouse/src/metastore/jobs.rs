//! Job runs and task attempts (`confluo-jobs` writes them; `confluo jobs runs|show|logs`
//! reads them).

use sqlx::Row;

use super::{Metastore, now_ms};

/// The columns [`job_run`] reads, in its order.
macro_rules! run_columns {
    () => {
        "run_id, job, run_trigger, parameters_json, state, message, started_ms, ended_ms, logical_ms, worker, trigger_json"
    };
}
use crate::error::Result;
pub(super) use run_columns;

/// One run of a job.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobRun {
    /// Its id.
    pub run_id: String,
    /// The job.
    pub job: String,
    /// What started it (`manual`, `cron`, ...).
    pub trigger: String,
    /// The moment it stands for (a schedule's tick), milliseconds since the epoch.
    pub logical_ms: Option<i64>,
    /// The worker running it (`host:pid`); for a queued run, the process waiting to run it
    /// (none: whichever scheduler finds it first).
    pub worker: Option<String>,
    /// What its trigger passed (`files`, `from_version`, ...), read as `{{job.trigger.*}}`.
    pub trigger_info: std::collections::BTreeMap<String, String>,
    /// The parameters it ran with.
    pub parameters: serde_json::Value,
    /// `queued` (waiting for a free slot of its job), `running`, `succeeded`, `failed`,
    /// `cancelled`, `timed_out`, or `interrupted` (its worker stopped; the next one resumes
    /// it).
    pub state: String,
    /// Why it ended as it did.
    pub message: Option<String>,
    /// Start (milliseconds since the epoch).
    pub started_ms: i64,
    /// End, once it ended.
    pub ended_ms: Option<i64>,
}

/// One attempt of a task in a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskAttempt {
    /// The run.
    pub run_id: String,
    /// The task's key.
    pub task: String,
    /// 1 for the first attempt.
    pub attempt: i64,
    /// `running`, `succeeded`, `failed`, `timed_out`, `cancelled`, `skipped`, `excluded`.
    pub state: String,
    /// Why it ended as it did.
    pub message: Option<String>,
    /// The process's exit code, when it ran one.
    pub exit_code: Option<i64>,
    /// Values passed downstream.
    pub values: Option<serde_json::Value>,
    /// What it printed.
    #[serde(skip)]
    pub log: Option<String>,
    /// Start (milliseconds since the epoch).
    pub started_ms: i64,
    /// End, once it ended.
    pub ended_ms: Option<i64>,
}

impl Metastore {
    /// Records a run `worker` means to start: `queued` until it takes a slot of its job
    /// ([`Metastore::start_queued_run`]); the worker's heartbeats keep it its own.
    pub async fn start_job_run(
        &self,
        run_id: &str,
        job: &str,
        trigger: &str,
        parameters: &serde_json::Value,
        worker: &str,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO job_runs (run_id, job, run_trigger, parameters_json, state, worker,
             heartbeat_ms, started_ms, logical_ms) VALUES ($1, $2, $3, $4, 'queued', $5, $6, $6, $6)",
        )
        .bind(run_id)
        .bind(job)
        .bind(trigger)
        .bind(parameters.to_string())
        .bind(worker)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot record the job run"))?;
        Ok(())
    }

    /// Asks a run to stop: its worker sees it at its next heartbeat. A run no worker holds
    /// (interrupted, or queued) ends cancelled at once. Returns the run's state afterwards, or None
    /// when it had ended already.
    pub async fn request_cancel(&self, run_id: &str) -> Result<Option<String>> {
        let ended = sqlx::query(
            "UPDATE job_runs SET state = 'cancelled', message = 'cancelled', ended_ms = $1
             WHERE run_id = $2 AND state IN ('interrupted', 'queued')",
        )
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot cancel the job run"))?;
        if ended.rows_affected() == 1 {
            return Ok(Some("cancelled".into()));
        }
        let asked = sqlx::query(
            "UPDATE job_runs SET cancel_asked = 1 WHERE run_id = $1 AND state = 'running'",
        )
        .bind(run_id)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot cancel the job run"))?;
        Ok((asked.rows_affected() == 1).then(|| "running".into()))
    }

    /// Whether someone asked the run to stop.
    pub async fn cancel_asked(&self, run_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT cancel_asked FROM job_runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err("cannot read the job run"))?;
        Ok(row.is_some_and(|r| r.get::<i64, _>(0) != 0))
    }

    /// Keeps `worker`'s lease on a run.
    pub async fn heartbeat(&self, run_id: &str, worker: &str) -> Result<()> {
        sqlx::query("UPDATE job_runs SET heartbeat_ms = $1 WHERE run_id = $2 AND worker = $3")
            .bind(now_ms())
            .bind(run_id)
            .bind(worker)
            .execute(&self.pool)
            .await
            .map_err(Self::err("cannot record the heartbeat"))?;
        Ok(())
    }

    /// Runs to resume: interrupted ones, and running ones whose worker's lease lapsed
    /// (no heartbeat since `stale_ms`).
    pub async fn orphaned_job_runs(&self, stale_ms: i64) -> Result<Vec<JobRun>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM job_runs WHERE state = 'interrupted'
             OR (state = 'running' AND (heartbeat_ms IS NULL OR heartbeat_ms < $1))
             ORDER BY started_ms"
        ))
        .bind(stale_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read job runs"))?;
        Ok(rows.iter().map(job_run).collect())
    }

    /// Takes over an orphaned run for `worker`: true when this worker got it (another may
    /// have been first).
    pub async fn claim_job_run(&self, run_id: &str, worker: &str, stale_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE job_runs SET worker = $1, heartbeat_ms = $2, state = 'running'
             WHERE run_id = $3 AND (state = 'interrupted'
             OR (state = 'running' AND (heartbeat_ms IS NULL OR heartbeat_ms < $4)))",
        )
        .bind(worker)
        .bind(now_ms())
        .bind(run_id)
        .bind(stale_ms)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot claim the job run"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records how a run ended.
    pub async fn end_job_run(
        &self,
        run_id: &str,
        state: &str,
        message: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE job_runs SET state = $1, message = $2, ended_ms = $3 WHERE run_id = $4",
        )
        .bind(state)
        .bind(message)
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot record the job run"))?;
        Ok(())
    }

    /// Marks an ended run as running again, by `worker` (a repair).
    pub async fn reopen_job_run(&self, run_id: &str, worker: &str) -> Result<()> {
        sqlx::query(
            "UPDATE job_runs SET state = 'running', message = NULL, ended_ms = NULL, worker = $1,
             heartbeat_ms = $2 WHERE run_id = $3",
        )
        .bind(worker)
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot record the job run"))?;
        Ok(())
    }

    /// Records a task attempt as it ends (or, with `ended` false, as it starts).
    pub async fn record_task_attempt(&self, a: &TaskAttempt) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        sqlx::query("DELETE FROM task_runs WHERE run_id = $1 AND task = $2 AND attempt = $3")
            .bind(&a.run_id)
            .bind(&a.task)
            .bind(a.attempt)
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot record the task"))?;
        sqlx::query(
            "INSERT INTO task_runs (run_id, task, attempt, state, message, exit_code, values_json,
             log, started_ms, ended_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&a.run_id)
        .bind(&a.task)
        .bind(a.attempt)
        .bind(&a.state)
        .bind(a.message.as_deref())
        .bind(a.exit_code)
        .bind(a.values.as_ref().map(|v| v.to_string()))
        .bind(a.log.as_deref())
        .bind(a.started_ms)
        .bind(a.ended_ms)
        .execute(&mut *tx)
        .await
        .map_err(Self::err("cannot record the task"))?;
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(())
    }

    /// Runs, newest first: of one job, or of all.
    pub async fn job_runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<JobRun>> {
        let rows = sqlx::query(
            concat!(
                "SELECT ",
                run_columns!(),
                " FROM job_runs WHERE ($1 = '' OR job = $1) ORDER BY started_ms DESC, run_id DESC LIMIT $2"
            ),
        )
        .bind(job.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read job runs"))?;
        Ok(rows.iter().map(job_run).collect())
    }

    /// How many runs each job has in each state (`/metrics`).
    pub async fn job_run_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT job, state, count(*) FROM job_runs GROUP BY job, state ORDER BY job, state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read job runs"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// The run whose id is `id` or starts with it (an unambiguous prefix).
    pub async fn job_run(&self, id: &str) -> Result<Vec<JobRun>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM job_runs WHERE run_id LIKE $1 ORDER BY started_ms DESC LIMIT 2"
        ))
        .bind(format!("{}%", id.replace(['%', '_'], "")))
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read job runs"))?;
        Ok(rows.iter().map(job_run).collect())
    }

    /// Notes the process (group id and start time, `pgid:start`) a running attempt runs as.
    /// Ending the attempt ([`Metastore::record_task_attempt`]) clears it.
    pub async fn set_attempt_process(
        &self,
        run_id: &str,
        task: &str,
        attempt: i64,
        process: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE task_runs SET process = $1 WHERE run_id = $2 AND task = $3 AND attempt = $4
             AND state = 'running'",
        )
        .bind(process)
        .bind(run_id)
        .bind(task)
        .bind(attempt)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot record the task's process"))?;
        Ok(())
    }

    /// The processes of a run's attempts still marked running: (task, attempt, process).
    pub async fn running_attempt_processes(
        &self,
        run_id: &str,
    ) -> Result<Vec<(String, i64, String)>> {
        let rows = sqlx::query(
            "SELECT task, attempt, process FROM task_runs WHERE run_id = $1
             AND state = 'running' AND process IS NOT NULL",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read task runs"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// The newest `limit` task attempts of all runs, each with its run's job.
    pub async fn all_task_attempts(&self, limit: usize) -> Result<Vec<(String, TaskAttempt)>> {
        let rows = sqlx::query(
            "SELECT t.run_id, t.task, t.attempt, t.state, t.message, t.exit_code, t.values_json,
             t.log, t.started_ms, t.ended_ms, r.job FROM task_runs t
             JOIN job_runs r ON r.run_id = t.run_id
             ORDER BY t.started_ms DESC, t.run_id, t.task, t.attempt LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read task runs"))?;
        Ok(rows.iter().map(|r| (r.get(10), attempt(r))).collect())
    }

    /// A run's task attempts, in start order.
    pub async fn task_attempts(&self, run_id: &str) -> Result<Vec<TaskAttempt>> {
        let rows = sqlx::query(
            "SELECT run_id, task, attempt, state, message, exit_code, values_json, log,
             started_ms, ended_ms FROM task_runs WHERE run_id = $1
             ORDER BY started_ms, task, attempt",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read task runs"))?;
        Ok(rows.iter().map(attempt).collect())
    }
}

fn attempt(r: &sqlx::any::AnyRow) -> TaskAttempt {
    TaskAttempt {
        run_id: r.get(0),
        task: r.get(1),
        attempt: r.get(2),
        state: r.get(3),
        message: r.get(4),
        exit_code: r.get(5),
        values: r
            .get::<Option<String>, _>(6)
            .and_then(|v| serde_json::from_str(&v).ok()),
        log: r.get(7),
        started_ms: r.get(8),
        ended_ms: r.get(9),
    }
}

pub(super) fn job_run(r: &sqlx::any::AnyRow) -> JobRun {
    JobRun {
        run_id: r.get(0),
        job: r.get(1),
        trigger: r.get(2),
        parameters: serde_json::from_str(&r.get::<String, _>(3)).unwrap_or_default(),
        state: r.get(4),
        message: r.get(5),
        started_ms: r.get(6),
        ended_ms: r.get(7),
        logical_ms: r.get(8),
        worker: r.get(9),
        trigger_info: r
            .get::<Option<String>, _>(10)
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
    }
}
