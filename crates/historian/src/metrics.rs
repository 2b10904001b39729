//! Prometheus metrics of the historian, served as text on `GET /metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Declares [`Metrics`] from one list: each field with its type, its name after the
/// `historian_` prefix, and its help text, which is also its doc. The commit histogram (it has
/// buckets) is added by hand.
macro_rules! metrics {
    ($($field:ident: $kind:ident = $name:literal, $help:literal;)+) => {
        /// Every metric the service updates. Cloning shares the underlying values.
        #[derive(Clone, Debug)]
        pub struct Metrics {
            $(#[doc = concat!($help, ".")]
            pub $field: $kind,)+
            /// Seconds to write and commit one batch.
            pub commit_seconds: Histogram,
        }

        impl Metrics {
            /// Creates the metrics and registers them in `registry` under `historian_`.
            pub fn register(registry: &mut Registry) -> Self {
                let registry = registry.sub_registry_with_prefix("historian");
                $(let $field = $kind::default();
                registry.register($name, $help, $field.clone());)+
                let commit_seconds = Histogram::new(exponential_buckets(0.000_1, 2.5, 14));
                let help = "Time to write and commit one batch";
                registry.register("batch_commit_seconds", help, commit_seconds.clone());
                Metrics { $($field,)+ commit_seconds }
            }
        }
    };
}

metrics! {
    messages_received: Counter = "messages_received", "MQTT messages received on history/+/+";
    messages_invalid: Counter = "messages_invalid",
        "Messages skipped as malformed (topic, JSON, key, values, size) and acknowledged";
    messages_expired: Counter = "messages_expired",
        "Buckets of minutes older than retention.minute_days, skipped and acknowledged";
    messages_stored: Counter = "messages_stored",
        "Messages acknowledged after the transaction holding them committed";
    minutes_written: Counter = "minutes_written",
        "Minute rows inserted or changed (a copy or an older revision changes none)";
    batches_committed: Counter = "batches_committed", "Transactions committed";
    store_errors: Counter = "store_errors", "Failed store writes, connections or pruning runs";
    store_available: Gauge = "store_available",
        "1 while the store takes writes, 0 while it is down or refuses them";
    minutes_pruned: Counter = "minutes_pruned", "Minute rows deleted by retention";
    hours_pruned: Counter = "hours_pruned", "Hourly rollups deleted by retention";
    broker_connected: Gauge = "broker_connected", "1 while the connection to the MQTT broker is up";
    broker_connects: Counter = "broker_connects", "Successful connections to the MQTT broker";
}

/// Renders `registry` in the Prometheus/OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(2048);
    // Writing into a String cannot fail; an Err would only come from a metric's encoder.
    if let Err(e) = encode(&mut out, registry) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exported_with_the_prefix() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.messages_invalid.inc();
        let text = render(&registry);
        assert!(
            text.contains("historian_messages_invalid_total 1"),
            "{text}"
        );
        assert!(text.contains("historian_store_available 0"), "{text}");
        assert!(
            text.contains("historian_batch_commit_seconds_bucket"),
            "{text}"
        );
    }
}
