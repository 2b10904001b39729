//! Prometheus metrics of the ingest service, served as text on `GET /metrics`.

use aggregator_core::RejectionReason;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Declares [`Metrics`] from one list: each field with its type, its name after the `ingest_`
/// prefix, and its help text, which is also its doc. The batch histogram (it has buckets) and
/// the per-reason rejection counters (one family, every reason up front) are added by hand.
macro_rules! metrics {
    ($($field:ident: $kind:ident = $name:literal, $help:literal;)+) => {
        /// Every metric the service updates. Cloning shares the underlying values.
        #[derive(Clone, Debug)]
        pub struct Metrics {
            $(#[doc = concat!($help, ".")]
            pub $field: $kind,)+
            /// Seconds spent aggregating one batch of messages, the window log's sync included.
            pub batch_seconds: Histogram,
            /// Rejections, one counter per reason in the order of [`RejectionReason::ALL`].
            rejected: [Counter; RejectionReason::COUNT],
        }

        impl Metrics {
            /// Creates the metrics and registers them in `registry` under the `ingest_` prefix.
            /// Every rejection reason is registered up front so dashboards see zeros, not gaps.
            pub fn register(registry: &mut Registry) -> Self {
                let registry = registry.sub_registry_with_prefix("ingest");
                $(let $field = $kind::default();
                registry.register($name, $help, $field.clone());)+
                let batch_seconds = Histogram::new(exponential_buckets(0.000_01, 2.5, 14));
                let help = "Time to aggregate one batch of incoming messages";
                registry.register("batch_processing_seconds", help, batch_seconds.clone());
                let family = Family::<ReasonLabel, Counter>::default();
                let rejected = RejectionReason::ALL
                    .map(|reason| family.get_or_create_owned(&[("reason", reason.as_str())]));
                registry.register("readings_rejected", "Rejected payloads by reason", family);
                let metrics = Metrics { $($field,)+ batch_seconds, rejected };
                metrics.subscription_qos.set(-1);
                metrics
            }
        }
    };
}

/// Label set of the rejection counter: `reason="too_large"` etc.
type ReasonLabel = [(&'static str, &'static str); 1];

metrics! {
    readings_received: Counter = "readings_received",
        "MQTT messages received on machines/+/scrap";
    readings_other_shard: Counter = "readings_other_shard",
        "Readings of machines another shard owns, dropped before parsing";
    readings_retained_ignored: Counter = "readings_retained_ignored",
        "Readings delivered with the retain flag (a stored copy, not a new reading) or empty (the clear of one), ignored";
    readings_duplicate: Counter = "readings_duplicate",
        "Readings whose (machine, id) was already counted within the window, dropped";
    subscription_qos: Gauge = "subscription_qos",
        "QoS the broker granted for the readings subscription (-1 until granted)";
    readings_accepted: Counter = "readings_accepted", "Readings accepted into a window";
    aggregates_published: Counter = "aggregates_published",
        "Aggregates and retained clears handed to the MQTT client";
    aggregates_republished: Counter = "aggregates_republished",
        "Aggregates published once more after their key went quiet (publish.again_after_ms)";
    dead_letters_dropped: Counter = "dead_letters_dropped",
        "Dead letters dropped because the outgoing MQTT queue was full";
    readings_dropped_at_shutdown: Counter = "readings_dropped_at_shutdown",
        "Readings received after shutdown began, not aggregated";
    broker_index: Gauge = "broker_index",
        "Position in the mqtt.host list of the broker the input connection uses (0: the first)";
    broker_connects: Counter = "broker_connects",
        "Successful connections to the MQTT broker (input and output connections)";
    subscriptions_refused: Counter = "mqtt_subscriptions_refused",
        "SUBACKs that refused the readings subscription; it is asked for again with a backoff";
    keys: Gauge = "keys", "(machine, scrap index) keys tracked";
    buffered_readings: Gauge = "buffered_readings", "Readings buffered in all windows";
    broker_connected: Gauge = "broker_connected",
        "1 while both connections to the MQTT broker are up";
    redeliveries_skipped: Counter = "redeliveries_skipped",
        "Redelivered MQTT messages skipped because their reading was already logged";
    readings_restored: Counter = "readings_restored",
        "Readings restored from the window log at start-up";
    log_segments: Gauge = "log_segments", "Segments of the window log on disk";
    alarms_raised: Gauge = "alarms_raised", "Alarms currently raised";
    alarm_raises: Counter = "alarm_raises",
        "Alarm raises published on alarms/{machineId}/{scrapIndex}";
    alarm_clears: Counter = "alarm_clears",
        "Alarm clears published on alarms/{machineId}/{scrapIndex}";
    trends_published: Counter = "trends_published", "Trend messages handed to the MQTT client";
    history_published: Counter = "history_published",
        "Minute buckets handed to the MQTT client on history/{machineId}/{scrapIndex}";
    history_open_buckets: Gauge = "history_open_buckets",
        "Minute buckets that can still change (not yet sent final)";
}

impl Metrics {
    /// The rejection counter of `reason`.
    pub fn rejected(&self, reason: RejectionReason) -> &Counter {
        &self.rejected[reason.index()]
    }
}

/// Renders `registry` in the Prometheus/OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
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
    fn every_reason_is_exported_before_any_rejection() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.rejected(RejectionReason::Late).inc();
        let text = render(&registry);
        for reason in RejectionReason::ALL {
            assert!(
                text.contains(&format!(
                    "ingest_readings_rejected_total{{reason=\"{}\"}}",
                    reason.as_str()
                )),
                "{reason}: {text}"
            );
        }
        assert!(text.contains("ingest_readings_rejected_total{reason=\"late\"} 1"));
        assert!(text.contains("ingest_readings_received_total 0"));
        assert!(text.contains("ingest_broker_connected 0"));
        assert!(text.contains("ingest_batch_processing_seconds_bucket"));
    }
}
