//! Ingest as a Sparkplug host application announcing itself: its retained JSON STATE is
//! online while it runs, offline after a clean stop, and offline through its will when it
//! dies; the STATE of other hosts is read as JSON.

use test_support::{Broker, Collector, Message, Publisher, QoS};

use crate::helpers::{TestIngest, WAIT, wait_metric};

const STATE: &str = "spBv1.0/STATE/scrap-pulse";

const SPARKPLUG: [&str; 4] = [
    "--sparkplug-groups",
    "Plant1",
    "--sparkplug-host-id",
    "scrap-pulse",
];

/// The last STATE message, as JSON.
fn last_state(messages: &[Message]) -> Option<serde_json::Value> {
    let last = messages.iter().rev().find(|m| m.topic == STATE)?;
    last.json().ok()
}

fn says(online: bool) -> impl Fn(&[Message]) -> bool {
    move |m| last_state(m).is_some_and(|s| s["online"] == online)
}

#[tokio::test]
async fn the_state_is_online_while_ingest_runs_and_offline_after_a_stop_or_a_crash() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &[STATE]).await;
    let mut ingest = TestIngest::start(&broker, &SPARKPLUG).await;
    let online = collector.wait_for(says(true), WAIT).await;
    let online = online.unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let born = last_state(&online).unwrap()["timestamp"].as_u64().unwrap();

    // SIGKILL: the broker publishes the will, with the same timestamp.
    ingest.process.kill().await;
    let dead = collector.wait_for(says(false), WAIT).await.unwrap();
    assert_eq!(last_state(&dead).unwrap()["timestamp"], born);

    // A new process: online again, retained for whoever subscribes later.
    let mut ingest = TestIngest::start_with_id(&broker, &ingest.client_id, &SPARKPLUG).await;
    collector.wait_for(says(true), WAIT).await.unwrap();
    let late = Collector::start(broker.port(), &[STATE]).await;
    let retained = late.wait_for(says(true), WAIT).await.unwrap();
    assert!(retained.iter().any(|m| m.retain));

    // A clean stop does not fire the will: ingest says it is offline itself.
    let exit = ingest.process.terminate().await;
    assert!(exit.success(), "{exit:?}\n{}", ingest.process.logs());
    let stopped = late.wait_for(says(false), WAIT).await;
    stopped.unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
}

#[tokio::test]
async fn other_hosts_state_is_read_as_json_and_a_protobuf_one_is_refused() {
    let broker = Broker::start().await;
    // Every group: the STATE topics are then among ingest's subscriptions.
    let ingest = TestIngest::start(&broker, &["--sparkplug-groups", "+"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    let topic = "spBv1.0/STATE/ignition";
    let good = br#"{"online":true,"timestamp":1796601600000}"#.to_vec();
    // A Sparkplug payload (a timestamp field) where JSON belongs.
    let protobuf = vec![0x08, 0x01];
    for payload in [good, protobuf] {
        publisher
            .publish_all(QoS::AtLeastOnce, [(topic, payload)], WAIT)
            .await
            .unwrap();
    }
    wait_metric(&ingest, "ingest_sparkplug_states_total 1").await;
    wait_metric(
        &ingest,
        "ingest_readings_rejected_total{reason=\"invalid_sparkplug\"} 1",
    )
    .await;
}
