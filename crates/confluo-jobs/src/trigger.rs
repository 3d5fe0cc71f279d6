//! What starts a job besides a person: its cron schedule, files arriving in a folder, new
//! versions of tables, the end of another job's runs, or nothing at all (continuous).
//!
//! Each poll reads where the job's trigger stands, works out what is new, and records the
//! runs that makes with the cursor's move in one metastore transaction that only commits
//! if the cursor still stands where it was read ([`Metastore::fire_trigger`]): however many
//! workers poll, an event fires one run, and a worker killed between the reading and the
//! commit fired nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use confluo_core::jobs::{JobCompletionTrigger, JobConfig, TriggerConfig};
use confluo_lakehouse::{CursorMove, Lakehouse, PlannedRun, TriggerState};

use crate::error::{JobError, Result};
use crate::spec::{Job, duration};

/// A checked trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Files appeared under `path`.
    FileArrival {
        /// The folder (relative to the project) or object-store URL, as written.
        path: String,
        /// The least time between two runs.
        min_interval: Duration,
        /// How long a file must stay unchanged to count.
        settle: Duration,
    },
    /// Tables got new versions.
    TableUpdate {
        /// The tables, as written.
        tables: Vec<String>,
        /// The least time between two runs.
        min_interval: Duration,
    },
    /// Runs of another job ended.
    JobCompletion {
        /// The upstream job.
        job: String,
        /// The end states that count.
        on: Vec<String>,
    },
    /// A run whenever none is running.
    Continuous,
}

/// The most files a `file_arrival` folder may hold: the trigger remembers each by name.
pub const MAX_WATCHED_FILES: usize = 10_000;
/// How long a file must stay unchanged to count, when not given.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
/// The first wait of a continuous job after a failed run; it doubles with each failure in
/// a row, up to [`MAX_CONTINUOUS_BACKOFF`].
pub const CONTINUOUS_BACKOFF: Duration = Duration::from_secs(10);
/// The longest wait of a continuous job after failures.
pub const MAX_CONTINUOUS_BACKOFF: Duration = Duration::from_secs(600);
const END_STATES: [&str; 4] = ["succeeded", "failed", "timed_out", "cancelled"];

impl Trigger {
    /// Checks `trigger:` of job `name`.
    pub fn check(
        name: &str,
        cfg: &TriggerConfig,
        jobs: &BTreeMap<String, JobConfig>,
    ) -> Result<Trigger> {
        let invalid = |message: String| JobError::Invalid {
            job: name.into(),
            message: format!("trigger: {message}"),
        };
        let given = usize::from(cfg.file_arrival.is_some())
            + usize::from(cfg.table_update.is_some())
            + usize::from(cfg.job_completion.is_some())
            + usize::from(cfg.continuous);
        if given != 1 {
            return Err(invalid(format!(
                "give exactly one of file_arrival, table_update, job_completion, continuous (got {given})"
            )));
        }
        let interval = |text: &Option<String>| {
            text.as_deref()
                .map(|t| duration(name, "trigger: min_interval", t))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        if let Some(f) = &cfg.file_arrival {
            if f.path.trim().is_empty() {
                return Err(invalid("file_arrival: `path` is empty".into()));
            }
            return Ok(Trigger::FileArrival {
                path: f.path.clone(),
                min_interval: interval(&f.min_interval)?,
                settle: match &f.wait_after_last_change {
                    Some(t) => duration(name, "trigger: wait_after_last_change", t)?,
                    None => DEFAULT_SETTLE,
                },
            });
        }
        if let Some(t) = &cfg.table_update {
            if t.tables.is_empty() {
                return Err(invalid("table_update: `tables` is empty".into()));
            }
            return Ok(Trigger::TableUpdate {
                tables: t.tables.clone(),
                min_interval: interval(&t.min_interval)?,
            });
        }
        if let Some(JobCompletionTrigger { job, on }) = &cfg.job_completion {
            if job == name {
                return Err(invalid(
                    "job_completion: a job cannot start after its own runs (use `continuous: true`)"
                        .into(),
                ));
            }
            if !jobs.contains_key(job) {
                let near = confluo_core::suggest::nearest(job, jobs.keys().map(String::as_str));
                return Err(invalid(format!(
                    "job_completion: no job `{job}`{}",
                    confluo_core::suggest::hint(&near)
                )));
            }
            for state in on {
                if !END_STATES.contains(&state.as_str()) {
                    return Err(invalid(format!(
                        "job_completion: `{state}` is not how a run ends; use {}",
                        END_STATES.join(", ")
                    )));
                }
            }
            let on = if on.is_empty() {
                vec!["succeeded".to_string()]
            } else {
                on.clone()
            };
            return Ok(Trigger::JobCompletion {
                job: job.clone(),
                on,
            });
        }
        Ok(Trigger::Continuous)
    }

    /// How `confluo serve` and `confluo jobs list` describe it.
    pub fn describe(&self) -> String {
        match self {
            Trigger::FileArrival { path, .. } => format!("files in {path}"),
            Trigger::TableUpdate { tables, .. } => format!("updates of {}", tables.join(", ")),
            Trigger::JobCompletion { job, on } => format!("after {job} {}", on.join("|")),
            Trigger::Continuous => "continuous".into(),
        }
    }

    fn keys(&self) -> &'static [&'static str] {
        match self {
            Trigger::FileArrival { .. } => &["path", "files", "file_count"],
            Trigger::TableUpdate { .. } => &["tables", "from_version", "to_version", "versions"],
            Trigger::JobCompletion { .. } => &["job", "run_id", "state"],
            Trigger::Continuous => &[],
        }
    }
}

