//! Alarms and trends: relayed from their retained topics into the snapshot, `alarm` and
//! `trend` frames and `/api/alarms`; a (re)started gateway has them all at once; bad payloads
//! are counted and ignored; a late copy of an older message changes nothing.

use std::time::Duration;

use serde_json::{Value, json};
use test_support::{Broker, Publisher, QoS, http_get, publish_retained, wait_until};

use crate::helpers::{TestGateway, WsClient};

const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

fn alarm_json(machine: &str, index: u32, state: &str, value: f64) -> String {
    json!({"maschinenId": machine, "scrapIndex": index, "state": state, "metric": "sum",
        "value": value, "threshold": 30.0, "since": "2026-01-01T12:00:00.000Z",
        "timestamp": "2026-01-01T12:00:05.000Z"})
    .to_string()
}

fn trend_json(machine: &str, index: u32, sums: &[f64]) -> String {
    let points: Vec<Value> = sums
        .iter()
        .enumerate()
        .map(|(i, sum)| json!({"t": format!("2026-01-01T12:00:{:02}.000Z", i * 10), "sum": sum}))
        .collect();
    json!({"maschinenId": machine, "scrapIndex": index, "intervalSeconds": 10, "points": points})
        .to_string()
}

fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

async fn api_alarms(gw: &TestGateway, query: &str) -> Value {
    let (status, body) = http_get(&gw.url(&format!("/api/alarms{query}"))).await;
    assert_eq!(status, 200, "{body}");
    value(&body)
}

