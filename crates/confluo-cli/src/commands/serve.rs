//! `confluo serve`: the long-running process. It serves the lakehouse over the Postgres
//! wire protocol (`server:` in confluo.yaml, or the flags here) and runs the project's job
//! schedules (resuming runs a stopped worker left).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use confluo_jobs::Job;
use confluo_jobs::engine::{self, Launcher};
use confluo_jobs::scheduler::{self, ServeOptions};

use super::{CmdResult, Context};
use crate::report::CliError;

/// `confluo serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// How often schedules are looked at.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    poll: std::time::Duration,
    /// How long a run's worker may stay silent before another worker takes it over.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    lease: std::time::Duration,
    /// Where the Postgres wire endpoint listens (`host:port`; `off`: no SQL endpoint).
    /// Default: `server.postgres` in confluo.yaml, else 127.0.0.1:5433.
    #[arg(long, value_name = "ADDR")]
    postgres: Option<String>,
    /// Where the HTTP API listens (`host:port`; `off`: none). Default: `server.http` in
    /// confluo.yaml, else 127.0.0.1:8433.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Make a self-signed certificate (kept in the state folder's `tls/`) and serve TLS.
    #[arg(long, conflicts_with = "tls_cert")]
    tls_self_signed: bool,
    /// Refuse clients that do not use TLS.
    #[arg(long)]
    require_tls: bool,
}

