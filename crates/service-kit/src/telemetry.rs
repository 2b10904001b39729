//! Logging for every binary: `tracing` to stderr, filtered by `RUST_LOG` (with a default),
//! JSON lines when `LOG_FORMAT=json`, and the `log` records of dependencies (rumqttc) bridged
//! in. [`init_stderr`] is what a `main.rs` calls; [`subscriber`] takes any writer, so tests can
//! read what a service logs.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// `RUST_LOG` when it is set and valid, else `default` (an unset, empty or unparsable
/// `RUST_LOG` must not silence the service).
pub fn env_filter(default: &str) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("ignoring RUST_LOG={spec:?} ({e}); using {default:?}");
            EnvFilter::new(default)
        }),
        _ => EnvFilter::new(default),
    }
}

/// Builds the subscriber writing to `sink` (stderr in the binary, a buffer in tests).
pub fn subscriber<W>(filter: EnvFilter, json: bool, sink: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    // Colours only for a person at a terminal, never in files or JSON.
    let ansi = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        // A log line that cannot be written (the reader of stderr is gone) is dropped: the
        // fallback report would panic on the same stderr, in whatever task was logging.
        .log_internal_errors(false)
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

/// Installs the subscriber for a binary: stderr, `RUST_LOG` or `default_filter`, JSON when
/// `LOG_FORMAT=json`. Call once, first thing after the settings are known.
///
/// # Errors
/// When a global subscriber or logger is already installed.
pub fn init_stderr(default_filter: &str) -> Result<(), TelemetryError> {
    init(subscriber(
        env_filter(default_filter),
        json_requested(),
        std::io::stderr,
    ))
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A sink that keeps what is written, for assertions.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_carry_structured_fields() {
        let sink = Buffer::default();
        let subscriber = subscriber(EnvFilter::new("info"), true, sink.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(keys = 3, "retained replay complete");
            tracing::debug!("filtered out at info");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0]["fields"]["message"], "retained replay complete");
        assert_eq!(lines[0]["fields"]["keys"], 3);
    }
}
