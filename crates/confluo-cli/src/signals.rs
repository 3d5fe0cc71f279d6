//! Ctrl-C and SIGTERM as a stop request, shared by every long-running command (`sync
//! --continuous`, `jobs run`, `serve`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// A receiver that turns true at the first Ctrl-C or SIGTERM. The handlers are installed
/// before it returns (not when a spawned task first runs), so a signal that arrives right
/// after is a stop request, never the default action that kills the process.
pub fn stop_requested() -> watch::Receiver<bool> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(false);
    for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
        let Ok(mut stream) = signal(kind) else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            if stream.recv().await.is_some() {
                let _ = tx.send(true);
            }
        });
    }
    rx
}

/// Sets `stop` at the first Ctrl-C or SIGTERM (for loops that poll a flag).
pub fn watch_signals(stop: Arc<AtomicBool>) {
    let mut rx = stop_requested();
    tokio::spawn(async move {
        if rx.wait_for(|v| *v).await.is_ok() {
            stop.store(true, Ordering::Relaxed);
        }
    });
}
