//! Ctrl-C and SIGTERM as a stop request, shared by every long-running command (`sync
//! --continuous`, `jobs run`, `serve`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// A receiver that turns true at the first Ctrl-C or SIGTERM.
pub fn stop_requested() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let on_int = tx.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = on_int.send(true);
        }
    });
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate())
            && term.recv().await.is_some()
        {
            let _ = tx.send(true);
        }
    });
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
