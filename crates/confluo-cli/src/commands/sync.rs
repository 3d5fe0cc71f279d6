//! `confluo sync [ENTRY]`: managed ingestion. Each `ingest:` entry of `confluo.yaml` keeps
//! one lakehouse table per source table. In `mode: snapshot` a sync reads a consistent
//! snapshot of every selected table and replaces each lakehouse table in one Delta overwrite
//! commit that records the source position.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use confluo_connectors::postgres::{
    SnapshotInfo, SnapshotRequest, TableId, resolve_tables, snapshot,
};
use confluo_connectors::registry::Connection;
use confluo_core::project::{INGEST_KEYS, IngestConfig, IngestMode};
use confluo_core::{Project, suggest};
use confluo_lakehouse::Lakehouse;
use confluo_lakehouse::lakehouse::current_user;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use super::connections::{connection, postgres_config};
use super::snapshot_writer::{Landing, print_tables, write_snapshot};
use super::{CmdResult, Context};
use crate::progress::count;
use crate::report::CliError;

/// Source connections used when an entry does not say.
pub(super) const DEFAULT_PARALLELISM: usize = 4;

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
    #[arg(long, conflicts_with = "continuous")]
    status: bool,
    /// With `--continuous`: how long to wait between polls when there is nothing new.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
}

/// One lakehouse table written by a PostgreSQL sync.
pub type SyncedTable = super::snapshot_writer::SyncedTable<TableId>;

/// What a snapshot sync did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// The entry's name.
    pub entry: String,
    /// The source connection.
    pub connection: String,
    /// The source instant every table was read at.
    pub snapshot: SnapshotInfo,
    /// The tables, in source order.
    pub tables: Vec<SyncedTable>,
    /// Wall time.
    pub seconds: f64,
}

