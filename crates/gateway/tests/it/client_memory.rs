//! What a WebSocket client may cost, whatever the number of keys: at 100 000 keys with trends
//! (a snapshot of about 60 MB), 100 clients of which half never read raise the gateway's
//! memory by at most the stated budget, `ws.client_buffer_bytes` plus a few hundred KiB per
//! client, and every reading client still receives the whole snapshot.

use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;
use test_support::{Publisher, QoS, wait_until};

use crate::helpers::{TestGateway, WsClient, aggregate_json, require_fd_limit};

const MACHINES: u32 = 1_000;
const INDICES: u32 = 100;
const KEYS: usize = (MACHINES * INDICES) as usize;
/// Samples per trend: a minute of 10 s samples, as a dashboard shows soon after a start.
const TREND_POINTS: usize = 6;
const READERS: usize = 50;
const NEVER_READING: usize = 50;
/// `ws.client_buffer_bytes` at its default.
const CLIENT_BUFFER_KIB: u64 = 512;
/// What a client may cost on top of its buffer (the contract's statement): one frame being
/// written, one snapshot part being made, the connection's own buffers.
const CLIENT_OVERHEAD_KIB: u64 = 512;

/// What the test reads of a snapshot part: the lists counted, not kept.
#[derive(Deserialize)]
struct Part {
    part: u64,
    last: bool,
    aggregates: Vec<IgnoredAny>,
    trends: Vec<IgnoredAny>,
}

fn trend_json(machine: &str, index: u32) -> String {
    let points: Vec<_> = (0..TREND_POINTS)
        .map(|i| serde_json::json!({"t": format!("2026-01-01T12:00:{:02}.000Z", i * 10), "sum": i as f64 * 1.5}))
        .collect();
    serde_json::json!({
        "maschinenId": machine, "scrapIndex": index, "intervalSeconds": 10, "points": points,
    })
    .to_string()
}

/// Reads one whole snapshot; the numbers of aggregates and trends in it.
async fn read_snapshot(client: &mut WsClient) -> Result<(usize, usize), String> {
    let (mut aggregates, mut trends) = (0, 0);
    for expected in 0.. {
        let frame = client.next_text(Duration::from_secs(120)).await?;
        let part: Part = serde_json::from_str(&frame).map_err(|e| format!("{e}: {frame:.200}"))?;
        if part.part != expected {
            return Err(format!("part {} where {expected} was due", part.part));
        }
        aggregates += part.aggregates.len();
        trends += part.trends.len();
        if part.last {
            break;
        }
    }
    Ok((aggregates, trends))
}

/// Reads one whole snapshot, checking only that its parts come in order; its size in bytes.
async fn read_parts(client: &mut WsClient) -> Result<usize, String> {
    let mut bytes = 0;
    for part in 0.. {
        let frame = client.next_text(Duration::from_secs(120)).await?;
        if !frame.starts_with(&format!(r#"{{"type":"snapshot","part":{part},"#)) {
            return Err(format!("part {part} was due: {frame:.100}"));
        }
        bytes += frame.len();
        if frame.ends_with(r#""last":true}"#) {
            break;
        }
    }
    Ok(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_at_a_hundred_thousand_keys_stay_within_the_memory_budget() {
    require_fd_limit((READERS + NEVER_READING) as u64 + 200);
    let broker = test_support::Broker::start().await;
    let mut publisher = Publisher::connect(broker.port()).await;
    for m in 0..MACHINES {
        let machine = format!("M{m}");
        for index in 1..=INDICES {
            let aggregate = aggregate_json(&machine, index, 1.5, 1);
            let (a, t) = (
                format!("aggregates/{machine}/{index}"),
                format!("trends/{machine}/{index}"),
            );
            publisher
                .publish(&a, QoS::AtLeastOnce, true, aggregate)
                .await
                .unwrap();
            publisher
                .publish(&t, QoS::AtLeastOnce, true, trend_json(&machine, index))
                .await
                .unwrap();
        }
    }
    publisher.flush(Duration::from_secs(120)).await.unwrap();

    // Clients that never read stay for the whole run (they are not cut off after the 30 s
    // default), however slowly the readers go on a loaded machine.
    let gw = TestGateway::start(broker.port(), &["--ws-client-timeout-secs", "600"]).await;
    // The retained replay is in once a client's snapshot holds every aggregate and trend.
    wait_until(
        Duration::from_secs(120),
        "the gateway holds every key",
        || async {
            let Ok(mut client) = WsClient::connect(&gw.ws_url("")).await else {
                return false;
            };
            read_snapshot(&mut client).await == Ok((KEYS, KEYS))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.process.logs()));
    let pid = gw.process.pid().expect("gateway runs");
    // Resets the peak (VmHWM) to the current RSS, so that the peak below is this phase's.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .unwrap_or_else(|e| panic!("resetting the gateway's peak RSS (Linux 4.0 or later): {e}"));
    let before = gw.process.rss().unwrap();

    let mut never_reading = Vec::new();
    for _ in 0..NEVER_READING {
        let client = WsClient::connect_small_buffer(gw.addr, &gw.ws_url(""))
            .await
            .unwrap();
        never_reading.push(client);
    }
    let started = std::time::Instant::now();
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let url = gw.ws_url("");
            tokio::spawn(async move {
                let mut client = WsClient::connect(&url).await.map_err(|e| e.to_string())?;
                let bytes = read_parts(&mut client).await?;
                Ok::<_, String>((client, bytes))
            })
        })
        .collect();
    let mut reading = Vec::new();
    for reader in readers {
        let (client, bytes) = reader
            .await
            .unwrap()
            .expect("a reading client gets the whole snapshot");
        assert!(
            bytes > 40 << 20,
            "a snapshot of {bytes} bytes is smaller than expected"
        );
        reading.push(client);
    }
    eprintln!(
        "{READERS} clients read the snapshot in {:?}",
        started.elapsed()
    );
    let clients = (READERS + NEVER_READING) as f64;
    assert_eq!(
        gw.metric("gateway_ws_clients").await,
        clients,
        "every client still connected"
    );

    let after = gw.process.rss().unwrap();
    let growth = after.peak_kib().saturating_sub(before.current_kib());
    let budget = (READERS + NEVER_READING) as u64 * (CLIENT_BUFFER_KIB + CLIENT_OVERHEAD_KIB);
    eprintln!(
        "{KEYS} keys with trends; RSS before the clients {} KiB, peak with {clients} clients {} KiB \
         (+{growth} KiB; budget {budget} KiB)",
        before.current_kib(),
        after.peak_kib()
    );
    assert!(
        growth <= budget,
        "{clients} clients raised the gateway's peak RSS by {growth} KiB, over the budget of {budget} KiB"
    );
    drop((never_reading, reading));
}
