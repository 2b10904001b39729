//! `loadtest throughput`: how fast ingest accounts for QoS 1 readings compared with a bare
//! `mosquitto_sub` that only counts, both subscribed to the same broker in the same run.
//!
//! One publisher writes the readings as fast as the broker acknowledges them. The time at
//! which `mosquitto_sub -C N` has printed its last message, and the time at which ingest's
//! `ingest_readings_accepted_total` reaches N, give the two delivery rates from the same
//! start instant. Then the final retained aggregates are checked against the sums of what
//! was published.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::publisher::Publisher;
use crate::report::{Row, Verdict};
use crate::stack::{self, Bins};
use crate::workload::{self, ClockText, Expected};

/// Settings of a throughput run.
#[derive(Debug, Clone, clap::Args)]
pub struct ThroughputArgs {
    /// Readings to publish.
    #[arg(long, default_value_t = 300_000)]
    pub messages: u64,
    /// Machines (`M000`, `M001`, ...).
    #[arg(long, default_value_t = 10)]
    pub machines: usize,
    /// Scrap indices per machine.
    #[arg(long, default_value_t = 5)]
    pub indices: u32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Ingest settings file passed as its `--config` (e.g. a set of `[[alarm]]` rules).
    #[arg(long, value_name = "FILE")]
    pub ingest_config: Option<PathBuf>,
    /// Directory of the `ingest` and `gateway` binaries (default: next to this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// Runs it and returns the table row.
///
/// # Errors
/// When a part cannot be started, a deadline passes, or the sums are wrong.
pub async fn run(args: &ThroughputArgs) -> anyhow::Result<Row> {
    let bins = Bins::locate(args.bin_dir.as_deref())?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let broker = stack::start_broker().await;
    let extra: Vec<String> = args
        .ingest_config
        .iter()
        .flat_map(|file| ["--config".to_owned(), file.display().to_string()])
        .collect();
    let ingest = stack::start_ingest(&bins, &broker, &extra).await?;
    let n = args.messages;

    // A retained marker tells us when mosquitto_sub's subscription is active: it is the
    // first message it prints.
    let mut publisher =
        Publisher::connect(broker.port(), &test_support::unique_client_id("lt-pub"), 1).await?;
    publisher.publish("loadtest/ready", b"ready", true).await?;
    publisher.flush().await?;
    let sub_bin = test_support::require_tool("mosquitto_sub", test_support::MOSQUITTO_INSTALL_HINT);
    let mut sub = Command::new(sub_bin)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-q",
            "1",
        ])
        .args(["-t", "loadtest/ready", "-t", "machines/+/scrap"])
        .args(["-C", &(n + 1).to_string()])
        .args(["-i", &test_support::unique_client_id("lt-sub")])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting mosquitto_sub")?;
    let mut out = BufReader::new(sub.stdout.take().context("mosquitto_sub stdout")?);
    let mut first = String::new();
    tokio::time::timeout(Duration::from_secs(10), out.read_line(&mut first))
        .await
        .context("mosquitto_sub did not subscribe within 10 s")??;
    let drain = tokio::spawn(async move {
        let mut buf = vec![0_u8; 1 << 16];
        let mut lines = 0_u64;
        while let Ok(k) = out.read(&mut buf).await {
            if k == 0 {
                break;
            }
            lines += buf[..k].iter().filter(|b| **b == b'\n').count() as u64;
        }
        (Instant::now(), lines)
    });

    let http = reqwest::Client::new();
    let base = ingest.base.clone();
    let watch_http = http.clone();
    let watcher = tokio::spawn(async move {
        loop {
            let accepted = stack::metric(&watch_http, &base, "ingest_readings_accepted_total")
                .await
                .unwrap_or(0.0);
            if accepted >= n as f64 {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let keys = args.machines * args.indices as usize;
    let machines: Vec<String> = (0..args.machines).map(workload::machine).collect();
    let topics: Vec<String> = machines.iter().map(|m| workload::topic(m)).collect();
    let mut expected = Expected::default();
    let mut clock = ClockText::default();
    let mut payload = Vec::with_capacity(128);
    let broker_pid = broker.pid().context("the broker has exited")?;
    let cpu0 = (
        stack::cpu_time(broker_pid)?,
        stack::cpu_time(ingest.pid()?)?,
    );
    let start = Instant::now();
    for k in 0..n {
        let key = (k % keys as u64) as usize;
        let (m, i) = (
            key / args.indices as usize,
            (key % args.indices as usize) as u32,
        );
        let v = workload::value(k);
        workload::payload(&mut payload, &machines[m], i, v, Some(clock.now()));
        publisher.publish(&topics[m], &payload, false).await?;
        expected.add(&machines[m], i, v);
    }
    publisher.finish(timeout).await?;
    let published = start.elapsed();

    let (sub_end, sub_lines) = tokio::time::timeout(timeout, drain)
        .await
        .context("mosquitto_sub did not receive every message in time")??;
    let ingest_end = tokio::time::timeout(timeout, watcher)
        .await
        .context("ingest did not account for every reading in time")??;
    let busy = start.elapsed().as_secs_f64();
    let broker_cpu = (stack::cpu_time(broker_pid)? - cpu0.0).as_secs_f64() / busy;
    let ingest_cpu = (stack::cpu_time(ingest.pid()?)? - cpu0.1).as_secs_f64() / busy;
    let _ = sub.wait().await;
    if sub_lines != n {
        bail!("mosquitto_sub printed {sub_lines} readings, expected {n}");
    }
    let max_error = verify_sums(broker.port(), &expected, timeout).await?;
    let accepted = stack::metric(&http, &ingest.base, "ingest_readings_accepted_total").await?;
    ingest.stop().await;

    let sub_rate = n as f64 / sub_end.duration_since(start).as_secs_f64();
    let ingest_rate = n as f64 / ingest_end.duration_since(start).as_secs_f64();
    let pub_rate = n as f64 / published.as_secs_f64();
    let ratio = ingest_rate / sub_rate;
    Ok(Row::new(
        format!(
            "throughput, QoS 1, {} x {} keys, {n} msgs",
            args.machines, args.indices
        ),
        format!(
            "ingest {ingest_rate:.0}/s, mosquitto_sub {sub_rate:.0}/s, ratio **{ratio:.2}**; publisher {pub_rate:.0}/s; sums exact (max error {max_error:e}, {accepted:.0} accepted); CPU: mosquitto {:.0}%, ingest {:.0}% of one core",
            broker_cpu * 100.0,
            ingest_cpu * 100.0
        ),
        "ratio >= 0.9, exact sums",
        Verdict::from_ok(ratio >= 0.9),
    ))
}

/// Waits for the retained aggregate of every key to show the expected count, then returns
/// the largest absolute difference between published and aggregated sums.
///
/// # Errors
/// When the aggregates do not arrive in time or a sum differs.
pub async fn verify_sums(port: u16, expected: &Expected, timeout: Duration) -> anyhow::Result<f64> {
    let collector = test_support::Collector::start(port, &["aggregates/+/+"]).await;
    let latest = |messages: &[test_support::Message]| {
        let mut by_topic: HashMap<&str, serde_json::Value> = HashMap::new();
        for m in messages {
            if let Ok(v) = m.json() {
                by_topic.insert(&m.topic, v);
            }
        }
        by_topic
            .into_iter()
            .map(|(t, v)| (t.to_owned(), v))
            .collect::<HashMap<String, serde_json::Value>>()
    };
    let want_topic = |(m, i): &(String, u32)| format!("aggregates/{m}/{i}");
    let messages = collector
        .wait_for(
            |messages| {
                let latest = latest(messages);
                expected.0.iter().all(|(key, (_, count))| {
                    latest
                        .get(&want_topic(key))
                        .and_then(|v| v["count"].as_u64())
                        == Some(*count)
                })
            },
            timeout,
        )
        .await
        .map_err(|e| anyhow::anyhow!("final aggregates: {e}"))?;
    let latest = latest(&messages);
    let mut max_error = 0.0_f64;
    for (key, (sum, _)) in &expected.0 {
        let got = latest[&want_topic(key)]["sumLast60s"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let error = (got - sum).abs();
        if error.is_nan() || error > 1e-9 * sum.abs().max(1.0) {
            bail!("{key:?}: aggregated sum {got}, published {sum}");
        }
        max_error = max_error.max(error);
    }
    Ok(max_error)
}
