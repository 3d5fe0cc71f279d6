//! `confluo ingest <path|glob> --into [catalog.]schema.table`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use super::{CmdResult, Context};
use crate::progress::IngestProgress;
use confluo_connectors::files::{ReadOptions, ScanProgress};
use confluo_lakehouse::IngestBuilder;
use confluo_lakehouse::delta::WriteMode;
use confluo_lakehouse::lakehouse::current_user;

/// Arguments of `confluo ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// A file, a folder, or a glob such as `data/**/*.csv`.
    path: String,
    /// The target table: `table`, `schema.table` or `catalog.schema.table`.
    #[arg(long, value_name = "TABLE")]
    into: String,
    /// csv, json, parquet or avro (default: from each file's name).
    #[arg(long)]
    format: Option<String>,
    /// append (default) adds new files; overwrite replaces the table's rows.
    #[arg(long, value_enum, default_value_t = Mode::Append)]
    mode: Mode,
    /// A reader option, as in read_files: `-o sep=;` `-o header=false` `-o multiLine=true`.
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Commit after about this many megabytes of input, so a long run keeps its progress
    /// (default 2048).
    #[arg(long, value_name = "MB")]
    commit_every_mb: Option<u64>,
    /// Parallel workers (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Append,
    Overwrite,
}

/// Runs the ingest with a progress bar and prints a summary.
pub async fn run(ctx: &Context, args: IngestArgs) -> CmdResult {
    let mut options = ReadOptions::default();
    if let Some(f) = &args.format {
        options.set("format", f)?;
    }
    for o in &args.options {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("option `{o}`: expected KEY=VALUE"))?;
        options.set(k.trim(), v)?;
    }
    let (_project, lh) = ctx.lakehouse().await?;
    let table = lh.resolve(&args.into)?;
    // A missing schema in an existing catalog is created: `--into bronze.orders` just works.
    if lh
        .metastore()
        .get_catalog(table.catalog.as_str())
        .await?
        .is_some()
        && lh
            .metastore()
            .get_schema(table.catalog.as_str(), table.schema.as_str())
            .await?
            .is_none()
    {
        lh.metastore()
            .create_schema(
                table.catalog.as_str(),
                table.schema.as_str(),
                None,
                Some(&current_user()),
                true,
            )
            .await?;
    }
    lh.require_schema(table.catalog.as_str(), table.schema.as_str())
        .await?;
    let progress = Arc::new(ScanProgress::default());
    let display = IngestProgress::new(progress.clone(), ctx.quiet || args.json);
    let mut builder = IngestBuilder::new(&lh, args.path.clone(), table.clone())
        .with_options(options)
        .with_mode(match args.mode {
            Mode::Append => WriteMode::Append,
            Mode::Overwrite => WriteMode::Overwrite,
        })
        .with_progress(progress.clone());
    if let Some(mb) = args.commit_every_mb {
        builder = builder.with_commit_bytes(mb.max(1) << 20);
    }
    if let Some(w) = args.workers {
        builder = builder.with_workers(w);
    }
    let shown = display.clone();
    let builder = builder.on_plan(move |plan| shown.start(plan.files, plan.bytes, plan.skipped));
    let result = builder.await;
    display.finish();
    let report = result?;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "table": report.table,
                "files_listed": report.files_listed,
                "files_skipped": report.files_skipped,
                "files_ingested": report.files_ingested,
                "bytes": report.bytes,
                "rows": report.rows,
                "rescued_rows": report.rescued,
                "versions": report.versions,
                "created": report.created,
                "new_columns": report.new_columns,
                "seconds": secs,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    if report.files_ingested == 0 {
        println!(
            "Nothing new to ingest into {}: all {} file{} already ingested.",
            report.table,
            report.files_skipped,
            if report.files_skipped == 1 {
                " was"
            } else {
                "s were"
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Ingested {} file{} ({}) into {}{}: {} rows in {:.2} s — {} rows/s, {}/s",
        report.files_ingested,
        if report.files_ingested == 1 { "" } else { "s" },
        crate::progress::bytes(report.bytes),
        report.table,
        if report.created { " (new table)" } else { "" },
        crate::progress::count(report.rows),
        secs,
        crate::progress::count((report.rows as f64 / secs) as u64),
        crate::progress::bytes((report.bytes as f64 / secs) as u64),
    );
    if report.files_skipped > 0 {
        println!(
            "  skipped {} file(s) already ingested",
            report.files_skipped
        );
    }
    if !report.new_columns.is_empty() {
        println!("  new columns: {}", report.new_columns.join(", "));
    }
    if report.rescued > 0 {
        println!(
            "  {} row{} had values that did not fit; they are kept in _rescued_data",
            crate::progress::count(report.rescued),
            if report.rescued == 1 { "" } else { "s" }
        );
    }
    println!(
        "  committed version{} {}",
        if report.versions.len() == 1 { "" } else { "s" },
        report
            .versions
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