/// Whether a run of a job with `trigger` can get `{{job.trigger.key}}`.
pub fn passes(trigger: Option<&Trigger>, key: &str) -> bool {
    key == "type" || trigger.is_some_and(|t| t.keys().contains(&key))
}

/// What the job's trigger passes, for an error about another key.
pub fn passed_keys(trigger: Option<&Trigger>) -> String {
    let keys: Vec<String> = std::iter::once("type")
        .chain(
            trigger
                .map(Trigger::keys)
                .unwrap_or_default()
                .iter()
                .copied(),
        )
        .map(|k| format!("{{{{job.trigger.{k}}}}}"))
        .collect();
    format!("its trigger does not pass; it passes {}", keys.join(", "))
}

/// What one poll found to fire: the runs, and where the cursor goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    /// `cron`, `file_arrival`, ...
    pub trigger: &'static str,
    /// The runs (none: only the cursor moves, as when a trigger is first served).
    pub runs: Vec<PlannedRun>,
    /// The cursor's new place.
    pub to: i64,
    /// The trigger's new memory.
    pub state: Option<String>,
}

fn planned(key: String, logical: DateTime<Utc>, info: BTreeMap<String, String>) -> PlannedRun {
    PlannedRun {
        key,
        run_id: uuid::Uuid::now_v7().simple().to_string(),
        logical_ms: logical.timestamp_millis(),
        trigger_info: info,
    }
}

/// The key a tick's run is recorded under: one run per job and tick, ever.
pub fn cron_key(job: &str, tick: DateTime<Utc>) -> String {
    format!("cron:{job}:{}", tick.timestamp_millis())
}

