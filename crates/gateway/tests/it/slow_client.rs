//! A client that never reads must not delay the others nor grow the gateway's memory; once
//! it reads again it is resynced with a snapshot instead of the backlog.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::{Broker, Publisher, QoS, tcp_connection_open, wait_until};

use crate::helpers::{TestGateway, View, WsClient, aggregate_json};

/// 1 000 keys x 100 rounds = 100 000 updates; frames carry up to 1 000 aggregates (~180 KB),
/// tens of MB per client in all: far more than the stuck client's socket buffers hold.
const MACHINES: u32 = 20;
const INDICES: u32 = 50;
const ROUNDS: u32 = 100;
const READERS: usize = 3;
/// Small, so the stuck client overflows its queue and must be resynced.
const QUEUE_FRAMES: &str = "16";
/// Generous bound on the gateway's memory growth over the run.
const MAX_RSS_GROWTH_KIB: u64 = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_delays_nobody_and_memory_stays_bounded() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &["--ws-client-queue-frames", QUEUE_FRAMES]).await;
    gw.wait_healthy().await;

    // Not read until the end: its socket buffers fill and the gateway's sends to it stall.
    let mut stuck = WsClient::connect_small_buffer(gw.addr, &gw.ws_url(""))
        .await
        .unwrap();

    let views: Vec<Arc<Mutex<View>>> = (0..READERS).map(|_| Arc::default()).collect();
    let mut readers = Vec::new();
    for view in &views {
        let mut client = WsClient::connect(&gw.ws_url("")).await.unwrap();
        let view = Arc::clone(view);
        readers.push(tokio::spawn(async move {
            loop {
                match client.next_json(Duration::from_secs(120)).await {
                    Ok(frame) => view.lock().unwrap().apply(&frame),
                    Err(e) => return e,
                }
            }
        }));
    }
    gw.wait_metric(
        "gateway_ws_clients",
        (READERS + 1) as f64,
        Duration::from_secs(5),
    )
    .await;
    let rss_before = gw.rss_kib();

    let mut expected: BTreeMap<(String, u64), Value> = BTreeMap::new();
    let mut publisher = Publisher::connect(broker.port()).await;
    let started = Instant::now();
    for round in 1..=ROUNDS {
        for m in 0..MACHINES {
            let machine = format!("M{m}");
            for index in 0..INDICES {
                let payload = aggregate_json(&machine, index, f64::from(round), u64::from(round));
                if round == ROUNDS {
                    expected.insert(
                        (machine.clone(), u64::from(index)),
                        serde_json::from_str(&payload).unwrap(),
                    );
                }
                let topic = format!("aggregates/{machine}/{index}");
                publisher
                    .publish(&topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .unwrap();
            }
        }
    }
    publisher.flush(Duration::from_secs(300)).await.unwrap();
    let published_in = started.elapsed();
    let acked = Instant::now();

    // The stuck client has read nothing yet: had its stalled sends held the others back,
    // they would never get here. How long it took is reported, not asserted, since it
    // depends on the machine's load.
    wait_until(
        Duration::from_secs(30),
        "every reader has every final value while the stuck client reads nothing",
        || {
            let done = views
                .iter()
                .all(|v| v.lock().unwrap().aggregates == expected);
            async move { done }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.process.logs()));
    let final_after = acked.elapsed();
    let rss_after = gw.rss_kib();
    let messages = MACHINES * INDICES * ROUNDS;
    assert_eq!(
        gw.metric("gateway_mqtt_messages_received_total").await,
        f64::from(messages)
    );
    assert!(
        rss_after.saturating_sub(rss_before) < MAX_RSS_GROWTH_KIB,
        "gateway RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_eq!(gw.health().await.0, 200);
    for reader in &readers {
        assert!(!reader.is_finished(), "a reader stopped");
    }

    // The stuck client reads again: it gets what was buffered, then a fresh snapshot, and
    // ends with the final values, not with a replay of everything it missed.
    let mut view = View::default();
    let mut snapshots = 0;
    let mut frames = 0;
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        while view.aggregates != expected {
            let frame = stuck.next_json(Duration::from_secs(30)).await?;
            frames += 1;
            if frame["type"] == "snapshot" && frame["part"] == 0 {
                snapshots += 1;
            }
            view.apply(&frame);
        }
        Ok::<_, String>(())
    })
    .await;
    assert!(
        matches!(drained, Ok(Ok(()))),
        "the stuck client never caught up: {drained:?}"
    );
    let resyncs = gw.metric("gateway_ws_resyncs_total").await;
    let sent = gw.metric("gateway_ws_frames_sent_total").await;
    eprintln!(
        "{messages} updates published in {published_in:?}; readers had every final value {final_after:?} after the last ack; \
         gateway RSS {rss_before} KiB -> {rss_after} KiB; frames sent {sent}; resyncs {resyncs}; \
         the stuck client caught up with {frames} frames, {snapshots} of them snapshots"
    );
    assert!(
        snapshots >= 2,
        "the stuck client was never resynced ({frames} frames)"
    );
    assert!(resyncs >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_is_dropped_and_the_others_stay() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(
        broker.port(),
        &[
            "--ws-ping-interval-secs",
            "1",
            "--ws-client-timeout-secs",
            "2",
        ],
    )
    .await;
    gw.wait_healthy().await;
    let stuck = WsClient::connect_small_buffer(gw.addr, &gw.ws_url(""))
        .await
        .unwrap();
    let view: Arc<Mutex<View>> = Arc::default();
    let mut reader = WsClient::connect(&gw.ws_url("")).await.unwrap();
    let reader_view = Arc::clone(&view);
    let reading = tokio::spawn(async move {
        loop {
            match reader.next_json(Duration::from_secs(60)).await {
                Ok(frame) => reader_view.lock().unwrap().apply(&frame),
                Err(e) => return e,
            }
        }
    });
    // Both are counted from the upgrade on, so no wait is needed here (and waiting could
    // race the 2 s timeout on a loaded machine).

    // Enough data to fill the stuck client's buffers while it also ignores pings.
    let mut publisher = Publisher::connect(broker.port()).await;
    for round in 1..=20_u32 {
        for index in 0..1_000 {
            publisher
                .publish(
                    &format!("aggregates/S1/{index}"),
                    QoS::AtMostOnce,
                    false,
                    aggregate_json("S1", index, f64::from(round), u64::from(round)),
                )
                .await
                .unwrap();
        }
    }
    publisher.flush(Duration::from_secs(120)).await.unwrap();

    gw.wait_metric("gateway_ws_clients", 1.0, Duration::from_secs(30))
        .await;
    let slow = gw.metric("gateway_ws_slow_clients_dropped_total").await;
    let timed_out = gw.metric("gateway_ws_clients_timed_out_total").await;
    assert_eq!(
        slow + timed_out,
        1.0,
        "the stuck client, and only it, is gone (slow {slow}, timed out {timed_out})"
    );
    assert!(!reading.is_finished(), "the reading client stays connected");
    wait_until(
        Duration::from_secs(10),
        "the reader has the last round",
        || {
            let done = view.lock().unwrap().aggregates.len() == 1_000
                && view
                    .lock()
                    .unwrap()
                    .aggregates
                    .values()
                    .all(|a| a["count"] == 20);
            async move { done }
        },
    )
    .await
    .unwrap();
    drop(stuck);
}

