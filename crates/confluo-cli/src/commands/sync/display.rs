//! How `confluo sync` shows a run: a bar per table being copied and a live line for the
//! change stream, both driven by the engine's typed [`Progress`] events; and how a
//! continuous run is stopped.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::Duration;

use confluo_pipelines::managed::capture::Progress;
use confluo_pipelines::managed::copy::CopiedTable;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::count;

/// The screen of one database entry's run.
pub struct RunDisplay {
    multi: MultiProgress,
    line: ProgressBar,
    bar_style: ProgressStyle,
    bars: HashMap<String, ProgressBar>,
    hidden: bool,
    /// Print each event (but row counts of copies) as a JSON line (continuous runs with
    /// `--json`).
    json_events: bool,
    transactions: u64,
    changes: u64,
}

impl RunDisplay {
    /// A display on stderr, or none when `hidden`.
    pub fn new(hidden: bool, json_events: bool) -> RunDisplay {
        let multi = MultiProgress::with_draw_target(if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(8)
        });
        let line = multi.add(ProgressBar::new_spinner());
        line.set_style(ProgressStyle::with_template("  {spinner} {msg}").expect("valid template"));
        line.enable_steady_tick(Duration::from_millis(200));
        RunDisplay {
            multi,
            line,
            bar_style: ProgressStyle::with_template(
                "  copy {prefix:<28} {bar:24} {msg} ({per_sec}, {elapsed})",
            )
            .expect("valid template"),
            bars: HashMap::new(),
            hidden,
            json_events,
            transactions: 0,
            changes: 0,
        }
    }

    /// Shows one event.
    pub fn show(&mut self, p: Progress) {
        if self.json_events && !matches!(p, Progress::CopyRows { .. }) {
            println!("{}", serde_json::to_string(&p).unwrap_or_default());
        }
        match p {
            Progress::CopyStarted { table, estimate } => {
                let bar = self
                    .multi
                    .insert_before(&self.line, ProgressBar::new(estimate.unwrap_or(0).max(1)));
                bar.set_style(self.bar_style.clone());
                bar.set_prefix(table.clone());
                self.bars.insert(table, bar);
            }
            Progress::CopyRows { table, rows } => {
                if let Some(b) = self.bars.get(&table) {
                    if rows > b.length().unwrap_or(0) {
                        b.set_length(rows);
                    }
                    b.set_position(rows);
                    b.set_message(format!("{} rows", count(rows)));
                }
            }
            Progress::CopyDone { table, rows } => {
                if let Some(b) = self.bars.remove(&table) {
                    b.set_length(rows.max(1));
                    b.finish_with_message(format!("{} rows copied", count(rows)));
                }
            }
            Progress::Batch(b) => {
                self.transactions += b.transactions;
                self.changes += b.changes;
                let rate = if b.seconds > 0.0 {
                    b.changes as f64 / b.seconds
                } else {
                    0.0
                };
                self.line.set_message(format!(
                    "{} transactions, {} changes applied ({}/s) · at {} · behind {} KiB, {:.1} s",
                    count(self.transactions),
                    count(self.changes),
                    count(rate as u64),
                    b.lsn,
                    b.lag_bytes >> 10,
                    b.lag_seconds
                ));
            }
            Progress::Idle { lag_bytes } => {
                self.line.set_message(format!(
                    "caught up: {} transactions, {} changes applied · {} KiB of WAL not for these tables",
                    count(self.transactions),
                    count(self.changes),
                    lag_bytes >> 10
                ));
            }
            Progress::Warning { message: w } => {
                // Not on a terminal the bars are hidden, and so is what they print.
                if self.hidden || self.multi.is_hidden() {
                    eprintln!("warning: {w}");
                } else {
                    let _ = self.multi.println(format!("  warning: {w}"));
                }
            }
        }
    }

    /// Clears the screen's live parts.
    pub fn finish(self) {
        self.line.finish_and_clear();
        for b in self.bars.values() {
            b.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// Prints each copied table and its notes; `why_null` says which values become null.
pub fn print_tables<Id: Display>(tables: &[CopiedTable<Id>], why_null: &str) {
    for t in tables {
        println!(
            "  {} -> {}: {} rows (version {}{})",
            t.source,
            t.table,
            count(t.rows),
            t.version,
            if t.created { ", new table" } else { "" }
        );
        for (col, n) in &t.nulled {
            println!(
                "    note: {} value{} of `{col}` ({why_null}) stored as null",
                count(*n),
                if *n == 1 { "" } else { "s" }
            );
        }
    }
}
