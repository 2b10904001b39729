//! Scale-out on the shipped three-node NATS cluster: three ingest shards, each connected to a
//! different node, and two gateways on nodes 0 and 1. The test publishes 36 machines with a
//! unique `id` per reading at QoS 1, machine `i` through node `i mod 3`, in batches; a batch
//! whose acknowledgements do not all arrive (its node died or stalled) is published again, same
//! ids, through another node, so every reading ends up acknowledged at least once and ingest
//! drops the copies. The expected sums are what was published.
//!
//! Three runs of that stream: an undisturbed one (exact sums, every machine on exactly one
//! shard), one in which the node carrying shard 0 and gateway 0 is SIGKILLed mid-stream and
//! restarted later, and one in which shard 1 itself is SIGKILLed and restarted with the same
//! client id and window log. Each ends with both gateways showing exactly the published sums
//! and counts, and a historian on node 2 holding them as minute buckets: nothing acknowledged
//! lost, nothing counted twice.
//!
//! NATS 2.9 is slow to recover (a restarted node refuses MQTT for ~35 s, publishers stall for up
//! to 9 s while JetStream re-elects), so every wait here is long, and every failure message
//! carries the logs of the nodes and of every service.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use aggregator_core::partition::shard_of;
use serde_json::Value;
use tempfile::TempDir;
use test_support::{
    Collector, Metrics, NATS_NODES, NATS_SHARDS, NatsCluster, Publisher, QoS, ServiceProcess,
    scrape_metrics, service_binary, try_http_get, unique_client_id, wait_until,
};
use tokio::sync::watch;

use crate::helpers::{TestService, by_key, close};

/// Machines `N00`..`N35`.
const MACHINES: u32 = 36;
/// Scrap indices 1..=3; every round has one reading per machine and index, so every key gets
/// a fresh aggregate in every round (also the last one, after any fail-over).
const INDICES: u32 = 3;
/// Bound for anything the cluster or a service must reach: NATS 2.9 recovers slowly and the
/// machine is shared.
const CLUSTER_WAIT: Duration = Duration::from_secs(120);
/// How long one batch's acknowledgements may take before it is sent again elsewhere: longer
/// than the ~9 s publish stall of a node loss, so a stall alone rarely causes a re-send.
const FLUSH_WAIT: Duration = Duration::from_secs(15);
/// How long a publisher connection may take to be accepted.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// After a failure on a node, batches avoid it for this long before trying it again.
const NODE_PAUSE: Duration = Duration::from_secs(10);

/// One published reading.
#[derive(Debug, Clone)]
struct Reading {
    machine: String,
    index: u32,
    value: f64,
    /// Unique per reading; a re-sent batch repeats it so ingest can drop the copy.
    id: String,
    /// The node this machine is normally published through.
    home: usize,
}

impl Reading {
    fn topic(&self) -> String {
        format!("machines/{}/scrap", self.machine)
    }

    fn payload(&self) -> String {
        serde_json::json!({ "scrapIndex": self.index, "value": self.value, "id": self.id })
            .to_string()
    }
}

fn machine_name(m: u32) -> String {
    format!("N{m:02}")
}

/// Round `r`: one reading per machine and index. Values are multiples of 0.25, so their sums
/// are exact in any order.
fn round(r: u32) -> Vec<Reading> {
    let mut readings = Vec::new();
    for m in 0..MACHINES {
        for index in 1..=INDICES {
            let machine = machine_name(m);
            readings.push(Reading {
                id: format!("{machine}-{index}-{r}"),
                machine,
                index,
                value: f64::from((m * 31 + index * 7 + r * 13) % 97) * 0.25 + 0.5,
                home: m as usize % NATS_NODES,
            });
        }
    }
    readings
}

/// `(machine, index)` -> `(sum, count)` of `rounds`, the shape [`by_key`] returns.
fn expected(rounds: Range<u32>) -> HashMap<(String, u64), (f64, u64)> {
    let mut sums = HashMap::new();
    for reading in rounds.flat_map(round) {
        let entry = sums
            .entry((reading.machine, u64::from(reading.index)))
            .or_insert((0.0, 0));
        entry.0 += reading.value;
        entry.1 += 1;
    }
    sums
}

