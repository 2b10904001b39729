//! Ingest's Sparkplug B input against an edge node it shares no code with: Eclipse Tahu's own
//! client from npm (`sparkplug-client`, driven by `interop/sparkplug-tahu/edge.js` under
//! Node), on a real Mosquitto with the real ingest and gateway binaries. Births and data by
//! alias give exact sums; an ingest restarted without the births asks the node for them and
//! counts again; a node's death shows its machines offline within a second and keeps their
//! windows; a lost sequence number leads to a rebirth request once the reorder timeout is over;
//! wrong datatypes (encoded by Tahu's payload library), malformed and oversized payloads are
//! counted and refused while good data goes on counting; two ingest shards each take every
//! birth and count only their own devices.
//!
//! Needs Node.js and Tahu's packages: `npm ci --prefix interop/sparkplug-tahu` (scripts/test.sh
//! runs it). Without them the tests fail, saying so.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::{
    Broker, Collector, Message, http_get, require_tool, scrape_metrics, unique_client_id,
    wait_until,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::helpers::{TestService, WAIT, by_key, close};

/// The Sparkplug group of every test (each test has its own broker).
const GROUP: &str = "Plant1";
/// The edge node's id.
const NODE: &str = "Line7";
/// The node's devices, each a machine, with their scrap indices (metrics `scrap/{index}`).
/// `edge.js` numbers the aliases from 1 in this order.
const DEVICES: &[(&str, &[u32])] = &[("D1", &[1, 2]), ("D2", &[1, 3])];
/// The requirement: a dead node's machines show offline on the dashboard within this.
const OFFLINE_WITHIN: Duration = Duration::from_secs(1);
/// What a test without Node.js says.
const NODE_HINT: &str = "Node.js 20+ with npm (apt-get install nodejs npm, or https://nodejs.org), \
                         then `npm ci --prefix interop/sparkplug-tahu`";
/// What a test without Tahu's packages says.
const NPM_HINT: &str = "run `npm ci --prefix interop/sparkplug-tahu` (scripts/test.sh does)";

/// `(machine, scrap index)` -> `(sum, count)`, as [`by_key`] reads it.
type Sums = HashMap<(String, u64), (f64, u64)>;

/// Adds `readings` (`(index, value)`) of `device` to `sums`.
fn add(sums: &mut Sums, device: &str, readings: &[(u32, f64)]) {
    for (index, value) in readings {
        let entry = sums
            .entry((device.to_owned(), u64::from(*index)))
            .or_default();
        entry.0 += value;
        entry.1 += 1;
    }
}

/// The alias `edge.js` gives `device`'s `scrap/{index}`: its position among all metrics of
/// [`DEVICES`], from 1.
fn alias_of(device: &str, index: u32) -> usize {
    DEVICES
        .iter()
        .flat_map(|(d, indices)| indices.iter().map(move |i| (*d, *i)))
        .position(|key| key == (device, index))
        .unwrap_or_else(|| panic!("{device} has no scrap/{index} in DEVICES"))
        + 1
}

/// `interop/sparkplug-tahu`, with Tahu's client installed at the version package.json pins.
fn tahu_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/sparkplug-tahu");
    let installed = std::fs::read_to_string(dir.join("node_modules/sparkplug-client/package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    let pinned: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    let want = &pinned["dependencies"]["sparkplug-client"];
    assert!(
        installed.as_ref().is_some_and(|p| &p["version"] == want),
        "Eclipse Tahu's sparkplug-client {want} is not installed in {} (found {:?}): {NPM_HINT}",
        dir.display(),
        installed.map(|p| p["version"].clone())
    );
    dir
}

/// Lines a child process wrote, kept as they come.
#[derive(Debug, Default, Clone)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn lock(&self) -> MutexGuard<'_, Vec<String>> {
        // A panic while holding the lock cannot leave the Vec inconsistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads `reader` line by line into these lines until it ends.
    fn keep<R: AsyncRead + Unpin + Send + 'static>(&self, reader: R) {
        let lines = self.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(reader).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().push(line);
            }
        });
    }
}

/// `edge.js` under Node: a Sparkplug edge node on Tahu's client with the devices of
/// [`DEVICES`]. Commands go to its stdin; its stdout lines are its events. Killed when dropped.
struct Edge {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines,
    stderr: Lines,
}

