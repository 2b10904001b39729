//! The measurement behind `loadtest throughput` and `loadtest cluster`: how fast one or more
//! ingest processes account for QoS 1 readings, compared with a bare `mosquitto_sub` that
//! only counts, both subscribed to the same broker (or cluster) in the same run.
//!
//! Every publishing connection is open and the subscriber's subscription is active before the
//! clock starts. Then the connections publish their share of the readings at once, as fast as
//! the broker acknowledges them. The instant `mosquitto_sub -C N` has printed its last reading,
//! and the instant the ingest processes' `ingest_readings_accepted_total` together reach N, give
//! the two delivery rates from the same start. Finally the retained aggregates are checked
//! against the sums of what was published, and the accepted counts against N.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use simulator::sparkplug::EdgeNode;
use simulator::transport::sparkplug::now_ms;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::publisher::Publisher;
use crate::stack::{self, Service};
use crate::workload::{self, ClockText, Expected, Protocol};

/// The retained message that tells when `mosquitto_sub`'s subscription is active: it is the
/// first message it prints.
const READY_TOPIC: &str = "loadtest/ready";
/// How long `mosquitto_sub` may take to subscribe (a QoS 1 subscription on NATS creates a
/// JetStream consumer).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the ingest processes' counters are read while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The readings of a run: reading `n` goes to key `n mod (machines x indices)`, so every key
/// gets its share in turn.
#[derive(Debug, Clone)]
pub struct Load {
    /// Readings to publish.
    pub messages: u64,
    /// Machines (`M000`, `M001`, ...).
    pub machines: usize,
    /// Scrap indices per machine.
    pub indices: u32,
    /// Whether every reading carries a unique `id` (its sequence number; JSON only).
    pub ids: bool,
    /// JSON readings or Sparkplug B.
    pub protocol: Protocol,
}

impl Load {
    /// How many of the readings belong to each of `shards` shards (by the partition function
    /// the broker mapping and ingest share), for failure messages.
    pub fn per_shard(&self, shards: u32) -> Vec<u64> {
        let mut counts = vec![0_u64; shards as usize];
        for n in 0..self.messages {
            let (m, _, _) = self.reading(n);
            let machine = workload::machine(m);
            counts[aggregator_core::partition::shard_of(&machine, shards) as usize] += 1;
        }
        counts
    }

    /// Reading `n`'s machine number, scrap index and value.
    fn reading(&self, n: u64) -> (usize, u32, f64) {
        let keys = self.machines as u64 * u64::from(self.indices);
        let key = n % keys;
        let indices = u64::from(self.indices);
        (
            (key / indices) as usize,
            (key % indices) as u32,
            workload::value(n),
        )
    }
}

/// Where a run sends its readings and whom it watches.
pub struct Target<'a> {
    /// The broker port of each publishing connection (one entry per connection).
    pub publish_ports: Vec<u16>,
    /// The bare subscriber's broker port.
    pub subscriber_port: u16,
    /// The bare subscriber's filter: every reading as the ingest processes receive them.
    pub subscriber_filter: &'a str,
    /// The bare subscriber's QoS (0 or 1).
    pub subscriber_qos: u8,
    /// The ingest processes that together account for every reading.
    pub ingests: &'a [Service],
    /// The broker port the retained aggregates are read back from.
    pub aggregates_port: u16,
    /// Processes whose CPU use is reported, by name.
    pub cpu: Vec<(String, u32)>,
}

