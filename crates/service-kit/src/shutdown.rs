//! SIGINT and SIGTERM, the same for every binary: the first starts a clean stop, a second one
//! exits at once (status 130) for an operator who does not want to wait for the drain.
//!
//! The handlers are installed when these functions are called, not when their future is first
//! polled, so a signal that arrives during start-up is not lost (nor kills the process with
//! the default action before the service could stop cleanly).

use std::future::Future;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Exit status after a second signal: 128 + SIGINT, what shells report for an interrupt.
const EXIT_SECOND_SIGNAL: i32 = 130;

/// Installed SIGINT and SIGTERM handlers.
#[derive(Debug)]
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Installs both handlers now.
    ///
    /// # Errors
    /// When the handlers cannot be installed (no Tokio runtime with signals enabled).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// A future that resolves with the name of the first SIGINT or SIGTERM, for a `select!`
/// (the load test stops its run with it).
///
/// # Errors
/// When the handlers cannot be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str> + Send> {
    let mut signals = Signals::install()?;
    Ok(async move { signals.recv().await })
}

/// A token cancelled on the first SIGINT or SIGTERM (logged); the second signal exits the
/// process at once with status 130. Every long-running loop of a service selects on it.
///
/// # Errors
/// When the handlers cannot be installed.
pub fn shutdown_token() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut signals = Signals::install()?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = signals.recv().await;
        tracing::info!(signal = name, "shutting down");
        cancel.cancel();
        let name = signals.recv().await;
        tracing::warn!(
            signal = name,
            "second signal: exiting without a clean shutdown"
        );
        std::process::exit(EXIT_SECOND_SIGNAL);
    });
    Ok(token)
}