impl Edge {
    /// Starts the node against the broker on `port`; returns once it is connected and hears
    /// its commands.
    async fn start(port: u16) -> Result<Self, String> {
        let node = require_tool("node", NODE_HINT);
        let dir = tahu_dir();
        let broker = format!("mqtt://127.0.0.1:{port}");
        let mut args = vec![
            dir.join("edge.js").display().to_string(),
            "--broker".into(),
            broker,
            "--group".into(),
            GROUP.into(),
            "--node".into(),
            NODE.into(),
        ];
        for (device, indices) in DEVICES {
            let indices: Vec<String> = indices.iter().map(u32::to_string).collect();
            args.extend(["--device".into(), format!("{device}={}", indices.join(","))]);
        }
        let mut child = Command::new(&node)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {}: {e}; install {NODE_HINT}", node.display())
            });
        let (stdout, stderr) = (Lines::default(), Lines::default());
        // unwrap: all three were asked for as pipes just above.
        stdout.keep(child.stdout.take().unwrap());
        stderr.keep(child.stderr.take().unwrap());
        let edge = Self {
            stdin: child.stdin.take().unwrap(),
            _child: child,
            stdout,
            stderr,
        };
        edge.wait_for("edge.js connected", |e| count(e, "connected") == 1)
            .await?;
        Ok(edge)
    }

    /// Every event so far; a line that is not JSON reads as `{"event": "unparsed"}`.
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|_| json!({ "event": "unparsed", "line": line }))
            })
            .collect()
    }

    /// What the node printed, for failure messages.
    fn logs(&self) -> String {
        format!(
            "--- edge.js stdout ---\n{}\n--- edge.js stderr ---\n{}",
            self.stdout.lock().join("\n"),
            self.stderr.lock().join("\n")
        )
    }

    /// Waits until `condition` holds over the events so far.
    async fn wait_for(
        &self,
        what: &str,
        condition: impl Fn(&[Value]) -> bool,
    ) -> Result<(), String> {
        wait_until(WAIT, what, || async { condition(&self.events()) })
            .await
            .map_err(|e| format!("{e}\n{}", self.logs()))
    }

    /// Writes one command line.
    async fn send(&mut self, command: &Value) -> Result<(), String> {
        let line = format!("{command}\n");
        let written = self.stdin.write_all(line.as_bytes()).await;
        match written.and(self.stdin.flush().await) {
            Ok(()) => Ok(()),
            Err(e) => Err(format!(
                "writing {command} to edge.js: {e}\n{}",
                self.logs()
            )),
        }
    }

    /// NBIRTH and a DBIRTH per device; returns once the node handed them to its connection.
    async fn birth(&mut self) -> Result<(), String> {
        let births = published(&self.events(), "DBIRTH").len() + DEVICES.len();
        self.send(&json!({ "birth": true })).await?;
        self.wait_for("edge.js published the births", |e| {
            published(e, "DBIRTH").len() >= births
        })
        .await
    }

    /// A DDATA of `readings` (`(index, value)`) for `device`, by alias only; returns the
    /// sequence number Tahu gave it.
    async fn data(&mut self, device: &str, readings: &[(u32, f64)]) -> Result<u64, String> {
        let sent = published(&self.events(), "DDATA").len();
        let metrics: Vec<Value> = readings
            .iter()
            .map(|(index, value)| json!({ "alias": alias_of(device, *index), "value": value }))
            .collect();
        let command = json!({ "data": { "device": device, "metrics": metrics } });
        self.send(&command).await?;
        self.wait_for("edge.js published the DDATA", |e| {
            published(e, "DDATA").len() > sent
        })
        .await?;
        let events = self.events();
        let ddata = published(&events, "DDATA");
        ddata[sent]["seq"]
            .as_u64()
            .ok_or_else(|| format!("a DDATA without seq\n{}", self.logs()))
    }

    /// Waits until the node has been asked for `n` rebirths and answered the last with births.
    async fn wait_rebirth(&self, n: usize) -> Result<(), String> {
        self.wait_for(&format!("rebirth request {n} answered"), |events| {
            let Some(asked) = events
                .iter()
                .enumerate()
                .filter(|(_, e)| e["event"] == "rebirth_requested")
                .nth(n - 1)
                .map(|(at, _)| at)
            else {
                return false;
            };
            published(&events[asked..], "DBIRTH").len() >= DEVICES.len()
        })
        .await
    }
}

