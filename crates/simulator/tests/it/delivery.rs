//! Every message of a `--count` run reaches a subscriber, exactly, at each QoS, and the
//! expected sums the simulator prints match what arrived.

use test_support::{Broker, Collector};

use crate::helpers::{WAIT, expected_sums, run, sums};

async fn count_is_delivered_exactly(qos: &str) {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;
    let finished = run(
        broker.port(),
        &[
            "--count",
            "3000",
            "--rate",
            "20000",
            "--qos",
            qos,
            "--seed",
            "11",
            "--print-expected",
        ],
    )
    .await;
    assert!(
        finished.status.success(),
        "exit {:?}\n{}",
        finished.status,
        finished.stderr
    );
    let summary = finished.summary();
    assert_eq!(summary["sent"], 3000);
    assert_eq!(summary["acknowledged"], 3000);
    let messages = collector.wait_for(|m| m.len() >= 3000, WAIT).await.unwrap();
    assert_eq!(messages.len(), 3000, "no duplicates, nothing missing");
    assert_eq!(sums(&messages), expected_sums(&summary));
}

#[tokio::test]
async fn qos0_count_is_delivered_exactly() {
    count_is_delivered_exactly("0").await;
}

#[tokio::test]
async fn qos1_count_is_delivered_exactly() {
    count_is_delivered_exactly("1").await;
}

#[tokio::test]
async fn qos2_count_is_delivered_exactly() {
    count_is_delivered_exactly("2").await;
}

#[tokio::test]
async fn machines_and_indices_and_values_are_respected() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;
    let finished = run(
        broker.port(),
        &[
            "--count",
            "500",
            "--rate",
            "50000",
            "--machines",
            "4",
            "--indices",
            "0..1",
            "--values",
            "10..10",
        ],
    )
    .await;
    assert!(finished.status.success(), "{}", finished.stderr);
    let messages = collector.wait_for(|m| m.len() >= 500, WAIT).await.unwrap();
    let sums = sums(&messages);
    let keys: Vec<(String, u32)> = sums.keys().cloned().collect();
    let mut wanted = Vec::new();
    for machine in ["M1", "M2", "M3", "M4"] {
        for index in [0, 1] {
            wanted.push((machine.to_owned(), index));
        }
    }
    assert_eq!(keys, wanted);
    for (sum, count) in sums.values() {
        assert!((sum - 10.0 * *count as f64).abs() < 1e-9);
    }
}

#[tokio::test]
async fn without_rate_every_machine_sends_every_half_to_two_seconds() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;
    let finished = run(broker.port(), &["--duration", "2500ms", "--seed", "4"]).await;
    assert!(finished.status.success(), "{}", finished.stderr);
    let messages = collector.messages();
    for machine in ["A1", "B1", "C1"] {
        let n = messages
            .iter()
            .filter(|m| m.topic == format!("machines/{machine}/scrap"))
            .count();
        // First message within 0.5 s, then one every 0.5 to 2 s: 1 to 5 in 2.5 s.
        assert!((1..=5).contains(&n), "{machine} sent {n}");
    }
}
