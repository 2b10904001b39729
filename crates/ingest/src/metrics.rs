//! Prometheus metrics of the ingest service, served as text on `GET /metrics`.

use aggregator_core::RejectionReason;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::pipeline::sparkplug::SparkplugRejection;

/// Label set of the rejection counter: `reason="too_large"` etc.
type ReasonLabel = [(&'static str, &'static str); 1];

service_kit::metrics! {
    /// Every metric the service updates. Cloning shares the underlying values.
    pub struct Metrics prefix "ingest" {
        readings_received: Counter = "readings_received",
            "MQTT messages received on machines/+/scrap";
        readings_other_shard: Counter = "readings_other_shard",
            "Readings of machines another shard owns, dropped before parsing";
        readings_retained_ignored: Counter = "readings_retained_ignored",
            "Readings delivered with the retain flag (a stored copy, not a new reading) or empty (the clear of one), ignored";
        readings_duplicate: Counter = "readings_duplicate",
            "Readings whose (machine, id) was already counted within the window, dropped";
        subscription_qos: Gauge = "subscription_qos",
            "QoS the broker granted for the readings subscription (-1 until granted)", not_granted();
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
        sparkplug_messages: Counter = "sparkplug_messages",
            "Messages received on the Sparkplug B topics of the groups followed";
        sparkplug_rebirth_requests: Counter = "sparkplug_rebirth_requests",
            "Rebirth requests (NCMD Node Control/Rebirth) sent to edge nodes";
        sparkplug_duplicates: Counter = "sparkplug_duplicates",
            "Sparkplug messages whose sequence number was already taken, dropped";
        sparkplug_stale_deaths: Counter = "sparkplug_stale_deaths",
            "NDEATHs whose bdSeq is not that of the node's current birth, ignored";
        sparkplug_metrics_ignored: Counter = "sparkplug_metrics_ignored",
            "Sparkplug metrics whose name does not match sparkplug.metric_pattern";
        sparkplug_historical: Counter = "sparkplug_historical",
            "Historical Sparkplug metrics counted in their minute's history bucket only";
        sparkplug_historical_dropped: Counter = "sparkplug_historical_dropped",
            "Historical Sparkplug metrics whose minute was already final, dropped";
        sparkplug_states: Counter = "sparkplug_states", "Sparkplug host STATE messages read";
        sparkplug_nodes: Gauge = "sparkplug_nodes", "Sparkplug edge nodes remembered";
        sparkplug_offline_machines: Gauge = "sparkplug_offline_machines",
            "Machines whose Sparkplug edge node or device is dead";
        // The window log's sync included.
        batch_seconds: Histogram = "batch_processing_seconds",
            "Time to aggregate one batch of incoming messages",
            Histogram::new(exponential_buckets(0.000_01, 2.5, 14));
        rejections: Family<ReasonLabel, Counter> = "readings_rejected", "Rejected payloads by reason",
            every_reason();
    }
}

impl Metrics {
    /// The rejection counter of a refused Sparkplug message or metric.
    pub fn sparkplug_rejected(&self, why: SparkplugRejection) -> Counter {
        self.rejections
            .get_or_create_owned(&[("reason", why.as_str())])
    }

    /// The rejection counter of `reason`.
    pub fn rejected(&self, reason: RejectionReason) -> Counter {
        self.rejections
            .get_or_create_owned(&[("reason", reason.as_str())])
    }
}

/// -1 until the broker grants the subscription.
fn not_granted() -> Gauge {
    let gauge = Gauge::default();
    gauge.set(-1);
    gauge
}

/// Every rejection reason up front, so that dashboards see zeros, not gaps.
fn every_reason() -> Family<ReasonLabel, Counter> {
    let family = Family::default();
    for reason in RejectionReason::ALL {
        family.get_or_create_owned(&[("reason", reason.as_str())]);
    }
    for why in SparkplugRejection::ALL {
        family.get_or_create_owned(&[("reason", why.as_str())]);
    }
    family
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_exported_before_any_rejection() {
        let metrics = Metrics::new();
        metrics.rejected(RejectionReason::Late).inc();
        let text = metrics.render();
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