/// Waits until `/api/alarms` lists `n` alarms (the retained replay has been flushed).
async fn wait_alarms(gw: &TestGateway, n: usize) {
    let url = gw.url("/api/alarms");
    wait_until(
        Duration::from_secs(10),
        &format!("{n} raised alarms"),
        || {
            let url = url.clone();
            async move {
                let (_, body) = http_get(&url).await;
                serde_json::from_str::<Value>(&body)
                    .is_ok_and(|v| v.as_array().map(Vec::len) == Some(n))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.process.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_alarms_and_trends_reach_snapshot_frames_and_api() {
    let broker = Broker::start().await;
    let port = broker.port();
    let a1 = alarm_json("A1", 1, "raised", 31.5);
    let b1 = alarm_json("B1", 1, "cleared", 20.0);
    let markup = "<img src=x onerror=alert(1)>";
    let evil = alarm_json(markup, 0, "raised", 40.0);
    let trend = trend_json("A1", 1, &[1.0, 2.5, 4.0]);
    for (topic, payload) in [
        ("alarms/A1/1".to_owned(), &a1),
        ("alarms/B1/1".to_owned(), &b1),
        (format!("alarms/{markup}/0"), &evil),
        ("trends/A1/1".to_owned(), &trend),
    ] {
        publish_retained(port, &topic, payload.clone())
            .await
            .unwrap();
    }

    // Started after the retained messages: everything is there at once.
    let gw = TestGateway::start(port, &[]).await;
    gw.wait_healthy().await;
    wait_alarms(&gw, 2).await;
    assert_eq!(
        api_alarms(&gw, "").await,
        json!([value(&evil), value(&a1)]),
        "raised only, sorted by machine"
    );
    assert_eq!(
        api_alarms(&gw, "?machines=A1,B1").await,
        json!([value(&a1)])
    );

    let mut client = WsClient::connect(&gw.ws_url("")).await.unwrap();
    let snapshot = client.next_json(FRAME_TIMEOUT).await.unwrap();
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(
        snapshot["alarms"],
        json!([value(&evil), value(&a1), value(&b1)]),
        "the latest message of every key, cleared ones too"
    );
    assert_eq!(snapshot["trends"], json!([value(&trend)]));
    let mut filtered = WsClient::connect(&gw.ws_url("?machines=B1")).await.unwrap();
    let snapshot = filtered.next_json(FRAME_TIMEOUT).await.unwrap();
    assert_eq!(snapshot["alarms"], json!([value(&b1)]));
    assert_eq!(snapshot["trends"], json!([]));

    let mut publisher = Publisher::connect(port).await;
    // Unusable payloads are counted and ignored; the next good one comes through.
    for (topic, payload) in [
        ("alarms/A1/1", "{not json".to_owned()),
        ("alarms/A1/1", alarm_json("A2", 1, "raised", 1.0)),
        ("trends/A1/1", r#"{"points":"many"}"#.to_owned()),
    ] {
        publisher
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    let b1_raised = alarm_json("B1", 1, "raised", 33.0);
    publisher
        .publish("alarms/B1/1", QoS::AtLeastOnce, true, b1_raised.clone())
        .await
        .unwrap();
    let frame = client.next_json(FRAME_TIMEOUT).await.unwrap();
    assert_eq!(
        frame,
        json!({"type": "alarm", "alarms": [value(&b1_raised)], "removed": []})
    );
    assert_eq!(filtered.next_json(FRAME_TIMEOUT).await.unwrap(), frame);
    assert_eq!(gw.metric("gateway_mqtt_messages_invalid_total").await, 3.0);

    let trend2 = trend_json("A1", 1, &[1.0, 2.5, 4.0, 8.0]);
    publisher
        .publish("trends/A1/1", QoS::AtLeastOnce, true, trend2.clone())
        .await
        .unwrap();
    assert_eq!(
        client.next_json(FRAME_TIMEOUT).await.unwrap(),
        json!({"type": "trend", "trends": [value(&trend2)], "removed": []})
    );

    // Emptied topics (a forgotten key) remove the key's alarm and trend.
    for topic in ["alarms/A1/1", "trends/A1/1"] {
        publisher
            .publish(topic, QoS::AtLeastOnce, true, "")
            .await
            .unwrap();
    }
    let removed = json!([{"maschinenId": "A1", "scrapIndex": 1}]);
    let frame = client.next_of("alarm", FRAME_TIMEOUT).await.unwrap();
    assert_eq!(frame["removed"], removed);
    let frame = client.next_of("trend", FRAME_TIMEOUT).await.unwrap();
    assert_eq!(frame["removed"], removed);
    publisher.flush(FRAME_TIMEOUT).await.unwrap();
    wait_alarms(&gw, 2).await;
    assert_eq!(
        api_alarms(&gw, "").await,
        json!([value(&evil), value(&b1_raised)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_alarms_needs_the_token_when_one_is_set() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(
        broker.port(),
        &["--http-auth-token", "t0ken-for-alarm-tests"],
    )
    .await;
    gw.wait_healthy().await;
    let client = reqwest::Client::new();
    let url = gw.url("/api/alarms");
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(client.get(&url).send().await.unwrap()), 401);
    let ok = client
        .get(&url)
        .bearer_auth("t0ken-for-alarm-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(status(ok), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_older_alarm_or_trend_changes_nothing() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &[]).await;
    gw.wait_healthy().await;
    let mut client = WsClient::connect(&gw.ws_url("")).await.unwrap();
    client.next_of("snapshot", FRAME_TIMEOUT).await.unwrap();
    let mut publisher = Publisher::connect(broker.port()).await;
    let alarm_at = |state: &str, timestamp: &str| {
        let mut alarm = value(&alarm_json("S1", 1, state, 31.0));
        alarm["timestamp"] = json!(timestamp);
        alarm.to_string()
    };
    let raised = alarm_at("raised", "2026-01-01T12:00:10.000Z");
    let cleared = alarm_at("cleared", "2026-01-01T12:00:20.000Z");
    let newer_trend = trend_json("S1", 1, &[1.0, 2.0, 3.0]);
    let older_trend = trend_json("S1", 1, &[9.0]);
    for (topic, payload) in [
        ("alarms/S1/1", &raised),
        ("alarms/S1/1", &cleared),
        ("trends/S1/1", &newer_trend),
    ] {
        publisher
            .publish(topic, QoS::AtLeastOnce, true, payload.clone())
            .await
            .unwrap();
        let kind = if topic.starts_with("alarms") {
            "alarm"
        } else {
            "trend"
        };
        client.next_of(kind, FRAME_TIMEOUT).await.unwrap();
    }

    // What a broker node may deliver again, late: the raise before the clear, and a trend
    // that ends before the one held.
    for (topic, payload) in [("alarms/S1/1", &raised), ("trends/S1/1", &older_trend)] {
        publisher
            .publish(topic, QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
    }
    gw.wait_metric("gateway_stale_messages_total", 2.0, FRAME_TIMEOUT)
        .await;
    assert_eq!(
        api_alarms(&gw, "").await,
        json!([]),
        "the alarm stays cleared"
    );
    let mut fresh = WsClient::connect(&gw.ws_url("")).await.unwrap();
    let snapshot = fresh.next_of("snapshot", FRAME_TIMEOUT).await.unwrap();
    assert_eq!(snapshot["alarms"], json!([value(&cleared)]));
    assert_eq!(snapshot["trends"], json!([value(&newer_trend)]));
    // The live client heard nothing of them: every frame up to a later alarm of another key
    // (handled after the stale ones, which came first on the same connection) leaves S1 alone.
    let sentinel = alarm_json("S2", 1, "raised", 35.0);
    publisher
        .publish("alarms/S2/1", QoS::AtLeastOnce, true, sentinel.clone())
        .await
        .unwrap();
    loop {
        let frame = client.next_json(FRAME_TIMEOUT).await.unwrap();
        assert!(
            !frame.to_string().contains("S1"),
            "a frame for a stale message: {frame}"
        );
        if frame["type"] == "alarm" {
            assert_eq!(frame["alarms"], json!([value(&sentinel)]));
            break;
        }
    }
}