/// Publishes rounds through the cluster, one [`Publisher`] per node, re-sending a batch through
/// another node when its node does not acknowledge all of it.
struct Router {
    ports: Vec<u16>,
    publishers: Vec<Option<Publisher>>,
    /// A node that failed is skipped until then.
    avoid_until: Vec<Option<Instant>>,
    /// Rounds fully acknowledged so far, for the tests' mid-stream events.
    progress: watch::Sender<u32>,
    /// Batches sent again after a failure.
    resent: u32,
    /// What went wrong and when, for the figures and failure messages.
    notes: Vec<String>,
    started: Instant,
}

impl Router {
    /// `started`: the test's start, the time base of the notes.
    fn new(cluster: &NatsCluster, started: Instant) -> Self {
        Self {
            ports: (0..NATS_NODES).map(|i| cluster.mqtt_port(i)).collect(),
            publishers: (0..NATS_NODES).map(|_| None).collect(),
            avoid_until: vec![None; NATS_NODES],
            progress: watch::channel(0).0,
            resent: 0,
            notes: Vec::new(),
            started,
        }
    }

    /// Publishes `rounds` in order; a round counts in `progress` once all of it is
    /// acknowledged.
    ///
    /// # Errors
    /// When a batch finds no node that acknowledges it within [`CLUSTER_WAIT`].
    async fn send_rounds(&mut self, rounds: Range<u32>) -> Result<(), String> {
        for r in rounds {
            let readings = round(r);
            for home in 0..NATS_NODES {
                let batch: Vec<&Reading> = readings.iter().filter(|x| x.home == home).collect();
                self.deliver(&batch, home)
                    .await
                    .map_err(|e| format!("round {r}: {e}"))?;
            }
            self.progress.send_replace(r + 1);
        }
        Ok(())
    }

    /// Lets batches use `node` again at once (it was restarted and accepts MQTT).
    fn revive(&mut self, node: usize) {
        self.avoid_until[node] = None;
    }

    /// Delivers one batch: through `home` if it is not being avoided, else through the next
    /// node round the ring, until some node acknowledges every message of it.
    async fn deliver(&mut self, batch: &[&Reading], home: usize) -> Result<(), String> {
        let deadline = Instant::now() + CLUSTER_WAIT;
        let mut failed = false;
        loop {
            let node = self.pick(home).await;
            match self.send_through(node, batch).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // Its unacknowledged messages are gone with its clean session: never
                    // flush it again, start a new connection when the node is tried next.
                    self.publishers[node] = None;
                    self.avoid_until[node] = Some(Instant::now() + NODE_PAUSE);
                    self.notes.push(format!(
                        "{:.1}s: batch of node {home} failed on node {node}: {e}",
                        self.started.elapsed().as_secs_f64()
                    ));
                    if !failed {
                        failed = true;
                        self.resent += 1;
                    }
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "no node acknowledged a batch within {CLUSTER_WAIT:?}:\n{}",
                            self.notes.join("\n")
                        ));
                    }
                }
            }
        }
    }

    /// The first node from `home` round the ring that is not being avoided; when all are,
    /// waits for the one that is free first.
    async fn pick(&self, home: usize) -> usize {
        let now = Instant::now();
        let ring = (0..NATS_NODES).map(|k| (home + k) % NATS_NODES);
        if let Some(node) = ring
            .clone()
            .find(|&n| self.avoid_until[n].is_none_or(|t| now >= t))
        {
            return node;
        }
        let (node, until) = ring
            .filter_map(|n| self.avoid_until[n].map(|t| (n, t)))
            .min_by_key(|(_, t)| *t)
            .expect("every node is avoided until some time");
        tokio::time::sleep(until.saturating_duration_since(now)).await;
        node
    }

    async fn send_through(&mut self, node: usize, batch: &[&Reading]) -> Result<(), String> {
        if self.publishers[node].is_none() {
            self.publishers[node] =
                Some(Publisher::try_connect(self.ports[node], CONNECT_WAIT).await?);
        }
        let publisher = self.publishers[node]
            .as_mut()
            .expect("a publisher was just connected");
        for reading in batch {
            publisher
                .publish(&reading.topic(), QoS::AtLeastOnce, false, reading.payload())
                .await?;
        }
        publisher.flush(FLUSH_WAIT).await
    }
}

/// One ingest shard, with what it takes to restart it as the same shard.
struct Shard {
    service: TestService,
    node: usize,
    args: Vec<String>,
    /// The window log; kept across restarts.
    _data: TempDir,
}

