//! Broker restarts and ingest restarts: nothing published while ingest can take it is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use test_support::{Broker, BrokerOptions, Collector, Publisher, QoS};

use crate::helpers::{TestIngest, WAIT, is_aggregate, latest, reading, readings_topic};

#[tokio::test]
async fn broker_killed_and_restarted_mid_stream_ingest_reconnects_and_counts_everything_after() {
    let mut broker = Broker::start().await;
    let ingest = TestIngest::start(&broker, &[]).await;

    // A stream into A1/1 that keeps going while the broker dies and comes back.
    let running = Arc::new(AtomicBool::new(true));
    let stream = tokio::spawn({
        let running = Arc::clone(&running);
        let port = broker.port();
        async move {
            let mut publisher = Publisher::connect(port).await;
            let mut sent = 0_u64;
            while running.load(Ordering::Relaxed) {
                // Errors while the broker is down are expected: only the count after matters.
                let _ = publisher
                    .publish(
                        &readings_topic("A1"),
                        QoS::AtLeastOnce,
                        false,
                        reading(1, 1.0),
                    )
                    .await;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sent
        }
    });
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    collector
        .wait_for(|m| latest(m, "aggregates/A1/1").is_some(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));

    broker.kill().await;
    ingest.wait_health(503).await;
    broker.restart().await;
    ingest.wait_ready().await;

    // Every QoS 1 reading published after the restart is counted.
    let after: u32 = 300;
    let mut publisher = Publisher::connect(broker.port()).await;
    let messages = (0..after).map(|i| (readings_topic("A1"), reading(2, f64::from(i) + 0.5)));
    publisher
        .publish_all(QoS::AtLeastOnce, messages, WAIT)
        .await
        .unwrap();
    let sum: f64 = (0..after).map(|i| f64::from(i) + 0.5).sum();
    let late = Collector::start(broker.port(), &["aggregates/#"]).await;
    late.wait_for(
        |m| latest(m, "aggregates/A1/2").is_some_and(|m| is_aggregate(m, u64::from(after), sum)),
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", ingest.process.logs(), broker.log()));
    // The stream's key is live again too.
    let before = late
        .latest("aggregates/A1/1")
        .and_then(|m| m.json().ok())
        .and_then(|j| j["count"].as_u64())
        .unwrap_or(0);
    late.wait_for(
        |m| {
            latest(m, "aggregates/A1/1")
                .and_then(|m| m.json().ok())
                .and_then(|j| j["count"].as_u64())
                .is_some_and(|c| c > before)
        },
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    running.store(false, Ordering::Relaxed);
    let sent = stream.await.unwrap();
    assert!(sent > 0);
}

#[tokio::test]
async fn readings_published_while_ingest_is_stopped_are_counted_when_it_returns() {
    let broker = Broker::start().await;
    let mut first = TestIngest::start(&broker, &[]).await;
    let client_id = first.client_id.clone();
    let status = first.process.terminate().await;
    assert!(status.success(), "{status:?}\n{}", first.process.logs());

    // Readings sent while no ingest runs: the broker queues them in ingest's session.
    let n: u32 = 200;
    let mut publisher = Publisher::connect(broker.port()).await;
    let messages = (0..n).map(|i| (readings_topic("Q1"), reading(0, f64::from(i % 5) * 1.1)));
    publisher
        .publish_all(QoS::AtLeastOnce, messages, WAIT)
        .await
        .unwrap();
    let sum: f64 = (0..n).map(|i| f64::from(i % 5) * 1.1).sum();

    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let second = TestIngest::start_with_id(&broker, &client_id, &[]).await;
    collector
        .wait_for(
            |m| latest(m, "aggregates/Q1/0").is_some_and(|m| is_aggregate(m, u64::from(n), sum)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.process.logs()));
}

#[tokio::test]
async fn retained_aggregates_of_a_previous_run_are_emptied_and_cleared_on_schedule() {
    let broker = Broker::start().await;
    let flags = [
        "--window-seconds",
        "2",
        "--window-key-idle-ttl-seconds",
        "1",
    ];
    let mut first = TestIngest::start(&broker, &flags).await;
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    publisher
        .publish_all(
            QoS::AtLeastOnce,
            [(readings_topic("O1"), reading(5, 3.0))],
            WAIT,
        )
        .await
        .unwrap();
    collector
        .wait_for(
            |m| latest(m, "aggregates/O1/5").is_some_and(|m| is_aggregate(m, 1, 3.0)),
            WAIT,
        )
        .await
        .unwrap();
    // Stopped before the reading expires: the broker keeps the aggregate with count 1.
    first.process.kill().await;

    // A new process (own session, no queued readings) never saw that reading, yet the
    // retained aggregate must not keep showing it: empty after the window, then cleared.
    let second = TestIngest::start(&broker, &flags).await;
    collector
        .wait_for(
            |m| {
                let o1: Vec<_> = m.iter().filter(|m| m.topic == "aggregates/O1/5").collect();
                o1.iter().any(|m| is_aggregate(m, 0, 0.0))
                    && o1.last().is_some_and(|m| m.payload.is_empty())
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.process.logs()));
}

#[tokio::test]
async fn a_broker_that_lost_the_session_gets_the_subscription_again() {
    // No persistence: after the restart the broker knows nothing of ingest's session.
    let mut broker = Broker::start_with(BrokerOptions {
        persistence: false,
        ..BrokerOptions::default()
    })
    .await;
    let ingest = TestIngest::start(&broker, &[]).await;
    broker.kill().await;
    ingest.wait_health(503).await;
    broker.restart().await;
    ingest.wait_health(200).await;
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    publisher
        .publish_all(
            QoS::AtLeastOnce,
            [(readings_topic("R1"), reading(1, 6.0))],
            WAIT,
        )
        .await
        .unwrap();
    collector
        .wait_for(
            |m| latest(m, "aggregates/R1/1").is_some_and(|m| is_aggregate(m, 1, 6.0)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    // Both the input connection's first connection and the one after the restart found no
    // session.
    let input = format!(
        "connected to the MQTT broker session_present=false client_id={} ",
        ingest.client_id
    );
    assert_eq!(
        ingest.process.stderr().matches(&input).count(),
        2,
        "{}",
        ingest.process.logs()
    );
}
