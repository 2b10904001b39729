//! Prometheus metrics of the gateway, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Every metric the gateway exports. Cloning a metric shares its value.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub clients: Gauge,
    /// Frames written to clients (each client's copy counts).
    pub frames_sent: Counter,
    /// Snapshots sent because a client fell too far behind.
    pub resyncs: Counter,
    /// Clients dropped because one send stalled for the whole client timeout.
    pub slow_clients_dropped: Counter,
    /// Clients closed because they did not answer pings.
    pub clients_timed_out: Counter,
    /// Upgrades refused because of their Origin.
    pub refused_origin: Counter,
    /// Upgrades refused because `max_clients` were connected.
    pub refused_capacity: Counter,
    /// Requests to `/ws`, `/api/aggregates` or `/api/alarms` refused for a missing or wrong bearer token.
    pub refused_token: Counter,
    /// 1 while connected to the broker.
    pub broker_connected: Gauge,
    /// Aggregates currently held.
    pub keys: Gauge,
    /// MQTT publishes received.
    pub messages_received: Counter,
    /// MQTT publishes ignored because their topic or payload could not be used.
    pub messages_invalid: Counter,
    /// Broker connection errors seen by the event loop.
    pub mqtt_errors: Counter,
    /// SUBACKs that refused some of the gateway's filters (asked again after a pause).
    pub subscriptions_refused: Counter,
    /// Position in the `mqtt.host` list of the broker in use (0: the first).
    pub broker_index: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the metrics and registers them under the `gateway_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gateway");
        let m = Self {
            registry: Registry::default(),
            clients: Gauge::default(),
            frames_sent: Counter::default(),
            resyncs: Counter::default(),
            slow_clients_dropped: Counter::default(),
            clients_timed_out: Counter::default(),
            refused_origin: Counter::default(),
            refused_capacity: Counter::default(),
            refused_token: Counter::default(),
            broker_connected: Gauge::default(),
            keys: Gauge::default(),
            messages_received: Counter::default(),
            messages_invalid: Counter::default(),
            mqtt_errors: Counter::default(),
            subscriptions_refused: Counter::default(),
            broker_index: Gauge::default(),
        };
        registry.register(
            "ws_clients",
            "Open WebSocket connections",
            m.clients.clone(),
        );
        registry.register(
            "ws_frames_sent",
            "Frames written to WebSocket clients",
            m.frames_sent.clone(),
        );
        registry.register(
            "ws_resyncs",
            "Snapshots sent to clients that fell behind",
            m.resyncs.clone(),
        );
        registry.register(
            "ws_slow_clients_dropped",
            "Clients dropped because a send stalled for the client timeout",
            m.slow_clients_dropped.clone(),
        );
        registry.register(
            "ws_clients_timed_out",
            "Clients closed for not answering pings",
            m.clients_timed_out.clone(),
        );
        registry.register(
            "ws_refused_origin",
            "WebSocket upgrades refused for their Origin",
            m.refused_origin.clone(),
        );
        registry.register(
            "refused_token",
            "Requests to /ws, /api/aggregates or /api/alarms refused for a missing or wrong bearer token",
            m.refused_token.clone(),
        );
        registry.register(
            "ws_refused_capacity",
            "WebSocket upgrades refused because max_clients were connected",
            m.refused_capacity.clone(),
        );
        registry.register(
            "broker_connected",
            "1 while the gateway is connected to the MQTT broker",
            m.broker_connected.clone(),
        );
        registry.register("keys", "Aggregates held", m.keys.clone());
        registry.register(
            "mqtt_messages_received",
            "MQTT publishes received",
            m.messages_received.clone(),
        );
        registry.register(
            "mqtt_messages_invalid",
            "MQTT publishes ignored for an unusable topic or payload",
            m.messages_invalid.clone(),
        );
        registry.register(
            "broker_index",
            "Position in the mqtt.host list of the broker in use (0: the first)",
            m.broker_index.clone(),
        );
        registry.register(
            "mqtt_errors",
            "MQTT connection errors",
            m.mqtt_errors.clone(),
        );
        registry.register(
            "mqtt_subscriptions_refused",
            "SUBACKs refusing some of the gateway's subscriptions, which it then asks for again",
            m.subscriptions_refused.clone(),
        );
        Self { registry, ..m }
    }

    /// The metrics in the Prometheus/OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        // A fmt::Error can only come from the writer, and a String never fails.
        let _ = encode(&mut out, &self.registry);
        out
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
