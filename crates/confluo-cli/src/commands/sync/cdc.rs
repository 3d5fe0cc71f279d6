//! `confluo sync` for `mode: cdc` entries: the initial copy with a progress bar per table,
//! then the change stream with a live line (transactions, changes per second, lag), until
//! caught up — or, with `--continuous`, until Ctrl-C or SIGTERM.

use confluo_lakehouse::Lakehouse;
use confluo_pipelines::managed::capture::{CdcReport, Progress, StreamOptions};
use confluo_pipelines::managed::mysql_cdc::MysqlCdcEntry;
use confluo_pipelines::managed::postgres_cdc::CdcEntry;

use super::RunOptions;
use super::display::RunDisplay;
use crate::progress::count;
use crate::report::CliError;
use crate::signals::watch_signals;

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
    opts: &RunOptions,
) -> Result<CdcReport, CliError> {
    let stream = StreamOptions {
        continuous: opts.continuous,
        interval: opts.interval,
        ..Default::default()
    };
    if opts.continuous {
        watch_signals(stream.stop.clone());
    }
    let mut display = RunDisplay::new(opts.quiet || opts.json, opts.json && opts.continuous);
    let mut show = |p: Progress| display.show(p);
    let result = match entry {
        Capture::Postgres(e) => e.run(lh, &stream, &mut show).await,
        Capture::Mysql(e) => e.run(lh, &stream, &mut show).await,
    };
    display.finish();
    Ok(result?)
}
