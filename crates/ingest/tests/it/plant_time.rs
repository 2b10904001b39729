//! Device times without an offset: read in the plant's zone, or rejected when the plant says
//! so; a zone that does not exist stops ingest with one line naming the setting.

use std::time::Duration;

use serde_json::json;
use test_support::{Broker, Collector, Publisher, QoS, expect_settings_error};

use crate::helpers::{TestIngest, WAIT, is_aggregate, latest, now, readings_topic, wait_metric};

/// India's offset, +05:30 all year: a naive time read as UTC would be 5.5 hours ahead.
const KOLKATA_OFFSET: Duration = Duration::from_secs(5 * 3_600 + 30 * 60);

/// Now on a wall clock in Kolkata, without an offset: `2026-12-07T14:14:54.123`.
fn kolkata_now() -> String {
    let local = now().saturating_add(KOLKATA_OFFSET).to_rfc3339_millis();
    local.trim_end_matches('Z').to_owned()
}

fn naive_reading(value: f64) -> String {
    json!({"scrapIndex": 1, "value": value, "zeitstempel": kolkata_now()}).to_string()
}

#[tokio::test]
async fn a_time_without_an_offset_is_read_in_the_plant_zone() {
    let broker = Broker::start().await;
    let ingest = TestIngest::start(&broker, &["--plant-timezone", "Asia/Kolkata"]).await;
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    let readings = [(readings_topic("A1"), naive_reading(2.5))];
    publisher
        .publish_all(QoS::AtLeastOnce, readings, WAIT)
        .await
        .unwrap();
    // Read as UTC it would be five and a half hours ahead and rejected as future.
    collector
        .wait_for(
            |m| latest(m, "aggregates/A1/1").is_some_and(|m| is_aggregate(m, 1, 2.5)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    wait_metric(&ingest, "ingest_readings_accepted_total 1").await;
}

#[tokio::test]
async fn a_plant_may_reject_times_without_an_offset() {
    let broker = Broker::start().await;
    let args = [
        "--plant-timezone",
        "Asia/Kolkata",
        "--plant-reject-naive-times",
    ];
    let ingest = TestIngest::start(&broker, &args).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    let readings = [(readings_topic("A1"), naive_reading(2.5))];
    publisher
        .publish_all(QoS::AtLeastOnce, readings, WAIT)
        .await
        .unwrap();
    wait_metric(
        &ingest,
        "ingest_readings_rejected_total{reason=\"bad_value\"} 1",
    )
    .await;
    assert!(
        ingest
            .metrics()
            .await
            .contains("ingest_readings_accepted_total 0")
    );
}

#[tokio::test]
async fn an_unknown_zone_is_named_and_exits_2() {
    let ingest = env!("CARGO_BIN_EXE_ingest");
    let line = expect_settings_error(ingest, &["--plant-timezone", "Europe/Berln"]).await;
    assert!(line.contains("`plant.timezone`"), "{line}");
    assert!(
        line.contains("unknown time zone \"Europe/Berln\""),
        "{line}"
    );
}