/// Runs `confluo sync`.
pub async fn run(ctx: &Context, args: SyncArgs) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    if args.status {
        return status(&lh, args.entry.as_deref(), args.json).await;
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
        let conn = connection(&project, &entry.connection)?;
        let opts = super::sync_cdc::CdcRunOptions {
            continuous: args.continuous,
            interval: args.interval,
            json: args.json,
            quiet: ctx.quiet,
        };
        if conn.is_stream() {
            let report = super::sync_stream::run_entry(&lh, name, entry, &conn, &opts).await?;
            if args.json {
                cdc_reports.push(json!({"entry": name, "mode": "stream", "report": report}));
            } else {
                super::sync_stream::print_report(name, &report);
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
        let mysql = match conn {
            Connection::Mysql(cfg) => Some(cfg),
            _ => None,
        };
        if entry.mode == IngestMode::Cdc {
            let (catalog, schema) = target_schema(&lh, name, &entry.schema)?;
            ensure_schema(&lh, &catalog, &schema).await?;
            let report = match mysql {
                Some(cfg) => {
                    let cdc =
                        super::sync_cdc::mysql_entry(&project, name, entry, cfg, catalog, schema);
                    super::sync_cdc::run_entry(&lh, super::sync_cdc::Capture::Mysql(&cdc), &opts)
                        .await?
                }
                None => {
                    let cfg = postgres_config(&project, &entry.connection)?;
                    let cdc = super::sync_cdc::entry(&project, name, entry, cfg, catalog, schema)?;
                    super::sync_cdc::run_entry(&lh, super::sync_cdc::Capture::Postgres(&cdc), &opts)
                        .await?
                }
            };
            if args.json {
                cdc_reports.push(json!({"entry": name, "mode": "cdc", "report": report}));
            } else {
                super::sync_cdc::print_report(name, &report);
            }
            continue;
        }
        // MySQL / MariaDB snapshot entries are synced by their own module.
        if let Some(cfg) = mysql {
            let report =
                super::mysql::sync_snapshot(&cfg, &lh, name, entry, ctx.quiet || args.json).await?;
            if args.json {
                cdc_reports.push(json!(report));
            } else {
                super::mysql::print_report(&report);
            }
            continue;
        }
        let report =
            sync_snapshot(&project, &lh, name, entry, None, ctx.quiet || args.json).await?;
        if !args.json {
            print_report(&report);
        }
        reports.push(report);
    }
    if args.json {
        let mut all: Vec<serde_json::Value> = reports.iter().map(|r| json!(r)).collect();
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

fn print_report(r: &SyncReport) {
    let rows: u64 = r.tables.iter().map(|t| t.rows).sum();
    println!(
        "Synced `{}` from connection `{}`: {} table{}, {} rows in {:.2} s (snapshot {}, LSN {})",
        r.entry,
        r.connection,
        r.tables.len(),
        if r.tables.len() == 1 { "" } else { "s" },
        count(rows),
        r.seconds,
        r.snapshot.pg_snapshot,
        r.snapshot.wal_lsn
    );
    print_tables(&r.tables, "±infinity or NaN");
}

/// Copies a consistent snapshot of the entry's tables into the lakehouse: one table per
/// source table, each replaced in one Delta overwrite commit whose `commitInfo` records
/// `confluo.source` (connection, table, snapshot, LSN, rows). With `snapshot_id`, reads
/// that exported snapshot (e.g. a replication slot's) instead of taking a new one.
pub async fn sync_snapshot(
    project: &Project,
    lh: &Lakehouse,
    entry_name: &str,
    entry: &IngestConfig,
    snapshot_id: Option<String>,
    quiet: bool,
) -> Result<SyncReport, CliError> {
    let started = Instant::now();
    let cfg = postgres_config(project, &entry.connection)?;
    let (catalog, schema) = target_schema(lh, entry_name, &entry.schema)?;
    ensure_schema(lh, &catalog, &schema).await?;
    let mut conn = cfg.connect().await?;
    let tables = resolve_tables(&mut conn, &cfg, &entry.tables).await?;
    let _ = sqlx::Connection::close(conn).await;
    // Validate every table's types before touching the lakehouse.
    for t in &tables {
        t.arrow_schema(&cfg)?;
    }
    let order: Vec<TableId> = tables.iter().map(|t| t.id.clone()).collect();
    let request = SnapshotRequest {
        tables,
        parallelism: entry.parallelism.unwrap_or(DEFAULT_PARALLELISM).max(1),
        snapshot_id,
    };
    let snap = snapshot(&cfg, request).await?;
    let info = snap.info.clone();
    let tables = write_snapshot(
        lh,
        snap,
        &order,
        Landing {
            catalog: &catalog,
            schema: &schema,
            table_name: &|t: &TableId| t.name.clone(),
            comment: &|t: &TableId| {
                format!(
                    "{t} from connection `{}` (database {})",
                    cfg.name, cfg.database
                )
            },
            source: &|t| {
                json!({
                    "connection": cfg.name,
                    "type": "postgres",
                    "database": cfg.database,
                    "table": t.table.to_string(),
                    "entry": entry_name,
                    "snapshot": info.pg_snapshot,
                    "lsn": info.wal_lsn,
                    "rows": t.rows,
                })
            },
            quiet,
        },
    )
    .await?;
    Ok(SyncReport {
        entry: entry_name.to_string(),
        connection: cfg.name.clone(),
        snapshot: info,
        tables,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A progress bar for one table's copy (rows against the estimate when there is one).
pub(super) fn table_bar(
    m: &MultiProgress,
    table: &dyn std::fmt::Display,
    estimate: Option<u64>,
) -> ProgressBar {
    let bar = match estimate.filter(|e| *e > 0) {
        Some(n) => {
            let b = ProgressBar::new(n);
            if let Ok(s) = ProgressStyle::with_template(
                "{spinner} {prefix:30} [{bar:30}] {human_pos}/~{human_len} rows, {per_sec} ({elapsed})",
            ) {
                b.set_style(s.progress_chars("=> "));
            }
            b
        }
        None => {
            let b = ProgressBar::no_length();
            if let Ok(s) = ProgressStyle::with_template(
                "{spinner} {prefix:30} {human_pos} rows, {per_sec} ({elapsed})",
            ) {
                b.set_style(s);
            }
            b
        }
    };
    let bar = m.add(bar);
    bar.set_prefix(table.to_string());
    bar.enable_steady_tick(Duration::from_millis(125));
    bar
}

/// The entry's target `catalog.schema`.
pub(super) fn target_schema(
    lh: &Lakehouse,
    entry: &str,
    text: &str,
) -> Result<(String, String), CliError> {
    let parts = confluo_core::ident::split_parts(text).map_err(|e| {
        anyhow::anyhow!("ingest entry `{entry}`: `schema: {text}` is not a schema name: {e}")
    })?;
    match parts.as_slice() {
        [s] => Ok((lh.default_catalog().to_string(), s.as_str().to_string())),
        [c, s] => Ok((c.as_str().to_string(), s.as_str().to_string())),
        _ => Err(anyhow::anyhow!(
            "ingest entry `{entry}`: `schema: {text}` has too many parts; write `schema` or `catalog.schema`"
        )
        .into()),
    }
}

/// Creates the target schema when its catalog exists and it does not.
pub(super) async fn ensure_schema(
    lh: &Lakehouse,
    catalog: &str,
    schema: &str,
) -> Result<(), CliError> {
    let ms = lh.metastore();
    if ms.get_catalog(catalog).await?.is_some() && ms.get_schema(catalog, schema).await?.is_none() {
        ms.create_schema(catalog, schema, None, Some(&current_user()), true)
            .await?;
    }
    lh.require_schema(catalog, schema).await?;
    Ok(())
}
