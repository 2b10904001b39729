//! SIGINT and SIGTERM start the graceful shutdown; a second signal exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` on the first SIGINT or SIGTERM; exits with status 130 on the second.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn cancel_on_signal(shutdown: CancellationToken) -> std::io::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        for round in 0.. {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            if round == 0 {
                tracing::info!(signal = name, "shutting down");
                shutdown.cancel();
            } else {
                tracing::warn!(
                    signal = name,
                    "second signal: exiting without a clean shutdown"
                );
                std::process::exit(130);
            }
        }
    });
    Ok(())
}
