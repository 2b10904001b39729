//! Prometheus metrics of the gateway, served at `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

service_kit::metrics! {
    /// Every metric the gateway exports. Cloning a metric shares its value.
    pub struct Metrics prefix "gateway" {
        clients: Gauge = "ws_clients", "Open WebSocket connections";
        frames_sent: Counter = "ws_frames_sent", "Frames written to WebSocket clients";
        resyncs: Counter = "ws_resyncs", "Snapshots sent to clients that fell behind";
        slow_clients_dropped: Counter = "ws_slow_clients_dropped",
            "Clients dropped because a send stalled for the client timeout";
        clients_timed_out: Counter = "ws_clients_timed_out", "Clients closed for not answering pings";
        refused_origin: Counter = "ws_refused_origin", "WebSocket upgrades refused for their Origin";
        refused_token: Counter = "refused_token",
            "Requests to /ws or /api (but /api/health) refused for a missing or wrong bearer token";
        refused_capacity: Counter = "ws_refused_capacity",
            "WebSocket upgrades refused because max_clients were connected";
        broker_connected: Gauge = "broker_connected",
            "1 while the gateway is connected to the MQTT broker";
        keys: Gauge = "keys", "Aggregates held";
        messages_received: Counter = "mqtt_messages_received", "MQTT publishes received";
        messages_invalid: Counter = "mqtt_messages_invalid",
            "MQTT publishes ignored for an unusable topic or payload";
        stale_messages: Counter = "stale_messages",
            "Aggregates, alarms and trends ignored because the one held for their key is newer \
             (a late redelivery)";
        broker_index: Gauge = "broker_index",
            "Position in the mqtt.host list of the broker in use (0: the first)";
        mqtt_errors: Counter = "mqtt_errors", "MQTT connection errors";
        history_errors: Counter = "history_errors",
            "History requests the historian did not answer (unreachable or too slow)";
        subscriptions_refused: Counter = "mqtt_subscriptions_refused",
            "SUBACKs refusing some of the gateway's subscriptions, which it then asks for again";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_every_metric() {
        let m = Metrics::new();
        m.frames_sent.inc_by(3);
        m.clients.set(2);
        let text = m.render();
        for name in [
            "gateway_ws_clients 2",
            "gateway_ws_frames_sent_total 3",
            "gateway_ws_resyncs_total 0",
            "gateway_ws_slow_clients_dropped_total 0",
            "gateway_broker_connected 0",
            "gateway_keys 0",
            "gateway_mqtt_messages_received_total 0",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
