//! The optional bearer token: `/ws` and `/api/aggregates` answer 401 without it, take it as
//! a header (and `/ws` as `?token=`), while `/`, `/api/health` and `/metrics` stay open; the
//! token never appears in the log.

use std::time::Duration;

use test_support::Broker;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::helpers::{TestGateway, WsClient};

const TOKEN: &str = "Zq8-token-for-tests-1f3c";

async fn get(url: &str, bearer: Option<&str>) -> u16 {
    let client = reqwest::Client::new();
    let mut request = client.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("gateway answers")
        .status()
        .as_u16()
}

async fn upgrade_status(url: &str, bearer: Option<&str>) -> u16 {
    let mut request = url.into_client_request().expect("ws url");
    if let Some(token) = bearer {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP answer to the upgrade, got {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guards_ws_and_api_but_not_health_metrics_or_dashboard() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    // A trailing newline, as secret files usually have, is not part of the token.
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
    let gw = TestGateway::start(
        broker.port(),
        &[
            "--http-auth-token-file",
            token_file.to_str().unwrap(),
            "--http-static-dir",
            dir.path().to_str().unwrap(),
        ],
    )
    .await;
    gw.wait_healthy().await;

    let aggregates = gw.url("/api/aggregates");
    assert_eq!(get(&aggregates, None).await, 401);
    assert_eq!(get(&aggregates, Some("wrong")).await, 401);
    assert_eq!(get(&aggregates, Some(&TOKEN[..TOKEN.len() - 1])).await, 401);
    assert_eq!(get(&aggregates, Some(TOKEN)).await, 200);

    assert_eq!(upgrade_status(&gw.ws_url(""), None).await, 401);
    assert_eq!(upgrade_status(&gw.ws_url("?token=wrong"), None).await, 401);
    assert_eq!(upgrade_status(&gw.ws_url(""), Some("wrong")).await, 401);
    assert_eq!(upgrade_status(&gw.ws_url(""), Some(TOKEN)).await, 101);
    let mut browser = WsClient::connect(&gw.ws_url(&format!("?token={TOKEN}&machines=A1")))
        .await
        .expect("query token admits the upgrade");
    let snapshot = browser
        .next_of("snapshot", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(snapshot["type"], "snapshot");

    // 3 refused API requests and 3 refused upgrades.
    assert_eq!(gw.metric("gateway_refused_token_total").await, 6.0);
    for open in ["/api/health", "/metrics", "/"] {
        assert_eq!(get(&gw.url(open), None).await, 200, "{open}");
    }
    assert!(
        !gw.process.stderr().contains(TOKEN),
        "the token leaked into the log\n{}",
        gw.process.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_everything_stays_open() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &[]).await;
    gw.wait_healthy().await;
    assert_eq!(get(&gw.url("/api/aggregates"), None).await, 200);
    assert_eq!(upgrade_status(&gw.ws_url(""), None).await, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_password_and_token_never_reach_the_log() {
    // The test broker lets anyone in, so any login works; what matters is what gets logged.
    let broker = Broker::start().await;
    let password = "gw-broker-Pw-31f0";
    let gw = TestGateway::start(
        broker.port(),
        &[
            "--mqtt-username",
            "gateway",
            "--mqtt-password",
            password,
            "--http-auth-token",
            TOKEN,
        ],
    )
    .await;
    gw.wait_healthy().await;
    let logs = gw.process.stderr();
    assert!(logs.contains("user gateway with password"), "{logs}");
    assert!(!logs.contains(password), "password in the log\n{logs}");
    assert!(!logs.contains(TOKEN), "token in the log\n{logs}");
}
