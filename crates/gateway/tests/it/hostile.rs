//! Retained messages that are not ingest's, on a broker nobody tuned: the gateway reads them,
//! counts them as unusable and stays connected.

use test_support::{Broker, publish_retained};

use crate::helpers::{TestGateway, aggregate_json, retain_aggregates};

#[tokio::test]
async fn a_retained_message_of_two_megabytes_is_counted_and_the_link_stays_up() {
    // A stock Mosquitto's packet limit: MQTT's maximum, 256 MiB.
    let broker = Broker::start().await;
    retain_aggregates(broker.port(), [("A1", 1, 3.0, 2)]).await;
    // A well-formed aggregate, padded to 2 MB: it must not even be parsed.
    let valid = aggregate_json("X", 1, 1.0, 1);
    let mut big = valid.as_bytes()[..valid.len() - 1].to_vec();
    big.extend_from_slice(b",\"pad\":\"");
    big.resize(2 * 1024 * 1024, b'x');
    big.extend_from_slice(b"\"}");
    publish_retained(broker.port(), "aggregates/X/1", big)
        .await
        .unwrap();

    let gw = TestGateway::start(broker.port(), &[]).await;
    gw.wait_healthy().await;
    gw.wait_keys(1).await;
    let invalid = "gateway_mqtt_messages_invalid_total";
    gw.wait_metric(invalid, 1.0, std::time::Duration::from_secs(10))
        .await;

    // Live messages after it still arrive, on the same connection.
    retain_aggregates(broker.port(), [("A2", 1, 5.0, 1)]).await;
    gw.wait_keys(2).await;
    let aggregates = gw.aggregates().await;
    let machines: Vec<&str> = (aggregates.as_array().unwrap().iter())
        .map(|a| a["maschinenId"].as_str().unwrap())
        .collect();
    assert!(!machines.contains(&"X"), "{aggregates}");
    assert_eq!(gw.metric("gateway_mqtt_errors_total").await, 0.0);
    assert_eq!(gw.metric(invalid).await, 1.0);
    let (status, health) = gw.health().await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["mqtt"], "connected");
}
