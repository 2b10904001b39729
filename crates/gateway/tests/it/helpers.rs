//! `TestGateway` (the real `gateway` binary against a test broker) and `WsClient`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use test_support::{
    ServiceProcess, http_get, publish_retained, scrape_metrics, try_http_get, wait_until,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a gateway may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The `gateway` binary, running against a test broker, listening on a port of its choosing.
pub struct TestGateway {
    pub process: ServiceProcess,
    pub addr: SocketAddr,
}

impl TestGateway {
    /// Starts the gateway on `127.0.0.1:0` for the broker at `broker_port`, with extra flags.
    pub async fn start(broker_port: u16, extra_args: &[&str]) -> Self {
        Self::start_in(None, broker_port, extra_args).await
    }

    /// [`start`](Self::start), with the gateway's current directory set to `cwd` when given
    /// (through `sh -c 'cd DIR && exec gateway ...'`: the process is the gateway itself).
    pub async fn start_in(cwd: Option<&Path>, broker_port: u16, extra_args: &[&str]) -> Self {
        let env = [
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info,gateway=debug"),
            ("GATEWAY_MQTT_RECONNECT_MAX_MS", "500"),
        ];
        let binary = env!("CARGO_BIN_EXE_gateway");
        let (process, addr) = match cwd {
            None => {
                ServiceProcess::start_service(
                    binary,
                    "127.0.0.1",
                    broker_port,
                    extra_args,
                    env,
                    START_TIMEOUT,
                )
                .await
            }
            Some(dir) => {
                let port = broker_port.to_string();
                let dir = dir.to_string_lossy();
                let mut args = vec![
                    "-c",
                    r#"cd "$0" && exec "$@""#,
                    &dir,
                    binary,
                    "--mqtt-host",
                    "127.0.0.1",
                    "--mqtt-port",
                    &port,
                    "--listen",
                    "127.0.0.1:0",
                ];
                args.extend_from_slice(extra_args);
                let mut process = ServiceProcess::spawn("/bin/sh", args, env);
                let addr = process.wait_listening(START_TIMEOUT).await;
                addr.map(|addr| (process, addr))
            }
        }
        .unwrap_or_else(|e| panic!("{e}"));
        Self { process, addr }
    }

    /// Starts the gateway with default flags and waits until it is healthy and holds `keys`
    /// aggregates (the retained state published before has been replayed).
    pub async fn start_holding(broker_port: u16, keys: u64) -> Self {
        let gateway = Self::start(broker_port, &[]).await;
        gateway.wait_healthy().await;
        gateway.wait_keys(keys).await;
        gateway
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://127.0.0.1:PORT/ws{query}`.
    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/ws{query}", self.addr)
    }

    /// Waits until `/api/health` answers 200 (the broker link is up).
    pub async fn wait_healthy(&self) {
        let url = self.url("/api/health");
        wait_until(Duration::from_secs(15), "gateway health is 200", || {
            let url = url.clone();
            async move { matches!(try_http_get(&url).await, Ok((200, _))) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.process.logs()));
    }

    /// Waits until the gateway holds `keys` aggregates (the retained replay has arrived).
    pub async fn wait_keys(&self, keys: u64) {
        let url = self.url("/api/health");
        wait_until(
            Duration::from_secs(10),
            &format!("gateway holds {keys} keys"),
            || {
                let url = url.clone();
                async move {
                    matches!(try_http_get(&url).await, Ok((200, body))
                    if serde_json::from_str::<Value>(&body).is_ok_and(|v| v["keys"] == keys))
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.process.logs()));
    }

    /// `/api/health` status and body.
    pub async fn health(&self) -> (u16, Value) {
        let (status, body) = http_get(&self.url("/api/health")).await;
        (status, serde_json::from_str(&body).expect("health is JSON"))
    }

    /// `/api/aggregates` as JSON.
    pub async fn aggregates(&self) -> Value {
        let (status, body) = http_get(&self.url("/api/aggregates")).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("aggregates are JSON")
    }

    /// One sample from `/metrics` (`name` including `_total` for counters).
    pub async fn metric(&self, name: &str) -> f64 {
        let metrics = scrape_metrics(&self.url("/metrics"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        metrics
            .get(name, &[])
            .unwrap_or_else(|| panic!("metric {name} missing\n{metrics:?}"))
    }

    /// Waits until the metric equals `want`.
    pub async fn wait_metric(&self, name: &str, want: f64, timeout: Duration) {
        let ok = wait_until(timeout, name, || async { self.metric(name).await == want }).await;
        if let Err(e) = ok {
            let last = self.metric(name).await;
            panic!("{e}: last {last}, want {want}\n{}", self.process.logs());
        }
    }

    /// Resident memory of the gateway process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.process
            .rss()
            .unwrap_or_else(|e| panic!("{e}"))
            .current_kib()
    }
}

/// A WebSocket test client.
pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects without an Origin header.
    pub async fn connect(url: &str) -> Result<Self, tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self { ws })
    }

