//! An aggregate that says its machine is offline (its Sparkplug edge node or device died)
//! reaches `/api/aggregates`, snapshots and update frames as it was published, and the next
//! online aggregate takes the flag away, though the sums never change.

use std::time::Duration;

use serde_json::{Value, json};
use test_support::{Broker, Publisher, QoS, publish_retained};

use crate::helpers::{TestGateway, WsClient};

const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// A1/1's aggregate as ingest publishes it: the same window each time, so that only the time
/// and the flag tell the messages apart.
fn a1(timestamp: &str, offline: bool) -> Value {
    let mut aggregate = json!({
        "maschinenId": "A1",
        "scrapIndex": 1,
        "sumLast60s": 10.0,
        "avgLast60s": 2.5,
        "count": 4,
        "windowSeconds": 60,
        "timestamp": timestamp,
    });
    if offline {
        aggregate["offline"] = json!(true);
    }
    aggregate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_passes_through_and_an_online_aggregate_clears_it() {
    let broker = Broker::start().await;
    let online = a1("2026-01-01T12:00:30.123Z", false);
    publish_retained(broker.port(), "aggregates/A1/1", online.to_string())
        .await
        .unwrap();
    let gw = TestGateway::start_holding(broker.port(), 1).await;
    let mut client = WsClient::connect(&gw.ws_url("")).await.unwrap();
    let snapshot = client.next_of("snapshot", FRAME_TIMEOUT).await.unwrap();
    assert_eq!(snapshot["aggregates"], json!([online]));

    let mut publisher = Publisher::connect(broker.port()).await;
    // The death certificate: same sums, later time, the flag set.
    let dead = a1("2026-01-01T12:00:31.000Z", true);
    publisher
        .publish("aggregates/A1/1", QoS::AtLeastOnce, true, dead.to_string())
        .await
        .unwrap();
    let update = client.next_of("update", FRAME_TIMEOUT).await.unwrap();
    assert_eq!(update["aggregates"], json!([dead]));
    assert_eq!(gw.aggregates().await, json!([dead]));
    // A client arriving now starts from the offline state.
    let mut late = WsClient::connect(&gw.ws_url("")).await.unwrap();
    let snapshot = late.next_of("snapshot", FRAME_TIMEOUT).await.unwrap();
    assert_eq!(snapshot["aggregates"], json!([dead]));

    // The birth: the same sums again, and no flag at all.
    let born = a1("2026-01-01T12:00:32.000Z", false);
    publisher
        .publish("aggregates/A1/1", QoS::AtLeastOnce, true, born.to_string())
        .await
        .unwrap();
    for client in [&mut client, &mut late] {
        let update = client.next_of("update", FRAME_TIMEOUT).await.unwrap();
        assert_eq!(update["aggregates"], json!([born]));
        assert!(update["aggregates"][0].get("offline").is_none(), "{update}");
    }
    let api = gw.aggregates().await;
    assert_eq!(api, json!([born]));
    assert!(api[0].get("offline").is_none(), "{api}");
}