impl<'a> Target<'a> {
    /// One ingest on one Mosquitto, `connections` publishers on it; CPU of both reported.
    ///
    /// # Errors
    /// When the broker or ingest has exited.
    pub fn one_mosquitto(
        broker: &test_support::Broker,
        ingest: &'a Service,
        connections: usize,
    ) -> anyhow::Result<Self> {
        Ok(Target {
            publish_ports: vec![broker.port(); connections],
            subscriber_port: broker.port(),
            subscriber_filter: "machines/+/scrap",
            subscriber_qos: 1,
            ingests: std::slice::from_ref(ingest),
            aggregates_port: broker.port(),
            cpu: vec![
                (
                    "mosquitto".to_owned(),
                    broker.pid().context("the broker has exited")?,
                ),
                ("ingest".to_owned(), ingest.pid()?),
            ],
        })
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Readings per second the ingest processes accounted for, together.
    pub ingest_rate: f64,
    /// Readings per second the bare subscriber received.
    pub subscriber_rate: f64,
    /// Readings per second the publishers got acknowledged.
    pub publisher_rate: f64,
    /// Largest difference between a published and an aggregated sum.
    pub max_error: f64,
    /// `ingest_readings_accepted_total` of each ingest process at the end.
    pub accepted: Vec<u64>,
    /// CPU use of each [`Target::cpu`] process while the run was busy, in % of one core.
    pub cpu_percent: Vec<(String, f64)>,
}

impl Measured {
    /// Ingest's rate over the bare subscriber's.
    pub fn ratio(&self) -> f64 {
        self.ingest_rate / self.subscriber_rate
    }

