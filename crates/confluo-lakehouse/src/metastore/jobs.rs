//! Job runs and task attempts (`confluo-jobs` writes them; `confluo jobs runs|show|logs`
//! reads them).

use sqlx::Row;

use super::{Metastore, now_ms};
use crate::error::Result;

/// One run of a job.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobRun {
    /// Its id.
    pub run_id: String,
    /// The job.
    pub job: String,
    /// What started it (`manual`, ...).
    pub trigger: String,
    /// The parameters it ran with.
    pub parameters: serde_json::Value,
    /// `running`, `succeeded`, `failed`, `cancelled`, `timed_out`.
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
    /// Records the start of a run.
    pub async fn start_job_run(
        &self,
        run_id: &str,
        job: &str,
        trigger: &str,
        parameters: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO job_runs (run_id, job, run_trigger, parameters_json, state, started_ms)
             VALUES ($1, $2, $3, $4, 'running', $5)",
        )
        .bind(run_id)
        .bind(job)
        .bind(trigger)
        .bind(parameters.to_string())
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot record the job run"))?;
        Ok(())
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

    /// Marks an ended run as running again (a repair).
    pub async fn reopen_job_run(&self, run_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE job_runs SET state = 'running', message = NULL, ended_ms = NULL WHERE run_id = $1",
        )
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
            "SELECT run_id, job, run_trigger, parameters_json, state, message, started_ms, ended_ms
             FROM job_runs WHERE ($1 = '' OR job = $1) ORDER BY started_ms DESC, run_id DESC LIMIT $2",
        )
        .bind(job.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read job runs"))?;
        Ok(rows.iter().map(job_run).collect())
    }

    /// The run whose id is `id` or starts with it (an unambiguous prefix).
    pub async fn job_run(&self, id: &str) -> Result<Vec<JobRun>> {
        let rows = sqlx::query(
            "SELECT run_id, job, run_trigger, parameters_json, state, message, started_ms, ended_ms
             FROM job_runs WHERE run_id LIKE $1 ORDER BY started_ms DESC LIMIT 2",
        )
        .bind(format!("{}%", id.replace(['%', '_'], "")))
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read job runs"))?;
        Ok(rows.iter().map(job_run).collect())
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
        Ok(rows
            .iter()
            .map(|r| TaskAttempt {
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
            })
            .collect())
    }
}

fn job_run(r: &sqlx::any::AnyRow) -> JobRun {
    JobRun {
        run_id: r.get(0),
        job: r.get(1),
        trigger: r.get(2),
        parameters: serde_json::from_str(&r.get::<String, _>(3)).unwrap_or_default(),
        state: r.get(4),
        message: r.get(5),
        started_ms: r.get(6),
        ended_ms: r.get(7),
    }
}
