//! Start-up, readiness, metrics and the graceful stop.

use test_support::{Broker, Collector, Publisher, QoS, ServiceProcess};

use crate::helpers::{TestIngest, WAIT, is_aggregate, latest, reading, readings_topic};

#[tokio::test]
async fn sigterm_flushes_pending_aggregates_publishes_offline_status_and_exits_zero() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["aggregates/#", "status/ingest"]).await;
    // A long interval holds the second change back until shutdown flushes it.
    let mut ingest = TestIngest::start(&broker, &["--publish-interval-ms", "600000"]).await;
    let online = collector
        .wait_for(|m| latest(m, "status/ingest").is_some(), WAIT)
        .await
        .unwrap();
    let status = latest(&online, "status/ingest").unwrap().json().unwrap();
    assert_eq!(status["online"], true);
    let started_at = status["startedAt"].as_str().unwrap().to_owned();

    let mut publisher = Publisher::connect(broker.port()).await;
    let topic = readings_topic("S1");
    publisher
        .publish_all(QoS::AtLeastOnce, [(topic.as_str(), reading(1, 2.0))], WAIT)
        .await
        .unwrap();
    collector
        .wait_for(
            |m| latest(m, "aggregates/S1/1").is_some_and(|m| is_aggregate(m, 1, 2.0)),
            WAIT,
        )
        .await
        .unwrap();
    publisher
        .publish_all(QoS::AtLeastOnce, [(topic.as_str(), reading(1, 3.0))], WAIT)
        .await
        .unwrap();
    // Readings are counted as soon as they are aggregated; the aggregate itself is held back.
    crate::helpers::wait_metric(&ingest, "ingest_readings_accepted_total 2").await;

    let exit = ingest.process.terminate().await;
    assert!(exit.success(), "{exit:?}\n{}", ingest.process.logs());
    let messages = collector
        .wait_for(
            |m| {
                latest(m, "aggregates/S1/1").is_some_and(|m| is_aggregate(m, 2, 5.0))
                    && latest(m, "status/ingest")
                        .and_then(|m| m.json().ok())
                        .is_some_and(|j| j["online"] == false)
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let offline = latest(&messages, "status/ingest").unwrap().json().unwrap();
    assert_eq!(offline["startedAt"], started_at.as_str());
    // Retained: a newcomer learns that ingest is offline.
    let late = Collector::start(broker.port(), &["status/ingest"]).await;
    let retained = late.wait_for(|m| !m.is_empty(), WAIT).await.unwrap();
    assert!(retained[0].retain);
    assert_eq!(retained[0].json().unwrap()["online"], false);
}

#[tokio::test]
async fn health_follows_the_broker_and_metrics_have_the_counters() {
    let mut broker = Broker::start().await;
    let ingest = TestIngest::start(&broker, &[]).await;
    let (status, body) = ingest.health().await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["mqtt"], "connected");

    let mut publisher = Publisher::connect(broker.port()).await;
    let messages = (0..3).map(|i| (readings_topic("H1"), reading(i, 1.0)));
    publisher
        .publish_all(QoS::AtLeastOnce, messages, WAIT)
        .await
        .unwrap();
    crate::helpers::wait_metric(&ingest, "ingest_readings_accepted_total 3").await;
    let metrics = ingest.metrics().await;
    for needle in [
        "ingest_readings_received_total 3",
        "ingest_readings_rejected_total{reason=\"too_large\"} 0",
        "ingest_readings_rejected_total{reason=\"too_many_keys\"} 0",
        "ingest_aggregates_published_total",
        "ingest_keys 3",
        "ingest_buffered_readings 3",
        "ingest_batch_processing_seconds_bucket",
        "ingest_broker_connected 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing in\n{metrics}");
    }

    broker.kill().await;
    ingest.wait_health(503).await;
    let (_, body) = ingest.health().await;
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["mqtt"], "disconnected");
    assert!(ingest.metrics().await.contains("ingest_broker_connected 0"));
    broker.restart().await;
    ingest.wait_ready().await;
}

#[tokio::test]
async fn health_is_503_until_the_broker_can_be_reached() {
    let mut broker = Broker::start().await;
    broker.kill().await;
    let ingest = TestIngest::spawn(broker.port(), &[]).await;
    let (status, _) = ingest.health().await;
    assert_eq!(status, 503);
    broker.restart().await;
    ingest.wait_ready().await;
}

#[tokio::test]
async fn an_invalid_setting_stops_the_start_and_is_named() {
    let mut process = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_ingest"),
        ["--window-seconds", "0", "--listen", "127.0.0.1:0"],
        [("INGEST_WINDOW_MAX_KEYS", "10")],
    );
    let status = process.wait_exit(WAIT).await.unwrap();
    assert!(!status.success());
    assert!(
        process.stderr().contains("window.seconds"),
        "{}",
        process.logs()
    );

    let mut process = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_ingest"),
        ["--listen", "127.0.0.1:0"],
        [("INGEST_PUBLISH_INTERVAL_MS", "soon")],
    );
    let status = process.wait_exit(WAIT).await.unwrap();
    assert!(!status.success());
    assert!(
        process.stderr().contains("publish.interval_ms"),
        "{}",
        process.logs()
    );
}

#[tokio::test]
async fn sigint_stops_cleanly_too() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["status/ingest"]).await;
    let mut ingest = TestIngest::start(&broker, &[]).await;
    let exit = ingest
        .process
        .terminate_with(nix::sys::signal::Signal::SIGINT, WAIT)
        .await;
    assert!(exit.success(), "{exit:?}\n{}", ingest.process.logs());
    collector
        .wait_for(
            |m| {
                latest(m, "status/ingest")
                    .and_then(|m| m.json().ok())
                    .is_some_and(|j| j["online"] == false)
            },
            WAIT,
        )
        .await
        .unwrap();
    assert!(
        ingest
            .process
            .stderr()
            .contains("disconnected from the MQTT broker")
    );
}

/// A broker that lost the retained online status (NATS 2.9 once acknowledged one without
/// storing it) gets it again: ingest republishes it every 30 s while connected.
#[tokio::test]
async fn the_online_status_is_published_again_after_the_broker_lost_it() {
    let broker = Broker::start().await;
    let ingest = TestIngest::start(&broker, &[]).await;
    let collector = Collector::start(broker.port(), &["status/ingest"]).await;
    collector
        .wait_for(|m| latest(m, "status/ingest").is_some(), WAIT)
        .await
        .unwrap();
    // The broker "loses" it: the retained copy is cleared.
    test_support::publish_retained(broker.port(), "status/ingest", "")
        .await
        .unwrap();
    collector
        .wait_for(
            |m| latest(m, "status/ingest").is_some_and(|m| m.payload.is_empty()),
            WAIT,
        )
        .await
        .unwrap();
    // One refresh period plus the usual margin.
    let refreshed = collector
        .wait_for(
            |m| {
                latest(m, "status/ingest")
                    .and_then(|m| m.json().ok())
                    .is_some_and(|j| j["online"] == true)
            },
            std::time::Duration::from_secs(30) + WAIT,
        )
        .await;
    refreshed.unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let late = Collector::start(broker.port(), &["status/ingest"]).await;
    let retained = late.wait_for(|m| !m.is_empty(), WAIT).await.unwrap();
    assert!(retained[0].retain);
    assert_eq!(retained[0].json().unwrap()["online"], true);
}
