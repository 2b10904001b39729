//! `loadtest fanout`: one gateway, many WebSocket clients, a set of keys updating at a fixed
//! rate.
//!
//! Aggregates are published straight onto `aggregates/{id}/{index}` (no ingest needed): at
//! tick `t` every key gets `sumLast60s = t`, so any client can tell from a frame alone which
//! tick it carries and look up when that tick was published. Clients scan frames for the sums
//! (cheap: thousands of clients share two cores with the gateway) and parse a frame fully
//! only when it carries the final tick, to check that they got every key's final value.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use memchr::memmem;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::publisher::Publisher;
use crate::report::{Row, Verdict};
use crate::stack::{self, Bins, BrokerArgs, mib};
use crate::wsclient;

/// Where a frame's sums start (memchr's SIMD search: the clients share the gateway's cores).
static SUM_FIELD: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(r#""sumLast60s":"#));

/// Histogram resolution and range of frame delays.
const BUCKET: Duration = Duration::from_micros(100);
const BUCKETS: usize = 100_000;

/// Settings of a fan-out run.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// WebSocket clients.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Keys updating.
    #[arg(long, default_value_t = 50)]
    pub keys: usize,
    /// Updates of every key per second.
    #[arg(long, default_value_t = 10)]
    pub updates_per_sec: u64,
    /// Seconds of updates.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Clients connecting at the same time.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// How long, after the last update, clients may take to show every final value.
    #[arg(long, default_value_t = 30)]
    pub settle_secs: u64,
    /// Which Mosquitto configuration to start.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Directory of the `ingest` and `gateway` binaries (default: next to this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// What the clients share.
struct Shared {
    /// When each tick's first aggregate was written.
    ticks: Vec<OnceLock<Instant>>,
    final_tick: u64,
    keys: usize,
    delays: Vec<AtomicU64>,
    connected: AtomicUsize,
    complete: AtomicUsize,
    frames: AtomicU64,
    snapshots: AtomicU64,
}

impl Shared {
    fn record(&self, delay: Duration) {
        let bucket = (delay.as_nanos() / BUCKET.as_nanos()) as usize;
        self.delays[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    fn percentile(&self, p: f64) -> (Duration, u64) {
        let counts: Vec<u64> = self
            .delays
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return (BUCKET * u32::try_from(i + 1).unwrap_or(u32::MAX), total);
            }
        }
        (Duration::ZERO, total)
    }
}

/// Raises the soft open-files limit to the hard one and checks it is enough for `needed`.
///
/// # Errors
/// When the hard limit is too low (the message says how to raise it).
pub fn raise_nofile(needed: u64) -> anyhow::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    if hard < needed {
        bail!(
            "RLIMIT_NOFILE hard limit {hard} < {needed} needed: raise it (ulimit -Hn, /etc/security/limits.conf, or run as root)"
        );
    }
    Ok(hard)
}

