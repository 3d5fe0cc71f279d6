//! `confluo sync` for entries over event-stream connections (NATS JetStream, ...): the
//! runner reads batches until caught up — or, with `--continuous`, until Ctrl-C or SIGTERM,
//! which stop it cleanly at a batch boundary — with a live line of messages, rate and lag.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use confluo_connectors::registry::{Connection, StreamSource};
use confluo_core::TableName;
use confluo_core::project::IngestConfig;
use confluo_lakehouse::Lakehouse;
use confluo_pipelines::managed::runner::{self, RunEvent, RunReport, RunnerOptions, Target};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use confluo_pipelines::managed::{ensure_schema, target_schema};

use super::RunOptions;
use crate::progress::count;
use crate::report::CliError;
use crate::signals::watch_signals;

/// Keys that only database entries have.
const DATABASE_KEYS: &[&str] = &["tables", "mode", "scd_type", "parallelism"];

/// Runs one stream entry; returns its report.
pub async fn run_entry(
    lh: &Lakehouse,
    name: &str,
    entry: &IngestConfig,
    conn: &Connection,
    opts: &RunOptions,
) -> Result<RunReport, CliError> {
    let set: Vec<&str> = DATABASE_KEYS
        .iter()
        .copied()
        .filter(|k| match *k {
            "tables" => !entry.tables.is_empty(),
            "mode" => entry.mode != Default::default(),
            "scd_type" => entry.scd_type != Default::default(),
            _ => entry.parallelism.is_some(),
        })
        .collect();
    if let Some(k) = set.first() {
        return Err(anyhow::anyhow!(
            "ingest entry `{name}`: `{k}` is for database connections; connection `{}` is a {} stream\n  hint: a stream entry names what it reads with its connector's keys (`stream:` for nats, `topics:` for mqtt)",
            entry.connection,
            conn.kind()
        )
        .into());
    }
    let (catalog, schema) = target_schema(lh, name, &entry.schema)?;
    ensure_schema(lh, &catalog, &schema).await?;
    let StreamSource { table, mut source } = conn
        .stream_source(name, &entry.options)
        .expect("a stream connection")?;
    let target = Target {
        entry: name.to_string(),
        connection: entry.connection.clone(),
        table: TableName::parse(&table, &catalog, &schema).map_err(|e| {
            anyhow::anyhow!("ingest entry `{name}`: `table: {table}` is not a table name: {e}")
        })?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    if opts.continuous {
        watch_signals(stop.clone());
    }
    let options = RunnerOptions {
        continuous: opts.continuous,
        stop,
        ..Default::default()
    };
    let hidden = opts.quiet || opts.json;
    let line = ProgressBar::with_draw_target(
        None,
        if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    line.set_style(ProgressStyle::with_template("  {spinner} {msg}").expect("valid template"));
    line.enable_steady_tick(Duration::from_millis(200));
    let started = Instant::now();
    let mut total = 0u64;
    let json = opts.json;
    let continuous = opts.continuous;
    let mut on_event = |e: RunEvent| {
        match &e {
            RunEvent::Started { committed } => line.set_message(format!(
                "{name}: reading after {}",
                committed.as_deref().unwrap_or("the start")
            )),
            RunEvent::Batch(b) => {
                total += b.messages;
                let rate = total as f64 / started.elapsed().as_secs_f64().max(1e-3);
                line.set_message(format!(
                    "{name}: {} messages ({}/s) · at {} · lag {:.2} s",
                    count(total),
                    count(rate as u64),
                    b.offset.as_ref().map(|o| o.describe()).unwrap_or_default(),
                    b.lag_seconds
                ));
            }
            RunEvent::Idle => {
                line.set_message(format!("{name}: caught up, {} messages", count(total)))
            }
            RunEvent::Compacted(r) => {
                let msg = format!(
                    "{name}: compacted {} small files into {}",
                    r.files_removed, r.files_added
                );
                if hidden {
                    tracing::info!("{msg}");
                } else {
                    line.println(format!("  {msg}"));
                }
            }
            RunEvent::Warning { message } => {
                if hidden {
                    eprintln!("warning: {message}");
                } else {
                    line.println(format!("  warning: {message}"));
                }
            }
            RunEvent::Retrying {
                error,
                retry_in_seconds,
            } => {
                if hidden {
                    eprintln!("warning: {error}; retrying in {retry_in_seconds:.1} s");
                } else {
                    line.println(format!(
                        "  warning: {error}; retrying in {retry_in_seconds:.1} s"
                    ));
                }
            }
        }
        if json && continuous && !matches!(e, RunEvent::Idle) {
            println!("{}", serde_json::to_string(&e).unwrap_or_default());
        }
    };
    let result = runner::run(lh, &target, source.as_mut(), &options, &mut on_event).await;
    line.finish_and_clear();
    Ok(result?)
}

/// Prints what a run did.
pub fn print_report(name: &str, r: &RunReport) {
    println!(
        "{name}: {} messages in {} batches into {} ({} rows added, {} replaced, {} rescued); source at {}",
        count(r.messages),
        count(r.batches),
        r.table,
        count(r.inserted),
        count(r.updated),
        count(r.rescued),
        r.offset
            .as_ref()
            .map(|o| o.describe())
            .unwrap_or_else(|| "-".into())
    );
}
