//! Where each job's trigger stands, the runs triggers fire, and the queue of runs waiting
//! for a free slot of their job.
//!
//! A trigger fires exactly once per event: the runs it records and the move of its cursor
//! are one transaction that only commits if the cursor still stands where the trigger read
//! it, and each run's key is unique. Two workers looking at the same schedule, folder or
//! table both compute a fire; one commits, the other's whole transaction is dropped.

use std::collections::BTreeMap;

use sqlx::Row;

use super::jobs::{job_run, run_columns};
use super::{Metastore, now_ms};
use crate::JobRun;
use crate::error::Result;

/// Where a job's trigger stands.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerState {
    /// Its cursor: the last schedule tick handled, the number of file-arrival fires, the
    /// end time of the last upstream run seen, ... (each trigger its own meaning).
    pub cursor: i64,
    /// What else it remembers (the files seen, the table versions), as its trigger wrote it.
    pub state: Option<String>,
    /// Whether the job's triggers are paused.
    pub paused: bool,
    /// When the cursor (or the pause flag) last moved, milliseconds since the epoch.
    pub updated_ms: i64,
}

/// A run a trigger or a backfill means to record.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    /// Unique for ever: `cron:JOB:TICK`, `files:JOB:N`, ...; a key recorded already is
    /// not recorded again.
    pub key: String,
    /// The run's id.
    pub run_id: String,
    /// The moment it stands for.
    pub logical_ms: i64,
    /// What the trigger passes to it (`{{job.trigger.*}}`).
    pub trigger_info: BTreeMap<String, String>,
}

/// A trigger's cursor move: from where it was read to where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct CursorMove {
    /// As read (None: the trigger had no row yet).
    pub from: Option<TriggerState>,
    /// The new cursor.
    pub to: i64,
    /// The new state.
    pub state: Option<String>,
}

impl Metastore {
    /// A job's trigger in one read (None before it was first served or paused).
    pub async fn trigger_state(&self, job: &str) -> Result<Option<TriggerState>> {
        let row = sqlx::query(
            "SELECT cursor_ms, paused, state_json, updated_ms FROM job_triggers WHERE job = $1",
        )
        .bind(job)
        .fetch_optional(&self.pool)
        .await
        .map_err(Self::err("cannot read the job's trigger"))?;
        Ok(row.map(|r| TriggerState {
            cursor: r.get(0),
            paused: r.get::<i64, _>(1) != 0,
            state: r.get(2),
            updated_ms: r.get(3),
        }))
    }

    /// Where a job's schedule stands: the last tick it handled (milliseconds).
    pub async fn trigger_cursor(&self, job: &str) -> Result<Option<i64>> {
        Ok(self.trigger_state(job).await?.map(|t| t.cursor))
    }

    /// Records `runs` fired by `trigger` as queued for any worker, and moves the job's
    /// trigger cursor, in one transaction that commits only if the cursor still stands
    /// where `cursor.from` read it. Returns the ids of the runs recorded (none when another
    /// worker fired first).
    pub async fn fire_trigger(
        &self,
        job: &str,
        trigger: &str,
        cursor: &CursorMove,
        runs: &[PlannedRun],
        parameters: &serde_json::Value,
    ) -> Result<Vec<String>> {
        self.record_keyed_runs(job, trigger, Some(cursor), runs, parameters, None)
            .await
    }

