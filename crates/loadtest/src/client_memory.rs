//! `loadtest memory --scenario clients`: what WebSocket clients cost the gateway at many keys.
//!
//! `--keys` retained aggregates, each with a trend of six samples, are published before the
//! gateway starts; once a first client's snapshot holds them all, `--clients` clients connect
//! at once, half of them never reading (a small receive buffer, nothing read), half reading
//! their whole snapshot. The row is the growth of the gateway's peak RSS over its RSS before
//! the clients (the peak reset first), against the contract's budget per client.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

use crate::memory::MemoryArgs;
use crate::publisher::Publisher;
use crate::report::{Row, Verdict};
use crate::stack::{self, Bins, Service, mib};
use crate::wsclient::{self, Ws};

/// What the contract lets one client cost at the default `ws.client_buffer_bytes`: the buffer
/// plus 512 KiB.
const BUDGET_PER_CLIENT: u64 = 1024 * 1024;

/// Scrap indices per machine.
const INDICES: u64 = 100;

/// Runs it and returns the row.
///
/// # Errors
/// When a part cannot be started or a reading client does not get its snapshot.
pub async fn clients(args: &MemoryArgs) -> anyhow::Result<Row> {
    let bins = Bins::locate(args.bin_dir.as_deref())?;
    let broker = args.broker.config.start().await;
    publish_state(broker.port(), args.keys).await?;
    // Clients that never read stay for the whole run, however long the readers take.
    let flags = ["--ws-client-timeout-secs".to_owned(), "3600".to_owned()];
    let gateway = stack::start_gateway(&bins, &broker, &flags).await?;
    let timeout = Duration::from_secs(args.timeout_secs);
    wait_for_state(&gateway, args.keys, timeout).await?;
    let pid = gateway.pid()?;
    // Resets the peak (VmHWM) to the current RSS: the peak below is the clients' phase's.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("resetting the peak RSS")?;
    let before = gateway.rss()?;

    let stuck = args.clients / 2;
    let mut never_reading = Vec::new();
    for _ in 0..stuck {
        never_reading.push(connect_never_reading(&gateway.base).await?);
    }
    let started = Instant::now();
    let readers: Vec<_> = (stuck..args.clients)
        .map(|_| {
            let base = gateway.base.clone();
            tokio::spawn(async move {
                let mut ws = wsclient::connect(&base).await?;
                read_snapshot(&mut ws, timeout).await
            })
        })
        .collect();
    let mut snapshot = (0, 0, 0);
    for reader in readers {
        snapshot = reader.await??;
    }
    let read_in = started.elapsed();
    let after = gateway.rss()?;
    gateway.stop().await;
    drop(never_reading);

    let growth = after.peak.saturating_sub(before.current);
    let budget = args.clients * BUDGET_PER_CLIENT;
    let (bytes, keys, _) = snapshot;
    Ok(Row::new(
        format!(
            "gateway memory, {} keys with trends, {} clients ({stuck} never reading), {}",
            args.keys,
            args.clients,
            args.broker.config.label()
        ),
        format!(
            "**+{:.0} MiB** peak RSS over {:.0} MiB before the clients ({:.2} MiB per client); \
             each reading client got {keys} aggregates in a {:.0} MiB snapshot, all within {:.1} s",
            mib(growth),
            mib(before.current),
            mib(growth) / args.clients.max(1) as f64,
            mib(bytes),
            read_in.as_secs_f64()
        ),
        format!("<= {:.0} MiB", mib(budget)),
        Verdict::from_ok(growth <= budget && keys == args.keys),
    ))
}

/// Publishes `keys` retained aggregates and trends, as ingest would, and waits for the broker.
async fn publish_state(port: u16, keys: u64) -> anyhow::Result<()> {
    let id = test_support::unique_client_id("lt-clients");
    let mut publisher = Publisher::connect(port, &id, 1).await?;
    for key in 0..keys {
        let (machine, index) = (format!("M{}", key / INDICES), key % INDICES);
        let aggregate = format!(
            r#"{{"maschinenId":"{machine}","scrapIndex":{index},"sumLast60s":12.5,"avgLast60s":2.5,"count":5,"windowSeconds":60,"timestamp":"2026-01-01T12:00:30.123Z"}}"#
        );
        let points: Vec<String> = (0..6)
            .map(|i| {
                format!(
                    r#"{{"t":"2026-01-01T12:00:{:02}.000Z","sum":{}.5}}"#,
                    i * 10,
                    i
                )
            })
            .collect();
        let trend = format!(
            r#"{{"maschinenId":"{machine}","scrapIndex":{index},"intervalSeconds":10,"points":[{}]}}"#,
            points.join(",")
        );
        let topic = format!("aggregates/{machine}/{index}");
        publisher
            .publish(&topic, aggregate.as_bytes(), true)
            .await?;
        let topic = format!("trends/{machine}/{index}");
        publisher.publish(&topic, trend.as_bytes(), true).await?;
    }
    publisher.finish(Duration::from_secs(300)).await?;
    Ok(())
}

/// Waits until a client's snapshot holds all `keys` aggregates and trends.
async fn wait_for_state(gateway: &Service, keys: u64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut ws = wsclient::connect(&gateway.base).await?;
        let (_, aggregates, trends) = read_snapshot(&mut ws, timeout).await?;
        if aggregates == keys && trends == keys {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the gateway holds {aggregates} of {keys} keys after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A client with a 4 KiB receive buffer that never reads.
async fn connect_never_reading(base: &str) -> anyhow::Result<Ws> {
    let addr = base.trim_start_matches("http://");
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let stream = socket.connect(addr.parse()?).await?;
    let url = format!("ws://{addr}/ws");
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    Ok(ws)
}

/// Reads one whole snapshot, its parts in order: its size in bytes, its aggregates and trends.
async fn read_snapshot(ws: &mut Ws, timeout: Duration) -> anyhow::Result<(u64, u64, u64)> {
    let (mut bytes, mut aggregates, mut trends) = (0_u64, 0_u64, 0_u64);
    for part in 0.. {
        let message = tokio::time::timeout(timeout, ws.next()).await;
        let text = match message.context("no snapshot part in time")? {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("WebSocket read"),
            None => bail!("the gateway closed the connection"),
        };
        if !text.starts_with(&format!(r#"{{"type":"snapshot","part":{part},"#)) {
            bail!("snapshot part {part} was due, got {:.80}", text.as_str());
        }
        bytes += text.len() as u64;
        // A part's lists come in this order; every item names its machine once.
        let count = |list: &str| list.matches(r#""maschinenId""#).count() as u64;
        let (head, tail) = text.split_once(r#","alarms":"#).unwrap_or((&text, ""));
        aggregates += count(head);
        trends += count(tail.split_once(r#","trends":"#).map_or("", |(_, t)| t));
        if text.ends_with(r#""last":true}"#) {
            return Ok((bytes, aggregates, trends));
        }
    }
    unreachable!("the loop returns")
}
