//! The one place that listens to process signals.
//!
//! actix-web's own signal handling is turned off (`disable_signals`), so this
//! module alone decides what SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 mean.

use tokio::signal::unix::{Signal as UnixSignal, SignalKind, signal};

/// A signal bigpipe acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT or SIGTERM: graceful shutdown.
    Stop,
    /// SIGUSR1: reload the config.
    Reload,
    /// SIGUSR2: graceful shutdown for good (scale-down): static group members leave their
    /// groups instead of keeping their partitions for a restart.
    ScaleDown,
}

/// The installed handlers. Create once: a signal that arrives between two
/// [`Signals::next`] calls is kept, not lost.
#[derive(Debug)]
pub struct Signals {
    term: UnixSignal,
    int: UnixSignal,
    usr1: UnixSignal,
    usr2: UnixSignal,
}

impl Signals {
    /// Installs the handlers.
    ///
    /// # Errors
    /// When a handler cannot be installed.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.usr1.recv() => Signal::Reload,
            _ = self.usr2.recv() => Signal::ScaleDown,
        }
    }
}