    /// The CPU figures as `name N%, ...`.
    pub fn cpu_text(&self) -> String {
        self.cpu_percent
            .iter()
            .map(|(name, pct)| format!("{name} {pct:.0}%"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs `load` against `target` and measures it.
///
/// # Errors
/// When a part cannot be started, a deadline passes, a sum differs, or the ingest processes
/// accepted other than exactly the readings published.
pub async fn measure(
    target: &Target<'_>,
    load: &Load,
    timeout: Duration,
) -> anyhow::Result<Measured> {
    let n = load.messages;
    let subscriber = BareSubscriber::start(
        target.subscriber_port,
        target.subscriber_filter,
        target.subscriber_qos,
        n,
        load,
    )
    .await?;
    let fleet = Fleet::connect(&target.publish_ports).await?;
    let http = reqwest::Client::new();
    let bases: Vec<String> = target.ingests.iter().map(|s| s.base.clone()).collect();
    let progress = Arc::new(Progress::default());
    let watcher = watch_accepted(http.clone(), bases.clone(), n, Arc::clone(&progress));

    let cpu0 = cpu_times(&target.cpu)?;
    let start = Instant::now();
    let expected = fleet.publish(load, timeout).await?;
    let published = start.elapsed();
    let subscriber_end = subscriber.finish(timeout).await?;
    let Ok(ingest_end) = tokio::time::timeout(timeout, watcher).await else {
        // The rates up to the stall still say how fast the parts were.
        let rate = |at: Instant| n as f64 / at.duration_since(start).as_secs_f64();
        let most = progress.most.get().map_or("never".to_owned(), |at| {
            format!("at {:.0}/s", rate(*at) * 0.99)
        });
        bail!(
            "ingest accounted for {} of {n} readings within {timeout:?} (99 % {most}; the bare subscriber had all at {:.0}/s, publishers {:.0}/s):\n{}",
            progress.accepted.load(Ordering::Relaxed),
            rate(subscriber_end),
            n as f64 / published.as_secs_f64(),
            ingest_state(&http, target.ingests).await
        );
    };
    let ingest_end = ingest_end.context("the ingest watcher failed")?;
    let busy = start.elapsed().as_secs_f64();
    let cpu_percent = cpu_times(&target.cpu)?
        .into_iter()
        .zip(cpu0)
        .zip(&target.cpu)
        .map(|((end, begin), (name, _))| (name.clone(), (end - begin).as_secs_f64() / busy * 100.0))
        .collect();

    let max_error = verify_sums(target.aggregates_port, &expected, timeout).await?;
    let mut accepted = Vec::with_capacity(bases.len());
    for base in &bases {
        accepted.push(stack::metric(&http, base, "ingest_readings_accepted_total").await? as u64);
    }
    let total: u64 = accepted.iter().sum();
    if total != n {
        bail!("ingest accepted {total} readings ({accepted:?}), {n} were published");
    }
    Ok(Measured {
        ingest_rate: n as f64 / ingest_end.duration_since(start).as_secs_f64(),
        subscriber_rate: n as f64 / subscriber_end.duration_since(start).as_secs_f64(),
        publisher_rate: n as f64 / published.as_secs_f64(),
        max_error,
        accepted,
        cpu_percent,
    })
}

/// Each ingest process's reading counters and log, for a failure message.
async fn ingest_state(http: &reqwest::Client, ingests: &[Service]) -> String {
    let mut text = String::new();
    for (k, ingest) in ingests.iter().enumerate() {
        let counters = match http.get(format!("{}/metrics", ingest.base)).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(e) => format!("/metrics: {e}"),
        };
        let readings: Vec<&str> = counters
            .lines()
            .filter(|l| {
                l.starts_with("ingest_")
                    && !l.contains("_bucket")
                    && !l.contains("{reason=")
                    && !l.starts_with("ingest_alarm")
            })
            .collect();
        text.push_str(&format!(
            "--- ingest {k}\n{}\n{}\n",
            readings.join("\n"),
            ingest.process.logs()
        ));
    }
    text
}

fn cpu_times(processes: &[(String, u32)]) -> anyhow::Result<Vec<Duration>> {
    processes
        .iter()
        .map(|(_, pid)| stack::cpu_time(*pid))
        .collect()
}

/// QoS 1 publishing connections, connected before the clock starts. Machine `m` is published
/// on connection `m mod connections`, so each machine's readings stay in order on one
/// connection, as a real machine's would.
struct Fleet {
    publishers: Vec<Publisher>,
}

impl Fleet {
    /// Opens one connection per entry of `ports`.
    async fn connect(ports: &[u16]) -> anyhow::Result<Self> {
        if ports.is_empty() {
            bail!("a run needs at least one publishing connection");
        }
        let mut publishers = Vec::with_capacity(ports.len());
        for (c, port) in ports.iter().enumerate() {
            let id = test_support::unique_client_id(&format!("lt-pub{c}"));
            publishers.push(
                Publisher::connect(*port, &id, 1)
                    .await
                    .with_context(|| format!("publisher {c} to port {port}"))?,
            );
        }
        Ok(Self { publishers })
    }

    /// Publishes `load` over every connection at once, waits until each is acknowledged, and
    /// returns the sums published.
    async fn publish(self, load: &Load, timeout: Duration) -> anyhow::Result<Expected> {
        let load = Arc::new(load.clone());
        let connections = self.publishers.len();
        let shares: Vec<JoinHandle<anyhow::Result<Expected>>> = self
            .publishers
            .into_iter()
            .enumerate()
            .map(|(c, publisher)| {
                tokio::spawn(publish_share(
                    publisher,
                    c,
                    connections,
                    Arc::clone(&load),
                    timeout,
                ))
            })
            .collect();
        let mut expected = Expected::default();
        for share in shares {
            expected.merge(share.await.context("a publisher task failed")??);
        }
        Ok(expected)
    }
}

/// Connection `connection`'s share of `load`: the readings of its machines, in order.
async fn publish_share(
    publisher: Publisher,
    connection: usize,
    connections: usize,
    load: Arc<Load>,
    timeout: Duration,
) -> anyhow::Result<Expected> {
    match load.protocol {
        Protocol::Json => publish_json(publisher, connection, connections, load, timeout).await,
        Protocol::Sparkplug => {
            publish_sparkplug(publisher, connection, connections, load, timeout).await
        }
    }
}

/// The JSON readings of connection `connection`'s machines.
async fn publish_json(
    mut publisher: Publisher,
    connection: usize,
    connections: usize,
    load: Arc<Load>,
    timeout: Duration,
) -> anyhow::Result<Expected> {
    let machines: Vec<String> = (0..load.machines).map(workload::machine).collect();
    let topics: Vec<String> = machines.iter().map(|m| workload::topic(m)).collect();
    let mut expected = Expected::default();
    let mut clock = ClockText::default();
    let mut payload = Vec::with_capacity(160);
    for n in 0..load.messages {
        let (m, index, value) = load.reading(n);
        if m % connections != connection {
            continue;
        }
        let id = load.ids.then_some(n);
        workload::payload_with_id(
            &mut payload,
            &machines[m],
            index,
            value,
            Some(clock.now()),
            id,
        );
        publisher.publish(&topics[m], &payload, false).await?;
        expected.add(&machines[m], index, value);
    }
    publisher.finish(timeout).await?;
    Ok(expected)
}

/// Connection `connection` as Sparkplug edge node `lt-node-{connection}` whose devices are
/// its machines: the births, then one DDATA per reading, in the order of the JSON load.
async fn publish_sparkplug(
    mut publisher: Publisher,
    connection: usize,
    connections: usize,
    load: Arc<Load>,
    timeout: Duration,
) -> anyhow::Result<Expected> {
    let machines: Vec<String> = (0..load.machines).map(workload::machine).collect();
    // Machine m is device m / connections of its node: its connection has every
    // `connections`-th machine from `connection` on.
    let devices = machines
        .iter()
        .skip(connection)
        .step_by(connections)
        .cloned()
        .collect();
    let node_id = format!("lt-node-{connection}");
    let indices = (0..load.indices).collect();
    let mut node = EdgeNode::new(workload::SPARKPLUG_GROUP, &node_id, devices, indices);
    for birth in node.births(0, now_ms()) {
        publisher
            .publish(&birth.topic, &birth.payload, false)
            .await?;
    }
    let mut expected = Expected::default();
    let mut payload = Vec::with_capacity(64);
    for n in 0..load.messages {
        let (m, index, value) = load.reading(n);
        if m % connections != connection {
            continue;
        }
        let topic = node.data(
            m / connections,
            index as usize,
            value,
            now_ms(),
            &mut payload,
        );
        publisher.publish(topic, &payload, false).await?;
        expected.add(&machines[m], index, value);
    }
    let death = node.death(0);
    publisher
        .publish(&death.topic, &death.payload, false)
        .await?;
    publisher.finish(timeout).await?;
    Ok(expected)
}

/// A `mosquitto_sub -q 1` whose printed readings are counted: every line, or, when readings
/// carry ids, every distinct id, so that a broker's redeliveries cannot stand in for readings
/// it never delivered.
struct BareSubscriber {
    child: Child,
    drain: JoinHandle<Option<Instant>>,
    counted: Arc<AtomicU64>,
    expected: u64,
}

impl BareSubscriber {
    /// Starts it on `port` for `filter` at `qos` and returns once its subscription is active.
    /// Sparkplug payloads are binary: it prints them in hex, one line each.
    async fn start(port: u16, filter: &str, qos: u8, n: u64, load: &Load) -> anyhow::Result<Self> {
        let distinct = load.ids;
        let format: &[&str] = match load.protocol {
            Protocol::Json => &[],
            Protocol::Sparkplug => &["-F", "%x"],
        };
        let mut marker =
            Publisher::connect(port, &test_support::unique_client_id("lt-ready"), 1).await?;
        marker.publish(READY_TOPIC, b"ready", true).await?;
        marker.finish(SUBSCRIBE_TIMEOUT).await?;
        let bin = test_support::require_tool("mosquitto_sub", test_support::MOSQUITTO_INSTALL_HINT);
        let mut child = Command::new(bin)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-q", &qos.to_string()])
            .args(["-t", READY_TOPIC, "-t", filter])
            .args(["-i", &test_support::unique_client_id("lt-sub")])
            .args(format)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting mosquitto_sub")?;
        let mut out = BufReader::new(child.stdout.take().context("mosquitto_sub stdout")?);
        let mut first = String::new();
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, out.read_line(&mut first))
            .await
            .with_context(|| {
                format!("mosquitto_sub did not subscribe within {SUBSCRIBE_TIMEOUT:?}")
            })??;
        let counted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&counted);
        let drain = tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut lines = out.split(b'\n');
            while let Ok(Some(line)) = lines.next_segment().await {
                if distinct && !reading_id(&line).is_some_and(|id| seen.insert(id)) {
                    continue;
                }
                if count.fetch_add(1, Ordering::Relaxed) + 1 == n {
                    return Some(Instant::now());
                }
            }
            None
        });
        Ok(Self {
            child,
            drain,
            counted,
            expected: n,
        })
    }

