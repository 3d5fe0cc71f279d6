//! The operations routes: pipelines with their updates and events (from each pipeline's
//! event log), jobs with their runs and task attempts (from the metastore), and `/metrics`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use confluo_core::TableName;

use super::Shared;
use super::auth::User;
use super::query::open_session;
use super::reply::{ApiError, ApiResult, objects, time};

/// The project's pipelines with their event logs.
fn pipelines_of(shared: &Shared) -> Vec<(String, TableName)> {
    confluo_pipelines::graph::event_logs(&shared.project)
}

async fn event_log(shared: &Shared, pipeline: &str) -> Result<TableName, ApiError> {
    let all = pipelines_of(shared);
    let Some((_, log)) = all.into_iter().find(|(n, _)| n == pipeline) else {
        return Err(ApiError::not_found(format!("no pipeline named {pipeline}")));
    };
    if shared
        .lakehouse
        .metastore()
        .get_table(&log)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "pipeline {pipeline} has not run yet (no event log {log})"
        )));
    }
    Ok(log)
}

/// `GET /api/v1/pipelines`.
pub(crate) async fn pipelines(State(shared): State<Arc<Shared>>) -> ApiResult {
    let mut out = Vec::new();
    for (name, log) in pipelines_of(&shared) {
        let ran = shared
            .lakehouse
            .metastore()
            .get_table(&log)
            .await?
            .is_some();
        out.push(json!({
            "name": name,
            "catalog": log.catalog.as_str(),
            "schema": log.schema.as_str(),
            "event_log": log.to_string(),
            "has_run": ran,
        }));
    }
    Ok(axum::Json(json!({ "pipelines": out })))
}

/// `GET /api/v1/pipelines/{pipeline}/updates`: newest first.
pub(crate) async fn updates(
    State(shared): State<Arc<Shared>>,
    Extension(user): Extension<User>,
    Path(pipeline): Path<String>,
) -> ApiResult {
    let log = event_log(&shared, &pipeline).await?;
    let session = open_session(&shared, &user).await?;
    let batches = confluo_pipelines::run::list_updates(&session, &log)
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(
        json!({"pipeline": pipeline, "updates": objects(&batches)?}),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct UpdateParam {
    update: Option<String>,
}

/// `GET /api/v1/pipelines/{pipeline}/events?update=ID`: one update's events (the latest
/// when none is named).
pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    Extension(user): Extension<User>,
    Path(pipeline): Path<String>,
    Query(q): Query<UpdateParam>,
) -> ApiResult {
    let log = event_log(&shared, &pipeline).await?;
    let session = open_session(&shared, &user).await?;
    let batches = confluo_pipelines::run::update_events(&session, &log, q.update.as_deref())
        .await
        .map_err(ApiError::internal)?;
    let mut events = objects(&batches)?;
    // `details` is JSON text in the log; clients get it as JSON.
    for e in &mut events {
        if let Some(Value::String(text)) = e.get("details")
            && let Ok(v) = serde_json::from_str::<Value>(text)
        {
            e["details"] = v;
        }
    }
    Ok(axum::Json(json!({"pipeline": pipeline, "events": events})))
}

/// `GET /api/v1/jobs`: every job with its schedule or trigger, tasks and last run.
pub(crate) async fn jobs(State(shared): State<Arc<Shared>>) -> ApiResult {
    let ms = shared.lakehouse.metastore();
    let jobs = confluo_jobs::definitions::checked(&shared.project, ms)
        .await
        .map_err(|e| ApiError::internal(format!("the jobs do not check: {e}")))?;
    let mut out = Vec::new();
    for job in jobs.values() {
        let last = ms.job_runs(Some(&job.name), 1).await?.into_iter().next();
        out.push(json!({
            "name": job.name,
            "schedule": job.schedule.as_ref().map(|s| s.text.clone()),
            "trigger": job.trigger.as_ref().map(|t| t.describe()),
            "max_concurrent_runs": job.max_concurrent_runs,
            "tasks": job.tasks.iter().map(|t| t.key.clone()).collect::<Vec<_>>(),
            "last_run": last.as_ref().map(run_json),
        }));
    }
    Ok(axum::Json(json!({ "jobs": out })))
}

fn run_json(r: &confluo_lakehouse::JobRun) -> Value {
    json!({
        "run_id": r.run_id,
        "job": r.job,
        "trigger": r.trigger,
        "state": r.state,
        "message": r.message,
        "parameters": r.parameters,
        "started_at": time(r.started_ms),
        "ended_at": r.ended_ms.map(time),
        "logical_time": r.logical_ms.map(time),
        "worker": r.worker,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct Limit {
    limit: Option<usize>,
}

/// `GET /api/v1/jobs/{job}/runs?limit=N`: newest first.
pub(crate) async fn runs(
    State(shared): State<Arc<Shared>>,
    Path(job): Path<String>,
    Query(q): Query<Limit>,
) -> ApiResult {
    let runs = shared
        .lakehouse
        .metastore()
        .job_runs(Some(&job), q.limit.unwrap_or(50))
        .await?;
    Ok(axum::Json(json!({
        "job": job,
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
    })))
}

/// `GET /api/v1/runs/{run}`: one run (by id or an unambiguous prefix) with its attempts.
pub(crate) async fn run(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let ms = shared.lakehouse.metastore();
    let found = ms.job_run(&id).await?;
    let run = match found.as_slice() {
        [one] => one,
        [] => return Err(ApiError::not_found(format!("no run {id}"))),
        _ => {
            return Err(ApiError::bad_request(format!(
                "{id} starts {} runs' ids: give more of it",
                found.len()
            )));
        }
    };
    let attempts = ms.task_attempts(&run.run_id).await?;
    let mut out = run_json(run);
    out["tasks"] = serde_json::to_value(&attempts).map_err(ApiError::internal)?;
    Ok(axum::Json(out))
}

/// `GET /metrics`: Prometheus's text format.
pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let text = shared
        .metrics
        .render(&shared.lakehouse, &pipelines_of(&shared))
        .await;
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
