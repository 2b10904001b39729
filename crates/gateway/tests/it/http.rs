//! The plain HTTP side: dashboard files, the local Chart.js, metrics, and settings errors.

use std::time::Duration;

use test_support::{Broker, ServiceProcess, http_get};

use crate::helpers::TestGateway;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_dashboard_and_chart_js_but_not_node_modules() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>dash</title>",
    )
    .unwrap();
    std::fs::write(dir.path().join("app.js"), "console.log(1)").unwrap();
    let chart = dir.path().join("node_modules/chart.js/dist");
    std::fs::create_dir_all(&chart).unwrap();
    std::fs::write(chart.join("chart.umd.js"), "/* chart */").unwrap();
    std::fs::write(dir.path().join("node_modules/chart.js/package.json"), "{}").unwrap();
    let gw = TestGateway::start(
        broker.port(),
        &["--http-static-dir", dir.path().to_str().unwrap()],
    )
    .await;

    let (status, body) = http_get(&gw.url("/")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "<!doctype html><title>dash</title>")
    );
    assert_eq!(http_get(&gw.url("/app.js")).await.0, 200);
    assert_eq!(
        http_get(&gw.url("/vendor/chart.umd.js")).await,
        (200, "/* chart */".to_owned())
    );
    assert_eq!(
        http_get(&gw.url("/node_modules/chart.js/package.json"))
            .await
            .0,
        404
    );
    assert!(!gw.process.stderr().contains("Chart.js not found"));

    let (status, metrics) = http_get(&gw.url("/metrics")).await;
    assert_eq!(status, 200);
    for name in [
        "gateway_ws_clients",
        "gateway_ws_frames_sent_total",
        "gateway_ws_resyncs_total",
        "gateway_ws_slow_clients_dropped_total",
        "gateway_broker_connected",
        "gateway_keys",
        "gateway_mqtt_messages_received_total",
    ] {
        assert!(metrics.contains(name), "{name} missing\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_chart_js_is_a_warning_not_a_failure() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "x").unwrap();
    let gw = TestGateway::start(
        broker.port(),
        &["--http-static-dir", dir.path().to_str().unwrap()],
    )
    .await;
    assert!(gw.process.stderr().contains("Chart.js not found"));
    assert_eq!(http_get(&gw.url("/vendor/chart.umd.js")).await.0, 404);
    assert_eq!(http_get(&gw.url("/")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_setting_is_named_and_the_exit_code_is_not_zero() {
    let mut process = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_gateway"),
        ["--listen", "127.0.0.1:0"],
        [("GATEWAY_WS_MAX_CLIENTS", "0")],
    );
    let status = process.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(!status.success());
    assert!(
        process.stderr().contains("ws.max_clients"),
        "{}",
        process.logs()
    );
}

/// Sends `request` on a fresh connection and returns the status line of the answer.
async fn raw_status_line(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    // The gateway closes the connection after answering a malformed request.
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_a_few_warnings_not_an_error_each() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &[]).await;
    for _ in 0..50 {
        let status = raw_status_line(gw.addr, b"NOT HTTP AT ALL\r\n\r\n").await;
        assert!(status.starts_with("HTTP/1.1 400"), "{status:?}");
    }
    gw.wait_healthy().await;
    let logs = gw.process.stderr();
    let errors: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(r#""level":"ERROR""#))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("malformed or broken HTTP request"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_the_limits_gets_431() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &[]).await;
    let long = format!(
        "GET /api/health HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\n\r\n",
        "a".repeat(130 << 10)
    );
    let many = format!(
        "GET /api/health HTTP/1.1\r\nHost: gw\r\n{}\r\n",
        (0..100)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect::<String>()
    );
    for head in [long, many] {
        let status = raw_status_line(gw.addr, head.as_bytes()).await;
        assert!(status.starts_with("HTTP/1.1 431"), "{status:?}");
    }
    gw.wait_healthy().await;
}
