//! `confluo sync` for `mode: cdc` entries: the initial copy with a progress bar per table,
//! then the change stream with a live line (transactions, changes per second, lag), until
//! caught up — or, with `--continuous`, until Ctrl-C.

use std::sync::atomic::Ordering;
use std::time::Duration;

use confluo_connectors::mysql::MysqlConfig;
use confluo_connectors::postgres::PostgresConfig;
use confluo_core::Project;
use confluo_core::project::{IngestConfig, ScdType};
use confluo_lakehouse::Lakehouse;
use confluo_pipelines::managed::capture::{CdcReport, Progress, StreamOptions};
use confluo_pipelines::managed::mysql_cdc::MysqlCdcEntry;
use confluo_pipelines::managed::postgres_cdc::CdcEntry;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::count;
use crate::report::CliError;

/// How the stream runs and reports.
#[derive(Debug, Clone)]
pub struct CdcRunOptions {
    /// Keep streaming until Ctrl-C.
    pub continuous: bool,
    /// Poll interval when caught up.
    pub interval: Duration,
    /// One JSON object per batch (continuous) and a JSON summary.
    pub json: bool,
    /// No progress display.
    pub quiet: bool,
}

/// A name PostgreSQL accepts for a slot or publication: lower case letters, digits and
/// underscores, at most 63 bytes.
fn object_name(parts: &[&str]) -> String {
    let mut s: String = parts
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(63);
    s
}

/// The change-capture settings of a `mode: cdc` entry. The slot is named after the database
/// and the entry (slots are per server, publications per database), unless the connection
/// names one.
pub fn entry(
    project: &Project,
    name: &str,
    entry: &IngestConfig,
    cfg: PostgresConfig,
    catalog: String,
    schema: String,
) -> Result<CdcEntry, CliError> {
    Ok(CdcEntry {
        name: name.to_string(),
        slot: cfg
            .slot
            .clone()
            .unwrap_or_else(|| object_name(&["confluo", &cfg.database, name])),
        publication: cfg
            .publication
            .clone()
            .unwrap_or_else(|| object_name(&["confluo", name])),
        patterns: entry.tables.clone(),
        catalog,
        schema,
        parallelism: entry.parallelism.unwrap_or(4),
        state_dir: project.state_dir(),
        history: entry.scd_type == ScdType::Type2,
        cfg,
    })
}

/// The change-capture settings of a `mode: cdc` entry over MySQL / MariaDB.
pub fn mysql_entry(
    project: &Project,
    name: &str,
    entry: &IngestConfig,
    cfg: MysqlConfig,
    catalog: String,
    schema: String,
) -> MysqlCdcEntry {
    MysqlCdcEntry {
        name: name.to_string(),
        patterns: entry.tables.clone(),
        catalog,
        schema,
        parallelism: entry.parallelism.unwrap_or(4),
        state_dir: project.state_dir(),
        history: entry.scd_type == ScdType::Type2,
        cfg,
    }
}

/// A change-capture entry of any source.
#[derive(Debug, Clone, Copy)]
pub enum Capture<'a> {
    /// PostgreSQL logical replication.
    Postgres(&'a CdcEntry),
    /// MySQL / MariaDB binary log.
    Mysql(&'a MysqlCdcEntry),
}

/// Prints what a run did.
pub fn print_report(name: &str, r: &CdcReport) {
    for (table, rows) in &r.copied {
        println!("{name}: copied {table}: {} rows", count(*rows));
    }
    println!(
        "{name}: applied {} transactions, {} changes in {} batches ({} inserted, {} updated, {} deleted); source confirmed at {}",
        count(r.transactions),
        count(r.changes),
        count(r.batches),
        count(r.inserted),
        count(r.updated),
        count(r.deleted),
        if r.confirmed_lsn.is_empty() {
            "-"
        } else {
            &r.confirmed_lsn
        }
    );
}

/// Runs one entry; returns its report.
pub async fn run_entry(
    lh: &Lakehouse,
    entry: Capture<'_>,
    opts: &CdcRunOptions,
) -> Result<CdcReport, CliError> {
    let stream = StreamOptions {
        continuous: opts.continuous,
        interval: opts.interval,
        ..Default::default()
    };
    let stop = stream.stop.clone();
    if opts.continuous {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let hidden = opts.quiet || opts.json;
    let multi = MultiProgress::with_draw_target(if hidden {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let bar_style =
        ProgressStyle::with_template("  copy {prefix:<28} {bar:24} {msg}").expect("valid template");
    let line = multi.add(ProgressBar::new_spinner());
    line.set_style(ProgressStyle::with_template("  {spinner} {msg}").expect("valid template"));
    line.enable_steady_tick(Duration::from_millis(200));
    let mut bars: std::collections::HashMap<String, ProgressBar> = Default::default();
    let json = opts.json;
    let continuous = opts.continuous;
    let mut totals = (0u64, 0u64);
    let mut on_progress = |p: Progress| match p {
        Progress::CopyStarted { table, estimate } => {
            let bar = multi.insert_before(&line, ProgressBar::new(estimate.unwrap_or(0).max(1)));
            bar.set_style(bar_style.clone());
            bar.set_prefix(table.clone());
            bars.insert(table, bar);
        }
        Progress::CopyRows { table, rows } => {
            if let Some(b) = bars.get(&table) {
                if rows > b.length().unwrap_or(0) {
                    b.set_length(rows);
                }
                b.set_position(rows);
                b.set_message(format!("{} rows", count(rows)));
            }
        }
        Progress::CopyDone { table, rows } => {
            if let Some(b) = bars.remove(&table) {
                b.set_length(rows.max(1));
                b.finish_with_message(format!("{} rows copied", count(rows)));
            }
        }
        Progress::Batch(b) => {
            totals.0 += b.transactions;
            totals.1 += b.changes;
            let rate = if b.seconds > 0.0 {
                b.changes as f64 / b.seconds
            } else {
                0.0
            };
            line.set_message(format!(
                "{} transactions, {} changes applied ({}/s) · at {} · behind {} KiB, {:.1} s",
                count(totals.0),
                count(totals.1),
                count(rate as u64),
                b.lsn,
                b.lag_bytes >> 10,
                b.lag_seconds
            ));
            if json && continuous {
                println!("{}", serde_json::to_string(&b).unwrap_or_default());
            }
        }
        Progress::Idle { lag_bytes } => {
            line.set_message(format!(
                "caught up: {} transactions, {} changes applied · {} KiB of WAL not for these tables",
                count(totals.0),
                count(totals.1),
                lag_bytes >> 10
            ));
        }
        Progress::Warning(w) => {
            // Not on a terminal the bars are hidden, and so is what they print.
            if hidden || multi.is_hidden() {
                eprintln!("warning: {w}");
            } else {
                let _ = multi.println(format!("  warning: {w}"));
            }
        }
    };
    let result = match entry {
        Capture::Postgres(e) => e.run(lh, &stream, &mut on_progress).await,
        Capture::Mysql(e) => e.run(lh, &stream, &mut on_progress).await,
    };
    line.finish_and_clear();
    Ok(result?)
}
