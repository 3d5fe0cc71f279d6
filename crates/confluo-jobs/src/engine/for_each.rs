//! A `for_each` task: its inner task once per input, a few at a time. Each iteration is
//! recorded as a task of its own (`KEY[i]`) with its attempts and retries, so `confluo jobs
//! show` lists every iteration; the for-each task itself succeeds when all of them did.

use std::collections::HashMap;
use std::time::Instant;

use confluo_lakehouse::{Metastore, TaskAttempt};
use futures::StreamExt;
use tokio::sync::watch;

use super::attempts::{Ended, attempts};
use super::events::{RunEvent, TaskOutcome};
use super::scope::Scope;
use super::{Launcher, now_ms};
use crate::error::Result;
use crate::spec::{ForEachInputs, MAX_ITERATIONS, Task, TaskKind};

/// The inputs of a for-each task: its list (rendered), or its query's first column.
async fn inputs(
    launcher: &Launcher,
    source: &ForEachInputs,
    scope: &Scope,
    cancel: watch::Receiver<bool>,
) -> std::result::Result<Vec<String>, String> {
    let list = match source {
        ForEachInputs::List(items) => items
            .iter()
            .map(|i| scope.render_text(i))
            .collect::<std::result::Result<Vec<_>, _>>()?,
        ForEachInputs::Sql(sql) => {
            let sql = scope.render_text(sql)?;
            let done = launcher.run(&TaskKind::Sql(sql), None, cancel, None).await;
            if let Some(e) = done.error {
                return Err(format!("its inputs query failed: {e}"));
            }
            done.rows
                .unwrap_or_default()
                .iter()
                .map(|row| {
                    let first = row
                        .as_object()
                        .and_then(|o| o.values().next())
                        .cloned()
                        .unwrap_or(serde_json::Value::Null);
                    match first {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    }
                })
                .collect()
        }
    };
    if list.len() > MAX_ITERATIONS {
        return Err(format!(
            "{} inputs: a for_each runs at most {MAX_ITERATIONS}; split the work",
            list.len()
        ));
    }
    Ok(list)
}

/// Runs for-each task `task`: resolves its inputs, then its inner task per input, at most
/// its concurrency at a time. `next` holds the next attempt number of each iteration (a
/// repair keeps the earlier attempts in the history).
#[allow(clippy::too_many_arguments)]
pub(super) async fn for_each(
    ms: Metastore,
    launcher: Launcher,
    run_id: String,
    task: Task,
    first: u32,
    next: HashMap<String, u32>,
    scope: Scope,
    cancel: watch::Receiver<bool>,
    events: tokio::sync::mpsc::UnboundedSender<RunEvent>,
) -> Result<Ended> {
    let TaskKind::ForEach {
        inputs: source,
        concurrency,
        task: inner,
    } = &task.kind
    else {
        unreachable!("for_each runs for-each tasks only");
    };
    let started = Instant::now();
    let mut record = TaskAttempt {
        run_id: run_id.clone(),
        task: task.key.clone(),
        attempt: first as i64,
        state: "running".into(),
        message: None,
        exit_code: None,
        values: None,
        log: None,
        started_ms: now_ms(),
        ended_ms: None,
    };
    ms.record_task_attempt(&record).await?;
    let _ = events.send(RunEvent::TaskStarted {
        task: task.key.clone(),
        attempt: first,
    });
    let ended = |record: &mut TaskAttempt, state: &str, message: Option<String>| {
        record.state = state.into();
        record.message = message.clone();
        record.ended_ms = Some(now_ms());
        TaskOutcome {
            task: task.key.clone(),
            state: state.into(),
            attempts: first,
            message,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    };
    let list = match inputs(&launcher, source, &scope, cancel.clone()).await {
        Ok(l) => l,
        Err(e) => {
            let outcome = ended(&mut record, "failed", Some(e));
            ms.record_task_attempt(&record).await?;
            return Ok(Ended {
                outcome,
                values: None,
                condition: None,
            });
        }
    };
    // Owned futures first: a stream whose closure borrows would not be `Send` for the
    // spawned run.
    let iterations: Vec<_> = list
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let mut one = (**inner).clone();
            one.key = format!("{}[{i}]", task.key);
            let mut scope = scope.clone();
            scope.input = Some(input.clone());
            let start = next.get(&one.key).copied().unwrap_or(1).max(1);
            attempts(
                ms.clone(),
                launcher.clone(),
                run_id.clone(),
                one,
                start,
                scope,
                cancel.clone(),
                events.clone(),
            )
        })
        .collect();
    let runs: Vec<Result<Ended>> = futures::stream::iter(iterations)
        .buffered(*concurrency)
        .collect()
        .await;
    let mut failed = Vec::new();
    let mut cancelled = false;
    for (i, r) in runs.into_iter().enumerate() {
        let done = r?;
        match done.outcome.state.as_str() {
            "succeeded" => {}
            "cancelled" => cancelled = true,
            _ => failed.push(format!(
                "{} ({}): {}",
                done.outcome.task,
                list[i],
                done.outcome.message.unwrap_or_default()
            )),
        }
    }
    let values = serde_json::json!({
        "iterations": list.len(),
        "failed": failed.len(),
    });
    let outcome = if cancelled {
        ended(&mut record, "cancelled", Some("cancelled".into()))
    } else if failed.is_empty() {
        ended(&mut record, "succeeded", None)
    } else {
        let shown: Vec<&String> = failed.iter().take(3).collect();
        let message = format!(
            "{} of {} iterations failed: {}{}",
            failed.len(),
            list.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            if failed.len() > shown.len() {
                "; ..."
            } else {
                ""
            }
        );
        ended(&mut record, "failed", Some(message))
    };
    record.values = Some(values.clone());
    ms.record_task_attempt(&record).await?;
    Ok(Ended {
        outcome,
        values: Some(values),
        condition: None,
    })
}
