//! `confluo sync [ENTRY]`: managed ingestion. Each `ingest:` entry of `confluo.yaml` keeps
//! one lakehouse table per source table (databases: `mode: snapshot` or `mode: cdc`) or per
//! stream. The engine lives in `confluo_pipelines::managed`; this module picks the entries,
//! shows their progress and prints what they did.

mod cdc;
mod display;
mod stream;

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use confluo_connectors::registry::{self, Connection};
use confluo_core::project::{INGEST_KEYS, IngestConfig, IngestMode};
use confluo_core::suggest;
use confluo_lakehouse::Lakehouse;
use confluo_pipelines::managed::capture::Progress;
use confluo_pipelines::managed::mysql_cdc::MysqlCdcEntry;
use confluo_pipelines::managed::postgres_cdc::CdcEntry;
use confluo_pipelines::managed::snapshot::{self, MysqlReport, PostgresReport, SnapshotReport};
use confluo_pipelines::managed::{ensure_schema, target_schema};
use serde_json::json;

use super::{CmdResult, Context};
use crate::progress::count;
use display::{RunDisplay, print_tables};

/// How a run goes and reports.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Keep running until Ctrl-C or SIGTERM.
    pub continuous: bool,
    /// Poll interval when caught up.
    pub interval: Duration,
    /// One JSON object per batch (continuous) and a JSON summary.
    pub json: bool,
    /// No progress display.
    pub quiet: bool,
}

/// Arguments of `confluo sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The `ingest:` entry to sync (default: every entry).
    entry: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// `mode: cdc` entries: keep applying changes until Ctrl-C instead of stopping once
    /// caught up.
    #[arg(long)]
    continuous: bool,
    /// Print where each entry stands in its source (from the metastore) instead of syncing.
    #[arg(long, conflicts_with_all = ["continuous", "reset"])]
    status: bool,
    /// Forget what ENTRY recorded (its change-capture state and source position), so that
    /// its next sync copies its tables afresh; the lakehouse tables are kept.
    #[arg(long, requires = "entry", conflicts_with = "continuous")]
    reset: bool,
    /// With `--continuous`: how long to wait between polls when there is nothing new.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
}

