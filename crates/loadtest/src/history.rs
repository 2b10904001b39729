//! The historian's figures, on a SQLite file or a PostgreSQL server of the run's own
//! (test-support's, from Debian's PostgreSQL 15 binaries):
//!
//! - `history-keepup`: readings at a fixed rate over many keys through a real ingest; the
//!   historian's backlog (buckets ingest handed to its client minus buckets the historian
//!   committed) sampled every 10 s must not grow, and the stored totals must equal what was
//!   published.
//! - `history-query`: a store filled by `historian-demo` with N days x K keys, then the shift
//!   totals of all of it through `/api/history?step=shift` (p50/p95) and the store's size per
//!   key and day.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use tempfile::TempDir;
use test_support::Postgres;

use crate::publisher::Publisher;
use crate::report::{Row, Verdict, ms, percentile};
use crate::stack::{self, Bins, BrokerArgs, Service, metric};
use crate::workload;

/// The plant's shifts in both runs: three of eight hours, in a zone with DST.
const SHIFTS_TOML: &str = r#"
[plant]
timezone = "Europe/Berlin"
day_start = "06:00"

[[shift]]
name = "Early"
start = "06:00"
end = "14:00"

[[shift]]
name = "Late"
start = "14:00"
end = "22:00"

[[shift]]
name = "Night"
start = "22:00"
end = "06:00"
"#;

/// Which store the historian writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreChoice {
    /// A SQLite file in a temp dir (the historian's default store).
    Sqlite,
    /// A PostgreSQL server of the run's own on a free port.
    Postgres,
}

/// A store for one run; removed with it.
enum RunStore {
    Sqlite(TempDir),
    Postgres(Box<Postgres>),
}

impl RunStore {
    async fn start(choice: StoreChoice) -> anyhow::Result<Self> {
        Ok(match choice {
            StoreChoice::Sqlite => Self::Sqlite(tempfile::tempdir()?),
            StoreChoice::Postgres => Self::Postgres(Box::new(Postgres::start().await)),
        })
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!("sqlite://{}", self.sqlite_file(dir).display()),
            Self::Postgres(server) => server.url(),
        }
    }

    fn sqlite_file(&self, dir: &TempDir) -> PathBuf {
        dir.path().join("historian.db")
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "SQLite file",
            Self::Postgres(_) => "PostgreSQL 15 (fsync off)",
        }
    }

    /// Bytes the bucket tables take: the SQLite file and its write-ahead log, or PostgreSQL's
    /// size of the minute, hour and shift tables with their indexes.
    fn bytes(&self) -> anyhow::Result<u64> {
        match self {
            Self::Sqlite(dir) => {
                let file = self.sqlite_file(dir);
                let wal = file.with_extension("db-wal");
                let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                Ok(size(&file) + size(&wal))
            }
            Self::Postgres(server) => {
                let out = std::process::Command::new("psql")
                    .args([
                        &server.url(),
                        "-tAc",
                        "SELECT pg_total_relation_size('minute_buckets') \
                         + pg_total_relation_size('hour_buckets') \
                         + pg_total_relation_size('shift_buckets')",
                    ])
                    .output()
                    .context("running psql (apt-get install postgresql-client)")?;
                ensure!(
                    out.status.success(),
                    "psql: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
            }
        }
    }
}

/// Starts the historian on `store` with the plant's shifts and `extra` flags.
async fn start_historian(
    bins: &Bins,
    broker: &test_support::Broker,
    store: &RunStore,
    config_dir: &Path,
    extra: &[&str],
) -> anyhow::Result<Service> {
    let config = config_dir.join("historian.toml");
    std::fs::write(&config, SHIFTS_TOML)?;
    let mut flags = vec![
        "--config".to_owned(),
        config.display().to_string(),
        "--store-url".to_owned(),
        store.url(),
    ];
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    stack::start_historian(bins, broker, &flags).await
}

