//! Runs the three node configs of `deploy/nats/` as they are shipped (through
//! `test_support::NatsCluster`, which rewrites only ports, peer host names and JetStream
//! directories for loopback): the nodes must form one cluster, accept MQTT, and route a reading published on one node to the subscriber of the
//! shard that aggregator-core's `shard_of` names, on another node.

use std::time::Duration;

use aggregator_core::partition::shard_of;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use test_support::{NATS_NODES, NATS_SHARDS as SHARDS, NatsCluster, unique_client_id};

/// The first MQTT session on a fresh cluster is slow (JetStream creates its streams).
const NATS_WAIT: Duration = Duration::from_secs(60);

/// Connects an MQTT client to `port`, retrying until the node accepts it (a fresh cluster
/// refuses MQTT until JetStream has a leader), subscribes to `filter` when given, and returns
/// the client with a channel of `(topic, payload)` publishes.
async fn mqtt_client(
    port: u16,
    filter: Option<&str>,
) -> (
    AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    tokio::task::JoinHandle<()>,
) {
    let mut options = MqttOptions::new(unique_client_id("nats-e2e"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(true);
    let (client, mut event_loop) = AsyncClient::new(options, 16);
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let subscriber = client.clone();
    let filter = filter.map(str::to_owned);
    let task = tokio::spawn(async move {
        loop {
            match event_loop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => match &filter {
                    Some(f) => {
                        let _ = subscriber.subscribe(f.clone(), QoS::AtLeastOnce).await;
                    }
                    None => {
                        let _ = ready_tx.send(true);
                    }
                },
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(true);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                // Not ready yet, or the node dropped us: poll again after a pause (the event
                // loop reconnects on the next poll).
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    });
    let ready = tokio::time::timeout(NATS_WAIT, ready_rx.wait_for(|r| *r)).await;
    assert!(
        matches!(ready, Ok(Ok(_))),
        "MQTT on port {port} not ready within {NATS_WAIT:?}"
    );
    (client, rx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_nats_configs_form_a_cluster_that_partitions_mqtt_readings() {
    let cluster = NatsCluster::start().await;
    let ports: Vec<_> = (0..NATS_NODES).map(|i| cluster.ports(i)).collect();

    // Publisher on node 1, subscriber of A1's shard on node 2, and one of another shard on
    // node 3 that must get nothing.
    let shard = shard_of("A1", SHARDS);
    let other = (shard + 1) % SHARDS;
    let (_sub, mut received, sub_task) = mqtt_client(
        ports[1].mqtt,
        Some(&format!("shard/{shard}/machines/+/scrap")),
    )
    .await;
    let (_wrong, mut wrong, wrong_task) = mqtt_client(
        ports[2].mqtt,
        Some(&format!("shard/{other}/machines/+/scrap")),
    )
    .await;
    let (publisher, _, pub_task) = mqtt_client(ports[0].mqtt, None).await;
    let payload = br#"{"scrapIndex":1,"value":7}"#;
    publisher
        .publish(
            "machines/A1/scrap",
            QoS::AtLeastOnce,
            false,
            payload.to_vec(),
        )
        .await
        .expect("queue publish");

    let got = tokio::time::timeout(NATS_WAIT, received.recv()).await;
    let Ok(Some((topic, body))) = got else {
        panic!(
            "no reading on shard {shard} within {NATS_WAIT:?}\n{}",
            cluster.logs()
        );
    };
    assert_eq!(topic, format!("shard/{shard}/machines/A1/scrap"));
    assert_eq!(body, payload);
    // A machine of the other shard arrives there, after A1 was sent: had A1 been routed to that
    // shard too, it would be ahead of it.
    let machine = (1..)
        .map(|n| format!("M{n}"))
        .find(|m| shard_of(m, SHARDS) == other)
        .expect("some machine is on the other shard");
    publisher
        .publish(
            format!("machines/{machine}/scrap"),
            QoS::AtLeastOnce,
            false,
            payload.to_vec(),
        )
        .await
        .expect("queue publish");
    let got = tokio::time::timeout(NATS_WAIT, wrong.recv()).await;
    let Ok(Some((topic, _))) = got else {
        panic!(
            "no reading on shard {other} within {NATS_WAIT:?}\n{}",
            cluster.logs()
        );
    };
    assert_eq!(topic, format!("shard/{other}/machines/{machine}/scrap"));
    for task in [sub_task, wrong_task, pub_task] {
        task.abort();
    }
}