    /// Waits until it has printed every reading and returns the instant it had.
    async fn finish(mut self, timeout: Duration) -> anyhow::Result<Instant> {
        let done = tokio::time::timeout(timeout, &mut self.drain).await;
        let _ = self.child.kill().await;
        let counted = self.counted.load(Ordering::Relaxed);
        match done {
            Ok(Ok(Some(end))) => Ok(end),
            Ok(Ok(None)) => bail!(
                "mosquitto_sub ended after {counted} of {} readings",
                self.expected
            ),
            Ok(Err(e)) => bail!("the mosquitto_sub reader failed: {e}"),
            Err(_) => bail!(
                "mosquitto_sub received {counted} of {} readings within {timeout:?}",
                self.expected
            ),
        }
    }
}

/// The `id` of a reading payload as the load writes it (`..."id":123}`).
fn reading_id(line: &[u8]) -> Option<u64> {
    let key = b"\"id\":";
    let at = memchr::memmem::rfind(line, key)? + key.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// What the ingest processes have accepted so far, while waiting.
#[derive(Debug, Default)]
struct Progress {
    /// The latest sum of their counters.
    accepted: AtomicU64,
    /// When the sum first reached 99 % of N.
    most: OnceLock<Instant>,
}

/// Resolves at the instant the ingest processes at `bases` together have accepted `n`
/// readings (a process not answering counts as 0 for that poll), noting progress on the way.
fn watch_accepted(
    http: reqwest::Client,
    bases: Vec<String>,
    n: u64,
    progress: Arc<Progress>,
) -> JoinHandle<Instant> {
    tokio::spawn(async move {
        loop {
            let mut accepted = 0.0;
            for base in &bases {
                accepted += stack::metric(&http, base, "ingest_readings_accepted_total")
                    .await
                    .unwrap_or(0.0);
            }
            progress.accepted.store(accepted as u64, Ordering::Relaxed);
            if accepted >= n as f64 * 0.99 {
                let _ = progress.most.set(Instant::now());
            }
            if accepted >= n as f64 {
                return Instant::now();
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bare_subscriber_reads_the_id_of_a_line() {
        let mut line = Vec::new();
        workload::payload_with_id(
            &mut line,
            "M001",
            2,
            0.5,
            Some("2026-01-01T00:00:00.000Z"),
            Some(123),
        );
        assert_eq!(reading_id(&line), Some(123));
        workload::payload(&mut line, "M001", 2, 0.5, None);
        assert_eq!(reading_id(&line), None);
    }

    #[test]
    fn readings_go_round_the_keys_in_turn() {
        let load = Load {
            messages: 12,
            machines: 3,
            indices: 2,
            ids: false,
            protocol: Protocol::Json,
        };
        let keys: Vec<(usize, u32)> = (0..7)
            .map(|n| {
                let (m, i, _) = load.reading(n);
                (m, i)
            })
            .collect();
        assert_eq!(
            keys,
            [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (0, 0)]
        );
        assert_eq!(load.reading(3).2, workload::value(3));
    }
}