/// Settings of a keep-up run.
#[derive(Debug, Clone, clap::Args)]
pub struct KeepupArgs {
    /// Store to write.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreChoice,
    /// Readings per second.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// Keys (machines x 5 scrap indexes).
    #[arg(long, default_value_t = 1_000)]
    pub keys: usize,
    /// How long readings are published.
    #[arg(long, default_value_t = 600)]
    pub duration_secs: u64,
    /// Which Mosquitto configuration to start.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Directory of the service binaries (default: next to this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// Scrap indexes per machine in the keep-up load.
const INDEXES: usize = 5;
/// How often the backlog is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How long the stored totals may take to reach the published ones after the last reading:
/// the last open buckets go out within ingest's history interval (10 s).
const SETTLE: Duration = Duration::from_secs(120);

/// Runs it and returns the table row.
///
/// # Errors
/// When a part cannot be started, or the totals never match.
pub async fn keepup(args: &KeepupArgs) -> anyhow::Result<Row> {
    let bins = Bins::locate(args.bin_dir.as_deref())?;
    let store = RunStore::start(args.store).await?;
    let broker = args.broker.config.start().await;
    let dir = tempfile::tempdir()?;
    let historian = start_historian(&bins, &broker, &store, dir.path(), &[]).await?;
    let ingest = stack::start_ingest(&bins, &broker, &[]).await?;
    let http = reqwest::Client::new();
    // The plant day starts at 06:00 Berlin time: from yesterday covers every reading.
    let started_day = utc_date_days_ago(1);

    let machines = args.keys.div_ceil(INDEXES);
    let mut publisher = Publisher::connect(broker.port(), "loadtest-history", 1).await?;
    let (mut sum, mut count) = (0.0, 0u64);
    let mut payload = Vec::new();
    let mut backlog = Vec::new();
    let tick = Duration::from_millis(10);
    let per_tick = (args.rate / 100).max(1);
    let start = Instant::now();
    let mut next_sample = start + SAMPLE_EVERY;
    let mut n = 0u64;
    let historian_cpu_start = stack::cpu_time(historian.pid()?)?;
    while start.elapsed() < Duration::from_secs(args.duration_secs) {
        for _ in 0..per_tick {
            let key = (n as usize) % (machines * INDEXES);
            let machine = workload::machine(key / INDEXES);
            let index = (key % INDEXES) as u32;
            let value = workload::value(n);
            payload.clear();
            workload::payload(&mut payload, &machine, index, value, None);
            publisher
                .publish(&workload::topic(&machine), &payload, false)
                .await?;
            sum += value;
            count += 1;
            n += 1;
        }
        publisher.flush().await?;
        if Instant::now() >= next_sample {
            next_sample += SAMPLE_EVERY;
            let handed = metric(&http, &ingest.base, "ingest_history_published_total").await?;
            let stored = metric(&http, &historian.base, "historian_messages_stored_total").await?;
            backlog.push((handed - stored).max(0.0));
        }
        let due = start + tick.mul_f64((n / per_tick) as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    let published_secs = start.elapsed().as_secs_f64();
    publisher.finish(Duration::from_secs(60)).await?;
    let historian_cpu = stack::cpu_time(historian.pid()?)? - historian_cpu_start;

    let settled = wait_totals(&http, &historian.base, &started_day, sum, count).await?;
    let rss = historian.rss()?;
    let dropped = broker_dropped(broker.port()).await;
    let stored = metric(&http, &historian.base, "historian_messages_stored_total").await?;
    let batches = metric(&http, &historian.base, "historian_batches_committed_total").await?;
    let commit_secs = metric(&http, &historian.base, "historian_batch_commit_seconds_sum").await?;
    ingest.stop().await;
    historian.stop().await;
    let exact = settled.is_ok();
    let (Ok((stored_sum, stored_count)) | Err((stored_sum, stored_count))) = settled;
    let totals = if exact {
        format!("stored totals exact ({stored_count} readings, sum {stored_sum})")
    } else {
        format!(
            "stored totals **short** after {SETTLE:?}: {stored_count} of {count} readings, sum {stored_sum} of {sum}"
        )
    };

    let half = backlog.len() / 2;
    let peak = |s: &[f64]| s.iter().copied().fold(0.0, f64::max);
    let (early, late) = (peak(&backlog[..half]), peak(&backlog[half..]));
    // Not growing: the second half's peak stays within one round of every key's bucket.
    let steady = late <= early.max(args.keys as f64);
    Ok(Row::new(
        format!(
            "historian keeps up, {} readings/s over {} keys for {} s, {}, {}",
            args.rate,
            machines * INDEXES,
            args.duration_secs,
            store.label(),
            args.broker.config.label()
        ),
        format!(
            "{:.0} readings/s published; historian backlog peak **{early:.0}** (first half) / **{late:.0}** (second half) buckets, last {:.0}; {totals}; the broker dropped {dropped} messages (queue limits); {stored:.0} buckets in {batches:.0} commits of {:.1} ms on average; historian CPU {:.1}% of one core, RSS {:.1} MiB (peak {:.1})",
            count as f64 / published_secs,
            backlog.last().copied().unwrap_or(0.0),
            1e3 * commit_secs / batches.max(1.0),
            100.0 * historian_cpu.as_secs_f64() / published_secs,
            stack::mib(rss.current),
            stack::mib(rss.peak),
        ),
        "no growing backlog, exact totals",
        Verdict::from_ok(steady && exact),
    ))
}

/// What the broker says it dropped for its queue and in-flight limits
/// (`$SYS/broker/publish/messages/dropped`, refreshed every 10 s), or why it could not be read.
async fn broker_dropped(port: u16) -> String {
    let out = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-t",
            "$SYS/broker/publish/messages/dropped",
            "-C",
            "1",
            "-W",
            "15",
        ])
        .output()
        .await;
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        // Timed out: Mosquitto publishes the counter only once it has dropped something.
        Ok(out) if out.status.code() == Some(27) => "0".to_owned(),
        Ok(out) => format!("? ({})", String::from_utf8_lossy(&out.stderr).trim()),
        Err(e) => format!("? (mosquitto_sub: {e})"),
    }
}

