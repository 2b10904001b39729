//! Starting ingest against a test broker, building payloads, and checking aggregates.

use std::time::{Duration, SystemTime};

use aggregator_core::Timestamp;
use test_support::{Broker, Message, ServiceProcess, try_http_get, unique_client_id, wait_until};

/// Generous bound for anything that should happen within a second on an idle machine: the
/// test machine is shared with other builds.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running ingest process and its HTTP address.
pub struct TestIngest {
    /// The child process.
    pub process: ServiceProcess,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The MQTT client id it runs with.
    pub client_id: String,
}

impl TestIngest {
    /// Starts ingest against `broker` with a fresh client id and `extra` flags, and waits until
    /// `/health` says it is connected and subscribed.
    pub async fn start(broker: &Broker, extra: &[&str]) -> Self {
        Self::start_with_id(broker, &unique_client_id("ingest"), extra).await
    }

    /// As [`TestIngest::start`] with the MQTT client id given (to resume a persistent session).
    pub async fn start_with_id(broker: &Broker, client_id: &str, extra: &[&str]) -> Self {
        let ingest = Self::spawn_with_id(broker.port(), client_id, extra).await;
        ingest.wait_ready().await;
        ingest
    }

    /// Starts the process with a fresh client id against the broker listener on
    /// `127.0.0.1:mqtt_port` (plain or TLS, as `extra` says) and waits until its HTTP server
    /// listens, not until it is ready.
    pub async fn spawn(mqtt_port: u16, extra: &[&str]) -> Self {
        Self::spawn_with_id(mqtt_port, &unique_client_id("ingest"), extra).await
    }

    /// As [`TestIngest::spawn`] with the MQTT client id given.
    async fn spawn_with_id(mqtt_port: u16, client_id: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "--mqtt-client-id",
            client_id,
            "--mqtt-reconnect-max-ms",
            "500",
        ];
        args.extend_from_slice(extra);
        let (process, addr) = ServiceProcess::start_service(
            env!("CARGO_BIN_EXE_ingest"),
            "127.0.0.1",
            mqtt_port,
            &args,
            [("RUST_LOG", "info"), ("NO_COLOR", "1")],
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        TestIngest {
            process,
            base_url: format!("http://{addr}"),
            client_id: client_id.to_owned(),
        }
    }

    /// Waits until `/health` answers 200.
    pub async fn wait_ready(&self) {
        self.wait_health(200).await;
    }

    /// Waits until `/health` answers `status`.
    pub async fn wait_health(&self, status: u16) {
        let url = format!("{}/health", self.base_url);
        wait_until(WAIT, &format!("ingest /health is {status}"), || async {
            try_http_get(&url).await.is_ok_and(|(s, _)| s == status)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.process.logs()));
    }

    /// `GET /health`: status and body.
    pub async fn health(&self) -> (u16, String) {
        test_support::http_get(&format!("{}/health", self.base_url)).await
    }

    /// `GET /metrics` body.
    pub async fn metrics(&self) -> String {
        let (status, body) = test_support::http_get(&format!("{}/metrics", self.base_url)).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// The ingest clock's idea of now, as the tests compute it.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// A reading for `machines/{machine}/scrap` with only the required fields.
pub fn reading(index: u32, value: f64) -> String {
    serde_json::json!({ "scrapIndex": index, "value": value }).to_string()
}

/// `machines/{machine}/scrap`.
pub fn readings_topic(machine: &str) -> String {
    format!("machines/{machine}/scrap")
}

/// True when `message` is an aggregate with exactly `count` readings summing to `sum`
/// (1e-9 relative), with the average and field names of the contract.
pub fn is_aggregate(message: &Message, count: u64, sum: f64) -> bool {
    let Ok(json) = message.json() else {
        return false;
    };
    let Some(got_count) = json["count"].as_u64() else {
        return false;
    };
    let Some(got_sum) = json["sumLast60s"].as_f64() else {
        return false;
    };
    let avg_ok = if count == 0 {
        json["avgLast60s"].is_null() && got_sum == 0.0
    } else {
        json["avgLast60s"]
            .as_f64()
            .is_some_and(|avg| close(avg, sum / count as f64))
    };
    got_count == count && close(got_sum, sum) && avg_ok
}

/// Relative closeness of the contract: 1e-9.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The latest message on `topic` in `messages`.
pub fn latest<'m>(messages: &'m [Message], topic: &str) -> Option<&'m Message> {
    messages.iter().rev().find(|m| m.topic == topic)
}

/// Waits until `/metrics` contains `needle` (e.g. `"ingest_readings_accepted_total 3"`).
pub async fn wait_metric(ingest: &TestIngest, needle: &str) {
    let url = format!("{}/metrics", ingest.base_url);
    wait_until(WAIT, &format!("/metrics contains {needle:?}"), || async {
        try_http_get(&url)
            .await
            .is_ok_and(|(_, body)| body.contains(needle))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
}
