//! The library API: `Application::from_config` binds port 0, `run` stops when its token fires.

use std::time::Duration;

use gateway::{Application, Settings};
use test_support::{Broker, free_port, http_get, try_http_get, wait_until};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_binds_port_zero_and_run_stops_on_the_token() {
    // A port nobody listens on: the gateway must come up and report itself degraded.
    let mut settings = Settings::default();
    settings.mqtt.host = "127.0.0.1".into();
    settings.mqtt.port = free_port();
    settings.http.listen = "127.0.0.1:0".into();
    let app = Application::from_config(settings.validate().unwrap()).unwrap();
    let port = app.port();
    assert_ne!(port, 0);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));

    let url = format!("http://127.0.0.1:{port}/api/health");
    wait_until(Duration::from_secs(10), "health answers", || {
        let url = url.clone();
        async move { try_http_get(&url).await.is_ok() }
    })
    .await
    .unwrap();
    let (status, body) = http_get(&url).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""status":"degraded""#), "{body}");

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run returns after the token fires")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(try_http_get(&url).await.is_err(), "the listener is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_gateway_follows_the_broker() {
    let broker = Broker::start().await;
    let mut settings = Settings::default();
    settings.mqtt.host = "127.0.0.1".into();
    settings.mqtt.port = broker.port();
    settings.http.listen = "127.0.0.1:0".into();
    let app = Application::from_config(settings.validate().unwrap()).unwrap();
    let hub = app.hub();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    wait_until(Duration::from_secs(10), "connected", || async {
        hub.health().is_ok()
    })
    .await
    .unwrap();
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert!(!hub.health().is_ok(), "disconnected after run returns");
}