/// The cluster with three shards on nodes 0, 1, 2 and gateways on nodes 0 and 1.
struct Deployment {
    cluster: NatsCluster,
    shards: Vec<Shard>,
    gateways: Vec<TestService>,
    /// A historian on node 2, storing every shard's minute buckets in a SQLite file.
    historian: TestService,
    _historian_data: TempDir,
    /// One plain QoS 1 subscriber to `aggregates/#` on each gateway's node: when a gateway
    /// ends with a wrong aggregate, what the broker delivered there tells whether the gateway
    /// or the delivery is at fault.
    witnesses: Vec<Collector>,
}

/// Starts `name` with the cluster's `--mqtt-host` list from `node` and `extra`, and waits until
/// `health` answers 200.
async fn start_service(
    cluster: &NatsCluster,
    name: &str,
    node: usize,
    extra: &[String],
    health: &str,
) -> Result<TestService, String> {
    let (process, addr) = ServiceProcess::start_service(
        service_binary(name),
        &cluster.mqtt_hosts_from(node),
        cluster.mqtt_port(node),
        extra,
        [("RUST_LOG", "info"), ("NO_COLOR", "1")],
        CLUSTER_WAIT,
    )
    .await?;
    let service = TestService {
        process,
        base_url: format!("http://{addr}"),
    };
    let url = service.url(health);
    wait_until(CLUSTER_WAIT, &format!("{name} {health} is 200"), || async {
        matches!(try_http_get(&url).await, Ok((200, _)))
    })
    .await
    .map_err(|e| format!("{e}\n{}", service.process.logs()))?;
    Ok(service)
}

impl Deployment {
    async fn start() -> Self {
        let cluster = NatsCluster::start().await;
        for node in 0..NATS_NODES {
            if let Err(e) = cluster.wait_mqtt(node, CLUSTER_WAIT).await {
                panic!("{e}\n{}", cluster.logs());
            }
        }
        let mut shards = Vec::new();
        for k in 0..NATS_SHARDS {
            let node = k as usize;
            // expect: failing to create temp files means the test machine is broken.
            let data = tempfile::Builder::new()
                .prefix("scrap-pulse-shard-")
                .tempdir()
                .expect("temp dir for a shard's window log");
            let args: Vec<String> = [
                "--mqtt-client-id",
                &unique_client_id(&format!("e2e-nats-shard-{k}")),
                "--shard-count",
                &NATS_SHARDS.to_string(),
                "--shard-index",
                &k.to_string(),
                "--shard-subscribe-topic",
                "shard/{shard}/machines/+/scrap",
                "--data-dir",
                &data.path().display().to_string(),
                "--window-seconds",
                "600",
                // As the cluster stack: NATS 2.9 now and then loses a delivery to one
                // subscriber; the settled re-send repairs the last aggregate of a key.
                "--publish-again-after-ms",
                "2000",
            ]
            .map(str::to_owned)
            .into();
            let service = start_service(&cluster, "ingest", node, &args, "/health")
                .await
                .unwrap_or_else(|e| panic!("shard {k}: {e}\n{}", cluster.logs()));
            shards.push(Shard {
                service,
                node,
                args,
                _data: data,
            });
        }
        let mut gateways = Vec::new();
        for node in 0..2 {
            let gateway = start_service(&cluster, "gateway", node, &[], "/api/health")
                .await
                .unwrap_or_else(|e| panic!("gateway {node}: {e}\n{}", cluster.logs()));
            gateways.push(gateway);
        }
        // expect: failing to create temp files means the test machine is broken.
        let historian_data = tempfile::tempdir().expect("temp dir for the historian's store");
        let historian_args: Vec<String> = [
            "--mqtt-client-id",
            &unique_client_id("e2e-nats-historian"),
            "--store-url",
            &format!("sqlite://{}/historian.db", historian_data.path().display()),
        ]
        .map(str::to_owned)
        .into();
        let historian = start_service(&cluster, "historian", 2, &historian_args, "/health")
            .await
            .unwrap_or_else(|e| panic!("historian: {e}\n{}", cluster.logs()));
        let mut witnesses = Vec::new();
        for node in 0..gateways.len() {
            witnesses.push(Collector::start(cluster.mqtt_port(node), &["aggregates/#"]).await);
        }
        let deployment = Self {
            cluster,
            shards,
            gateways,
            historian,
            _historian_data: historian_data,
            witnesses,
        };
        for gateway in &deployment.gateways {
            deployment.wait_shards_online(gateway, NATS_SHARDS).await;
        }
        deployment
    }