/// What `job`'s schedule or trigger fires now, given where it stands (`None`: nothing).
pub async fn plan(
    lh: &Lakehouse,
    root: &Path,
    job: &Job,
    state: Option<&TriggerState>,
    now: DateTime<Utc>,
) -> Result<Option<Fire>> {
    let since_last = |s: &TriggerState| {
        Duration::from_millis((now.timestamp_millis() - s.updated_ms).max(0) as u64)
    };
    if let Some(schedule) = &job.schedule {
        return Ok(match state {
            // A schedule starts when it is first served: ticks before are not missed.
            None => Some(Fire {
                trigger: "cron",
                runs: vec![],
                to: now.timestamp_millis(),
                state: None,
            }),
            Some(s) => {
                let cursor = DateTime::from_timestamp_millis(s.cursor).unwrap_or(now);
                let (due, next) = schedule.due(cursor, now);
                (!due.is_empty() || next != cursor).then(|| Fire {
                    trigger: "cron",
                    runs: due
                        .iter()
                        .map(|t| planned(cron_key(&job.name, *t), *t, BTreeMap::new()))
                        .collect(),
                    to: next.timestamp_millis(),
                    state: None,
                })
            }
        });
    }
    let Some(trigger) = &job.trigger else {
        return Ok(None);
    };
    let seq = state.map_or(0, |s| s.cursor) + 1;
    match trigger {
        Trigger::FileArrival {
            path,
            min_interval,
            settle,
        } => {
            // A relative folder is the project's; a URL (s3://...) is listed through the
            // object store with the project's storage options.
            let folder = if path.contains("://") {
                path.clone()
            } else {
                root.join(path).display().to_string()
            };
            let files = settled_files(lh, &folder, *settle, now).await?;
            let listing = serde_json::to_string(&files).unwrap_or_default();
            // First served (or paused before it ever was): what is there now is not new
            // (run the job by hand for it).
            let Some(s) = state.filter(|s| s.state.is_some()) else {
                return Ok(Some(Fire {
                    trigger: "file_arrival",
                    runs: vec![],
                    to: 0,
                    state: Some(listing),
                }));
            };
            let seen: BTreeSet<String> = s
                .state
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok())
                .unwrap_or_default();
            let new: Vec<&String> = files.iter().filter(|f| !seen.contains(*f)).collect();
            if new.is_empty() || since_last(s) < *min_interval {
                return Ok(None);
            }
            let info = BTreeMap::from([
                ("path".to_string(), folder.clone()),
                (
                    "files".to_string(),
                    new.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(","),
                ),
                ("file_count".to_string(), new.len().to_string()),
            ]);
            Ok(Some(Fire {
                trigger: "file_arrival",
                runs: vec![planned(format!("files:{}:{seq}", job.name), now, info)],
                to: seq,
                state: Some(listing),
            }))
        }
        Trigger::TableUpdate {
            tables,
            min_interval,
        } => {
            let mut versions = BTreeMap::new();
            for t in tables {
                let name = lh.resolve(t).map_err(|e| JobError::Invalid {
                    job: job.name.clone(),
                    message: format!("trigger: table_update: {e}"),
                })?;
                let v = lh
                    .latest_version(&name)
                    .await
                    .map_err(|e| JobError::Invalid {
                        job: job.name.clone(),
                        message: format!("trigger: table_update: {e}"),
                    })?;
                versions.insert(t.clone(), v);
            }
            let now_json = serde_json::to_string(&versions).unwrap_or_default();
            let Some(s) = state.filter(|s| s.state.is_some()) else {
                return Ok(Some(Fire {
                    trigger: "table_update",
                    runs: vec![],
                    to: 0,
                    state: Some(now_json),
                }));
            };
            let before: BTreeMap<String, i64> = s
                .state
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok())
                .unwrap_or_default();
            let changed: BTreeMap<&String, (i64, i64)> = versions
                .iter()
                .filter_map(|(t, v)| {
                    let from = before.get(t).copied().unwrap_or(-1);
                    (*v > from).then_some((t, (from + 1, *v)))
                })
                .collect();
            if changed.is_empty() || since_last(s) < *min_interval {
                return Ok(None);
            }
            let mut info = BTreeMap::from([
                (
                    "tables".to_string(),
                    changed
                        .keys()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                (
                    "versions".to_string(),
                    serde_json::to_string(&changed).unwrap_or_default(),
                ),
            ]);
            if let Some((from, to)) = changed.values().next().filter(|_| tables.len() == 1) {
                info.insert("from_version".into(), from.to_string());
                info.insert("to_version".into(), to.to_string());
            }
            Ok(Some(Fire {
                trigger: "table_update",
                runs: vec![planned(format!("table:{}:{seq}", job.name), now, info)],
                to: seq,
                state: Some(now_json),
            }))
        }
        Trigger::JobCompletion { job: upstream, on } => {
            let Some(s) = state else {
                return Ok(Some(Fire {
                    trigger: "job_completion",
                    runs: vec![],
                    to: now.timestamp_millis(),
                    state: None,
                }));
            };
            // `>=`: a run that ended in the cursor's millisecond after the last poll read
            // is still seen; the runs seen before are skipped by their keys.
            let ended = lh.metastore().ended_job_runs(upstream, s.cursor).await?;
            let to = ended
                .iter()
                .filter_map(|r| r.ended_ms)
                .max()
                .unwrap_or(s.cursor);
            let runs: Vec<PlannedRun> = ended
                .iter()
                .filter(|r| on.contains(&r.state))
                .map(|r| {
                    let logical = r
                        .logical_ms
                        .or(r.ended_ms)
                        .and_then(DateTime::from_timestamp_millis)
                        .unwrap_or(now);
                    planned(
                        format!("after:{}:{}:{}", job.name, r.run_id, r.state),
                        logical,
                        BTreeMap::from([
                            ("job".to_string(), upstream.clone()),
                            ("run_id".to_string(), r.run_id.clone()),
                            ("state".to_string(), r.state.clone()),
                        ]),
                    )
                })
                .collect();
            let keys: Vec<String> = runs.iter().map(|r| r.key.clone()).collect();
            let taken: BTreeSet<String> = lh
                .metastore()
                .runs_by_key(&keys)
                .await?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let runs: Vec<PlannedRun> = runs
                .into_iter()
                .filter(|r| !taken.contains(&r.key))
                .collect();
            Ok((!runs.is_empty() || to > s.cursor).then_some(Fire {
                trigger: "job_completion",
                runs,
                to,
                state: None,
            }))
        }
        Trigger::Continuous => {
            let ms = lh.metastore();
            if ms.unfinished_job_runs(&job.name).await? > 0 {
                return Ok(None);
            }
            // Failures in a row back off, so a broken continuous job does not spin.
            let recent = ms.job_runs(Some(&job.name), 8).await?;
            let failures = recent.iter().take_while(|r| r.state != "succeeded").count() as u32;
            if failures > 0 {
                let wait = CONTINUOUS_BACKOFF
                    .saturating_mul(1 << (failures - 1).min(10))
                    .min(MAX_CONTINUOUS_BACKOFF);
                let last_end = recent[0].ended_ms.unwrap_or(0);
                if now.timestamp_millis() - last_end < wait.as_millis() as i64 {
                    return Ok(None);
                }
            }
            Ok(Some(Fire {
                trigger: "continuous",
                runs: vec![planned(
                    format!("continuous:{}:{seq}", job.name),
                    now,
                    BTreeMap::new(),
                )],
                to: seq,
                state: state.and_then(|s| s.state.clone()),
            }))
        }
    }
}

