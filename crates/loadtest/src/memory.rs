//! `loadtest memory`: what holding readings and keys costs.
//!
//! - `readings`: ingest's RSS (`VmRSS` of its process) once it holds `--readings` readings.
//!   Ingest runs with a 600 s window so that every reading is still in it when the count is
//!   reached even if the broker delivers slower than `--rate`; a reading costs the same
//!   whatever the window length.
//! - `keys`: ingest's RSS with `--keys` keys holding one reading each.
//! - `clients`: the gateway's memory with many keys and WebSocket clients
//!   ([`crate::client_memory`]).
//! - `store`: the window store alone, in this process: RSS growth while accepting
//!   `--readings` readings, and the store's own count of its buffer bytes. No broker, so
//!   `--broker` changes nothing here.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aggregator_core::{Reading, Timestamp, WindowConfig, WindowStore};
use anyhow::bail;

use crate::publisher::Publisher;
use crate::report::{Row, Verdict};
use crate::stack::{self, Bins, BrokerArgs, Rss, mib};
use crate::workload::{self, ClockText};

/// Which memory figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Ingest holding many readings in its window.
    Readings,
    /// Ingest holding many keys.
    Keys,
    /// The window store in this process.
    Store,
    /// The gateway with many keys and many WebSocket clients, half of them never reading.
    Clients,
}