/// Runs it and returns the row.
///
/// # Errors
/// When a part cannot be started or clients cannot connect.
pub async fn run(args: &FanoutArgs) -> anyhow::Result<Row> {
    if args.keys == 0 || args.updates_per_sec == 0 || args.duration_secs == 0 {
        bail!("--keys, --updates-per-sec and --duration-secs must be at least 1");
    }
    // The gateway inherits the limit: one descriptor per client on both sides.
    raise_nofile(args.clients as u64 + 256)?;
    let bins = Bins::locate(args.bin_dir.as_deref())?;
    let broker = args.broker.config.start().await;
    let max = (args.clients + 16).to_string();
    let gateway = stack::start_gateway(&bins, &broker, &["--ws-max-clients".into(), max]).await?;
    let idle = gateway.rss()?;

    let final_tick = args.updates_per_sec * args.duration_secs;
    let shared = Arc::new(Shared {
        ticks: (0..=final_tick).map(|_| OnceLock::new()).collect(),
        final_tick,
        keys: args.keys,
        delays: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        connected: AtomicUsize::new(0),
        complete: AtomicUsize::new(0),
        frames: AtomicU64::new(0),
        snapshots: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let connect_start = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let (shared, gate, stop) = (Arc::clone(&shared), Arc::clone(&gate), stop_rx.clone());
        let base = gateway.base.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let ws = wsclient::connect(&base).await;
            drop(permit);
            match ws {
                Ok(ws) => client(ws, &shared, stop).await,
                Err(e) => Err(e),
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.connected.load(Ordering::Acquire) < args.clients {
        if Instant::now() > deadline || tasks.iter().any(tokio::task::JoinHandle::is_finished) {
            let _ = stop_tx.send(true);
            for t in tasks {
                if let Ok(Err(e)) = t.await {
                    bail!("a client failed: {e:#}");
                }
            }
            bail!(
                "only {} of {} clients connected",
                shared.connected.load(Ordering::Acquire),
                args.clients
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_time = connect_start.elapsed();
    let connected_rss = gateway.rss()?;

    let mut publisher =
        Publisher::connect(broker.port(), &test_support::unique_client_id("lt-fan"), 1).await?;
    let period = Duration::from_secs_f64(1.0 / args.updates_per_sec as f64);
    let topics: Vec<(String, String, usize)> = (0..args.keys)
        .map(|k| {
            let (m, i) = (format!("F{:02}", k / 10), k % 10);
            (format!("aggregates/{m}/{i}"), m, i)
        })
        .collect();
    let gateway_cpu0 = stack::cpu_time(gateway.pid()?)?;
    let own_cpu0 = stack::cpu_time(std::process::id())?;
    let start = tokio::time::Instant::now();
    let mut peak_rss = connected_rss.current;
    let mut payload = String::with_capacity(256);
    for tick in 1..=final_tick {
        tokio::time::sleep_until(start + period * u32::try_from(tick - 1).unwrap_or(u32::MAX))
            .await;
        let _ = shared.ticks[tick as usize].set(Instant::now());
        for (topic, m, i) in &topics {
            payload.clear();
            payload.push_str(&format!(
                r#"{{"maschinenId":"{m}","scrapIndex":{i},"sumLast60s":{tick},"avgLast60s":1.0,"count":{tick},"windowSeconds":60,"timestamp":"2026-01-01T00:00:00.000Z"}}"#
            ));
            publisher.publish(topic, payload.as_bytes(), true).await?;
        }
        publisher.flush().await?;
        if let Ok(rss) = gateway.rss() {
            peak_rss = peak_rss.max(rss.current);
        }
    }
    publisher.finish(Duration::from_secs(30)).await?;
    let settle = Instant::now() + Duration::from_secs(args.settle_secs);
    while shared.complete.load(Ordering::Acquire) < args.clients && Instant::now() < settle {
        if let Ok(rss) = gateway.rss() {
            peak_rss = peak_rss.max(rss.current);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end_rss = gateway.rss()?;
    let busy = start.elapsed().as_secs_f64();
    let gateway_cpu = (stack::cpu_time(gateway.pid()?)? - gateway_cpu0).as_secs_f64() / busy;
    let own_cpu = (stack::cpu_time(std::process::id())? - own_cpu0).as_secs_f64() / busy;
    let _ = stop_tx.send(true);
    let mut failed = 0;
    for t in tasks {
        if !matches!(t.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    gateway.stop().await;

    let complete = shared.complete.load(Ordering::Acquire);
    let (p50, _) = shared.percentile(50.0);
    let (p99, samples) = shared.percentile(99.0);
    let frames = shared.frames.load(Ordering::Relaxed);
    let resyncs = shared
        .snapshots
        .load(Ordering::Relaxed)
        .saturating_sub(args.clients as u64);
    let peak = peak_rss.max(end_rss.current);
    let ok = complete == args.clients && p99 < Duration::from_millis(250) && peak <= 300_000_000;
    Ok(Row::new(
        format!(
            "fan-out: {} WS clients, {} keys x {}/s, {} s, {}",
            args.clients,
            args.keys,
            args.updates_per_sec,
            args.duration_secs,
            args.broker.config.label()
        ),
        format!(
            "{complete}/{} clients got every final value; frame delay p50 {:.1} ms, p99 **{:.1} ms** ({samples} aggregates in {frames} frames, {resyncs} resyncs, {failed} client errors); gateway RSS peak **{:.0} MiB** (idle {:.0}, {} clients connected {:.0}); connecting took {:.1} s; CPU while updating: gateway {:.0}%, the clients {:.0}% (of one core)",
            args.clients,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            mib(peak),
            mib(idle.current),
            args.clients,
            mib(connected_rss.current),
            connect_time.as_secs_f64(),
            gateway_cpu * 100.0,
            own_cpu * 100.0
        ),
        "all clients, p99 < 250 ms, RSS <= 300 MB",
        Verdict::from_ok(ok),
    ))
}

/// One client: waits for the snapshot, then records the delay of every aggregate it gets
/// until told to stop; marks itself complete once it has every key's final value.
async fn client(
    mut ws: wsclient::Ws,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut finals: HashSet<(String, u64)> = HashSet::new();
    let mut counted_connect = false;
    let mut complete = false;
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            m = ws.next() => m,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("WebSocket read"),
            None => bail!("the gateway closed the connection"),
        };
        let at = Instant::now();
        let text = text.as_str();
        if text.starts_with(r#"{"type":"snapshot""#) {
            // A snapshot may come in parts; its first one counts it.
            if text.starts_with(r#"{"type":"snapshot","part":0,"#) {
                shared.snapshots.fetch_add(1, Ordering::Relaxed);
            }
            if !counted_connect {
                counted_connect = true;
                shared.connected.fetch_add(1, Ordering::AcqRel);
            }
        } else {
            shared.frames.fetch_add(1, Ordering::Relaxed);
        }
        let mut has_final = false;
        for at_sum in SUM_FIELD.find_iter(text.as_bytes()) {
            let part = &text[at_sum + SUM_FIELD.needle().len()..];
            let digits = part.bytes().take_while(u8::is_ascii_digit).count();
            let Ok(tick) = part[..digits].parse::<u64>() else {
                continue;
            };
            has_final |= tick == shared.final_tick;
            if let Some(sent) = shared.ticks.get(tick as usize).and_then(OnceLock::get)
                && !text.starts_with(r#"{"type":"snapshot""#)
            {
                shared.record(at.saturating_duration_since(*sent));
            }
        }
        if has_final && !complete {
            let frame: serde_json::Value = serde_json::from_str(text)?;
            for a in frame["aggregates"].as_array().into_iter().flatten() {
                if a["sumLast60s"].as_f64() == Some(shared.final_tick as f64) {
                    let m = a["maschinenId"].as_str().unwrap_or_default().to_owned();
                    finals.insert((m, a["scrapIndex"].as_u64().unwrap_or(u64::MAX)));
                }
            }
            if finals.len() == shared.keys {
                complete = true;
                shared.complete.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}
