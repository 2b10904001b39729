//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), JSON lines when
//! `LOG_FORMAT=json`, and the `log` records of dependencies (rumqttc) bridged in.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Builds the subscriber writing to `sink` (stderr in the binary, a buffer in tests).
pub fn subscriber<W>(default_filter: &str, json: bool, sink: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only for a person at a terminal, never in files or JSON.
    let ansi = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(sink);
    if json {
        Box::new(builder.json().finish())
    } else {
        Box::new(builder.finish())
    }
}

/// Installs `subscriber` globally and bridges `log` into it. Call once, first thing.
///
/// # Errors
/// When a global subscriber or logger is already installed.
pub fn init(subscriber: Box<dyn Subscriber + Send + Sync>) -> Result<(), TelemetryError> {
    tracing_log::LogTracer::init()?;
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(())
}

/// Whether `LOG_FORMAT=json` asks for JSON lines.
pub fn json_requested() -> bool {
    std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
}

/// Logging could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The `log` bridge is already set.
    #[error("cannot install the log bridge: {0}")]
    Log(#[from] tracing_log::log::SetLoggerError),
    /// A tracing subscriber is already set.
    #[error("cannot install the tracing subscriber: {0}")]
    Tracing(#[from] tracing::subscriber::SetGlobalDefaultError),
}
