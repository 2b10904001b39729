//! Many concurrent clients all receive an update.

use std::time::{Duration, Instant};

use test_support::{Broker, Publisher, QoS};

use crate::helpers::{TestGateway, WsClient, aggregate_json, require_fd_limit};

const CLIENTS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_all_receive_an_update() {
    require_fd_limit(CLIENTS as u64 + 200);
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &[]).await;
    gw.wait_healthy().await;

    let started = Instant::now();
    let mut connecting = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let url = gw.ws_url("");
        connecting.push(tokio::spawn(async move {
            let mut client = WsClient::connect(&url).await.map_err(|e| e.to_string())?;
            let snapshot = client.next_json(Duration::from_secs(30)).await?;
            if snapshot["type"] != "snapshot" {
                return Err(format!("first frame is not a snapshot: {snapshot}"));
            }
            Ok::<_, String>(client)
        }));
    }
    let mut clients = Vec::with_capacity(CLIENTS);
    for task in connecting {
        clients.push(task.await.unwrap().unwrap());
    }
    let connected_in = started.elapsed();
    gw.wait_metric(
        "gateway_ws_clients",
        CLIENTS as f64,
        Duration::from_secs(10),
    )
    .await;

    let mut publisher = Publisher::connect(broker.port()).await;
    let payload = aggregate_json("FAN", 1, 42.0, 6);
    let published = Instant::now();
    publisher
        .publish("aggregates/FAN/1", QoS::AtLeastOnce, true, payload)
        .await
        .unwrap();
    let mut readers = Vec::with_capacity(CLIENTS);
    for mut client in clients {
        readers.push(tokio::spawn(async move {
            let frame = client.next_of("update", Duration::from_secs(30)).await?;
            let got = &frame["aggregates"][0];
            if got["maschinenId"] != "FAN" || got["sumLast60s"] != 42.0 {
                return Err(format!("wrong update: {frame}"));
            }
            Ok::<_, String>(published.elapsed())
        }));
    }
    let mut slowest = Duration::ZERO;
    let mut received = 0;
    for reader in readers {
        match reader.await.unwrap() {
            Ok(latency) => {
                received += 1;
                slowest = slowest.max(latency);
            }
            Err(e) => panic!("a client missed the update: {e}\n{}", gw.process.logs()),
        }
    }
    assert_eq!(received, CLIENTS);
    eprintln!(
        "{CLIENTS} clients connected in {connected_in:?}; all had the update {slowest:?} after the publish"
    );
}
