//! Prometheus metrics of the historian, served as text on `GET /metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

service_kit::metrics! {
    /// Every metric the service updates. Cloning shares the underlying values.
    pub struct Metrics prefix "historian" {
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
        shifts_published: Counter = "shifts_published",
            "Messages published on the retained shifts/{machineId}/{scrapIndex}";
        commit_seconds: Histogram = "batch_commit_seconds", "Time to write and commit one batch",
            Histogram::new(exponential_buckets(0.000_1, 2.5, 14));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exported_with_the_prefix() {
        let metrics = Metrics::new();
        metrics.messages_invalid.inc();
        let text = metrics.render();
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
