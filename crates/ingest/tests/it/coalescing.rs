//! Coalescing: a burst of readings to one key gives about one aggregate per interval, and the
//! last one is exact.

use test_support::{Broker, Collector, Publisher, QoS};

use crate::helpers::{TestIngest, WAIT, is_aggregate, latest, reading, readings_topic};

#[tokio::test]
async fn ten_thousand_readings_to_one_key_give_few_messages_and_the_last_is_exact() {
    let broker = Broker::start().await;
    // Burst 1: the plain cap of one message per interval, which this test counts.
    let ingest = TestIngest::start(
        &broker,
        &["--publish-interval-ms", "100", "--publish-burst", "1"],
    )
    .await;
    let topic = "aggregates/P1/4";
    let collector = Collector::start(broker.port(), &[topic]).await;
    let mut publisher = Publisher::connect(broker.port()).await;

    let values: Vec<f64> = (0..10_000)
        .map(|i| f64::from(i % 17) * 0.25 + 0.1)
        .collect();
    let sum: f64 = values.iter().sum();
    let messages = values
        .iter()
        .map(|v| (readings_topic("P1"), reading(4, *v)));
    publisher
        .publish_all(QoS::AtLeastOnce, messages, WAIT)
        .await
        .unwrap();

    let messages = collector
        .wait_for(
            |m| latest(m, topic).is_some_and(|m| is_aggregate(m, 10_000, sum)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let first = messages.first().unwrap().received;
    let last = messages.last().unwrap().received;
    let span = last.duration_since(first);
    // Arrival times jitter on a busy machine (two publishes 100 ms apart may arrive 60 ms
    // apart), so a few extra messages are tolerated; without coalescing there would be
    // thousands.
    let allowed = (span.as_millis() / 100) as usize + 4;
    assert!(
        messages.len() <= allowed,
        "{} aggregate messages over {span:?}: more than one per 100 ms",
        messages.len()
    );
    assert!(messages.len() < 100, "{} messages", messages.len());
    assert!(is_aggregate(messages.last().unwrap(), 10_000, sum));
    // Counts only grow during the burst, so no message is out of order.
    let counts: Vec<u64> = messages
        .iter()
        .map(|m| m.json().unwrap()["count"].as_u64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
}

/// `republish_after_ms`: once a key went quiet its last aggregate goes out once more (a broker
/// that lost a delivery gets a second chance), and only once.
#[tokio::test]
async fn a_quiet_key_s_last_aggregate_is_published_once_more_when_asked() {
    let broker = Broker::start().await;
    let ingest = TestIngest::start(&broker, &["--publish-again-after-ms", "300"]).await;
    let topic = "aggregates/Q1/1";
    let collector = Collector::start(broker.port(), &[topic]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    let readings = readings_topic("Q1");
    publisher
        .publish_all(
            QoS::AtLeastOnce,
            [
                (readings.as_str(), reading(1, 2.0)),
                (readings.as_str(), reading(1, 3.0)),
            ],
            WAIT,
        )
        .await
        .unwrap();
    let live = |m: &test_support::Message| !m.retain && m.topic == topic;
    let twice = collector
        .wait_for(
            |m| {
                m.iter()
                    .filter(|m| live(m) && is_aggregate(m, 2, 5.0))
                    .count()
                    >= 2
            },
            WAIT,
        )
        .await;
    twice.unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    crate::helpers::wait_metric(&ingest, "ingest_aggregates_republished_total 1").await;
    // Nothing changed since: no third copy, whatever the wait (the metric stays at 1 while
    // the next publish of a new reading shows the task is still running).
    publisher
        .publish_all(
            QoS::AtLeastOnce,
            [(readings.as_str(), reading(1, 1.0))],
            WAIT,
        )
        .await
        .unwrap();
    collector
        .wait_for(
            |m| m.iter().any(|m| live(m) && is_aggregate(m, 3, 6.0)),
            WAIT,
        )
        .await
        .unwrap();
    let copies_of_five = collector
        .messages()
        .iter()
        .filter(|m| live(m) && is_aggregate(m, 2, 5.0))
        .count();
    assert_eq!(
        copies_of_five, 2,
        "the settled aggregate went out once more, not again"
    );
    crate::helpers::wait_metric(&ingest, "ingest_aggregates_republished_total 2").await;
}