    /// Every node's and service's output.
    fn logs(&self) -> String {
        let mut text = self.cluster.logs();
        for (k, shard) in self.shards.iter().enumerate() {
            text.push_str(&format!(
                "\n=== shard {k}\n{}",
                shard.service.process.logs()
            ));
        }
        for (g, gateway) in self.gateways.iter().enumerate() {
            text.push_str(&format!("\n=== gateway {g}\n{}", gateway.process.logs()));
        }
        text.push_str(&format!(
            "\n=== historian\n{}",
            self.historian.process.logs()
        ));
        text
    }

    /// Waits until `gateway`'s `/api/health` reports `online` of 3 shards.
    async fn wait_shards_online(&self, gateway: &TestService, online: u32) {
        if let Err(e) = shards_online(gateway, online).await {
            panic!("{e}\n{}", self.logs());
        }
    }

    /// Waits until both gateways' `/api/aggregates` equal `want` exactly: the same keys, equal
    /// counts, sums within the contract's 1e-9.
    async fn wait_exact(&self, want: &HashMap<(String, u64), (f64, u64)>) {
        for (g, gateway) in self.gateways.iter().enumerate() {
            let url = gateway.url("/api/aggregates");
            let last = RefCell::new(HashMap::new());
            let reached = wait_until(
                CLUSTER_WAIT,
                &format!("gateway {g} shows the published sums"),
                || async {
                    let Ok((200, body)) = try_http_get(&url).await else {
                        return false;
                    };
                    let Ok(list) = serde_json::from_str::<Value>(&body) else {
                        return false;
                    };
                    let got = by_key(&list, "sumLast60s");
                    let equal = same_totals(want, &got);
                    *last.borrow_mut() = got;
                    equal
                },
            )
            .await;
            if let Err(e) = reached {
                let got = last.take();
                panic!(
                    "{e}\n{}\n{}\n{}",
                    differences(want, &got),
                    self.delivery_of(g, &differing_keys(want, &got)).await,
                    self.logs()
                );
            }
        }
    }

    /// Waits until the historian's stored totals of every key (its daily totals since
    /// yesterday, UTC) equal `want`: every reading a shard counted reached history once, through
    /// whatever the test did to shards and nodes.
    async fn wait_history_exact(&self, want: &HashMap<(String, u64), (f64, u64)>) {
        let yesterday = std::time::SystemTime::now() - Duration::from_secs(86_400);
        let day = aggregator_core::Timestamp::from_system_time(yesterday).to_rfc3339_millis();
        let url = self
            .historian
            .url(&format!("/api/history?step=day&from={}", &day[..10]));
        let last = RefCell::new(HashMap::new());
        let reached = wait_until(
            CLUSTER_WAIT,
            "the historian holds the published sums",
            || async {
                let Ok((200, body)) = try_http_get(&url).await else {
                    return false;
                };
                let Ok(Value::Array(rows)) = serde_json::from_str::<Value>(&body) else {
                    return false;
                };
                let mut got: HashMap<(String, u64), (f64, u64)> = HashMap::new();
                for row in &rows {
                    let key = (
                        row["maschinenId"].as_str().unwrap_or_default().to_owned(),
                        row["scrapIndex"].as_u64().unwrap_or_default(),
                    );
                    let entry = got.entry(key).or_default();
                    entry.0 += row["sum"].as_f64().unwrap_or_default();
                    entry.1 += row["count"].as_u64().unwrap_or_default();
                }
                let equal = same_totals(want, &got);
                *last.borrow_mut() = got;
                equal
            },
        )
        .await;
        if let Err(e) = reached {
            panic!("{e}\n{}\n{}", differences(want, &last.take()), self.logs());
        }
    }

    /// For a failure message: what the witness on gateway `g`'s node received last for each of
    /// `keys`, and the broker's retained copy of it now.
    async fn delivery_of(&self, g: usize, keys: &[(String, u64)]) -> String {
        let mut lines = Vec::new();
        let all = self.witnesses[g].messages();
        for (machine, index) in keys.iter().take(5) {
            let topic = format!("aggregates/{machine}/{index}");
            let seen: Vec<_> = all.iter().filter(|m| m.topic == topic).collect();
            lines.push(format!(
                "{topic}: witness on node {g} received {}:",
                seen.len()
            ));
            for message in seen.iter().rev().take(3).rev() {
                lines.push(format!("  retain={} {}", message.retain, message.text()));
            }
            let fresh = Collector::start(self.cluster.mqtt_port(g), &[topic.as_str()]).await;
            let retained = fresh
                .wait_for(|m| !m.is_empty(), Duration::from_secs(10))
                .await
                .map(|m| m[0].text());
            lines.push(format!("  retained copy now: {retained:?}"));
        }
        lines.join("\n")
    }