/// How many `event` events are in `events`.
fn count(events: &[Value], event: &str) -> usize {
    events.iter().filter(|e| e["event"] == event).count()
}

/// The `published` events of message type `kind` (`DDATA`, `DBIRTH`...).
fn published<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"] == "published" && e["type"] == kind)
        .collect()
}

/// A broker, ingest with Sparkplug on for [`GROUP`] and a window log, the gateway, and the
/// Tahu edge node, with the helpers a test needs and failures that carry all their logs.
struct Stack {
    broker: Broker,
    ingest: TestService,
    ingest_args: Vec<String>,
    gateway: TestService,
    edge: Edge,
    _data_dir: tempfile::TempDir,
}

impl Stack {
    /// Starts everything; `extra` goes to ingest after the Sparkplug settings.
    async fn start(extra: &[&str]) -> Self {
        let broker = Broker::start().await;
        let data_dir = tempfile::tempdir().unwrap();
        let mut ingest_args: Vec<String> = [
            "--mqtt-client-id",
            &unique_client_id("e2e-sparkplug-ingest"),
            "--sparkplug-groups",
            GROUP,
            "--data-dir",
            data_dir.path().to_str().unwrap(),
            // Long enough that no reading leaves the window while a busy machine runs the test.
            "--window-seconds",
            "600",
        ]
        .map(str::to_owned)
        .into();
        ingest_args.extend(extra.iter().map(|a| (*a).to_owned()));
        let ingest = Self::start_ingest(broker.port(), &ingest_args).await;
        let gateway = TestService::gateway(broker.port(), &[]).await;
        let edge = match Edge::start(broker.port()).await {
            Ok(edge) => edge,
            Err(e) => panic!("{e}\n{}", ingest.process.logs()),
        };
        Self {
            broker,
            ingest,
            ingest_args,
            gateway,
            edge,
            _data_dir: data_dir,
        }
    }

    async fn start_ingest(port: u16, args: &[String]) -> TestService {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        TestService::start_at("ingest", "127.0.0.1", port, &args, "/health").await
    }

    /// Panics with `error` and the logs of every process.
    fn fail(&self, error: impl Display) -> ! {
        panic!(
            "{error}\n--- ingest\n{}\n--- gateway\n{}\n{}\n--- mosquitto\n{}",
            self.ingest.process.logs(),
            self.gateway.process.logs(),
            self.edge.logs(),
            self.broker.log()
        )
    }

    /// `result`'s value, or [`fail`](Self::fail).
    fn check<T>(&self, result: Result<T, String>) -> T {
        result.unwrap_or_else(|e| self.fail(e))
    }

    async fn send(&mut self, command: Value) {
        let sent = self.edge.send(&command).await;
        self.check(sent);
    }

    async fn birth(&mut self) {
        let born = self.edge.birth().await;
        self.check(born);
    }

    /// A DDATA from the node; returns its sequence number.
    async fn data(&mut self, device: &str, readings: &[(u32, f64)]) -> u64 {
        let seq = self.edge.data(device, readings).await;
        self.check(seq)
    }

    async fn wait_event(&self, what: &str, condition: impl Fn(&[Value]) -> bool) {
        let happened = self.edge.wait_for(what, condition).await;
        self.check(happened);
    }

    async fn wait_rebirth(&self, n: usize) {
        let answered = self.edge.wait_rebirth(n).await;
        self.check(answered);
    }

    /// The gateway's `/api/aggregates`; empty while it does not answer with a list.
    async fn aggregates(&self) -> Vec<Value> {
        let (status, body) = http_get(&self.gateway.url("/api/aggregates")).await;
        match serde_json::from_str::<Value>(&body) {
            Ok(Value::Array(list)) if status == 200 => list,
            _ => Vec::new(),
        }
    }

    /// Waits until the gateway shows exactly `expected`: the same keys with readings, each
    /// with the same count and sum.
    async fn wait_sums(&self, expected: &Sums) {
        let reached = wait_until(WAIT, "the gateway shows the sums sent", || async {
            same_sums(&self.aggregates().await, expected)
        })
        .await;
        if let Err(e) = reached {
            let got = by_key(&Value::Array(self.aggregates().await), "sumLast60s");
            self.fail(format!("{e}\nexpected {expected:?}\ngot {got:?}"));
        }
    }

