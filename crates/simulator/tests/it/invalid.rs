//! `--invalid-ratio` sends malformed payloads for every rejection reason of the contract;
//! each is rejected for its reason by the core ingest uses.

use aggregator_core::{
    ParseLimits, RejectionReason, Timestamp, WindowConfig, WindowStore, parse_reading,
};
use test_support::{Broker, Collector};

use crate::helpers::{WAIT, run};

#[tokio::test]
async fn invalid_ratio_produces_each_reason() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;
    let finished = run(
        broker.port(),
        &[
            "--count",
            "64",
            "--rate",
            "10000",
            "--invalid-ratio",
            "0.25",
            "--seed",
            "9",
            "--print-expected",
        ],
    )
    .await;
    assert!(finished.status.success(), "{}", finished.stderr);
    let summary = finished.summary();
    for reason in RejectionReason::ALL {
        assert_eq!(
            summary["invalid"][reason.as_str()],
            2,
            "{reason}: {summary}"
        );
    }
    let messages = collector.wait_for(|m| m.len() >= 64, WAIT).await.unwrap();

    // An ingest-like store that already holds the 9 regular keys and has room for no more.
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let mut store = WindowStore::new(WindowConfig {
        max_keys: 9,
        ..WindowConfig::default()
    });
    for machine in ["A1", "B1", "C1"] {
        for index in 1..=3 {
            let topic = format!("machines/{machine}/scrap");
            let payload = format!("{{\"scrapIndex\":{index},\"value\":0}}");
            store
                .accept(
                    &parse_reading(&topic, payload.as_bytes(), now, &ParseLimits::default())
                        .unwrap(),
                    now,
                )
                .unwrap();
        }
    }
    let mut rejected = std::collections::BTreeMap::new();
    let mut accepted = 0;
    for m in &messages {
        match parse_reading(&m.topic, &m.payload, now, &ParseLimits::default())
            .and_then(|r| store.accept(&r, now))
        {
            Ok(_) => accepted += 1,
            Err(e) => *rejected.entry(e.reason().as_str()).or_insert(0) += 1,
        }
    }
    assert_eq!(accepted, 48);
    assert_eq!(rejected.len(), 8, "{rejected:?}");
    assert!(rejected.values().all(|n| *n == 2), "{rejected:?}");
}

#[tokio::test]
async fn invalid_kinds_restricts_the_reasons() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;
    let finished = run(
        broker.port(),
        &[
            "--count",
            "10",
            "--rate",
            "1000",
            "--invalid-ratio",
            "1",
            "--invalid-kinds",
            "too_many_keys",
            "--seed",
            "5",
            "--print-expected",
        ],
    )
    .await;
    assert!(finished.status.success(), "{}", finished.stderr);
    assert_eq!(finished.summary()["flood_keys"], 10);
    let messages = collector.wait_for(|m| m.len() >= 10, WAIT).await.unwrap();
    let topics: std::collections::BTreeSet<&str> =
        messages.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        topics.len(),
        10,
        "every message creates a new machine id: {topics:?}"
    );
}
