//! The broker dies mid-run: with QoS 1 the simulator reconnects, retransmits what was in
//! flight and still gets every message acknowledged.

use test_support::{Broker, Collector};

use crate::helpers::{WAIT, spawn};

#[tokio::test]
async fn qos1_run_survives_a_broker_restart() {
    let mut broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;
    let mut process = spawn(
        broker.port(),
        &[
            "--count",
            "6000",
            "--rate",
            "2000",
            "--qos",
            "1",
            "--print-expected",
        ],
    );
    collector.wait_for(|m| m.len() >= 1000, WAIT).await.unwrap();
    // The simulator's session must be on disk for the broker to remember it after a crash;
    // rumqttc retransmits unacknowledged publishes only into a remembered session.
    broker.wait_for_autosave(WAIT).await.unwrap();
    broker.kill().await;
    broker.restart().await;
    let status = process
        .wait_exit(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", process.logs()));
    assert!(status.success(), "{}\n{}", process.logs(), broker.log());
    let summary: serde_json::Value = serde_json::from_str(process.stdout().trim()).unwrap();
    assert_eq!(summary["acknowledged"], 6000);
    assert!(
        summary["errors"].as_u64().unwrap() >= 1,
        "the outage was noticed: {summary}"
    );
}

#[tokio::test]
async fn qos0_run_reconnects_after_a_broker_restart() {
    let mut broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;
    let mut process = spawn(
        broker.port(),
        &["--rate", "500", "--qos", "0", "--print-expected"],
    );
    collector.wait_for(|m| m.len() >= 200, WAIT).await.unwrap();
    broker.kill().await;
    broker.restart().await;
    // The collector reconnects too; messages arriving after that came over a new connection.
    collector.clear();
    collector
        .wait_for(|m| m.len() >= 200, WAIT)
        .await
        .map_err(|e| format!("{e}\n{}", process.logs()))
        .unwrap();
    let status = process.terminate().await;
    let summary: serde_json::Value = serde_json::from_str(process.stdout().trim()).unwrap();
    assert!(
        summary["errors"].as_u64().unwrap() >= 1,
        "the outage was noticed: {summary}"
    );
    // QoS 0 promises nothing for messages written into the dying connection; the exit code
    // says whether any were known lost.
    assert_eq!(status.success(), summary["lost"] == 0, "{summary}");
}