/// Files under `folder` (relative names, sorted) unchanged for `settle`; names with a part
/// starting with `.` or `_` (hidden, or a writer's temporary file) are left out, as Spark
/// does.
async fn settled_files(
    lh: &Lakehouse,
    folder: &str,
    settle: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let listed = lh.list_files(folder).await.map_err(|e| JobError::Invalid {
        job: String::new(),
        message: format!("trigger: file_arrival: cannot list {folder}: {e}"),
    })?;
    let cutoff = now.timestamp_millis() - settle.as_millis() as i64;
    let mut out: Vec<String> = listed
        .into_iter()
        .filter(|(name, modified)| {
            *modified <= cutoff
                && !name
                    .split('/')
                    .any(|part| part.starts_with('.') || part.starts_with('_'))
        })
        .map(|(name, _)| name)
        .collect();
    if out.len() > MAX_WATCHED_FILES {
        return Err(JobError::Invalid {
            job: String::new(),
            message: format!(
                "trigger: file_arrival: {folder} holds {} files, more than {MAX_WATCHED_FILES}; move processed files elsewhere or watch a narrower folder",
                out.len()
            ),
        });
    }
    out.sort();
    Ok(out)
}

/// Fires what `job`'s trigger has due: records the runs (queued) and moves the cursor.
/// Returns the ids of the runs recorded.
pub async fn fire_due(
    lh: &Lakehouse,
    root: &Path,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let ms = lh.metastore();
    let state = ms.trigger_state(&job.name).await?;
    if state.as_ref().is_some_and(|s| s.paused) {
        // Paused: the cursor stays; on resume the ticks passed meanwhile follow the
        // missed-tick policy, as after a restart, and files or versions that arrived are
        // seen then.
        return Ok(vec![]);
    }
    let Some(fire) = plan(lh, root, job, state.as_ref(), now)
        .await
        .map_err(|e| with_job(e, &job.name))?
    else {
        return Ok(vec![]);
    };
    let defaults = serde_json::to_value(&job.parameters).unwrap_or_default();
    Ok(ms
        .fire_trigger(
            &job.name,
            fire.trigger,
            &CursorMove {
                from: state,
                to: fire.to,
                state: fire.state,
            },
            &fire.runs,
            &defaults,
        )
        .await?)
}

fn with_job(e: JobError, job: &str) -> JobError {
    match e {
        JobError::Invalid { job: j, message } if j.is_empty() => JobError::Invalid {
            job: job.into(),
            message,
        },
        other => other,
    }
}