/// A client that never reads, whose socket is full when its task gives up on it: the kernel
/// cuts the connection off after the client timeout (the gateway's close frame cannot get
/// through), so its slot and its buffered bytes are freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_socket_stays_full_is_cut_off_and_frees_its_slot() {
    const KEYS: u32 = 20_000;
    let broker = Broker::start().await;
    let mut publisher = Publisher::connect(broker.port()).await;
    for index in 0..KEYS {
        let payload = aggregate_json("S1", index, 1.0, 1);
        let topic = format!("aggregates/S1/{index}");
        publisher
            .publish(&topic, QoS::AtLeastOnce, true, payload)
            .await
            .unwrap();
    }
    publisher.flush(Duration::from_secs(60)).await.unwrap();
    let args = [
        "--ws-ping-interval-secs",
        "1",
        "--ws-client-timeout-secs",
        "2",
    ];
    let gw = TestGateway::start(broker.port(), &args).await;
    gw.wait_healthy().await;
    gw.wait_keys(u64::from(KEYS)).await;

    // A snapshot of some 4 MB: far more than the client's and the gateway's socket buffers.
    let stuck = WsClient::connect_small_buffer(gw.addr, &gw.ws_url(""))
        .await
        .unwrap();
    let client_addr = stuck.local_addr();
    gw.wait_metric("gateway_ws_clients", 0.0, Duration::from_secs(30))
        .await;
    // Its slot is free (whether its task or the kernel gave up first), and the connection,
    // whose socket holds bytes the gateway's close frame would wait behind, is gone too.
    wait_until(
        Duration::from_secs(30),
        "the gateway drops the connection",
        || async { !tcp_connection_open(gw.addr, client_addr).unwrap() },
    )
    .await
    .unwrap();
    drop(stuck);
}
