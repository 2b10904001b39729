//! Broker outages and shutdown, with the real binary.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use test_support::{Broker, publish_retained, try_http_get, wait_until};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{TestGateway, WsClient, retain_aggregates};

async fn wait_health(gw: &TestGateway, want: u16, timeout: Duration) {
    let url = gw.url("/api/health");
    wait_until(timeout, &format!("health is {want}"), || {
        let url = url.clone();
        async move { matches!(try_http_get(&url).await, Ok((status, _)) if status == want) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.process.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_the_broker_is_down_and_200_when_it_returns() {
    let mut broker = Broker::start().await;
    retain_aggregates(broker.port(), [("A1", 1, 5.0, 2)]).await;
    let gw = TestGateway::start_holding(broker.port(), 1).await;
    let mut client = WsClient::connect(&gw.ws_url("")).await.unwrap();
    assert_eq!(
        client.next_json(Duration::from_secs(5)).await.unwrap()["type"],
        "snapshot"
    );

    broker.kill().await;
    wait_health(&gw, 503, Duration::from_secs(15)).await;
    let (status, health) = gw.health().await;
    assert_eq!(status, 503);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["mqtt"], "disconnected");
    assert_eq!(
        health["keys"], 1,
        "the last known state is kept while the broker is away"
    );
    let status = client
        .next_of("status", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(status["mqtt"], "disconnected");
    assert_eq!(gw.metric("gateway_broker_connected").await, 0.0);

    broker.restart().await;
    wait_health(&gw, 200, Duration::from_secs(20)).await;
    let (_, health) = gw.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["mqtt"], "connected");
    let status = client
        .next_of("status", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(status["mqtt"], "connected");
    assert!(gw.process.stderr().contains("connected to the MQTT broker"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cleared_while_disconnected_are_removed_after_reconnect() {
    let mut broker = Broker::start().await;
    retain_aggregates(broker.port(), [("A1", 1, 5.0, 2), ("A1", 2, 5.0, 2)]).await;
    let gw = TestGateway::start_holding(broker.port(), 2).await;
    let mut client = WsClient::connect(&gw.ws_url("")).await.unwrap();
    client.next_json(Duration::from_secs(5)).await.unwrap();

    // The broker goes away; meanwhile (in its persisted state) A1/2 is cleared.
    broker.stop().await;
    wait_health(&gw, 503, Duration::from_secs(15)).await;
    broker.restart().await;
    // Clear it right after the restart: the gateway may or may not have reconnected yet, and
    // either way the key must go.
    publish_retained(broker.port(), "aggregates/A1/2", "")
        .await
        .unwrap();
    let remove = client
        .next_of("remove", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        remove["keys"],
        json!([{"maschinenId": "A1", "scrapIndex": 2}])
    );
    wait_health(&gw, 200, Duration::from_secs(20)).await;
    assert_eq!(gw.health().await.1["keys"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_close_frames_and_exits_zero() {
    let broker = Broker::start().await;
    let mut gw = TestGateway::start(broker.port(), &[]).await;
    gw.wait_healthy().await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = WsClient::connect(&gw.ws_url("")).await.unwrap();
        client.next_json(Duration::from_secs(5)).await.unwrap();
        clients.push(client);
    }
    gw.process.signal(Signal::SIGTERM).unwrap();
    for client in &mut clients {
        let close = client
            .next_close(Duration::from_secs(5))
            .await
            .unwrap()
            .expect("a close reason");
        assert_eq!(close.code, CloseCode::Away, "1001 going away");
    }
    let status = gw
        .process
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.process.logs()));
    assert!(
        status.success(),
        "exit status {status}\n{}",
        gw.process.logs()
    );
    let logs = gw.process.stderr();
    assert!(logs.contains("disconnected from the MQTT broker"), "{logs}");
    assert!(logs.contains("gateway stopped"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_the_gateway_too() {
    let broker = Broker::start().await;
    let mut gw = TestGateway::start(broker.port(), &[]).await;
    gw.wait_healthy().await;
    let status = gw
        .process
        .terminate_with(Signal::SIGINT, Duration::from_secs(10))
        .await;
    assert!(
        status.success(),
        "exit status {status}\n{}",
        gw.process.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_side_by_side() {
    let broker = Broker::start().await;
    let first = TestGateway::start(broker.port(), &[]).await;
    let second = TestGateway::start(broker.port(), &[]).await;
    first.wait_healthy().await;
    second.wait_healthy().await;
    let mut a = WsClient::connect(&first.ws_url("")).await.unwrap();
    let mut b = WsClient::connect(&second.ws_url("")).await.unwrap();
    a.next_json(Duration::from_secs(5)).await.unwrap();
    b.next_json(Duration::from_secs(5)).await.unwrap();
    retain_aggregates(broker.port(), [("R1", 1, 2.0, 1)]).await;
    for client in [&mut a, &mut b] {
        let update = client
            .next_of("update", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(update["aggregates"][0]["maschinenId"], "R1");
    }
    // Distinct client ids: neither was kicked off the broker by the other.
    assert_eq!(first.metric("gateway_mqtt_errors_total").await, 0.0);
    assert_eq!(second.metric("gateway_mqtt_errors_total").await, 0.0);
}

/// A log reader that went away (`gateway 2>&1 | head`) must not keep the gateway from
/// stopping: writing a log line into the closed pipe fails, and that failure must be ignored,
/// not reported by a panic in the task that handles the signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_gateway_whose_log_pipe_is_closed() {
    let port = test_support::free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--mqtt-port", &test_support::free_port().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let url = format!("http://127.0.0.1:{port}/api/health");
    wait_until(Duration::from_secs(20), "the gateway answers", || {
        let url = url.clone();
        async move { try_http_get(&url).await.is_ok() }
    })
    .await
    .unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the gateway stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}
