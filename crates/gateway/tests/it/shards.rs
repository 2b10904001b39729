//! Ingest shards' liveness: the gateway reads the retained `status/ingest/{k}` of every shard
//! and reports shards online of expected in `/api/health`, snapshots and status frames.

use std::time::Duration;

use serde_json::{Value, json};
use test_support::{Broker, Publisher, QoS, publish_retained, wait_until};

use crate::helpers::{TestGateway, WsClient};

const WAIT: Duration = Duration::from_secs(30);

fn shard_status(k: u32, online: bool) -> String {
    format!(
        r#"{{"online":{online},"shard":{k},"shardCount":3,"startedAt":"2026-01-01T00:00:00Z"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_online_of_expected_in_health_snapshot_and_status_frames() {
    let broker = Broker::start().await;
    // A single-ingest status left over from before the scale-out: the shards' view wins.
    publish_retained(broker.port(), "status/ingest", r#"{"online":true}"#)
        .await
        .unwrap();
    for k in [0, 1] {
        publish_retained(
            broker.port(),
            &format!("status/ingest/{k}"),
            shard_status(k, true),
        )
        .await
        .unwrap();
    }

    let gw = TestGateway::start(broker.port(), &[]).await;
    gw.wait_healthy().await;
    let two_of_three = json!({"online": false, "shardsOnline": 2, "shardCount": 3});
    let reached = wait_until(WAIT, "health reports 2 of 3 shards", || async {
        gw.health().await.1["ingest"] == two_of_three
    })
    .await;
    if let Err(e) = reached {
        panic!("{e}: {}", gw.health().await.1);
    }

    let mut client = WsClient::connect(&gw.ws_url("")).await.unwrap();
    let snapshot = client.next_json(WAIT).await.unwrap();
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["ingest"], two_of_three);

    // The third shard comes up.
    let mut publisher = Publisher::connect(broker.port()).await;
    publisher
        .publish(
            "status/ingest/2",
            QoS::AtLeastOnce,
            true,
            shard_status(2, true),
        )
        .await
        .unwrap();
    let status = client.next_of("status", WAIT).await.unwrap();
    assert_eq!(
        status,
        json!({"type": "status", "mqtt": "connected",
               "ingest": {"online": true, "shardsOnline": 3, "shardCount": 3}})
    );

    // Shard 0's last will.
    publisher
        .publish(
            "status/ingest/0",
            QoS::AtLeastOnce,
            true,
            shard_status(0, false),
        )
        .await
        .unwrap();
    let status = client.next_of("status", WAIT).await.unwrap();
    assert_eq!(status["ingest"], two_of_three, "{status}");
    let (code, health) = gw.health().await;
    assert_eq!(code, 200);
    assert_eq!(health["ingest"], two_of_three);
    assert_eq!(health["status"], Value::from("ok"));
}
