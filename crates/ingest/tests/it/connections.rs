//! Ingest receives on one connection and publishes on another: a broker that keeps Nagle's
//! algorithm on (Mosquitto's default) would otherwise hold every reading behind its PUBACK of
//! our last publish. The broker's own log shows which client sent what.

use test_support::{Broker, BrokerOptions, Collector, Publisher, QoS};

use crate::helpers::{TestIngest, WAIT, is_aggregate, latest, reading, readings_topic};

#[tokio::test]
async fn the_readings_connection_publishes_nothing_and_the_output_connection_publishes_everything()
{
    // A stock configuration (no set_tcp_nodelay) that logs every packet.
    let broker = Broker::start_with(BrokerOptions {
        extra_config: "log_type debug\n".to_owned(),
        ..BrokerOptions::default()
    })
    .await;
    let collector = Collector::start(
        broker.port(),
        &["aggregates/#", "status/ingest", "ingest/rejected"],
    )
    .await;
    let ingest = TestIngest::start(&broker, &[]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    let topic = readings_topic("N1");
    let messages = [
        (topic.as_str(), reading(1, 2.0)),
        (topic.as_str(), "not json".to_owned()),
    ];
    publisher
        .publish_all(QoS::AtLeastOnce, messages, WAIT)
        .await
        .unwrap();
    collector
        .wait_for(
            |m| {
                latest(m, "aggregates/N1/1").is_some_and(|m| is_aggregate(m, 1, 2.0))
                    && latest(m, "status/ingest").is_some()
                    && latest(m, "ingest/rejected").is_some()
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));

    let log = broker.log();
    let input = &ingest.client_id;
    let output = format!("{input}-out");
    assert!(
        log.contains(&format!("Sending PUBLISH to {input} (")),
        "the readings reach the input connection\n{log}"
    );
    assert!(
        !log.contains(&format!("Received PUBLISH from {input} (")),
        "the input connection must not publish\n{log}"
    );
    for topic in ["aggregates/N1/1", "status/ingest", "ingest/rejected"] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("Received PUBLISH from {output} ("))
                    && l.contains(&format!("'{topic}'"))),
            "{topic} goes out on {output}\n{log}"
        );
    }
    // The last will (the offline status) belongs to the connection that publishes the online
    // one. Mosquitto logs the will right after the client's connection line.
    let will_of = |client: &str| {
        let lines: Vec<&str> = log.lines().collect();
        let at = lines
            .iter()
            .position(|l| {
                l.contains("New client connected") && l.contains(&format!(" as {client} ("))
            })
            .unwrap_or_else(|| panic!("{client} connected\n{log}"));
        lines
            .get(at + 1)
            .is_some_and(|l| l.contains("Will message specified") && !l.contains("No will"))
    };
    assert!(will_of(&output), "{output} carries the last will\n{log}");
    assert!(!will_of(input), "{input} has no last will\n{log}");
}