/// Settings of a memory run.
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Scenario::Readings)]
    pub scenario: Scenario,
    /// Readings to hold (`readings`, `store`).
    #[arg(long, default_value_t = 6_000_000)]
    pub readings: u64,
    /// Publishing rate, messages/s (`readings`).
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    /// MQTT QoS of the readings (0 or 1).
    #[arg(long, default_value_t = 0)]
    pub qos: u8,
    /// Keys to hold (`keys`, `clients`).
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// WebSocket clients (`clients`), half of them never reading.
    #[arg(long, default_value_t = 100)]
    pub clients: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Which Mosquitto configuration to start.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Directory of the `ingest` and `gateway` binaries (default: next to this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// Runs it and returns the row.
///
/// # Errors
/// When a part cannot be started or the load is not accounted for in time.
pub async fn run(args: &MemoryArgs) -> anyhow::Result<Row> {
    match args.scenario {
        Scenario::Readings => readings(args).await,
        Scenario::Keys => keys(args).await,
        Scenario::Store => store(args),
        Scenario::Clients => crate::client_memory::clients(args).await,
    }
}

async fn readings(args: &MemoryArgs) -> anyhow::Result<Row> {
    let bins = Bins::locate(args.bin_dir.as_deref())?;
    let broker = args.broker.config.start().await;
    let extra = ["--window-seconds".to_owned(), "600".to_owned()];
    let ingest = stack::start_ingest(&bins, &broker, &extra).await?;
    let idle = ingest.rss()?;
    let (machines, indices) = (10_usize, 5_u32);
    let names: Vec<String> = (0..machines).map(workload::machine).collect();
    let topics: Vec<String> = names.iter().map(|m| workload::topic(m)).collect();
    let mut publisher = Publisher::connect(
        broker.port(),
        &test_support::unique_client_id("lt-mem"),
        args.qos,
    )
    .await?;
    let mut clock = ClockText::default();
    let mut payload = Vec::with_capacity(128);
    let n = args.readings;
    let keys = machines as u64 * u64::from(indices);
    let start = Instant::now();
    let mut sent = 0_u64;
    while sent < n {
        let due = ((start.elapsed().as_secs_f64() * args.rate as f64) as u64 + 1).min(n);
        while sent < due {
            let key = (sent % keys) as usize;
            let (m, i) = (key / indices as usize, (key % indices as usize) as u32);
            workload::payload(
                &mut payload,
                &names[m],
                i,
                workload::value(sent),
                Some(clock.now()),
            );
            publisher.publish(&topics[m], &payload, false).await?;
            sent += 1;
        }
        publisher.flush().await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let publish_time = start.elapsed();
    publisher
        .finish(Duration::from_secs(args.timeout_secs))
        .await?;
    let (accepted, accepted_at) =
        wait_accepted(&ingest.base, n, Duration::from_secs(args.timeout_secs)).await?;
    let http = reqwest::Client::new();
    let buffered = stack::metric(&http, &ingest.base, "ingest_buffered_readings").await?;
    let rss = ingest.rss()?;
    ingest.stop().await;
    let delivered_rate = accepted as f64 / accepted_at.duration_since(start).as_secs_f64();
    let publish_rate = n as f64 / publish_time.as_secs_f64();
    let lost = if accepted < n {
        format!("; only {accepted} of {n} arrived (QoS {})", args.qos)
    } else {
        String::new()
    };
    Ok(Row::new(
        format!(
            "ingest RSS holding {n} readings (50 keys), {}",
            args.broker.config.label()
        ),
        format!(
            "**{:.0} MiB** RSS (peak {:.0}, idle {:.0}); {buffered:.0} readings in the window; published at {publish_rate:.0}/s, ingest accepted at {delivered_rate:.0}/s{lost}",
            mib(rss.current),
            mib(rss.peak),
            mib(idle.current)
        ),
        "<= 300 MB",
        Verdict::from_ok(rss.current <= 300_000_000 && accepted == n),
    ))
}

async fn keys(args: &MemoryArgs) -> anyhow::Result<Row> {
    let bins = Bins::locate(args.bin_dir.as_deref())?;
    let broker = args.broker.config.start().await;
    let ingest = stack::start_ingest(&bins, &broker, &[]).await?;
    let idle = ingest.rss()?;
    let mut publisher =
        Publisher::connect(broker.port(), &test_support::unique_client_id("lt-keys"), 1).await?;
    let mut clock = ClockText::default();
    let mut payload = Vec::with_capacity(128);
    let indices = 100_u64;
    let machines = args.keys.div_ceil(indices);
    let mut sent = 0;
    'outer: for m in 0..machines {
        let name = format!("K{m:05}");
        let topic = workload::topic(&name);
        for i in 0..indices {
            if sent == args.keys {
                break 'outer;
            }
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            workload::payload(&mut payload, &name, i, 1.0, Some(clock.now()));
            publisher.publish(&topic, &payload, false).await?;
            sent += 1;
        }
    }
    publisher
        .finish(Duration::from_secs(args.timeout_secs))
        .await?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let (accepted, _) = wait_accepted(&ingest.base, args.keys, timeout).await?;
    let http = reqwest::Client::new();
    let tracked = stack::metric(&http, &ingest.base, "ingest_keys").await?;
    let rss = ingest.rss()?;
    ingest.stop().await;
    Ok(Row::new(
        format!(
            "ingest RSS with {} keys, {}",
            args.keys,
            args.broker.config.label()
        ),
        format!(
            "**{:.0} MiB** RSS (peak {:.0}, idle {:.0}); {tracked:.0} keys tracked, {accepted} readings",
            mib(rss.current),
            mib(rss.peak),
            mib(idle.current)
        ),
        "<= 200 MB",
        Verdict::from_ok(rss.current <= 200_000_000 && accepted == args.keys),
    ))
}

/// Waits until ingest has accepted `n` readings, or until the count stops moving for 10 s
/// (QoS 0 messages the broker dropped will never come). Returns the count and when it last
/// grew.
async fn wait_accepted(base: &str, n: u64, timeout: Duration) -> anyhow::Result<(u64, Instant)> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    let (mut last, mut last_at) = (0_u64, Instant::now());
    loop {
        let accepted = stack::metric(&http, base, "ingest_readings_accepted_total").await? as u64;
        if accepted != last {
            (last, last_at) = (accepted, Instant::now());
        }
        if accepted >= n || last_at.elapsed() > Duration::from_secs(10) {
            return Ok((accepted, last_at));
        }
        if Instant::now() > deadline {
            bail!("ingest accepted {accepted} of {n} readings within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn store(args: &MemoryArgs) -> anyhow::Result<Row> {
    let n = args.readings;
    let before = Rss::own().map_err(anyhow::Error::msg)?;
    let config = WindowConfig {
        window: Duration::from_secs(600),
        ..WindowConfig::default()
    };
    let mut store = WindowStore::new(config);
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    // Spread over the last 590 s, oldest first, as they would arrive.
    let step = 590_000_000_000 / i64::try_from(n.max(1)).unwrap_or(i64::MAX);
    let names: Vec<String> = (0..10).map(workload::machine).collect();
    for k in 0..n {
        let key = (k % 50) as usize;
        let age = i64::try_from(n - k)
            .unwrap_or(i64::MAX)
            .saturating_mul(step);
        let reading = Reading {
            machine: &names[key / 5],
            scrap_index: (key % 5) as u32,
            value: workload::value(k),
            event_time: Timestamp::from_unix_nanos(now.unix_nanos() - age),
            time_from_payload: true,
        };
        if let Err(e) = store.accept(&reading, now) {
            bail!("reading {k} rejected: {e:?}");
        }
    }
    let after = Rss::own().map_err(anyhow::Error::msg)?;
    let held = store.buffered_readings();
    let bytes = store.buffer_bytes();
    let growth = after.current.saturating_sub(before.current);
    Ok(Row::new(
        format!("window store alone, {n} readings (in-process, no broker)"),
        format!(
            "RSS +{:.0} MiB; buffers {:.0} MiB = {:.1} B/reading; {held} held",
            mib(growth),
            mib(bytes as u64),
            bytes as f64 / held.max(1) as f64
        ),
        "(explains the ingest figure)",
        Verdict::Info,
    ))
}