    /// Waits until every key of every device is shown `offline` (or every one online), and
    /// returns when that was seen.
    async fn wait_offline(&self, offline: bool) -> Instant {
        let state = if offline { "offline" } else { "online" };
        let shown = wait_until(WAIT, &format!("every machine {state}"), || async {
            all_offline(&self.aggregates().await) == Some(offline)
        })
        .await;
        let seen = Instant::now();
        if let Err(e) = shown {
            self.fail(format!("{e}\ngot {:#?}", self.aggregates().await));
        }
        seen
    }

    /// SIGKILLs ingest and starts it again with the same settings, window log and session.
    async fn restart_ingest(&mut self) {
        self.ingest.process.kill().await;
        self.ingest = Self::start_ingest(self.broker.port(), &self.ingest_args).await;
    }

    /// Waits until ingest's `ingest_sparkplug_offline_machines` is `machines`.
    async fn wait_offline_gauge(&self, machines: usize) {
        let name = "ingest_sparkplug_offline_machines";
        let reached = wait_until(WAIT, &format!("{name} is {machines}"), || async {
            self.ingest_metric(name, &[]).await == machines as f64
        })
        .await;
        if let Err(e) = reached {
            let now = self.ingest_metric(name, &[]).await;
            self.fail(format!("{e}; it is {now}"));
        }
    }

    /// The value of ingest's counter or gauge `name` with `labels` (0 when absent).
    async fn ingest_metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let metrics = scrape_metrics(&self.ingest.url("/metrics")).await;
        self.check(metrics).get(name, labels).unwrap_or(0.0)
    }
}

/// True when `aggregates` hold exactly the keys of `expected` among those with readings, each
/// with its count and sum.
fn same_sums(aggregates: &[Value], expected: &Sums) -> bool {
    let got = by_key(&Value::Array(aggregates.to_vec()), "sumLast60s");
    let with_readings = got.iter().filter(|(_, (_, n))| *n > 0).count();
    with_readings == expected.len()
        && expected
            .iter()
            .all(|(key, (sum, n))| got.get(key).is_some_and(|(s, m)| m == n && close(*s, *sum)))
}

/// `Some(offline)` when every key of every device in [`DEVICES`] is present and all agree on
/// `offline` (absent reads as false); `None` otherwise.
fn all_offline(aggregates: &[Value]) -> Option<bool> {
    let keys: Vec<&Value> = aggregates
        .iter()
        .filter(|a| DEVICES.iter().any(|(d, _)| a["maschinenId"] == *d))
        .collect();
    let want: usize = DEVICES.iter().map(|(_, indices)| indices.len()).sum();
    let first = keys.first()?["offline"].as_bool().unwrap_or(false);
    let agree = keys
        .iter()
        .all(|a| a["offline"].as_bool().unwrap_or(false) == first);
    (keys.len() == want && agree).then_some(first)
}

