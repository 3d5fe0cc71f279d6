//! Progress bars and human-readable numbers.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use confluo_connectors::files::ScanProgress;

/// `1234567` as `1,234,567`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in KB, MB or GB (decimal units, as throughput is usually quoted).
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} KB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// A bar on screen and the task refreshing it.
type Running = (ProgressBar, tokio::task::JoinHandle<()>);

/// The live display of an ingest: bytes read against the total, rows, and throughput.
#[derive(Clone)]
pub struct IngestProgress {
    inner: Arc<Mutex<Option<Running>>>,
    progress: Arc<ScanProgress>,
    hidden: bool,
}

impl IngestProgress {
    /// A display reading `progress`; `hidden` turns it off.
    pub fn new(progress: Arc<ScanProgress>, hidden: bool) -> Self {
        IngestProgress {
            inner: Arc::new(Mutex::new(None)),
            progress,
            hidden,
        }
    }

    /// Starts the bar once the work is known.
    pub fn start(&self, files: usize, total_bytes: u64, _skipped: usize) {
        if self.hidden || files == 0 {
            return;
        }
        let bar =
            ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr_with_hz(8));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {bytes}/{total_bytes} {msg} ({elapsed})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        let progress = self.progress.clone();
        let b = bar.clone();
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            loop {
                let read = progress.bytes_read.load(Ordering::Relaxed);
                let rows = progress.rows.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                b.set_position(read);
                b.set_message(format!(
                    "{} rows, {} rows/s, {}/s, {}/{} files",
                    count(rows),
                    count((rows as f64 / secs) as u64),
                    bytes((read as f64 / secs) as u64),
                    progress.files_done.load(Ordering::Relaxed),
                    files
                ));
                tokio::time::sleep(Duration::from_millis(125)).await;
            }
        });
        *self.inner.lock().expect("progress lock") = Some((bar, ticker));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some((bar, ticker)) = self.inner.lock().expect("progress lock").take() {
            ticker.abort();
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers() {
        assert_eq!(super::count(1234567), "1,234,567");
        assert_eq!(super::count(12), "12");
        assert_eq!(super::bytes(750_300_000), "750.3 MB");
    }
}
