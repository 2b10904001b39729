//! Prometheus metrics of the ingest service, served as text on `GET /metrics`.

use aggregator_core::RejectionReason;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set of the rejection counter: `reason="too_large"` etc.
type ReasonLabel = [(&'static str, &'static str); 1];

/// Every metric the service updates. Cloning shares the underlying values.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// MQTT messages received on `machines/+/scrap`.
    pub readings_received: Counter,
    /// Readings accepted into a window.
    pub readings_accepted: Counter,
    /// Rejections, one counter per reason in the order of [`RejectionReason::ALL`].
    rejected: [Counter; RejectionReason::COUNT],
    /// Aggregates (and retained clears) handed to the MQTT client.
    pub aggregates_published: Counter,
    /// Settled aggregates published once more (`republish_after_ms`).
    pub aggregates_republished: Counter,
    /// Dead letters dropped because the outgoing queue was full (they are best effort).
    pub dead_letters_dropped: Counter,
    /// Readings received after shutdown began, which are not aggregated.
    pub readings_dropped_at_shutdown: Counter,
    /// Successful connections to the broker (CONNACKs).
    pub broker_connects: Counter,
    /// SUBACKs that refused the readings subscription (it is asked for again).
    pub subscriptions_refused: Counter,
    /// Keys tracked.
    pub keys: Gauge,
    /// Readings buffered in all windows.
    pub buffered_readings: Gauge,
    /// 1 while connected to the broker, else 0.
    pub broker_connected: Gauge,
    /// Position in the `mqtt.host` list of the broker in use (0: the first).
    pub broker_index: Gauge,
    /// Seconds spent aggregating one batch of incoming messages.
    pub batch_seconds: Histogram,
    /// Redelivered messages skipped because their reading was already logged.
    pub redeliveries_skipped: Counter,
    /// Readings restored from the window log at start-up.
    pub readings_restored: Counter,
    /// Segments of the window log on disk.
    pub log_segments: Gauge,
    /// Alarms currently raised.
    pub alarms_raised: Gauge,
    /// Alarm raises published.
    pub alarm_raises: Counter,
    /// Alarm clears published.
    pub alarm_clears: Counter,
    /// Trend messages handed to the MQTT client.
    pub trends_published: Counter,
    /// Readings of machines another shard owns, dropped before parsing.
    pub readings_other_shard: Counter,
    /// Readings delivered with the retain flag (the broker's stored copy), ignored.
    pub readings_retained_ignored: Counter,
    /// Readings whose (machine, id) was already counted within the window, dropped.
    pub readings_duplicate: Counter,
    /// QoS the broker granted for the readings subscription (-1 until granted).
    pub subscription_qos: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` under the `ingest_` prefix.
    /// Every rejection reason is registered up front so dashboards see zeros, not gaps.
    pub fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("ingest");
        let rejected = Family::<ReasonLabel, Counter>::default();
        let metrics = Metrics {
            readings_received: Counter::default(),
            readings_accepted: Counter::default(),
            rejected: RejectionReason::ALL
                .map(|reason| rejected.get_or_create_owned(&[("reason", reason.as_str())])),
            aggregates_published: Counter::default(),
            aggregates_republished: Counter::default(),
            dead_letters_dropped: Counter::default(),
            readings_dropped_at_shutdown: Counter::default(),
            broker_connects: Counter::default(),
            subscriptions_refused: Counter::default(),
            broker_index: Gauge::default(),
            keys: Gauge::default(),
            buffered_readings: Gauge::default(),
            broker_connected: Gauge::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.000_01, 2.5, 14)),
            redeliveries_skipped: Counter::default(),
            readings_restored: Counter::default(),
            log_segments: Gauge::default(),
            alarms_raised: Gauge::default(),
            alarm_raises: Counter::default(),
            alarm_clears: Counter::default(),
            trends_published: Counter::default(),
            readings_other_shard: Counter::default(),
            readings_retained_ignored: Counter::default(),
            readings_duplicate: Counter::default(),
            subscription_qos: Gauge::default(),
        };
        metrics.subscription_qos.set(-1);
        registry.register(
            "readings_received",
            "MQTT messages received on machines/+/scrap",
            metrics.readings_received.clone(),
        );
        registry.register(
            "readings_other_shard",
            "Readings of machines another shard owns, dropped before parsing",
            metrics.readings_other_shard.clone(),
        );
        registry.register(
            "readings_retained_ignored",
            "Readings delivered with the retain flag (a stored copy, not a new reading), ignored",
            metrics.readings_retained_ignored.clone(),
        );
        registry.register(
            "readings_duplicate",
            "Readings whose (machine, id) was already counted within the window, dropped",
            metrics.readings_duplicate.clone(),
        );
        registry.register(
            "subscription_qos",
            "QoS the broker granted for the readings subscription (-1 until granted)",
            metrics.subscription_qos.clone(),
        );
        registry.register(
            "readings_accepted",
            "Readings accepted into a window",
            metrics.readings_accepted.clone(),
        );
        registry.register("readings_rejected", "Rejected payloads by reason", rejected);
        registry.register(
            "aggregates_published",
            "Aggregates and retained clears handed to the MQTT client",
            metrics.aggregates_published.clone(),
        );
        registry.register(
            "aggregates_republished",
            "Aggregates published once more after their key went quiet (republish_after_ms)",
            metrics.aggregates_republished.clone(),
        );
        registry.register(
            "dead_letters_dropped",
            "Dead letters dropped because the outgoing MQTT queue was full",
            metrics.dead_letters_dropped.clone(),
        );
        registry.register(
            "readings_dropped_at_shutdown",
            "Readings received after shutdown began, not aggregated",
            metrics.readings_dropped_at_shutdown.clone(),
        );
        registry.register(
            "broker_index",
            "Position in the mqtt.host list of the broker in use (0: the first)",
            metrics.broker_index.clone(),
        );
        registry.register(
            "broker_connects",
            "Successful connections to the MQTT broker",
            metrics.broker_connects.clone(),
        );
        registry.register(
            "mqtt_subscriptions_refused",
            "SUBACKs that refused the readings subscription; it is asked for again with a backoff",
            metrics.subscriptions_refused.clone(),
        );
        registry.register(
            "keys",
            "(machine, scrap index) keys tracked",
            metrics.keys.clone(),
        );
        registry.register(
            "buffered_readings",
            "Readings buffered in all windows",
            metrics.buffered_readings.clone(),
        );
        registry.register(
            "broker_connected",
            "1 while connected to the MQTT broker",
            metrics.broker_connected.clone(),
        );
        registry.register(
            "batch_processing_seconds",
            "Time to aggregate one batch of incoming messages",
            metrics.batch_seconds.clone(),
        );
        registry.register(
            "redeliveries_skipped",
            "Redelivered MQTT messages skipped because their reading was already logged",
            metrics.redeliveries_skipped.clone(),
        );
        registry.register(
            "readings_restored",
            "Readings restored from the window log at start-up",
            metrics.readings_restored.clone(),
        );
        registry.register(
            "log_segments",
            "Segments of the window log on disk",
            metrics.log_segments.clone(),
        );
        registry.register(
            "alarms_raised",
            "Alarms currently raised",
            metrics.alarms_raised.clone(),
        );
        registry.register(
            "alarm_raises",
            "Alarm raises published on alarms/{machineId}/{scrapIndex}",
            metrics.alarm_raises.clone(),
        );
        registry.register(
            "alarm_clears",
            "Alarm clears published on alarms/{machineId}/{scrapIndex}",
            metrics.alarm_clears.clone(),
        );
        registry.register(
            "trends_published",
            "Trend messages handed to the MQTT client",
            metrics.trends_published.clone(),
        );
        metrics
    }

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
