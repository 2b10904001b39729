//! Runs the three node configs of `deploy/nats/` as they are shipped, with only their ports,
//! peer host names and JetStream directories rewritten for loopback: the nodes must form one
//! cluster, accept MQTT, and route a reading published on one node to the subscriber of the
//! shard that aggregator-core's `shard_of` names, on another node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aggregator_core::partition::shard_of;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use test_support::{
    ServiceProcess, free_port, require_tool, try_http_get, unique_client_id, wait_until,
};

/// Cluster formation and the first MQTT session (JetStream creates its streams, ~2 s on an idle
/// machine) are slow; the machine is shared.
const NATS_WAIT: Duration = Duration::from_secs(60);
const NODES: usize = 3;
const SHARDS: u32 = 3;

/// The loopback ports of one node.
#[derive(Clone, Copy)]
struct Ports {
    client: u16,
    http: u16,
    cluster: u16,
    mqtt: u16,
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats")
}

/// Replaces `from` by `to` in `text`, failing when `from` is absent: a shipped config that no
/// longer has the expected line must fail here, not run with a default.
fn rewrite(text: &str, from: &str, to: &str, file: &str) -> String {
    assert!(text.contains(from), "{file} has no `{from}` to rewrite");
    text.replace(from, to)
}

/// Node `index` (0-based)'s shipped config, pointed at loopback ports and `store`.
fn node_config(index: usize, ports: &[Ports], store: &Path) -> String {
    let file = format!("nats-{}.conf", index + 1);
    let path = deploy_dir().join(&file);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let own = ports[index];
    text = rewrite(
        &text,
        "0.0.0.0:4222",
        &format!("127.0.0.1:{}", own.client),
        &file,
    );
    text = rewrite(
        &text,
        "0.0.0.0:8222",
        &format!("127.0.0.1:{}", own.http),
        &file,
    );
    text = rewrite(
        &text,
        "0.0.0.0:6222",
        &format!("127.0.0.1:{}", own.cluster),
        &file,
    );
    text = rewrite(
        &text,
        "0.0.0.0:1883",
        &format!("127.0.0.1:{}", own.mqtt),
        &file,
    );
    text = rewrite(
        &text,
        "/data/jetstream",
        &store.display().to_string(),
        &file,
    );
    for (peer, peer_ports) in ports.iter().enumerate().filter(|(p, _)| *p != index) {
        text = rewrite(
            &text,
            &format!("nats-{}:6222", peer + 1),
            &format!("127.0.0.1:{}", peer_ports.cluster),
            &file,
        );
    }
    text
}

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
    let nats = require_tool(
        "nats-server",
        "`sudo apt-get install nats-server` (Debian/Ubuntu package, 2.9 or later)",
    );
    let ports: Vec<Ports> = (0..NODES)
        .map(|_| Ports {
            client: free_port(),
            http: free_port(),
            cluster: free_port(),
            mqtt: free_port(),
        })
        .collect();
    let store = tempfile::tempdir().expect("temp dir for JetStream");
    let mut nodes = Vec::new();
    for index in 0..NODES {
        let node_store = store.path().join(format!("node-{}", index + 1));
        let config = store.path().join(format!("nats-{}.conf", index + 1));
        std::fs::write(&config, node_config(index, &ports, &node_store)).expect("write config");
        let config = config.display().to_string();
        nodes.push(ServiceProcess::spawn(
            &nats,
            ["-c", config.as_str()],
            [("NO_COLOR", "1")],
        ));
    }
    let logs = |nodes: &[ServiceProcess]| {
        nodes
            .iter()
            .map(ServiceProcess::logs)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    // Each node routes to the two others.
    for p in &ports {
        let url = format!("http://127.0.0.1:{}/routez", p.http);
        let formed = wait_until(NATS_WAIT, &format!("{url} shows 2 routes"), || async {
            match try_http_get(&url).await {
                Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                    .is_ok_and(|v| v["num_routes"] == 2),
                _ => false,
            }
        })
        .await;
        if let Err(e) = formed {
            panic!("{e}\n{}", logs(&nodes));
        }
    }

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
            logs(&nodes)
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
            logs(&nodes)
        );
    };
    assert_eq!(topic, format!("shard/{other}/machines/{machine}/scrap"));
    for task in [sub_task, wrong_task, pub_task] {
        task.abort();
    }
}