    /// Records runs started by `trigger` as `queued`, skipping keys recorded already, and
    /// moves the job's trigger cursor when one is given, in one transaction. `owner` is the
    /// process that will start them (it keeps them by heartbeat); None lets any scheduler
    /// start them. Returns the ids of the runs recorded.
    pub async fn record_keyed_runs(
        &self,
        job: &str,
        trigger: &str,
        cursor: Option<&CursorMove>,
        runs: &[PlannedRun],
        parameters: &serde_json::Value,
        owner: Option<&str>,
    ) -> Result<Vec<String>> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        // A write first: SQLite then takes its write lock now (waiting for other writers),
        // rather than at the first INSERT after a read, where it fails at once if another
        // connection wrote in between; PostgreSQL locks the job's trigger row.
        sqlx::query("UPDATE job_triggers SET updated_ms = updated_ms WHERE job = $1")
            .bind(job)
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot lock the job's trigger"))?;
        if let Some(c) = cursor {
            let moved = match &c.from {
                Some(from) => sqlx::query(
                    "UPDATE job_triggers SET cursor_ms = $1, state_json = $2, updated_ms = $3
                     WHERE job = $4 AND cursor_ms = $5 AND COALESCE(state_json, '') = $6",
                )
                .bind(c.to)
                .bind(c.state.as_deref())
                .bind(now)
                .bind(job)
                .bind(from.cursor)
                .bind(from.state.as_deref().unwrap_or(""))
                .execute(&mut *tx)
                .await
                .map_err(Self::err("cannot move the job's trigger"))?
                .rows_affected(),
                // First served: a second worker's insert of the same row breaks the key and
                // its transaction is dropped at commit.
                None => sqlx::query(
                    "INSERT INTO job_triggers (job, cursor_ms, paused, updated_ms, state_json)
                     VALUES ($1, $2, 0, $3, $4)",
                )
                .bind(job)
                .bind(c.to)
                .bind(now)
                .bind(c.state.as_deref())
                .execute(&mut *tx)
                .await
                .map(|d| d.rows_affected())
                .unwrap_or(0),
            };
            if moved == 0 {
                // Another worker moved it first: its fire stands, this one is dropped.
                let _ = tx.rollback().await;
                return Ok(Vec::new());
            }
        }
        let mut fired = Vec::new();
        for run in runs {
            let seen = sqlx::query("SELECT run_id FROM job_runs WHERE run_key = $1")
                .bind(&run.key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err("cannot read job runs"))?;
            if seen.is_some() {
                continue;
            }
            sqlx::query(
                "INSERT INTO job_runs (run_id, job, run_trigger, run_key, logical_ms,
                 parameters_json, state, worker, heartbeat_ms, started_ms, trigger_json)
                 VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $8, $9)",
            )
            .bind(&run.run_id)
            .bind(job)
            .bind(trigger)
            .bind(&run.key)
            .bind(run.logical_ms)
            .bind(parameters.to_string())
            .bind(owner)
            .bind(now)
            .bind(
                (!run.trigger_info.is_empty())
                    .then(|| serde_json::to_string(&run.trigger_info).unwrap_or_default()),
            )
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot record the job run"))?;
            fired.push(run.run_id.clone());
        }
        // Two workers racing on one key: the second's insert breaks the unique key and its
        // whole transaction is dropped, cursor included; the first's stands.
        match tx.commit().await {
            Ok(()) => Ok(fired),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// The runs recorded under these keys: (key, run).
    pub async fn runs_by_key(&self, keys: &[String]) -> Result<Vec<(String, JobRun)>> {
        let mut out = Vec::new();
        for key in keys {
            let row = sqlx::query(concat!(
                "SELECT ",
                run_columns!(),
                " FROM job_runs WHERE run_key = $1"
            ))
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err("cannot read job runs"))?;
            if let Some(r) = row {
                out.push((key.clone(), job_run(&r)));
            }
        }
        Ok(out)
    }

    /// Pauses or resumes a job's triggers. A trigger never served yet starts from now.
    pub async fn set_trigger_paused(&self, job: &str, paused: bool) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        let done =
            sqlx::query("UPDATE job_triggers SET paused = $1, updated_ms = $2 WHERE job = $3")
                .bind(i64::from(paused))
                .bind(now)
                .bind(job)
                .execute(&mut *tx)
                .await
                .map_err(Self::err("cannot pause the job's trigger"))?;
        if done.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO job_triggers (job, cursor_ms, paused, updated_ms) VALUES ($1, $2, $3, $2)",
            )
            .bind(job)
            .bind(now)
            .bind(i64::from(paused))
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot pause the job's trigger"))?;
        }
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(())
    }

    /// Starts queued run `run_id` of `job` for `worker` if fewer than `max_running` of the
    /// job's runs are running (a running run whose heartbeat is older than `stale_ms` no
    /// longer counts: its worker is gone). The count and the start are one transaction
    /// under the job's slot row, so workers racing for the last slot cannot both win.
    pub async fn start_queued_run(
        &self,
        run_id: &str,
        job: &str,
        max_running: u32,
        worker: &str,
        stale_ms: i64,
    ) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        sqlx::query(
            "INSERT INTO job_slots (job, updated_ms) VALUES ($1, $2) ON CONFLICT (job) DO NOTHING",
        )
        .bind(job)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(Self::err("cannot take a slot of the job"))?;
        sqlx::query("UPDATE job_slots SET updated_ms = $1 WHERE job = $2")
            .bind(now)
            .bind(job)
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot take a slot of the job"))?;
        let running: i64 = sqlx::query(
            "SELECT COUNT(*) FROM job_runs WHERE job = $1 AND state = 'running'
             AND heartbeat_ms >= $2",
        )
        .bind(job)
        .bind(stale_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(Self::err("cannot count the job's runs"))?
        .get(0);
        if running >= i64::from(max_running.max(1)) {
            let _ = tx.rollback().await;
            return Ok(false);
        }
        let started = sqlx::query(
            "UPDATE job_runs SET state = 'running', worker = $1, heartbeat_ms = $2, started_ms = $2
             WHERE run_id = $3 AND state = 'queued'",
        )
        .bind(worker)
        .bind(now)
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(Self::err("cannot start the job run"))?
        .rows_affected();
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(started == 1)
    }

    /// Queued runs a scheduler may start, oldest first: those no process waits for, and
    /// those whose waiting process went silent (no heartbeat since `stale_ms`).
    pub async fn queued_job_runs(&self, stale_ms: i64) -> Result<Vec<JobRun>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM job_runs WHERE state = 'queued'
             AND (worker IS NULL OR heartbeat_ms IS NULL OR heartbeat_ms < $1)
             ORDER BY started_ms, run_id"
        ))
        .bind(stale_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read job runs"))?;
        Ok(rows.iter().map(job_run).collect())
    }

    /// Runs of `job` that ended at or after `since_ms`, oldest end first.
    pub async fn ended_job_runs(&self, job: &str, since_ms: i64) -> Result<Vec<JobRun>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM job_runs WHERE job = $1 AND ended_ms IS NOT NULL AND ended_ms >= $2
             ORDER BY ended_ms, run_id LIMIT 1000"
        ))
        .bind(job)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read job runs"))?;
        Ok(rows.iter().map(job_run).collect())
    }

    /// How many runs of `job` have not ended (queued, running or interrupted).
    pub async fn unfinished_job_runs(&self, job: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM job_runs WHERE job = $1
             AND state IN ('queued', 'running', 'interrupted')",
        )
        .bind(job)
        .fetch_one(&self.pool)
        .await
        .map_err(Self::err("cannot count the job's runs"))?;
        Ok(row.get(0))
    }
}