    /// Every shard counted exactly the readings of its own machines (each once) and holds
    /// exactly their keys, and no reading of another shard reached it.
    async fn assert_each_machine_on_one_shard(&self, want: &HashMap<(String, u64), (f64, u64)>) {
        for (k, shard) in self.shards.iter().enumerate() {
            let own: Vec<_> = want
                .iter()
                .filter(|((machine, _), _)| shard_of(machine, NATS_SHARDS) as usize == k)
                .collect();
            let readings: u64 = own.iter().map(|(_, (_, n))| n).sum();
            let metrics = self.metrics(&shard.service).await;
            let got = |name: &str| metrics.get(name, &[]);
            let facts = [
                ("ingest_readings_accepted_total", readings as f64),
                ("ingest_keys", own.len() as f64),
                ("ingest_readings_other_shard_total", 0.0),
            ];
            for (name, value) in facts {
                assert_eq!(got(name), Some(value), "shard {k}: {name}\n{}", self.logs());
            }
            assert!(
                readings > 0,
                "shard {k} owns no machine: the split proves nothing"
            );
        }
    }

    async fn metrics(&self, service: &TestService) -> Metrics {
        scrape_metrics(&service.url("/metrics"))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Duplicates the shards dropped (re-sent batches, redeliveries), for the figures.
    async fn duplicates_dropped(&self) -> f64 {
        let mut total = 0.0;
        for shard in &self.shards {
            let metrics = self.metrics(&shard.service).await;
            total += metrics
                .get("ingest_readings_duplicate_total", &[])
                .unwrap_or(0.0)
                + metrics
                    .get("ingest_redeliveries_skipped_total", &[])
                    .unwrap_or(0.0);
        }
        total
    }
}

/// Waits until `gateway`'s `/api/health` says `online` of [`NATS_SHARDS`] shards are online.
async fn shards_online(gateway: &TestService, online: u32) -> Result<(), String> {
    let url = gateway.url("/api/health");
    let last = RefCell::new(String::new());
    wait_until(
        CLUSTER_WAIT,
        &format!("{url} reports ingest {online}/{NATS_SHARDS}"),
        || async {
            let Ok((_, body)) = try_http_get(&url).await else {
                return false;
            };
            let reached = serde_json::from_str::<Value>(&body).is_ok_and(|health| {
                health["ingest"]["shardsOnline"] == online
                    && health["ingest"]["shardCount"] == NATS_SHARDS
            });
            *last.borrow_mut() = body;
            reached
        },
    )
    .await
    .map_err(|e| format!("{e}; last answer {}", last.borrow()))
}

/// The `*_broker_index` gauge of `service`: which entry of its `--mqtt-host` list it uses.
async fn broker_index(service: &TestService) -> Option<f64> {
    let Ok((200, text)) = try_http_get(&service.url("/metrics")).await else {
        return None;
    };
    Metrics::parse(&text)
        .samples()
        .iter()
        .find(|s| s.name.ends_with("_broker_index"))
        .map(|s| s.value)
}

/// Waits until `service` is healthy on another broker than the first of its list.
async fn wait_failed_over(service: &TestService, health: &str) -> Result<f64, String> {
    let health_url = service.url(health);
    let index = RefCell::new(None);
    wait_until(
        CLUSTER_WAIT,
        &format!("{health} is 200 on another broker"),
        || async {
            let healthy = matches!(try_http_get(&health_url).await, Ok((200, _)));
            let now = broker_index(service).await;
            *index.borrow_mut() = now;
            healthy && now.is_some_and(|i| i != 0.0)
        },
    )
    .await?;
    Ok(index.into_inner().unwrap_or_default())
}

/// The keys whose sum or count in `got` differs from `want`, or that only one of them has.
fn differing_keys(
    want: &HashMap<(String, u64), (f64, u64)>,
    got: &HashMap<(String, u64), (f64, u64)>,
) -> Vec<(String, u64)> {
    let mut keys: Vec<_> = want.keys().chain(got.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.retain(|key| match (want.get(key), got.get(key)) {
        (Some(w), Some(g)) => w.1 != g.1 || !close(w.0, g.0),
        _ => true,
    });
    keys
}

/// A readable account of how `got` differs from `want` (at most 20 keys).
/// The same keys with equal counts and sums within the contract's 1e-9.
fn same_totals(
    want: &HashMap<(String, u64), (f64, u64)>,
    got: &HashMap<(String, u64), (f64, u64)>,
) -> bool {
    got.len() == want.len()
        && want.iter().all(|(key, (sum, count))| {
            got.get(key)
                .is_some_and(|(s, n)| n == count && close(*s, *sum))
        })
}

fn differences(
    want: &HashMap<(String, u64), (f64, u64)>,
    got: &HashMap<(String, u64), (f64, u64)>,
) -> String {
    let mut lines = Vec::new();
    let mut keys: Vec<_> = want.keys().chain(got.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        match (want.get(key), got.get(key)) {
            (Some(w), Some(g)) if w.1 == g.1 && close(w.0, g.0) => {}
            (w, g) => lines.push(format!("{key:?}: want (sum, count) {w:?}, got {g:?}")),
        }
    }
    let total = lines.len();
    lines.truncate(20);
    format!("{total} keys differ:\n{}", lines.join("\n"))
}

/// Logs the run's figures; `cargo nextest run --no-capture` shows them.
fn report(test: &str, started: Instant, router: &Router, duplicates: f64) {
    eprintln!(
        "{test}: {:.1}s, {} batches re-sent, {duplicates} duplicates dropped by ingest",
        started.elapsed().as_secs_f64(),
        router.resent
    );
    for note in &router.notes {
        eprintln!("  {note}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_on_a_nats_cluster_give_exact_sums_with_each_machine_on_one_shard() {
    let started = Instant::now();
    let deployment = Deployment::start().await;
    let mut router = Router::new(&deployment.cluster, started);
    const ROUNDS: u32 = 12;
    if let Err(e) = router.send_rounds(0..ROUNDS).await {
        panic!("{e}\n{}", deployment.logs());
    }
    let want = expected(0..ROUNDS);
    deployment.wait_exact(&want).await;
    deployment.wait_history_exact(&want).await;
    deployment.assert_each_machine_on_one_shard(&want).await;
    for gateway in &deployment.gateways {
        deployment.wait_shards_online(gateway, NATS_SHARDS).await;
    }
    report(
        "exact",
        started,
        &router,
        deployment.duplicates_dropped().await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_nats_node_of_a_shard_and_a_gateway_loses_nothing_and_counts_nothing_twice() {
    const KILL_AT: u32 = 4;
    const KILLED_PHASE: Range<u32> = 0..12;
    const RESTART_AT: u32 = 16;
    const RESTART_PHASE: Range<u32> = 12..24;
    const FINAL_ROUND: u32 = 24;
    let started = Instant::now();
    let mut deployment = Deployment::start().await;
    // Node 0 carries shard 0 and gateway 0 (their lists start there).
    assert_eq!(deployment.shards[0].node, 0);
    let mut router = Router::new(&deployment.cluster, started);

    let mut progress = router.progress.subscribe();
    let (published, killed_at) = tokio::join!(router.send_rounds(KILLED_PHASE), async {
        let _ = progress.wait_for(|r| *r >= KILL_AT).await;
        let round = *progress.borrow();
        deployment.cluster.kill(0).await;
        (started.elapsed(), round)
    });
    if let Err(e) = published {
        panic!("{e}\n{}", deployment.logs());
    }
    let shard_index = wait_failed_over(&deployment.shards[0].service, "/health").await;
    let gateway_index = wait_failed_over(&deployment.gateways[0], "/api/health").await;
    let (shard_index, gateway_index) = match (shard_index, gateway_index) {
        (Ok(s), Ok(g)) => (s, g),
        (s, g) => panic!("shard 0: {s:?}\ngateway 0: {g:?}\n{}", deployment.logs()),
    };

    // Keep publishing through the other nodes; bring node 0 back in the middle of it.
    let mut progress = router.progress.subscribe();
    let cluster = &mut deployment.cluster;
    let (published, back) = tokio::join!(router.send_rounds(RESTART_PHASE), async {
        let _ = progress.wait_for(|r| *r >= RESTART_AT).await;
        cluster.restart(0).await;
        cluster.wait_mqtt(0, CLUSTER_WAIT).await
    });
    if let Err(e) = published.and(back) {
        panic!("{e}\n{}", deployment.logs());
    }
    // The restarted node carries its machines again.
    router.revive(0);
    if let Err(e) = router.send_rounds(FINAL_ROUND..FINAL_ROUND + 1).await {
        panic!("{e}\n{}", deployment.logs());
    }

    let want = expected(0..FINAL_ROUND + 1);
    deployment.wait_exact(&want).await;
    deployment.wait_history_exact(&want).await;
    // No shard restarted: each still counted its own readings exactly once.
    deployment.assert_each_machine_on_one_shard(&want).await;
    for gateway in &deployment.gateways {
        deployment.wait_shards_online(gateway, NATS_SHARDS).await;
    }
    let mut refused = Vec::new();
    for gateway in &deployment.gateways {
        let metrics = deployment.metrics(gateway).await;
        refused.push(metrics.get("gateway_mqtt_subscriptions_refused_total", &[]));
    }
    eprintln!(
        "node 0 killed at {:.1}s after round {} of {FINAL_ROUND}; shard 0 failed over to list entry {shard_index}, gateway 0 to {gateway_index}; SUBACKs refusing filters per gateway {refused:?}",
        killed_at.0.as_secs_f64(),
        killed_at.1
    );
    report(
        "node loss",
        started,
        &router,
        deployment.duplicates_dropped().await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_killed_and_restarted_mid_stream_loses_nothing_and_counts_nothing_twice() {
    const KILL_AT: u32 = 3;
    const KILLED_PHASE: Range<u32> = 0..9;
    const RESTART_AT: u32 = 11;
    const RESTART_PHASE: Range<u32> = 9..18;
    let started = Instant::now();
    let mut deployment = Deployment::start().await;
    let mut router = Router::new(&deployment.cluster, started);

    let mut progress = router.progress.subscribe();
    let shard = &mut deployment.shards[1];
    let (published, killed_at) = tokio::join!(router.send_rounds(KILLED_PHASE), async {
        let _ = progress.wait_for(|r| *r >= KILL_AT).await;
        let round = *progress.borrow();
        shard.service.process.kill().await;
        (started.elapsed(), round)
    });
    if let Err(e) = published {
        panic!("{e}\n{}", deployment.logs());
    }
    // Its last will tells the gateways.
    for gateway in &deployment.gateways {
        deployment
            .wait_shards_online(gateway, NATS_SHARDS - 1)
            .await;
    }

    // Keep publishing; restart the shard in the middle of it with the same client id, which
    // resumes its session (what arrived meanwhile waits there), and the same data dir, which
    // restores its windows.
    let mut progress = router.progress.subscribe();
    let Deployment {
        cluster, shards, ..
    } = &mut deployment;
    let shard = &mut shards[1];
    let (published, restarted) = tokio::join!(router.send_rounds(RESTART_PHASE), async {
        let _ = progress.wait_for(|r| *r >= RESTART_AT).await;
        let restarted_at = (started.elapsed(), *progress.borrow());
        shard.service =
            start_service(cluster, "ingest", shard.node, &shard.args, "/health").await?;
        Ok::<_, String>(restarted_at)
    });
    let restarted_at = match published.and(restarted) {
        Ok(at) => at,
        Err(e) => panic!("{e}\n{}", deployment.logs()),
    };

    let want = expected(0..RESTART_PHASE.end);
    deployment.wait_exact(&want).await;
    deployment.wait_history_exact(&want).await;
    for gateway in &deployment.gateways {
        deployment.wait_shards_online(gateway, NATS_SHARDS).await;
    }
    let metrics = deployment.metrics(&deployment.shards[1].service).await;
    let restored = metrics.get("ingest_readings_restored_total", &[]);
    assert!(
        restored.is_some_and(|n| n > 0.0),
        "the restarted shard restored nothing from its window log: {restored:?}\n{}",
        deployment.logs()
    );
    eprintln!(
        "shard 1 killed at {:.1}s after round {} of {}, restarted at {:.1}s after round {}, restored {restored:?} readings",
        killed_at.0.as_secs_f64(),
        killed_at.1,
        RESTART_PHASE.end,
        restarted_at.0.as_secs_f64(),
        restarted_at.1
    );
    report(
        "shard loss",
        started,
        &router,
        deployment.duplicates_dropped().await,
    );
}
