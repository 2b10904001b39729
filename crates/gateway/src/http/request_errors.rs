//! The log line of a malformed or broken HTTP request, rate-limited.
//!
//! actix-http logs every connection that ends in a parse error, an oversized head or an I/O
//! error as one ERROR line ("stream error: ..."), before any of the gateway's code sees the
//! request: anyone who can reach the port can write to the log as fast as they can connect.
//! Those are the clients' faults, not the gateway's. [`RequestErrorLog`] is a `tracing` layer
//! that suppresses those lines and writes instead at most one WARN line per interval, with the
//! last error and the number left out since the previous line.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use service_kit::LogLimit;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Where actix-http logs a failed connection.
const DISPATCHER_TARGET: &str = "actix_http::h1::dispatcher";
/// How actix-http's line for a failed connection begins.
const STREAM_ERROR: &str = "stream error: ";

/// A layer that turns actix-http's per-connection error lines into one WARN line per interval.
#[derive(Debug)]
pub struct RequestErrorLog {
    limit: Mutex<LogLimit>,
}

impl RequestErrorLog {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            limit: Mutex::new(LogLimit::new(interval)),
        }
    }
}

impl<S: Subscriber> Layer<S> for RequestErrorLog {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if *metadata.level() != Level::ERROR || metadata.target() != DISPATCHER_TARGET {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let Some(error) = message.0.strip_prefix(STREAM_ERROR) else {
            return true;
        };
        let now = tokio::time::Instant::now();
        // A poisoned lock only means another thread panicked while logging: keep counting.
        let admitted = self
            .limit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit_at(now);
        if let Some(left_out) = admitted {
            // Dispatched as any other line: the binary's subscriber is the global one, which
            // may be re-entered from here.
            tracing::warn!(
                target: "gateway::http",
                error,
                left_out,
                "malformed or broken HTTP request (one line per interval)"
            );
        }
        false
    }
}

/// The `message` field of an event, as text.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }
}
