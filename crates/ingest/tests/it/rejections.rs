//! Every rejection reason is dead-lettered on `ingest/rejected`, counted, and changes no
//! aggregate.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use test_support::{Broker, Collector, Publisher, QoS};

use crate::helpers::{TestIngest, WAIT, is_aggregate, latest, now, reading, readings_topic};

#[tokio::test]
async fn every_rejection_reason_arrives_on_ingest_rejected_and_changes_no_aggregate() {
    let broker = Broker::start().await;
    // Two keys at most, so a third one is too_many_keys.
    let ingest = TestIngest::start(&broker, &["--window-max-keys", "2"]).await;
    let collector = Collector::start(broker.port(), &["aggregates/#", "ingest/rejected"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;

    publisher
        .publish_all(
            QoS::AtLeastOnce,
            [
                (readings_topic("A1"), reading(1, 1.0)),
                (readings_topic("A1"), reading(2, 1.0)),
            ],
            WAIT,
        )
        .await
        .unwrap();
    collector
        .wait_for(
            |m| {
                latest(m, "aggregates/A1/1").is_some_and(|m| is_aggregate(m, 1, 1.0))
                    && latest(m, "aggregates/A1/2").is_some_and(|m| is_aggregate(m, 1, 1.0))
            },
            WAIT,
        )
        .await
        .unwrap();

    let t = now();
    let late = t
        .saturating_sub(Duration::from_secs(120))
        .to_rfc3339_millis();
    let future = t
        .saturating_add(Duration::from_secs(60))
        .to_rfc3339_millis();
    let padding = "x".repeat(70 * 1024);
    let bad: Vec<(&str, String, String)> = vec![
        (
            "too_large",
            readings_topic("A1"),
            json!({"scrapIndex": 1, "value": 1, "pad": padding}).to_string(),
        ),
        (
            "invalid_json",
            readings_topic("A1"),
            "{\"scrapIndex\": 1,".into(),
        ),
        (
            "missing_field",
            readings_topic("A1"),
            json!({"scrapIndex": 1}).to_string(),
        ),
        (
            "bad_value",
            readings_topic("A1"),
            json!({"scrapIndex": 1, "value": "abc"}).to_string(),
        ),
        (
            "machine_mismatch",
            readings_topic("A1"),
            json!({"machineId": "B7", "scrapIndex": 1, "value": 1}).to_string(),
        ),
        (
            "late",
            readings_topic("A1"),
            json!({"scrapIndex": 1, "value": 1, "timestamp": late}).to_string(),
        ),
        (
            "future",
            readings_topic("A1"),
            json!({"scrapIndex": 1, "value": 1, "timestamp": future}).to_string(),
        ),
        ("too_many_keys", readings_topic("C9"), reading(1, 1.0)),
        // An empty machine level, which must never reach a published topic.
        ("missing_field", "machines//scrap".into(), reading(1, 1.0)),
    ];
    let messages = bad
        .iter()
        .map(|(_, topic, payload)| (topic.clone(), payload.clone()));
    publisher
        .publish_all(QoS::AtLeastOnce, messages, WAIT)
        .await
        .unwrap();
    // A valid marker after the bad ones: once it is counted, every bad one was handled.
    publisher
        .publish_all(
            QoS::AtLeastOnce,
            [(readings_topic("A1"), reading(1, 100.0))],
            WAIT,
        )
        .await
        .unwrap();

    let messages = collector
        .wait_for(
            |m| {
                latest(m, "aggregates/A1/1").is_some_and(|m| is_aggregate(m, 2, 101.0))
                    && m.iter().filter(|m| m.topic == "ingest/rejected").count() >= bad.len()
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));

    let letters: Vec<serde_json::Value> = messages
        .iter()
        .filter(|m| m.topic == "ingest/rejected")
        .map(|m| {
            assert!(!m.retain, "dead letters are not retained");
            m.json().unwrap()
        })
        .collect();
    assert_eq!(letters.len(), bad.len(), "{letters:#?}");
    let reasons: BTreeSet<&str> = letters
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = bad.iter().map(|(r, _, _)| *r).collect();
    assert_eq!(reasons, expected);
    for (letter, (reason, topic, payload)) in letters.iter().zip(&bad) {
        assert_eq!(letter["reason"], *reason, "{letter}");
        assert_eq!(letter["topic"], topic.as_str(), "{letter}");
        let head: String = payload.chars().take(1024).collect();
        assert_eq!(letter["payload"], head.as_str(), "{reason}");
        assert!(
            letter["receivedAt"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }

    // No aggregate moved apart from the marker, and no key was created.
    let a1_1: Vec<_> = messages
        .iter()
        .filter(|m| m.topic == "aggregates/A1/1")
        .collect();
    assert!(
        a1_1.iter()
            .all(|m| is_aggregate(m, 1, 1.0) || is_aggregate(m, 2, 101.0)),
        "{a1_1:?}"
    );
    assert!(
        messages
            .iter()
            .filter(|m| m.topic == "aggregates/A1/2")
            .all(|m| is_aggregate(m, 1, 1.0))
    );
    let topics: BTreeSet<&str> = messages
        .iter()
        .filter(|m| m.topic.starts_with("aggregates/"))
        .map(|m| m.topic.as_str())
        .collect();
    assert_eq!(
        topics,
        BTreeSet::from(["aggregates/A1/1", "aggregates/A1/2"])
    );

    let metrics = ingest.metrics().await;
    for (reason, count) in [
        ("too_large", 1),
        ("invalid_json", 1),
        ("missing_field", 2),
        ("bad_value", 1),
        ("machine_mismatch", 1),
        ("late", 1),
        ("future", 1),
        ("too_many_keys", 1),
    ] {
        let line = format!("ingest_readings_rejected_total{{reason=\"{reason}\"}} {count}");
        assert!(metrics.contains(&line), "{line} missing in\n{metrics}");
    }
    assert!(
        metrics.contains("ingest_readings_accepted_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ingest_readings_received_total 12"),
        "{metrics}"
    );
}
