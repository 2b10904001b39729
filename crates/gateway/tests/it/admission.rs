//! Who may connect: the Origin rule and the client cap; and what happens to clients that
//! stop answering or send too much.

use std::time::Duration;

use test_support::Broker;
use tokio_tungstenite::tungstenite::{self, protocol::frame::coding::CloseCode};

use crate::helpers::{TestGateway, WsClient};

fn refused_status(result: Result<WsClient, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_upgrades_are_refused_with_403() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(
        broker.port(),
        &["--ws-allowed-origins", "https://wall.example"],
    )
    .await;
    let url = gw.ws_url("");

    let foreign = WsClient::connect_with_origin(&url, "http://evil.example").await;
    assert_eq!(refused_status(foreign), 403);
    let other_port = WsClient::connect_with_origin(&url, "http://127.0.0.1:1").await;
    assert_eq!(refused_status(other_port), 403);

    // Same host as the request's Host header, a listed origin, and no Origin at all pass.
    let same = format!("http://{}", gw.addr);
    let mut ok = WsClient::connect_with_origin(&url, &same).await.unwrap();
    assert_eq!(
        ok.next_json(Duration::from_secs(5)).await.unwrap()["type"],
        "snapshot"
    );
    WsClient::connect_with_origin(&url, "https://wall.example")
        .await
        .unwrap();
    WsClient::connect(&url).await.unwrap();
    assert_eq!(gw.metric("gateway_ws_refused_origin_total").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_rule_holds_against_rebinding_repeated_origins_and_other_schemes() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(
        broker.port(),
        &["--ws-allowed-origins", "https://dash.example"],
    )
    .await;
    let url = gw.ws_url("");
    let port = gw.addr.port();
    let own = format!("http://{}", gw.addr);
    let evil_host = format!("evil.example:{port}");
    let evil = format!("http://{evil_host}");
    let own_https = format!("https://{}", gw.addr);
    let localhost = format!("localhost:{port}");
    let localhost_origin = format!("http://{localhost}");
    let refused = [
        // DNS rebinding: the attacker's name points at the gateway; Host and Origin agree.
        vec![("host", evil_host.as_str()), ("origin", evil.as_str())],
        // Two Origin headers, the first one allowed.
        vec![("origin", own.as_str()), ("origin", evil.as_str())],
        vec![("origin", "https://dash.example"), ("origin", own.as_str())],
        // The gateway's own address with another scheme, and the listed origin with another.
        vec![("origin", own_https.as_str())],
        vec![("host", "dash.example"), ("origin", "http://dash.example")],
    ];
    let mut statuses = Vec::new();
    for headers in &refused {
        statuses.push(match WsClient::connect_with_headers(&url, headers).await {
            Ok(_) => 101,
            result => refused_status(result),
        });
    }
    assert_eq!(statuses, [403; 5], "{refused:?}");
    let allowed = [
        vec![("origin", own.as_str())],
        vec![
            ("host", localhost.as_str()),
            ("origin", localhost_origin.as_str()),
        ],
        // The listed public origin, whatever Host the proxy in front passes on.
        vec![
            ("host", evil_host.as_str()),
            ("origin", "https://dash.example"),
        ],
    ];
    for headers in &allowed {
        let mut client = WsClient::connect_with_headers(&url, headers)
            .await
            .unwrap_or_else(|e| panic!("{headers:?}: {e}"));
        let frame = client.next_json(Duration::from_secs(5)).await.unwrap();
        assert_eq!(frame["type"], "snapshot");
    }
    assert_eq!(
        gw.metric("gateway_ws_refused_origin_total").await,
        refused.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_max_clients_are_refused_with_503() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &["--ws-max-clients", "2"]).await;
    let url = gw.ws_url("");
    let mut first = WsClient::connect(&url).await.unwrap();
    let _second = WsClient::connect(&url).await.unwrap();
    assert_eq!(refused_status(WsClient::connect(&url).await), 503);
    assert_eq!(gw.metric("gateway_ws_refused_capacity_total").await, 1.0);

    // A place frees up when a client leaves.
    first.ws.close(None).await.unwrap();
    gw.wait_metric("gateway_ws_clients", 1.0, Duration::from_secs(5))
        .await;
    WsClient::connect(&url).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_pings_is_closed() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(
        broker.port(),
        &[
            "--ws-ping-interval-secs",
            "1",
            "--ws-client-timeout-secs",
            "2",
        ],
    )
    .await;
    // Never polled: tungstenite answers pings only while reading, so this client is silent.
    let _silent = WsClient::connect(&gw.ws_url("")).await.unwrap();
    // A client that reads answers pings and stays.
    let mut alive = WsClient::connect(&gw.ws_url("")).await.unwrap();
    let reader = tokio::spawn(async move {
        let _ = alive.next_close(Duration::from_secs(60)).await;
        alive
    });
    gw.wait_metric(
        "gateway_ws_clients_timed_out_total",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    gw.wait_metric("gateway_ws_clients", 1.0, Duration::from_secs(5))
        .await;
    assert!(!reader.is_finished(), "the client that answers pings stays");
    assert_eq!(gw.metric("gateway_ws_clients_timed_out_total").await, 1.0);
    reader.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_inbound_frames_close_the_client_with_1009() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &[]).await;
    let mut client = WsClient::connect(&gw.ws_url("")).await.unwrap();
    client.next_json(Duration::from_secs(5)).await.unwrap();
    client.send_text("x".repeat(64 * 1024)).await.unwrap();
    let close = client
        .next_close(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a close reason");
    assert_eq!(close.code, CloseCode::Size);
}