/// The latest retained-or-live aggregate per topic among `messages`, as a JSON list.
fn latest_aggregates(messages: &[Message]) -> Vec<Value> {
    let mut latest: HashMap<&str, Value> = HashMap::new();
    for m in messages {
        if let Ok(aggregate) = m.json() {
            latest.insert(&m.topic, aggregate);
        }
    }
    latest.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_and_data_by_alias_from_tahu_give_exact_sums_on_the_gateway_and_retained() {
    let mut stack = Stack::start(&[]).await;
    stack.birth().await;
    let mut expected = Sums::new();
    let batches: [(&str, &[(u32, f64)]); 5] = [
        ("D1", &[(1, 2.5), (2, 0.1)]),
        ("D2", &[(1, 7.0), (3, 1.25)]),
        ("D1", &[(1, 0.2)]),
        ("D2", &[(3, 3.75), (1, 0.3)]),
        ("D1", &[(2, 11.0), (1, 1.0)]),
    ];
    for (device, readings) in batches {
        stack.data(device, readings).await;
        add(&mut expected, device, readings);
    }
    stack.wait_sums(&expected).await;

    // The retained aggregates say the same to a subscriber that comes later.
    let aggregates = Collector::start(stack.broker.port(), &["aggregates/#"]).await;
    let retained = aggregates
        .wait_for(|m| same_sums(&latest_aggregates(m), &expected), WAIT)
        .await;
    stack.check(retained);

    // A clean stop's own NDEATH (not the will) takes the machines offline too.
    stack.send(json!({ "stop": true })).await;
    stack.wait_offline(true).await;
    stack.wait_sums(&expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_restarted_without_births_asks_for_a_rebirth_and_counts_again() {
    let mut stack = Stack::start(&[]).await;
    stack.birth().await;
    let mut expected = Sums::new();
    for (device, readings) in [("D1", [(1, 2.5), (2, 4.0)]), ("D2", [(1, 1.5), (3, 0.5)])] {
        stack.data(device, &readings).await;
        add(&mut expected, device, &readings);
    }
    stack.wait_sums(&expected).await;

    // Tahu does not retain births: the new ingest has heard of no node. Its window comes
    // back from the log, so the sums go on from where they were.
    stack.restart_ingest().await;
    assert_eq!(count(&stack.edge.events(), "rebirth_requested"), 0);
    // Data by alias from a node it knows nothing of: not counted, never guessed.
    stack.data("D1", &[(1, 100.0)]).await;
    stack.wait_rebirth(1).await;

    let after = [
        ("D1", [(1, 0.25), (2, 8.0)]),
        ("D2", [(1, 3.0), (3, 0.125)]),
    ];
    for (device, readings) in after {
        stack.data(device, &readings).await;
        add(&mut expected, device, &readings);
    }
    stack.wait_sums(&expected).await;
    assert_eq!(
        count(&stack.edge.events(), "rebirth_requested"),
        1,
        "one rebirth request answers one restart"
    );
    let requests = stack
        .ingest_metric("ingest_sparkplug_rebirth_requests_total", &[])
        .await;
    let unresolved = stack
        .ingest_metric(
            "ingest_readings_rejected_total",
            &[("reason", "unresolved")],
        )
        .await;
    if requests != 1.0 || unresolved != 1.0 {
        stack.fail(format!(
            "want 1 rebirth request and 1 unresolved reading, got {requests} and {unresolved}"
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_shows_its_machines_offline_within_a_second_and_a_birth_brings_them_back() {
    let mut stack = Stack::start(&[]).await;
    stack.birth().await;
    let mut expected = Sums::new();
    for (device, readings) in [("D1", [(1, 2.0), (2, 3.5)]), ("D2", [(1, 0.5), (3, 6.25)])] {
        stack.data(device, &readings).await;
        add(&mut expected, device, &readings);
    }
    stack.wait_sums(&expected).await;
    assert_eq!(all_offline(&stack.aggregates().await), Some(false));

    let port = stack.broker.port();
    let deaths = Collector::start(port, &[&format!("spBv1.0/{GROUP}/NDEATH/#")]).await;
    let aggregates = Collector::start(port, &["aggregates/#"]).await;
    // The socket closes without DISCONNECT: Mosquitto sees it at once and sends the will.
    stack.send(json!({ "kill": true })).await;
    let will = deaths.wait_for(|m| !m.is_empty(), WAIT).await;
    let died = stack.check(will)[0].received;
    let shown = stack.wait_offline(true).await;
    let latency = shown.duration_since(died);
    let published = aggregates
        .wait_for(|m| first_offline(m).is_some(), WAIT)
        .await;
    let retained = first_offline(&stack.check(published)).map(|at| at.duration_since(died));
    println!(
        "NDEATH -> offline on /api/aggregates: {latency:?}; on the retained aggregates: {retained:?}"
    );
    if latency >= OFFLINE_WITHIN {
        stack.fail(format!(
            "the machines showed offline {latency:?} after the NDEATH, over {OFFLINE_WITHIN:?}"
        ));
    }
    // The window keeps what the machines sent before they died.
    stack.wait_sums(&expected).await;
    // The contract counts the node's own machine (the one of its NDATA) with its devices'.
    stack.wait_offline_gauge(DEVICES.len() + 1).await;

    // The node comes back on a new connection: its birth takes the machines online.
    stack.send(json!({ "connect": true })).await;
    stack
        .wait_event("edge.js connected again", |e| count(e, "connected") == 2)
        .await;
    stack.birth().await;
    stack.wait_offline(false).await;
    stack.wait_offline_gauge(0).await;
    stack.data("D2", &[(3, 1.0)]).await;
    add(&mut expected, "D2", &[(3, 1.0)]);
    stack.wait_sums(&expected).await;
}

/// When the last aggregate of [`DEVICES`] turned offline in `messages` (the first offline
/// aggregate of each key), if all did.
fn first_offline(messages: &[Message]) -> Option<Instant> {
    let mut first: HashMap<&str, Instant> = HashMap::new();
    for m in messages {
        if m.json().is_ok_and(|a| a["offline"] == true) {
            first.entry(&m.topic).or_insert(m.received);
        }
    }
    let want: usize = DEVICES.iter().map(|(_, indices)| indices.len()).sum();
    (first.len() == want)
        .then(|| first.into_values().max())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_sequence_number_leads_to_a_rebirth_after_the_reorder_timeout() {
    let mut stack = Stack::start(&["--sparkplug-reorder-timeout-ms", "500"]).await;
    let commands = Collector::start(stack.broker.port(), &[&format!("spBv1.0/{GROUP}/#")]).await;
    stack.birth().await;
    let mut expected = Sums::new();
    let seq = stack.data("D1", &[(1, 1.5)]).await;
    add(&mut expected, "D1", &[(1, 1.5)]);
    stack.wait_sums(&expected).await;

    // Tahu's client draws the next number and never sends it, as if that message was lost.
    stack.send(json!({ "skip_seq": true })).await;
    let gapped = stack.data("D2", &[(3, 2.25)]).await;
    assert_eq!(
        gapped,
        (seq + 2) % 256,
        "the client left out one sequence number"
    );
    add(&mut expected, "D2", &[(3, 2.25)]);
    // Nothing more is sent: the timeout alone must bring the request.
    stack.wait_rebirth(1).await;
    let delay = gap_to_request(&commands.messages());
    println!("DDATA after the gap -> rebirth NCMD: {delay:?} (reorder timeout 500 ms)");

    // The message after the gap counted as it came; after the rebirth, counting goes on.
    stack.data("D1", &[(2, 0.75)]).await;
    add(&mut expected, "D1", &[(2, 0.75)]);
    stack.wait_sums(&expected).await;
    assert_eq!(count(&stack.edge.events(), "rebirth_requested"), 1);
    let requests = stack
        .ingest_metric("ingest_sparkplug_rebirth_requests_total", &[])
        .await;
    if requests != 1.0 {
        stack.fail(format!("want 1 rebirth request, ingest counted {requests}"));
    }
}

/// Time from the broker's delivery of the last DDATA before the first NCMD to that NCMD.
fn gap_to_request(messages: &[Message]) -> Option<Duration> {
    let ncmd = messages.iter().position(|m| m.topic.contains("/NCMD/"))?;
    let ddata = messages[..ncmd]
        .iter()
        .rev()
        .find(|m| m.topic.contains("/DDATA/"))?;
    Some(messages[ncmd].received.duration_since(ddata.received))
}

/// The node that sends what a careless or hostile edge node would, next to the Tahu client.
const ROGUE: &str = "Rogue9";

/// Sparkplug payloads encoded by Tahu's own payload library (`encode.js`), one per entry of
/// `payloads` (in the library's form).
fn tahu_encode(payloads: &Value) -> Vec<Vec<u8>> {
    let node = require_tool("node", NODE_HINT);
    let script = tahu_dir().join("encode.js");
    let mut child = std::process::Command::new(node)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run encode.js: {e}; {NPM_HINT}"));
    // unwrap: asked for as pipes just above.
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, payloads.to_string().as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "encode.js failed: {output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines()
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_datatypes_malformed_and_oversized_payloads_are_counted_and_good_data_still_counts() {
    let mut stack = Stack::start(&["--limits-max-payload-bytes", "2048"]).await;
    stack.birth().await;
    let mut expected = Sums::new();
    stack.data("D1", &[(1, 2.5)]).await;
    add(&mut expected, "D1", &[(1, 2.5)]);

    // A node whose birth declares scrap/1 as a String: its values are no readings.
    let encoded = tahu_encode(&json!([
        { "seq": 0, "metrics": [
            { "name": "bdSeq", "type": "UInt64", "value": "0" },
            { "name": "scrap/1", "alias": 1, "type": "String", "value": "none" },
            { "name": "scrap/2", "alias": 2, "type": "Double", "value": 0.0 } ] },
        { "seq": 1, "metrics": [ { "alias": 1, "type": "String", "value": "3" } ] },
        { "seq": 2, "metrics": [ { "alias": 2, "type": "Double", "value": 4.5 } ] },
        { "seq": 3, "metrics": [ { "alias": 2, "type": "Double", "value": 1.5 } ] },
    ]));
    let topic = |kind: &str| format!("spBv1.0/{GROUP}/{kind}/{ROGUE}");
    let mut publisher = test_support::Publisher::connect(stack.broker.port()).await;
    let qos = rumqttc::QoS::AtLeastOnce;
    let sends: [(String, Vec<u8>); 6] = [
        (topic("NBIRTH"), encoded[0].clone()),
        (topic("NDATA"), encoded[1].clone()),
        (topic("NDATA"), encoded[2].clone()),
        // Not protobuf at all: a length that runs past the end.
        (topic("NDATA"), vec![0x12, 0x05, 0x01]),
        (topic("NDATA"), vec![0x08; 3_000]),
        (topic("NDATA"), encoded[3].clone()),
    ];
    for (topic, payload) in sends {
        let sent = publisher.publish(&topic, qos, false, payload).await;
        stack.check(sent);
    }
    let flushed = publisher.flush(WAIT).await;
    stack.check(flushed);
    add(&mut expected, ROGUE, &[(2, 4.5), (2, 1.5)]);
    stack.wait_sums(&expected).await;

    for (reason, want) in [
        ("not_numeric", 1.0),
        ("invalid_sparkplug", 1.0),
        ("too_large", 1.0),
    ] {
        let labels = [("reason", reason)];
        let got = stack
            .ingest_metric("ingest_readings_rejected_total", &labels)
            .await;
        if got != want {
            stack.fail(format!("{reason}: want {want} rejections, got {got}"));
        }
    }
    // The rogue node's sequence stayed whole: nobody was asked for a rebirth.
    let requests = stack
        .ingest_metric("ingest_sparkplug_rebirth_requests_total", &[])
        .await;
    if requests != 0.0 {
        stack.fail(format!("want no rebirth request, got {requests}"));
    }
    // And the Tahu node goes on being counted.
    stack.data("D2", &[(3, 0.75)]).await;
    add(&mut expected, "D2", &[(3, 0.75)]);
    stack.wait_sums(&expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_each_take_every_birth_and_count_only_their_own_devices() {
    // fnv1a32 puts D1 on shard 0 and D2 on shard 1 of two.
    let mut stack = Stack::start(&["--shard-count", "2", "--shard-index", "0"]).await;
    let client_id = unique_client_id("e2e-sparkplug-shard-1");
    let args: Vec<String> = [
        "--mqtt-client-id",
        &client_id,
        "--sparkplug-groups",
        GROUP,
        "--window-seconds",
        "600",
        "--shard-count",
        "2",
        "--shard-index",
        "1",
    ]
    .map(str::to_owned)
    .into();
    let shard_1 = Stack::start_ingest(stack.broker.port(), &args).await;
    stack.birth().await;
    let mut expected = Sums::new();
    let batches: [(&str, &[(u32, f64)]); 4] = [
        ("D1", &[(1, 2.5), (2, 0.5)]),
        ("D2", &[(1, 7.0)]),
        ("D2", &[(3, 1.25), (1, 0.75)]),
        ("D1", &[(1, 1.0)]),
    ];
    for (device, readings) in batches {
        stack.data(device, readings).await;
        add(&mut expected, device, readings);
    }
    stack.wait_sums(&expected).await;

    // Each shard counted its own device's readings, and neither missed a birth.
    let shard_1_metric = |name: &'static str| {
        let url = shard_1.url("/metrics");
        async move {
            let metrics = scrape_metrics(&url).await.ok()?;
            metrics.get(name, &[])
        }
    };
    let counts = || async {
        (
            stack
                .ingest_metric("ingest_readings_accepted_total", &[])
                .await,
            shard_1_metric("ingest_readings_accepted_total").await,
            stack
                .ingest_metric("ingest_sparkplug_rebirth_requests_total", &[])
                .await,
            shard_1_metric("ingest_sparkplug_rebirth_requests_total").await,
        )
    };
    let want = (3.0, Some(3.0), 0.0, Some(0.0));
    let reached = wait_until(WAIT, "3 readings on each shard", || async {
        counts().await == want
    })
    .await;
    if let Err(e) = reached {
        stack.fail(format!(
            "{e}: want (shard 0, shard 1, requests 0, requests 1) = {want:?}, got {:?}\n\
             --- shard 1\n{}",
            counts().await,
            shard_1.process.logs()
        ));
    }
}