/// Stored (sum, count) of every key.
type Totals = (f64, u64);

/// Waits until the daily totals of every key add up to `sum` and `count`: `Ok` with them, or
/// `Err` with the last totals seen when they never do.
///
/// # Errors
/// When the API does not answer.
async fn wait_totals(
    http: &reqwest::Client,
    base: &str,
    from_day: &str,
    sum: f64,
    count: u64,
) -> anyhow::Result<Result<Totals, Totals>> {
    let url = format!("{base}/api/history?step=day&from={from_day}");
    let deadline = Instant::now() + SETTLE;
    loop {
        let rows: Vec<serde_json::Value> = http.get(&url).send().await?.json().await?;
        let stored_sum: f64 = rows.iter().filter_map(|r| r["sum"].as_f64()).sum();
        let stored_count: u64 = rows.iter().filter_map(|r| r["count"].as_u64()).sum();
        if stored_count == count && (stored_sum - sum).abs() <= 1e-9 * sum.abs() {
            return Ok(Ok((stored_sum, stored_count)));
        }
        if Instant::now() >= deadline {
            return Ok(Err((stored_sum, stored_count)));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Settings of a query run.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// Store to fill and query.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreChoice,
    /// Days of synthetic history.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Machines (x `--indexes` keys).
    #[arg(long, default_value_t = 100)]
    pub machines: u32,
    /// Scrap indexes per machine.
    #[arg(long, default_value_t = 5)]
    pub indexes: u32,
    /// Queries timed.
    #[arg(long, default_value_t = 40)]
    pub queries: usize,
    /// Directory of the service binaries (default: next to this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// Runs it and returns the table row.
///
/// # Errors
/// When a part cannot be started, the fill fails or an answer is wrong.
pub async fn query(args: &QueryArgs) -> anyhow::Result<Row> {
    let bins = Bins::locate(args.bin_dir.as_deref())?;
    let store = RunStore::start(args.store).await?;
    let fill_started = Instant::now();
    let fill = tokio::process::Command::new(bins.sibling("historian-demo")?)
        .args(["--store-url", &store.url()])
        .args(["--days", &args.days.to_string()])
        .args(["--machines", &args.machines.to_string()])
        .args(["--indexes", &args.indexes.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .await?;
    ensure!(fill.status.success(), "historian-demo failed");
    let fill_secs = fill_started.elapsed().as_secs_f64();
    let filled = String::from_utf8_lossy(&fill.stdout).trim().to_owned();
    let keys = u64::from(args.machines * args.indexes);

    let broker = stack::BrokerConfig::Stock.start().await;
    let dir = tempfile::tempdir()?;
    let historian = start_historian(&bins, &broker, &store, dir.path(), &[]).await?;
    let http = reqwest::Client::new();
    let from = utc_date_days_ago(args.days);
    let url = format!("{}/api/history?step=shift&from={from}", historian.base);
    let mut times = Vec::with_capacity(args.queries);
    let mut rows_seen = 0;
    for _ in 0..args.queries {
        // Timed until the whole answer has arrived; reading it is the client's business.
        let started = Instant::now();
        let answer = http.get(&url).send().await?;
        ensure!(answer.status() == 200, "{url}: {}", answer.status());
        let body = answer.bytes().await?;
        times.push(started.elapsed());
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
        rows_seen = rows.len();
    }
    // Every key has a row for each of the three shifts of each day.
    let expected_rows = keys as usize * 3 * args.days as usize;
    ensure!(
        rows_seen >= expected_rows,
        "{rows_seen} rows; expected at least {expected_rows}"
    );
    times.sort();
    let p95 = percentile(&times, 95.0);
    historian.stop().await;
    // Measured after the historian's start has built the shift totals beside the buckets.
    let bytes = store.bytes()?;
    let per_key_day = bytes as f64 / (keys * u64::from(args.days)) as f64;
    Ok(Row::new(
        format!(
            "historian shift totals, {} days x {keys} keys, {}",
            args.days,
            store.label()
        ),
        format!(
            "p50 {} / p95 **{}** for {rows_seen} rows; store {:.1} KiB per key and day ({:.0} MiB); fill {fill_secs:.0} s: {filled}",
            ms(percentile(&times, 50.0)),
            ms(p95),
            per_key_day / 1024.0,
            stack::mib(bytes),
        ),
        "p95 < 300 ms",
        Verdict::from_ok(p95 < Duration::from_millis(300)),
    ))
}

/// The UTC date `days` days ago (a plant day for `from`: the whole range and a little more).
fn utc_date_days_ago(days: u32) -> String {
    let now = aggregator_core::Timestamp::from_system_time(std::time::SystemTime::now());
    let then = now.unix_millis() - 86_400_000 * i64::from(days);
    aggregator_core::Timestamp::from_unix_millis(then)
        .map(|t| t.to_rfc3339_millis()[..10].to_owned())
        .unwrap_or_else(|| "1970-01-01".to_owned())
}
