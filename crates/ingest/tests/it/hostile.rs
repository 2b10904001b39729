//! Input no machine sends, on a broker nobody tuned: values that would overflow a sum,
//! messages of megabytes, retained messages that are not ingest's. Each is rejected or skipped
//! and counted, and the valid readings around it are aggregated exactly.

use serde_json::json;
use test_support::{Broker, Collector, Message, Publisher, QoS, publish_retained, scrape_metrics};

use crate::helpers::{
    TestIngest, WAIT, is_aggregate, latest, reading, readings_topic, wait_metric,
};

/// The `ingest/rejected` dead letters of `reason` among `messages`.
fn dead_letters(messages: &[Message], reason: &str) -> Vec<serde_json::Value> {
    let letters = messages.iter().filter(|m| m.topic == "ingest/rejected");
    letters
        .filter_map(|m| m.json().ok())
        .filter(|letter| letter["reason"] == reason)
        .collect()
}

/// A sample of ingest's metrics (0 when absent).
async fn metric(ingest: &TestIngest, name: &str, labels: &[(&str, &str)]) -> f64 {
    let metrics = scrape_metrics(&format!("{}/metrics", ingest.base_url))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    metrics.get(name, labels).unwrap_or(0.0)
}

#[tokio::test]
async fn values_that_would_overflow_the_sum_are_rejected_and_the_key_stays_exact() {
    let broker = Broker::start().await;
    let ingest = TestIngest::start(&broker, &[]).await;
    let collector = Collector::start(broker.port(), &["aggregates/#", "ingest/rejected"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;

    let topic = readings_topic("HUGE");
    let huge = json!({"scrapIndex": 1, "value": 1e308}).to_string();
    publisher
        .publish_all(
            QoS::AtLeastOnce,
            [
                (topic.clone(), reading(1, 2.0)),
                (topic.clone(), huge.clone()),
                (topic.clone(), huge),
                (topic.clone(), reading(1, 3.5)),
            ],
            WAIT,
        )
        .await
        .unwrap();
    wait_metric(
        &ingest,
        r#"ingest_readings_rejected_total{reason="bad_value"} 2"#,
    )
    .await;
    let seen = collector
        .wait_for(
            |m| latest(m, "aggregates/HUGE/1").is_some_and(|m| is_aggregate(m, 2, 5.5)),
            WAIT,
        )
        .await;
    seen.unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    // Every aggregate on the way had a number for a sum.
    for message in collector.messages() {
        if message.topic == "aggregates/HUGE/1" {
            let json = message.json().unwrap();
            assert!(json["sumLast60s"].is_f64(), "{json}");
        }
    }
    let messages = collector
        .wait_for(|m| dead_letters(m, "bad_value").len() == 2, WAIT)
        .await
        .unwrap();
    for letter in dead_letters(&messages, "bad_value") {
        let detail = letter["detail"].as_str().unwrap();
        assert!(detail.contains("-1e12 to 1e12"), "{letter}");
    }
}

/// Publishes `n` valid readings (1 to `n`) for OK/1 and waits until their aggregate is out and
/// the oversized reading sent before them was counted as too_large.
async fn valid_readings_count_after_a_too_large_one(
    ingest: &TestIngest,
    collector: &Collector,
    publisher: &mut Publisher,
    n: u32,
) {
    let valid = (1..=n).map(|v| (readings_topic("OK"), reading(1, f64::from(v))));
    publisher
        .publish_all(QoS::AtLeastOnce, valid, WAIT)
        .await
        .unwrap();
    let sum = f64::from(n * (n + 1) / 2);
    let seen = collector
        .wait_for(
            |m| latest(m, "aggregates/OK/1").is_some_and(|m| is_aggregate(m, u64::from(n), sum)),
            WAIT,
        )
        .await;
    seen.unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    wait_metric(
        ingest,
        r#"ingest_readings_rejected_total{reason="too_large"} 1"#,
    )
    .await;
}

#[tokio::test]
async fn a_reading_of_ten_megabytes_is_rejected_acknowledged_and_the_next_ones_count() {
    // A stock Mosquitto's packet limit: MQTT's maximum, 256 MiB.
    let broker = Broker::start().await;
    let mut ingest = TestIngest::start(&broker, &[]).await;
    let connects = metric(&ingest, "ingest_broker_connects_total", &[]).await;
    let collector = Collector::start(broker.port(), &["aggregates/#", "ingest/rejected"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;

    let mut big = br#"{"scrapIndex":1,"value":1,"pad":""#.to_vec();
    big.resize(10 * 1024 * 1024, b'x');
    big.extend_from_slice(br#""}"#);
    let size = big.len();
    publisher
        .publish(&readings_topic("BIG"), QoS::AtLeastOnce, false, big)
        .await
        .unwrap();
    valid_readings_count_after_a_too_large_one(&ingest, &collector, &mut publisher, 3).await;
    let messages = collector
        .wait_for(|m| !dead_letters(m, "too_large").is_empty(), WAIT)
        .await
        .unwrap();
    let letter = &dead_letters(&messages, "too_large")[0];
    assert_eq!(letter["topic"], "machines/BIG/scrap");
    assert!(
        letter["detail"]
            .as_str()
            .unwrap()
            .contains(&size.to_string()),
        "{letter}"
    );
    assert_eq!(
        letter["payload"].as_str().unwrap().len(),
        1024,
        "only its head"
    );

    assert_eq!(ingest.health().await.0, 200);
    assert_eq!(
        metric(&ingest, "ingest_broker_connects_total", &[]).await,
        connects,
        "no reconnect\n{}",
        ingest.process.logs()
    );
    assert!(latest(&collector.messages(), "aggregates/BIG/1").is_none());

    // It was acknowledged: a new process on the same session does not get it again. Its first
    // delivery is the reading sent now, which the broker queues behind anything unacknowledged.
    ingest.process.terminate().await;
    let client_id = ingest.client_id.clone();
    let ingest = TestIngest::start_with_id(&broker, &client_id, &[]).await;
    publisher
        .publish_all(
            QoS::AtLeastOnce,
            [(readings_topic("AFTER"), reading(1, 4.0))],
            WAIT,
        )
        .await
        .unwrap();
    wait_metric(&ingest, "ingest_readings_accepted_total 1").await;
    let too_large = [("reason", "too_large")];
    assert_eq!(
        metric(&ingest, "ingest_readings_rejected_total", &too_large).await,
        0.0,
        "redelivered\n{}",
        ingest.process.logs()
    );
}

#[tokio::test]
async fn a_retained_message_of_two_megabytes_does_not_cut_the_start_up_snapshot_short() {
    let broker = Broker::start().await;
    // Not ingest's: published first, so that the broker replays it before the others.
    let mut big = b"{\"pad\":\"".to_vec();
    big.resize(2 * 1024 * 1024, b'x');
    big.extend_from_slice(b"\"}");
    publish_retained(broker.port(), "aggregates/X/1", big)
        .await
        .unwrap();
    // Keys of a previous run, idle for long: cleared as soon as the snapshot adopts them.
    let mut topics = Vec::new();
    for machine in ["OLD1", "OLD2"] {
        let topic = format!("aggregates/{machine}/1");
        let stale = format!(
            r#"{{"maschinenId":"{machine}","scrapIndex":1,"sumLast60s":0.0,"avgLast60s":null,"count":0,"windowSeconds":60,"timestamp":"2020-01-01T00:00:00.000Z"}}"#
        );
        publish_retained(broker.port(), &topic, stale)
            .await
            .unwrap();
        topics.push(topic);
    }
    let filters: Vec<&str> = topics.iter().map(String::as_str).collect();
    let collector = Collector::start(broker.port(), &filters).await;
    collector
        .wait_for(|m| m.iter().filter(|m| m.retain).count() == 2, WAIT)
        .await
        .unwrap();

    let ingest = TestIngest::start(&broker, &[]).await;
    let cleared = |messages: &[Message], topic: &str| {
        (messages.iter()).any(|m| m.topic == topic && !m.retain && m.payload.is_empty())
    };
    let seen = collector
        .wait_for(|m| topics.iter().all(|t| cleared(m, t)), WAIT)
        .await;
    seen.unwrap_or_else(|e| {
        panic!(
            "the previous run's keys were not cleared: {e}\n{}",
            ingest.process.logs()
        )
    });
    let logs = ingest.process.logs();
    assert!(logs.contains("unusable=1"), "{logs}");
    assert_eq!(ingest.health().await.0, 200);
}

/// Publishes one QoS 0 reading of `size` bytes on `topic` through a raw MQTT 3.1.1 connection,
/// streaming the payload: a client library would hold it whole, and limits its packets.
async fn publish_huge_qos0(port: u16, topic: &str, size: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n % 128) as u8;
            n /= 128;
            out.push(if n > 0 { byte | 0x80 } else { byte });
            if n == 0 {
                return;
            }
        }
    }
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let id = b"hostile-huge";
    // CONNECT: "MQTT", level 4, clean session, no keep-alive.
    let mut body = vec![
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        4,
        0x02,
        0,
        0,
        0,
        id.len() as u8,
    ];
    body.extend_from_slice(id);
    let mut packet = vec![0x10];
    remaining_length(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    stream.write_all(&packet).await.unwrap();
    let mut connack = [0; 4];
    stream.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK");

    let head = br#"{"scrapIndex":1,"value":1,"pad":""#;
    let tail = br#""}"#;
    let mut packet = vec![0x30];
    remaining_length(2 + topic.len() + size, &mut packet);
    packet.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    packet.extend_from_slice(topic.as_bytes());
    packet.extend_from_slice(head);
    stream.write_all(&packet).await.unwrap();
    let pad = vec![b'x'; 1 << 20];
    let mut left = size - head.len() - tail.len();
    while left > 0 {
        let n = left.min(pad.len());
        stream.write_all(&pad[..n]).await.unwrap();
        left -= n;
    }
    stream.write_all(tail).await.unwrap();
    // DISCONNECT: the broker has the whole message before the valid readings are sent.
    stream.write_all(&[0xE0, 0]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
}

#[tokio::test]
async fn a_reading_of_two_hundred_megabytes_at_qos_0_costs_no_reading_sent_after_it() {
    let broker = Broker::start().await;
    let ingest = TestIngest::start(&broker, &[]).await;
    let connects = metric(&ingest, "ingest_broker_connects_total", &[]).await;
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;

    publish_huge_qos0(broker.port(), &readings_topic("HUGE"), 200 * 1024 * 1024).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    valid_readings_count_after_a_too_large_one(&ingest, &collector, &mut publisher, 5).await;
    assert_eq!(
        metric(&ingest, "ingest_broker_connects_total", &[]).await,
        connects,
        "no reconnect\n{}",
        ingest.process.logs()
    );
    assert_eq!(ingest.health().await.0, 200);
}
