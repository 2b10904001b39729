//! The WebSocket protocol: snapshot from retained state, then update, remove and status frames.

use std::time::Duration;

use serde_json::{Value, json};
use test_support::{Broker, Publisher, QoS, publish_retained};

use crate::helpers::{TestGateway, View, WsClient, aggregate_json, retain_aggregates};

const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_holds_retained_state_and_frames_follow_changes() {
    let broker = Broker::start().await;
    let [a1, b2] = retain_aggregates(broker.port(), [("A1", 1, 10.0, 4), ("B2", 3, 0.0, 0)]).await;
    publish_retained(
        broker.port(),
        "status/ingest",
        r#"{"online":true,"startedAt":"2026-01-01T00:00:00Z"}"#,
    )
    .await
    .unwrap();

    let gw = TestGateway::start_holding(broker.port(), 2).await;

    let mut client = WsClient::connect(&gw.ws_url("")).await.unwrap();
    let snapshot = client.next_json(FRAME_TIMEOUT).await.unwrap();
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(
        snapshot["aggregates"],
        json!([
            serde_json::from_str::<Value>(&a1).unwrap(),
            serde_json::from_str::<Value>(&b2).unwrap()
        ])
    );
    assert_eq!(snapshot["ingest"], json!({"online": true}));
    assert_eq!(gw.aggregates().await, snapshot["aggregates"]);
    let mut view = View::default();
    view.apply(&snapshot);

    let mut publisher = Publisher::connect(broker.port()).await;
    // Update: the latest value of a changed key.
    let a1_new = aggregate_json("A1", 1, 12.5, 5);
    publisher
        .publish("aggregates/A1/1", QoS::AtLeastOnce, true, a1_new.clone())
        .await
        .unwrap();
    let update = client.next_of("update", FRAME_TIMEOUT).await.unwrap();
    assert_eq!(
        update,
        json!({"type": "update", "aggregates": [serde_json::from_str::<Value>(&a1_new).unwrap()]})
    );
    view.apply(&update);

    // An unusable payload is counted and ignored; the next good one still comes through.
    publisher
        .publish("aggregates/A1/9", QoS::AtLeastOnce, false, "{not json")
        .await
        .unwrap();
    let c7 = aggregate_json("C7", 0, 1.5, 1);
    publisher
        .publish("aggregates/C7/0", QoS::AtLeastOnce, true, c7.clone())
        .await
        .unwrap();
    let update = client.next_json(FRAME_TIMEOUT).await.unwrap();
    assert_eq!(
        update,
        json!({"type": "update", "aggregates": [serde_json::from_str::<Value>(&c7).unwrap()]})
    );
    view.apply(&update);
    assert_eq!(gw.metric("gateway_mqtt_messages_invalid_total").await, 1.0);

    // Remove: the retained aggregate is cleared.
    publisher
        .publish("aggregates/B2/3", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    let remove = client.next_json(FRAME_TIMEOUT).await.unwrap();
    assert_eq!(
        remove,
        json!({"type": "remove", "keys": [{"maschinenId": "B2", "scrapIndex": 3}]})
    );
    view.apply(&remove);

    // Status: ingest goes offline.
    publisher
        .publish(
            "status/ingest",
            QoS::AtLeastOnce,
            true,
            r#"{"online":false}"#,
        )
        .await
        .unwrap();
    let status = client.next_json(FRAME_TIMEOUT).await.unwrap();
    assert_eq!(
        status,
        json!({"type": "status", "mqtt": "connected", "ingest": {"online": false}})
    );
    publisher.flush(FRAME_TIMEOUT).await.unwrap();

    // The HTTP view agrees with what the client has built from its frames.
    let api = gw.aggregates().await;
    let from_frames: Vec<Value> = view.aggregates.values().cloned().collect();
    assert_eq!(api, Value::from(from_frames));
    let (_, health) = gw.health().await;
    assert_eq!(health["keys"], 2);
    assert_eq!(health["ingest"], json!({"online": false}));

    // A second client starts from the same state.
    let mut late = WsClient::connect(&gw.ws_url("")).await.unwrap();
    let snapshot = late.next_json(FRAME_TIMEOUT).await.unwrap();
    assert_eq!(snapshot["aggregates"], api);
    assert_eq!(snapshot["ingest"], json!({"online": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_filter_limits_snapshot_and_updates() {
    let broker = Broker::start().await;
    retain_aggregates(broker.port(), [("A1", 1, 1.0, 1), ("B1", 1, 1.0, 1)]).await;
    let gw = TestGateway::start_holding(broker.port(), 2).await;

    let mut client = WsClient::connect(&gw.ws_url("?machines=A1,Z9"))
        .await
        .unwrap();
    let snapshot = client.next_json(FRAME_TIMEOUT).await.unwrap();
    let machines: Vec<&str> = snapshot["aggregates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["maschinenId"].as_str().unwrap())
        .collect();
    assert_eq!(machines, vec!["A1"]);

    let mut publisher = Publisher::connect(broker.port()).await;
    // B1 alone first: the filtered client must not get a frame for it...
    publisher
        .publish(
            "aggregates/B1/1",
            QoS::AtLeastOnce,
            true,
            aggregate_json("B1", 1, 2.0, 2),
        )
        .await
        .unwrap();
    publisher.flush(FRAME_TIMEOUT).await.unwrap();
    // ...so the next frame it gets is about A1.
    publisher
        .publish(
            "aggregates/A1/1",
            QoS::AtLeastOnce,
            true,
            aggregate_json("A1", 1, 3.0, 2),
        )
        .await
        .unwrap();
    let update = client.next_json(FRAME_TIMEOUT).await.unwrap();
    assert_eq!(update["type"], "update");
    assert_eq!(update["aggregates"].as_array().unwrap().len(), 1);
    assert_eq!(update["aggregates"][0]["maschinenId"], "A1");
    assert_eq!(update["aggregates"][0]["sumLast60s"], 3.0);
}