/// Runs until SIGTERM or Ctrl-C: stops the running tasks, leaves their runs `interrupted`
/// (the next `confluo serve` resumes them) and exits 0.
pub async fn run(ctx: &Context, args: ServeArgs) -> CmdResult {
    // First: a SIGTERM while the project and metastore open must still stop it cleanly.
    let stop_rx = crate::signals::stop_requested();
    let (project, lh) = ctx.lakehouse().await?;
    let jobs = load(ctx, &lh)
        .await
        .map_err(|e| CliError::from(anyhow::anyhow!("{e}")))?;
    let scheduled: Vec<String> = jobs
        .values()
        .filter_map(|j| match (&j.schedule, &j.trigger) {
            (Some(s), _) => Some(format!("{} ({})", j.name, s.text)),
            (None, Some(t)) => Some(format!("{} ({})", j.name, t.describe())),
            (None, None) => None,
        })
        .collect();
    let (jobs_tx, jobs_rx) = tokio::sync::watch::channel(Arc::new(jobs));
    tokio::spawn(reload(ctx.clone(), lh.clone(), jobs_tx));
    let worker = engine::worker_name();
    println!(
        "confluo serve: worker {worker}; {} triggered job{}{}",
        scheduled.len(),
        if scheduled.len() == 1 { "" } else { "s" },
        if scheduled.is_empty() {
            String::new()
        } else {
            format!(": {}", scheduled.join(", "))
        }
    );
    let endpoints = start_endpoints(&project, &lh, &args, stop_rx.clone()).await?;
    let quiet = ctx.quiet;
    let observe: scheduler::Observer = Arc::new(move |job: &str, e| {
        if !quiet {
            println!("[{job}] {e}");
        }
    });
    scheduler::serve(
        &lh,
        jobs_rx,
        ServeOptions {
            launcher: Launcher {
                confluo: std::env::current_exe()?,
                project: project.root.clone(),
                run_as: None,
            },
            worker,
            poll: args.poll,
            lease: args.lease,
            clock: clock()?,
            notifier: confluo_jobs::notify::Notifier::new(project.config.smtp.clone()),
            shutdown: stop_rx,
        },
        observe,
        &|r| {
            println!(
                "[{}] run {} {}{}",
                r.job,
                r.run_id,
                r.state.replace('_', " "),
                r.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )
        },
        &|e| eprintln!("confluo serve: {e}"),
    )
    .await
    .map_err(|e| CliError::from(anyhow::anyhow!("{e}")))?;
    for endpoint in endpoints {
        // The endpoints saw the same stop signal; wait for them to let their clients go.
        let _ = endpoint.await;
    }
    println!("confluo serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Starts the Postgres wire endpoint and the HTTP API (each unless `off`), sharing one set
/// of metrics; they stop when `stop` turns true.
async fn start_endpoints(
    project: &confluo_core::Project,
    lh: &Arc<confluo_lakehouse::Lakehouse>,
    args: &ServeArgs,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, CliError> {
    let conf = &project.config.server;
    let fail = |e: confluo_server::ServerError| CliError::from(anyhow::anyhow!("{e}"));
    let pg_listen = args
        .postgres
        .clone()
        .unwrap_or_else(|| conf.postgres.clone());
    let http_listen = args.http.clone().unwrap_or_else(|| conf.http.clone());
    let on = |listen: &str| !listen.eq_ignore_ascii_case("off");
    let tls = tls_files(
        project,
        args,
        [&pg_listen, &http_listen].into_iter().filter(|l| on(l)),
    )
    .map_err(fail)?;
    let tls_note = tls
        .as_ref()
        .map(|t| format!("TLS with {}", t.cert.display()))
        .unwrap_or_else(|| "no TLS".into());
    let require_tls = args.require_tls || conf.require_tls;
    let anonymous_note = if conf.allow_anonymous {
        "; anonymous access allowed"
    } else {
        ""
    };
    let metrics = Arc::new(confluo_server::Metrics::new());
    let stopped = move || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let mut tasks = Vec::new();
    if on(&pg_listen) {
        let options = confluo_server::PgOptions {
            listen: pg_listen,
            tls: tls.clone(),
            require_tls,
            allow_anonymous: conf.allow_anonymous,
            max_connections: conf.max_connections,
        };
        let endpoint = confluo_server::PgEndpoint::bind(lh.clone(), metrics.clone(), options)
            .await
            .map_err(fail)?;
        let addr = endpoint.local_addr()?;
        println!(
            "confluo serve: SQL on postgres://{addr}/{} ({tls_note}{anonymous_note})",
            lh.default_catalog(),
        );
        tasks.push(tokio::spawn(endpoint.serve(stopped())));
    }
    if on(&http_listen) {
        let options = confluo_server::HttpOptions {
            listen: http_listen,
            tls: tls.clone(),
            require_tls,
            allow_anonymous: conf.allow_anonymous,
        };
        let endpoint = confluo_server::HttpEndpoint::bind(
            lh.clone(),
            Arc::new(project.clone()),
            metrics,
            options,
        )
        .await
        .map_err(fail)?;
        let addr = endpoint.local_addr()?;
        let (scheme, grpc) = if tls.is_some() {
            ("https", "grpc+tls")
        } else {
            ("http", "grpc")
        };
        println!(
            "confluo serve: HTTP API on {scheme}://{addr}/api/v1 (OpenAPI at /openapi.json, metrics at /metrics), Arrow Flight SQL on {grpc}://{addr} ({tls_note}{anonymous_note})"
        );
        tasks.push(tokio::spawn(endpoint.serve(stopped())));
    }
    Ok(tasks)
}

/// The certificate both endpoints serve: a self-signed one made for the hosts they listen
/// on, the flags' files, or confluo.yaml's.
fn tls_files<'a>(
    project: &confluo_core::Project,
    args: &ServeArgs,
    listens: impl Iterator<Item = &'a String>,
) -> confluo_server::Result<Option<confluo_server::tls::TlsFiles>> {
    let conf = &project.config.server;
    if args.tls_self_signed {
        let mut hosts: Vec<String> = listens
            .filter_map(|l| l.rsplit_once(':').map(|(h, _)| h.to_string()))
            .collect();
        hosts.dedup();
        return confluo_server::tls::self_signed(&project.state_dir().join("tls"), &hosts)
            .map(Some);
    }
    Ok(
        match (&args.tls_cert, &args.tls_key, &conf.tls_cert, &conf.tls_key) {
            (Some(cert), Some(key), _, _) => Some(confluo_server::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (_, _, Some(cert), Some(key)) => Some(confluo_server::tls::TlsFiles {
                cert: project.root.join(cert),
                key: project.root.join(key),
            }),
            _ => None,
        },
    )
}

/// The scheduler's clock: the wall clock, unless `CONFLUO_SIMULATED_CLOCK` is set to
/// `ANCHOR_MS:START_MS:SPEED` (tests only): then the time is `START_MS` at the real moment
/// `ANCHOR_MS` and runs `SPEED` times faster, the same for every process that reads it, so
/// a test can SIGKILL and restart `confluo serve` over simulated days of schedules.
fn clock() -> Result<scheduler::Clock, CliError> {
    let Ok(text) = std::env::var("CONFLUO_SIMULATED_CLOCK") else {
        return Ok(scheduler::wall_clock());
    };
    let parts: Vec<f64> = text.split(':').filter_map(|p| p.parse().ok()).collect();
    let [anchor, start, speed] = parts[..] else {
        return Err(CliError::from(anyhow::anyhow!(
            "CONFLUO_SIMULATED_CLOCK `{text}`: write ANCHOR_MS:START_MS:SPEED"
        )));
    };
    Ok(Arc::new(move || {
        let real = chrono::Utc::now().timestamp_millis() as f64;
        let simulated = start + (real - anchor) * speed;
        chrono::DateTime::from_timestamp_millis(simulated as i64).unwrap_or_else(chrono::Utc::now)
    }))
}

/// The project's jobs (confluo.yaml's and the metastore's), each checked.
async fn load(
    ctx: &Context,
    lh: &confluo_lakehouse::Lakehouse,
) -> Result<BTreeMap<String, Job>, String> {
    let project = ctx.project().map_err(|e| format!("{:#}", e.error))?;
    confluo_jobs::definitions::checked(&project, lh.metastore())
        .await
        .map_err(|e| e.to_string())
}

/// How often `confluo serve` reads the jobs again.
const RELOAD: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads the jobs again every few seconds, so a job created or deleted with `confluo jobs
/// create|delete`, or edited in confluo.yaml, is served without a restart. A definition
/// that no longer checks is reported once and the jobs as they were are kept.
async fn reload(
    ctx: Context,
    lh: Arc<confluo_lakehouse::Lakehouse>,
    tx: tokio::sync::watch::Sender<Arc<BTreeMap<String, Job>>>,
) {
    let mut last_error = String::new();
    loop {
        tokio::time::sleep(RELOAD).await;
        match load(&ctx, &lh).await {
            Ok(jobs) => {
                last_error.clear();
                // A checked job has no equality of its own; its debug text covers every field.
                let changed = format!("{:?}", **tx.borrow()) != format!("{jobs:?}");
                if changed {
                    println!(
                        "confluo serve: jobs reloaded: {}",
                        jobs.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                    if tx.send(Arc::new(jobs)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                if e != last_error {
                    eprintln!(
                        "confluo serve: the jobs no longer check ({e}); serving them as they were"
                    );
                    last_error = e;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}
