//! Readings leave the window without new input: the aggregate drops to sum 0, count 0,
//! avg null, soon after the expiry instant.

use std::time::Duration;

use aggregator_core::Timestamp;
use serde_json::json;
use test_support::{Broker, Collector, Publisher, QoS};

use crate::helpers::{TestIngest, WAIT, is_aggregate, latest, now, readings_topic};

#[tokio::test]
async fn expiry_without_new_input_gives_sum_zero_count_zero_avg_null() {
    let broker = Broker::start().await;
    let ingest = TestIngest::start(&broker, &["--window-seconds", "2"]).await;
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;

    // Explicit event times, so the expiry instant is known: the newest reading leaves the
    // window exactly 2 s after its time.
    let t0 = now();
    let t1 = t0.saturating_add(Duration::from_millis(300));
    let readings = [(t0, 1.5), (t1, 2.0)].map(|(t, v)| {
        (
            readings_topic("A1"),
            json!({"scrapIndex": 3, "value": v, "timestamp": t.to_rfc3339_millis()}).to_string(),
        )
    });
    publisher
        .publish_all(QoS::AtLeastOnce, readings, WAIT)
        .await
        .unwrap();
    let topic = "aggregates/A1/3";
    collector
        .wait_for(
            |m| {
                m.iter()
                    .any(|m| m.topic == topic && is_aggregate(m, 2, 3.5))
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    // The first reading expires alone, then the second: 3.5 -> 2.0 -> empty.
    let messages = collector
        .wait_for(
            |m| latest(m, topic).is_some_and(|m| is_aggregate(m, 0, 0.0)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    assert!(
        messages
            .iter()
            .any(|m| m.topic == topic && is_aggregate(m, 1, 2.0)),
        "the first expiry is published on its own"
    );
    let empty = latest(&messages, topic).unwrap().json().unwrap();
    assert_eq!(empty["sumLast60s"], 0.0);
    assert!(empty["avgLast60s"].is_null());
    assert_eq!(empty["windowSeconds"], 2);
    // The aggregate is stamped with the ingest clock when the expiry was published: at or
    // after the expiry instant, and soon after it (the contract says 250 ms; the margin is for
    // a shared, busy test machine).
    let stamped = Timestamp::parse_rfc3339(empty["timestamp"].as_str().unwrap()).unwrap();
    let expiry = Timestamp::from_unix_millis(t1.unix_millis())
        .unwrap()
        .saturating_add(Duration::from_secs(2));
    assert!(stamped >= expiry, "{stamped} before expiry {expiry}");
    assert!(
        stamped.duration_since(expiry) <= Duration::from_millis(750),
        "expiry published {:?} late",
        stamped.duration_since(expiry)
    );
}

#[tokio::test]
async fn an_idle_key_is_forgotten_and_its_retained_aggregate_cleared() {
    let broker = Broker::start().await;
    let ingest = TestIngest::start(
        &broker,
        &[
            "--window-seconds",
            "1",
            "--window-key-idle-ttl-seconds",
            "1",
        ],
    )
    .await;
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    publisher
        .publish_all(
            QoS::AtLeastOnce,
            [
                (readings_topic("I1"), crate::helpers::reading(1, 4.0)),
                (readings_topic("I2"), crate::helpers::reading(1, 1.0)),
            ],
            WAIT,
        )
        .await
        .unwrap();
    let topic = "aggregates/I1/1";
    // 4.0 -> empty window after 1 s -> forgotten 1 s later: an empty retained payload.
    let messages = collector
        .wait_for(
            |m| latest(m, topic).is_some_and(|m| m.payload.is_empty()),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let seen: Vec<_> = messages.iter().filter(|m| m.topic == topic).collect();
    assert!(is_aggregate(seen[0], 1, 4.0), "{seen:?}");
    assert!(seen.iter().any(|m| is_aggregate(m, 0, 0.0)), "{seen:?}");
    crate::helpers::wait_metric(&ingest, "ingest_keys 0").await;

    // The broker holds nothing for the forgotten keys any more.
    publish_marker(&broker).await;
    let late = Collector::start(broker.port(), &["aggregates/#"]).await;
    let retained = late
        .wait_for(|m| latest(m, "aggregates/M1/1").is_some(), WAIT)
        .await
        .unwrap();
    assert!(
        retained.iter().all(|m| m.topic == "aggregates/M1/1"),
        "{retained:?}"
    );
}

/// A fresh key whose retained aggregate shows that everything before it was delivered.
async fn publish_marker(broker: &Broker) {
    let mut publisher = Publisher::connect(broker.port()).await;
    publisher
        .publish_all(
            QoS::AtLeastOnce,
            [(readings_topic("M1"), crate::helpers::reading(1, 1.0))],
            WAIT,
        )
        .await
        .unwrap();
}
