//! Several brokers in `--mqtt-host`: ingest and gateway listed `a,b` connect to a, and when a
//! dies they fail over to b and keep carrying readings to the dashboard.

use serde_json::Value;
use test_support::{
    Broker, Metrics, Publisher, QoS, http_get, try_http_get, unique_client_id, wait_until,
};

use crate::helpers::{TestService, WAIT, reading};

/// Waits until `service`'s `/metrics` says the broker at `index` of the list is in use and,
/// after that, `health` answers 200.
///
/// In this order: the index moves as soon as the old connection is found broken, before
/// the next broker is even tried. A 200 read before the index would be the old connection's
/// last answer, and a reading published then would reach the next broker before ingest
/// subscribed there.
async fn wait_on_broker(service: &TestService, health: &str, index: f64) {
    let health_url = format!("{}{health}", service.base_url);
    let metrics_url = format!("{}/metrics", service.base_url);
    let reached = wait_until(
        WAIT,
        &format!("{health} is 200 on broker {index}"),
        || async {
            let in_use = match try_http_get(&metrics_url).await {
                Ok((200, text)) => Metrics::parse(&text)
                    .samples()
                    .iter()
                    .any(|s| s.name.ends_with("_broker_index") && s.value == index),
                _ => false,
            };
            in_use && matches!(try_http_get(&health_url).await, Ok((200, _)))
        },
    )
    .await;
    if let Err(e) = reached {
        panic!("{e}\n{}", service.process.logs());
    }
}

/// The `sumLast60s` of `machine`'s index 1 in the gateway's `/api/aggregates`, if present.
async fn sum_of(gateway: &TestService, machine: &str) -> Option<f64> {
    let (status, body) = http_get(&format!("{}/api/aggregates", gateway.base_url)).await;
    assert_eq!(status, 200, "{body}");
    let all: Value = serde_json::from_str(&body).expect("aggregates are JSON");
    all.as_array()?
        .iter()
        .find(|a| a["maschinenId"] == machine && a["scrapIndex"] == 1)
        .and_then(|a| a["sumLast60s"].as_f64())
}

async fn publish(port: u16, machine: &str, value: f64) {
    let mut publisher = Publisher::connect(port).await;
    publisher
        .publish(
            &format!("machines/{machine}/scrap"),
            QoS::AtLeastOnce,
            false,
            reading(1, value),
        )
        .await
        .unwrap();
    publisher.flush(WAIT).await.unwrap();
}

async fn wait_sum(gateway: &TestService, ingest: &TestService, machine: &str, want: f64) {
    let reached = wait_until(WAIT, &format!("{machine} sums to {want}"), || async {
        sum_of(gateway, machine).await == Some(want)
    })
    .await;
    if let Err(e) = reached {
        panic!(
            "{e}\n--- ingest\n{}\n--- gateway\n{}",
            ingest.process.logs(),
            gateway.process.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_gateway_fail_over_to_the_next_broker_and_keep_working() {
    let mut a = Broker::start().await;
    let b = Broker::start().await;
    // The first entry takes --mqtt-port; the second names its own.
    let hosts = format!("127.0.0.1,127.0.0.1:{}", b.port());
    let client_id = unique_client_id("e2e-failover-ingest");
    let ingest = TestService::start_at(
        "ingest",
        &hosts,
        a.port(),
        &["--mqtt-client-id", &client_id],
        "/health",
    )
    .await;
    let gateway = TestService::start_at("gateway", &hosts, a.port(), &[], "/api/health").await;
    wait_on_broker(&ingest, "/health", 0.0).await;
    wait_on_broker(&gateway, "/api/health", 0.0).await;

    publish(a.port(), "F1", 2.0).await;
    wait_sum(&gateway, &ingest, "F1", 2.0).await;

    a.kill().await;
    wait_on_broker(&ingest, "/health", 1.0).await;
    wait_on_broker(&gateway, "/api/health", 1.0).await;
    assert!(
        ingest
            .process
            .logs()
            .contains("failing over to the next broker"),
        "{}",
        ingest.process.logs()
    );

    publish(b.port(), "F2", 3.0).await;
    wait_sum(&gateway, &ingest, "F2", 3.0).await;
}
