//! Backfills: one run per logical time over a range, each at most once ever.
//!
//! A scheduled job's logical times are its schedule's ticks in the range; a job without a
//! schedule gets one per day. Every run is recorded under a key (job and logical time)
//! before it starts, so a backfill asked again runs only what never ran.

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use confluo_lakehouse::{JobRun, Metastore, PlannedRun};
use futures::StreamExt;

use crate::engine::{self, RunEvent, RunOptions, RunReport};
use crate::error::{JobError, Result};
use crate::spec::Job;

/// The most runs one backfill starts.
pub const MAX_RUNS: usize = 1000;

/// A date (`2026-01-31`, midnight UTC) or a moment (RFC 3339).
pub fn parse_time(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!("`{text}` is not a date (2026-01-31) or a time (2026-01-31T06:00:00Z)")
        })
}

/// The logical times of `job` in `[from, to]`.
pub fn logical_times(
    job: &Job,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>> {
    let invalid = |message: String| JobError::Invalid {
        job: job.name.clone(),
        message,
    };
    if to < from {
        return Err(invalid(format!("backfill: {to} is before {from}")));
    }
    let times: Vec<DateTime<Utc>> = match &job.schedule {
        Some(s) => s.ticks(from - ChronoDuration::milliseconds(1), to),
        None => {
            let mut out = Vec::new();
            let mut t = from;
            while t <= to && out.len() <= MAX_RUNS {
                out.push(t);
                t += ChronoDuration::days(1);
            }
            out
        }
    };
    if times.len() > MAX_RUNS {
        return Err(invalid(format!(
            "backfill: {} runs in that range (at most {MAX_RUNS}); narrow it",
            times.len()
        )));
    }
    Ok(times)
}

/// What a backfill did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackfillReport {
    /// The runs it started, in logical-time order.
    pub ran: Vec<RunReport>,
    /// Logical times that had run before (by an earlier backfill): their runs.
    pub already: Vec<JobRun>,
}

/// Runs `job` once per logical time in `[from, to]` not run before, at most `concurrency`
/// at a time.
pub async fn backfill(
    ms: &Metastore,
    job: &Job,
    times: &[DateTime<Utc>],
    concurrency: usize,
    options: RunOptions,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<BackfillReport> {
    let params = engine::parameters(job, &options.parameters)?;
    let planned: Vec<PlannedRun> = times
        .iter()
        .map(|t| PlannedRun {
            key: format!("backfill:{}:{}", job.name, t.timestamp_millis()),
            run_id: uuid::Uuid::now_v7().simple().to_string(),
            logical_ms: t.timestamp_millis(),
            trigger_info: Default::default(),
        })
        .collect();
    // Recorded queued, as this process's: they take free slots of the job as they come, so
    // a backfill never runs more at once than the job's `max_concurrent_runs`.
    let fired = ms
        .record_keyed_runs(
            &job.name,
            "backfill",
            None,
            &planned,
            &serde_json::to_value(&params).unwrap_or_default(),
            Some(&options.worker),
        )
        .await?;
    let before: Vec<String> = planned
        .iter()
        .filter(|p| !fired.contains(&p.run_id))
        .map(|p| p.key.clone())
        .collect();
    let already = ms
        .runs_by_key(&before)
        .await?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let mut runs = Vec::with_capacity(fired.len());
    for id in &fired {
        if let Some(r) = ms.job_run(id).await?.into_iter().next() {
            runs.push(r);
        }
    }
    let mut ran: Vec<RunReport> = futures::stream::iter(runs.iter())
        .map(|run| async {
            let ended =
                engine::wait_turn(ms, job, &run.run_id, run.logical_ms, &options, on_event).await?;
            match ended {
                Some(report) => Ok(report),
                None => engine::run_fired(ms, job, run, options.clone(), on_event).await,
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let order: Vec<&String> = fired.iter().collect();
    ran.sort_by_key(|r| order.iter().position(|id| **id == r.run_id));
    Ok(BackfillReport { ran, already })
}