/// Runs `confluo sync`.
pub async fn run(ctx: &Context, args: SyncArgs) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    if args.status {
        return status(&lh, args.entry.as_deref(), args.json).await;
    }
    if args.reset {
        return reset(&project, &lh, args.entry.as_deref().unwrap_or_default()).await;
    }
    let entries = &project.config.ingest;
    let selected: Vec<(&String, &IngestConfig)> = match &args.entry {
        Some(name) => match entries.get_key_value(name) {
            Some(e) => vec![e],
            None => {
                let near = suggest::nearest(name, entries.keys().map(String::as_str));
                return Err(anyhow::anyhow!(
                    "no ingest entry named `{name}` in confluo.yaml{}",
                    if near.is_empty() {
                        "\n  hint: entries live under `ingest:`".to_string()
                    } else {
                        suggest::hint(&near)
                    }
                )
                .into());
            }
        },
        None => entries.iter().collect(),
    };
    if selected.is_empty() {
        return Err(anyhow::anyhow!(
            "confluo.yaml has no `ingest:` entries\n  hint: add one, e.g.\n    ingest:\n      crm:\n        connection: crm\n        tables: [\"public.*\"]\n        schema: bronze"
        )
        .into());
    }
    let mut reports = Vec::new();
    let mut cdc_reports = Vec::new();
    for (name, entry) in selected {
        let conn = registry::named(&project.config.connections, &entry.connection)?;
        let opts = RunOptions {
            continuous: args.continuous,
            interval: args.interval,
            json: args.json,
            quiet: ctx.quiet,
        };
        if conn.is_stream() {
            let report = stream::run_entry(&lh, name, entry, &conn, &opts).await?;
            if args.json {
                cdc_reports.push(json!({"entry": name, "mode": "stream", "report": report}));
            } else {
                stream::print_report(name, &report);
            }
            continue;
        }
        if let Some(key) = entry.options.keys().next() {
            let near = suggest::nearest(key, INGEST_KEYS.iter().copied());
            return Err(anyhow::anyhow!(
                "ingest entry `{name}`: unknown key `{key}`{}",
                if near.is_empty() {
                    format!("\n  hint: valid keys are {}", INGEST_KEYS.join(", "))
                } else {
                    suggest::hint(&near)
                }
            )
            .into());
        }
        if entry.mode == IngestMode::Cdc {
            let (catalog, schema) = target_schema(&lh, name, &entry.schema)?;
            ensure_schema(&lh, &catalog, &schema).await?;
            let target = (catalog, schema);
            let report = match conn {
                Connection::Mysql(cfg) => {
                    let e = MysqlCdcEntry::new(name, entry, cfg, target, project.state_dir());
                    cdc::run_entry(&lh, cdc::Capture::Mysql(&e), &opts).await?
                }
                other => {
                    let cfg = other.into_postgres(&entry.connection)?;
                    let e = CdcEntry::new(name, entry, cfg, target, project.state_dir());
                    cdc::run_entry(&lh, cdc::Capture::Postgres(&e), &opts).await?
                }
            };
            if args.json {
                cdc_reports.push(json!({"entry": name, "mode": "cdc", "report": report}));
            } else {
                cdc::print_report(name, &report);
            }
            continue;
        }
        let mut display = RunDisplay::new(ctx.quiet || args.json, false);
        let mut show = |p: Progress| display.show(p);
        let report = match conn {
            Connection::Mysql(cfg) => {
                let r = snapshot::sync_mysql(&cfg, &lh, name, entry, &mut show).await;
                display.finish();
                let r = r?;
                if !args.json {
                    print_mysql_report(&r);
                }
                json!(r)
            }
            other => {
                let cfg = other.into_postgres(&entry.connection)?;
                let r = snapshot::sync_postgres(&cfg, &lh, name, entry, &mut show).await;
                display.finish();
                let r = r?;
                if !args.json {
                    print_postgres_report(&r);
                }
                json!(r)
            }
        };
        reports.push(report);
    }
    if args.json {
        let mut all = reports;
        all.extend(cdc_reports);
        let v = if all.len() == 1 && args.entry.is_some() {
            all.remove(0)
        } else {
            json!(all)
        };
        println!("{v}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `confluo sync --status`: each entry's typed source position, as the metastore records
/// it after every committed and acknowledged batch.
async fn status(lh: &Lakehouse, entry: Option<&str>, json: bool) -> CmdResult {
    let offsets: Vec<_> = lh
        .metastore()
        .source_offsets()
        .await?
        .into_iter()
        .filter(|o| entry.is_none_or(|e| e == o.entry))
        .collect();
    if json {
        println!("{}", serde_json::to_string(&offsets)?);
        return Ok(ExitCode::SUCCESS);
    }
    if offsets.is_empty() {
        println!("No entry has recorded a source position yet.");
    }
    for o in offsets {
        let at = serde_json::from_value::<confluo_core::source::Offset>(o.offset.clone())
            .map(|t| t.describe())
            .unwrap_or_else(|_| o.offset.to_string());
        let when = chrono::DateTime::from_timestamp_millis(o.updated_ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        println!("{}: {} at {at} (recorded {when})", o.entry, o.table);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_postgres_report(r: &PostgresReport) {
    let at = format!(
        "snapshot {}, LSN {}",
        r.snapshot.pg_snapshot, r.snapshot.wal_lsn
    );
    print_snapshot_report(r, &at, "±infinity or NaN");
}

fn print_mysql_report(r: &MysqlReport) {
    let s = &r.snapshot;
    let gtid = s.gtid_set.as_ref().map(|g| format!(", GTID {g}"));
    let exact = if s.exact { "" } else { ", approximate" };
    let at = format!("binlog {}{}{exact}", s.position(), gtid.unwrap_or_default());
    print_snapshot_report(r, &at, "zero dates, TIME beyond 24 h");
}

/// A snapshot sync's summary (`at`: the source position it read) and its tables.
fn print_snapshot_report<Id: std::fmt::Display, Info>(
    r: &SnapshotReport<Id, Info>,
    at: &str,
    why_null: &str,
) {
    let rows: u64 = r.tables.iter().map(|t| t.rows).sum();
    println!(
        "Synced `{}` from connection `{}`: {} table{}, {} rows in {:.2} s ({at})",
        r.entry,
        r.connection,
        r.tables.len(),
        if r.tables.len() == 1 { "" } else { "s" },
        count(rows),
        r.seconds,
    );
    print_tables(&r.tables, why_null);
}

/// `confluo sync ENTRY --reset`: forgets the entry's recorded state and position (in the
/// metastore, and the state file of versions before it moved there), so its next sync
/// starts afresh — a new slot or binlog position and a new copy of every table.
async fn reset(project: &confluo_core::Project, lh: &Lakehouse, entry: &str) -> CmdResult {
    if !project.config.ingest.contains_key(entry) {
        let near = suggest::nearest(entry, project.config.ingest.keys().map(String::as_str));
        return Err(anyhow::anyhow!(
            "no ingest entry named `{entry}` in confluo.yaml{}",
            suggest::hint(&near)
        )
        .into());
    }
    let store = confluo_pipelines::managed::state::Store::new(lh, &project.state_dir(), entry);
    let forgot = store.forget().await?;
    if forgot {
        println!(
            "Reset `{entry}`: its next sync starts afresh (the lakehouse tables are kept until then)."
        );
    } else {
        println!("`{entry}` had recorded nothing; nothing to reset.");
    }
    Ok(ExitCode::SUCCESS)
}
