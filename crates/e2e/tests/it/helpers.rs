//! Starting a service binary against a test broker and waiting until it is ready.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use test_support::{ServiceProcess, service_binary, try_http_get, wait_until};

/// Generous bound for anything that should happen within a second on an idle machine: the
/// test machine is shared with other builds.
pub const WAIT: Duration = Duration::from_secs(30);

/// A service binary running against a test broker, with its HTTP address.
pub struct TestService {
    /// The child process.
    pub process: ServiceProcess,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
}

impl TestService {
    /// Starts `ingest` against the broker on `127.0.0.1:mqtt_port` with `extra` flags, and
    /// waits until `/health` is 200 (connected and subscribed).
    pub async fn ingest(mqtt_port: u16, extra: &[&str]) -> Self {
        let client_id = test_support::unique_client_id("e2e-ingest");
        let mut args = vec!["--mqtt-client-id", &client_id];
        args.extend_from_slice(extra);
        Self::start("ingest", mqtt_port, &args, "/health").await
    }

    /// Starts `gateway` against the broker on `127.0.0.1:mqtt_port` with `extra` flags, and
    /// waits until `/api/health` is 200 (connected to the broker).
    pub async fn gateway(mqtt_port: u16, extra: &[&str]) -> Self {
        Self::start("gateway", mqtt_port, extra, "/api/health").await
    }

    /// Starts the binary `name` on HTTP port 0 and waits until `health_path` answers 200.
    async fn start(name: &str, mqtt_port: u16, extra: &[&str], health_path: &str) -> Self {
        Self::start_at(name, "127.0.0.1", mqtt_port, extra, health_path).await
    }

    /// [`start`](Self::start) with `hosts` as `--mqtt-host` (a list is allowed; its entries
    /// without a port take `mqtt_port`).
    pub async fn start_at(
        name: &str,
        hosts: &str,
        mqtt_port: u16,
        extra: &[&str],
        health_path: &str,
    ) -> Self {
        let (process, addr) = ServiceProcess::start_service(
            service_binary(name),
            hosts,
            mqtt_port,
            extra,
            [("RUST_LOG", "info"), ("NO_COLOR", "1")],
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let service = Self {
            process,
            base_url: format!("http://{addr}"),
        };
        let url = service.url(health_path);
        wait_until(WAIT, &format!("{name} {health_path} is 200"), || async {
            matches!(try_http_get(&url).await, Ok((200, _)))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", service.process.logs()));
        service
    }

    /// `{base_url}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `GET /metrics` body.
    pub async fn metrics(&self) -> String {
        let (status, body) = test_support::http_get(&self.url("/metrics")).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// A reading for `machines/{machine}/scrap` with only the required fields.
pub fn reading(index: u32, value: f64) -> String {
    serde_json::json!({ "scrapIndex": index, "value": value }).to_string()
}

/// Relative closeness of the contract: 1e-9.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// `(machine, index)` -> `(sum, count)` of a list of objects with those fields (the gateway's
/// `/api/aggregates` with `sumLast60s`, the simulator's summary with `sum`).
///
/// # Panics
/// When `list` is not an array of such objects.
pub fn by_key(list: &Value, sum_field: &str) -> HashMap<(String, u64), (f64, u64)> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|k| {
            (
                (
                    k["maschinenId"].as_str().unwrap().to_owned(),
                    k["scrapIndex"].as_u64().unwrap(),
                ),
                (k[sum_field].as_f64().unwrap(), k["count"].as_u64().unwrap()),
            )
        })
        .collect()
}
