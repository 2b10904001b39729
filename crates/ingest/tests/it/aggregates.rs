//! Exact sums for every accepted payload form, and retained aggregates for late subscribers.

use serde_json::json;
use test_support::{Broker, Collector, Publisher, QoS};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::offset;

use crate::helpers::{TestIngest, WAIT, is_aggregate, latest, now, readings_topic};

#[tokio::test]
async fn exact_sums_for_both_field_name_variants_and_every_accepted_form() {
    let broker = Broker::start().await;
    let ingest = TestIngest::start(&broker, &[]).await;
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;

    let t = now();
    let millis = t.unix_millis() - 500;
    let z_millis = t.to_rfc3339_millis();
    // The same instant with a +02:00 offset and nine fraction digits.
    let offset_nanos = OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.unix_nanos()) - 1)
        .unwrap()
        .to_offset(offset!(+2))
        .format(&Rfc3339)
        .unwrap();
    assert!(offset_nanos.ends_with("+02:00"), "{offset_nanos}");

    let a1 = [
        // English names, RFC 3339 with Z.
        (
            json!({"machineId": "A1", "scrapIndex": 1, "value": 2.5, "timestamp": z_millis}),
            2.5,
        ),
        // German names, numbers in strings, epoch milliseconds.
        (
            json!({"maschinenId": "A1", "scrapeIndex": "1", "value": "3.25", "zeitstempel": millis}),
            3.25,
        ),
        // No machine id (the topic is authoritative), no time (time of receipt).
        (json!({"scrapIndex": 1, "value": 4}), 4.0),
        // Offset and a long fraction; exponent notation.
        (
            json!({"machineId": "A1", "scrapIndex": 1, "value": 1e-3, "timestamp": offset_nanos}),
            0.001,
        ),
    ];
    let b1 = [
        // Index 0, negative value, German time name with Z.
        (
            json!({"maschinenId": "B1", "scrapeIndex": 0, "value": -1.5, "zeitstempel": z_millis}),
            -1.5,
        ),
        // Index and value as strings.
        (json!({"scrapIndex": "0", "value": "10"}), 10.0),
        // Fractional epoch milliseconds.
        (
            json!({"machineId": "B1", "scrapIndex": 0, "value": 0.1, "timestamp": millis as f64 + 0.25}),
            0.1,
        ),
        // Unknown fields are ignored, both machine names agreeing.
        (
            json!({"machineId": "B1", "maschinenId": "B1", "scrapIndex": 0, "value": 7, "extra": {"x": [1, 2]}}),
            7.0,
        ),
    ];
    let mut publisher = Publisher::connect(broker.port()).await;
    let messages = a1
        .iter()
        .map(|(p, _)| (readings_topic("A1"), p.to_string()))
        .chain(
            b1.iter()
                .map(|(p, _)| (readings_topic("B1"), p.to_string())),
        );
    publisher
        .publish_all(QoS::AtLeastOnce, messages, WAIT)
        .await
        .unwrap();
    let sum_a1: f64 = a1.iter().map(|(_, v)| v).sum();
    let sum_b1: f64 = b1.iter().map(|(_, v)| v).sum();

    let done = |messages: &[test_support::Message]| {
        latest(messages, "aggregates/A1/1").is_some_and(|m| is_aggregate(m, 4, sum_a1))
            && latest(messages, "aggregates/B1/0").is_some_and(|m| is_aggregate(m, 4, sum_b1))
    };
    let messages = collector
        .wait_for(done, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let a1_json = latest(&messages, "aggregates/A1/1")
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(a1_json["maschinenId"], "A1");
    assert_eq!(a1_json["scrapIndex"], 1);
    assert_eq!(a1_json["windowSeconds"], 60);
    assert!(a1_json["timestamp"].as_str().unwrap().ends_with('Z'));
    let a1_message = latest(&messages, "aggregates/A1/1").unwrap();
    assert_eq!(a1_message.qos, QoS::AtLeastOnce);

    // A subscriber that comes later gets the same aggregates, retained.
    let late = Collector::start(broker.port(), &["aggregates/#"]).await;
    let retained = late
        .wait_for(
            |messages| messages.iter().filter(|m| m.retain).count() >= 2 && done(messages),
            WAIT,
        )
        .await
        .unwrap();
    assert!(retained.iter().all(|m| m.retain), "{retained:?}");
    assert_eq!(retained.len(), 2, "{retained:?}");
    drop(ingest);
}
