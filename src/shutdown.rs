//! The one place that listens to process signals.

use tokio::signal::unix::{SignalKind, signal};

/// A signal bigpipe acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT or SIGTERM: graceful shutdown.
    Stop,
}

/// Waits for SIGINT or SIGTERM.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub async fn wait() -> std::io::Result<Signal> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => Ok(Signal::Stop),
        _ = int.recv() => Ok(Signal::Stop),
    }
}