    /// Connects with an Origin header.
    pub async fn connect_with_origin(url: &str, origin: &str) -> Result<Self, tungstenite::Error> {
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("origin header value"));
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self { ws })
    }

    /// Connects with these headers added to the upgrade request (a name given twice is sent
    /// twice; `host` replaces the one from the URL).
    pub async fn connect_with_headers(
        url: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Self, tungstenite::Error> {
        let mut request = url.into_client_request()?;
        let map = request.headers_mut();
        for (name, value) in headers {
            let value = value.parse().expect("header value");
            if *name == "host" {
                map.insert(*name, value);
            } else {
                map.append(*name, value);
            }
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self { ws })
    }

    /// Connects with a 4 KiB socket receive buffer, so a client that does not read stalls
    /// the gateway's sends after little data instead of after megabytes of kernel buffers.
    pub async fn connect_small_buffer(addr: SocketAddr, url: &str) -> Result<Self, String> {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .set_recv_buffer_size(4096)
            .map_err(|e| e.to_string())?;
        let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { ws })
    }

    /// The client's own address.
    pub fn local_addr(&self) -> SocketAddr {
        match self.ws.get_ref() {
            MaybeTlsStream::Plain(stream) => stream.local_addr().expect("a connected socket"),
            _ => unreachable!("test clients speak plain TCP"),
        }
    }

    /// The next JSON frame (pings are answered and skipped).
    pub async fn next_json(&mut self, timeout: Duration) -> Result<Value, String> {
        let text = self.next_text(timeout).await?;
        serde_json::from_str(text.as_str()).map_err(|e| format!("frame is not JSON: {e}: {text}"))
    }

    /// The next text frame as it came (pings are answered and skipped).
    pub async fn next_text(&mut self, timeout: Duration) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| format!("no frame within {timeout:?}"))?;
            match message {
                Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("WebSocket error: {e}")),
                None => return Err("connection ended".into()),
            }
        }
    }

    /// The next frame of `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_json(left).await?;
            if frame["type"] == kind {
                return Ok(frame);
            }
        }
    }

    /// Reads until the server's Close frame and returns it.
    pub async fn next_close(&mut self, timeout: Duration) -> Result<Option<CloseFrame>, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| format!("no close frame within {timeout:?}"))?;
            match message {
                Some(Ok(Message::Close(frame))) => return Ok(frame),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("WebSocket error before close: {e}")),
                None => return Err("connection ended without a close frame".into()),
            }
        }
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: String) -> Result<(), tungstenite::Error> {
        self.ws.send(Message::text(text)).await
    }
}

/// The key of an aggregate or key object.
pub fn key_of(v: &Value) -> (String, u64) {
    (
        v["maschinenId"].as_str().expect("maschinenId").to_owned(),
        v["scrapIndex"].as_u64().expect("scrapIndex"),
    )
}

/// A client's view of the state, built from the frames it received.
#[derive(Debug, Default)]
pub struct View {
    pub aggregates: BTreeMap<(String, u64), Value>,
    pub status: Option<Value>,
}

impl View {
    /// Applies one frame; a snapshot's first part replaces the aggregates, its later parts
    /// add to them.
    pub fn apply(&mut self, frame: &Value) {
        match frame["type"].as_str() {
            Some("snapshot") => {
                if frame["part"] == 0 {
                    self.aggregates.clear();
                }
                let aggregates = frame["aggregates"].as_array().expect("snapshot aggregates");
                for a in aggregates {
                    self.aggregates.insert(key_of(a), a.clone());
                }
            }
            Some("update") => {
                for a in frame["aggregates"].as_array().expect("update aggregates") {
                    self.aggregates.insert(key_of(a), a.clone());
                }
            }
            Some("remove") => {
                for k in frame["keys"].as_array().expect("remove keys") {
                    self.aggregates.remove(&key_of(k));
                }
            }
            Some("status") => self.status = Some(frame.clone()),
            other => panic!("unknown frame type {other:?}: {frame}"),
        }
    }
}

/// An aggregate payload as ingest publishes it.
pub fn aggregate_json(machine: &str, index: u32, sum: f64, count: u64) -> String {
    let avg = if count == 0 {
        Value::Null
    } else {
        Value::from(sum / count as f64)
    };
    serde_json::json!({
        "maschinenId": machine,
        "scrapIndex": index,
        "sumLast60s": sum,
        "avgLast60s": avg,
        "count": count,
        "windowSeconds": 60,
        "timestamp": "2026-01-01T12:00:30.123Z",
    })
    .to_string()
}

/// Publishes each `(machine, index, sum, count)` retained on `aggregates/{machine}/{index}`, as
/// ingest does, and returns the payloads in the same order.
pub async fn retain_aggregates<const N: usize>(
    broker_port: u16,
    aggregates: [(&str, u32, f64, u64); N],
) -> [String; N] {
    let payloads =
        aggregates.map(|(machine, index, sum, count)| aggregate_json(machine, index, sum, count));
    for ((machine, index, ..), payload) in aggregates.iter().zip(&payloads) {
        let topic = format!("aggregates/{machine}/{index}");
        publish_retained(broker_port, &topic, payload.clone())
            .await
            .unwrap_or_else(|e| panic!("publishing {topic}: {e}"));
    }
    payloads
}

/// Fails unless this process may open `needed` file descriptors (a socket per client plus
/// slack), saying how to raise the limit.
pub fn require_fd_limit(needed: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        soft >= needed,
        "this test opens many WebSockets and needs `ulimit -n` >= {needed} (now {soft}); raise it, e.g. `ulimit -n 4096`"
    );
}
