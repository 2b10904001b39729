//! `loadtest cluster`: the scale-out deployment's throughput. Three ingest shards, each on a
//! different node of a three-node NATS cluster (the shipped `deploy/nats` configs on free
//! ports), against a bare `mosquitto_sub` on the same cluster in the same run; then, beside
//! it, one ingest on one Mosquitto (stock or the project's, `--broker`) under the same load.
//!
//! The load is many publishing connections spread evenly over the nodes (a QoS 1 publish on
//! NATS waits for a three-replica store, so one connection reaches only ~2 000 msg/s), every
//! reading with a unique `id`. The broker's mapping routes machine `m` to
//! `shard/{fnv1a32(m) mod 3}/machines/m/scrap`; shard `k` subscribes to its own prefix. The
//! measurement itself is [`crate::delivery`]: the same start instant for both counters, exact
//! sums of the retained aggregates, and the shards' accepted counts adding up to N.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;
use test_support::{NATS_NODES, NATS_SHARDS, NatsCluster};

use crate::delivery::{self, Load, Measured, Target};
use crate::report::{Row, Verdict};
use crate::stack::{self, Bins, BrokerArgs, Service};

/// Every shard's window, long enough that no reading leaves it before the sums are checked,
/// however slow the run.
const WINDOW_SECONDS: &str = "3600";
/// The shards' `--publish-again-after-ms`, as `docker-compose.cluster.yml` sets it: nats-server
/// before 2.9.16 can lose a live aggregate update for one of two QoS 1 subscribers
/// (docs/scale-out.md), and the sums are read back from aggregates.
const REPUBLISH_AFTER_MS: &str = "2000";

/// Settings of a cluster run.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Readings to publish (in each of the two runs). The cluster delivers a few thousand a
    /// second here, so this keeps its run to tens of seconds.
    #[arg(long, default_value_t = 30_000)]
    pub messages: u64,
    /// Machines (`M000`, `M001`, ...), spread over the connections (machine m on connection
    /// m mod connections).
    #[arg(long, default_value_t = 90)]
    pub machines: usize,
    /// Scrap indices per machine.
    #[arg(long, default_value_t = 5)]
    pub indices: u32,
    /// Publishing connections; on the cluster connection c goes to node c mod 3.
    #[arg(long, default_value_t = 30)]
    pub connections: usize,
    /// QoS of the bare subscriber on the cluster. 0 by default: at QoS 1 it is a second
    /// JetStream consumer of every reading, and nats-server before 2.9.16 may then delete a
    /// reading before its shard's consumer delivered it (docs/scale-out.md). Use 1 on a fixed
    /// server to compare the shards with a subscriber on the same JetStream path.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub bare_qos: u8,
    /// Every ingest's `--publish-interval-ms` (default: ingest's own). On NATS 2.9 each retained
    /// aggregate costs the publishing connection synchronous JetStream requests, so the
    /// aggregate rate (keys / interval) bounds how fast a shard can acknowledge readings.
    #[arg(long)]
    pub publish_interval_ms: Option<u64>,
    /// Every ingest's `--publish-burst` (default: ingest's own).
    #[arg(long)]
    pub publish_burst: Option<u32>,
    /// Extra flag for every ingest of both runs, repeatable (e.g. `--ingest-flag=--limits-inflight=20`).
    #[arg(long, allow_hyphen_values = true)]
    pub ingest_flag: Vec<String>,
    /// Give up on a run after this many seconds (a stalled cluster run gives a missed row).
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Which Mosquitto configuration to start.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Directory of the `ingest` and `gateway` binaries (default: next to this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// Runs the cluster, then the single Mosquitto, and returns the table row. A failed cluster
/// run (a deadline, a wrong sum) is a missed row with its reason, the details on stderr.
///
/// # Errors
/// When the binaries are missing or the single-Mosquitto run fails.
pub async fn run(args: &ClusterArgs) -> anyhow::Result<Row> {
    if args.connections == 0 || args.machines < args.connections {
        bail!(
            "--connections must be at least 1 and at most --machines ({}), so that every connection publishes",
            args.machines
        );
    }
    if args.indices == 0 || args.messages == 0 {
        bail!("--indices and --messages must be at least 1");
    }
    let bins = Bins::locate(args.bin_dir.as_deref())?;
    let nats_version = nats_server_version()?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let load = Load {
        messages: args.messages,
        machines: args.machines,
        indices: args.indices,
        ids: true,
        protocol: crate::workload::Protocol::Json,
    };
    // One after the other, so that neither run competes with the other's processes.
    let cluster = on_cluster(&bins, args, &load, timeout).await;
    if let Err(e) = &cluster {
        // The whole story (the shards' counters, the consumers, the node logs) is long: it goes
        // to stderr, the row keeps one line and still gets the Mosquitto figure.
        eprintln!("loadtest cluster: the NATS run failed: {e:?}");
    }
    let single = on_mosquitto(&bins, args, &load, timeout).await?;
    let single_text = format!(
        "One ingest on one Mosquitto ({}), same load: ingest **{:.0}/s**, mosquitto_sub {:.0}/s, ratio {:.2}; publishers {:.0}/s; sums exact; CPU: {}",
        args.broker.config.label(),
        single.ingest_rate,
        single.subscriber_rate,
        single.ratio(),
        single.publisher_rate,
        single.cpu_text(),
    );
    let (measured, verdict) = match cluster {
        Ok(cluster) => {
            let ratio = cluster.ratio();
            let accepted = cluster
                .accepted
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" + ");
            (
                format!(
                    "shards {:.0}/s, bare mosquitto_sub (QoS {}) {:.0}/s, ratio **{ratio:.2}**; publishers {:.0}/s; sums exact (max error {:e}, accepted {accepted}); CPU: {} of one core. {single_text}",
                    cluster.ingest_rate,
                    args.bare_qos,
                    cluster.subscriber_rate,
                    cluster.publisher_rate,
                    cluster.max_error,
                    cluster.cpu_text(),
                ),
                Verdict::from_ok(ratio >= 0.9),
            )
        }
        Err(e) => {
            let cause = e.root_cause().to_string();
            let first = cause
                .lines()
                .next()
                .unwrap_or_default()
                .trim_end_matches(':');
            (
                format!("**failed** on the cluster: {first} (details on stderr). {single_text}"),
                Verdict::Missed,
            )
        }
    };
    Ok(Row::new(
        format!(
            "cluster: {NATS_SHARDS} ingest shards on {NATS_NODES} NATS nodes ({nats_version}), QoS 1 with ids, {} connections, {} x {} keys, {} msgs",
            args.connections, args.machines, args.indices, args.messages
        ),
        measured,
        "shards >= 0.9 x bare subscriber, exact sums",
        verdict,
    ))
}

/// The three shards on the cluster, the bare subscriber on node 1.
async fn on_cluster(
    bins: &Bins,
    args: &ClusterArgs,
    load: &Load,
    timeout: Duration,
) -> anyhow::Result<Measured> {
    let cluster = stack::start_nats_cluster().await?;
    let mut data_dirs = Vec::with_capacity(NATS_NODES);
    let mut shards: Vec<Service> = Vec::with_capacity(NATS_NODES);
    for shard in 0..NATS_NODES {
        let dir = data_dir(&format!("shard{shard}"))?;
        let mut extra = ingest_flags(args, &dir);
        extra.extend([
            "--shard-count".to_owned(),
            NATS_SHARDS.to_string(),
            "--shard-index".to_owned(),
            shard.to_string(),
            "--shard-subscribe-topic".to_owned(),
            "shard/{shard}/machines/+/scrap".to_owned(),
            "--publish-again-after-ms".to_owned(),
            REPUBLISH_AFTER_MS.to_owned(),
        ]);
        // Shard k starts on node k and fails over round the others.
        let service = stack::start_ingest_at(
            bins,
            &cluster.mqtt_hosts_from(shard),
            cluster.mqtt_port(shard),
            &extra,
        )
        .await
        .with_context(|| format!("ingest shard {shard}"))?;
        shards.push(service);
        data_dirs.push(dir);
    }
    let mut cpu = Vec::new();
    for node in 0..NATS_NODES {
        let pid = cluster
            .pid(node)
            .with_context(|| format!("NATS node {} has exited", node + 1))?;
        cpu.push((format!("nats-{}", node + 1), pid));
    }
    for (k, shard) in shards.iter().enumerate() {
        cpu.push((format!("shard {k}"), shard.pid()?));
    }
    let target = Target {
        publish_ports: (0..args.connections)
            .map(|c| cluster.mqtt_port(c % NATS_NODES))
            .collect(),
        subscriber_port: cluster.mqtt_port(0),
        subscriber_filter: "shard/+/machines/+/scrap",
        subscriber_qos: args.bare_qos,
        ingests: &shards,
        aggregates_port: cluster.mqtt_port(0),
        cpu,
    };
    let measured = match delivery::measure(&target, load, timeout).await {
        Ok(m) => m,
        Err(e) => {
            let consumers = consumer_states(&cluster).await;
            return Err(e.context(format!(
                "on the NATS cluster; readings published per shard: {:?}; MQTT consumers:\n{consumers}\n{}",
                load.per_shard(NATS_SHARDS),
                cluster.logs()
            )));
        }
    };
    for shard in shards {
        shard.stop().await;
    }
    drop(data_dirs);
    Ok(measured)
}

/// One ingest on one Mosquitto, every connection to it; the window log on as for the shards.
async fn on_mosquitto(
    bins: &Bins,
    args: &ClusterArgs,
    load: &Load,
    timeout: Duration,
) -> anyhow::Result<Measured> {
    let broker = args.broker.config.start().await;
    let dir = data_dir("single")?;
    let extra = ingest_flags(args, &dir);
    let ingest = stack::start_ingest(bins, &broker, &extra).await?;
    let target = Target::one_mosquitto(&broker, &ingest, args.connections)?;
    let measured = delivery::measure(&target, load, timeout)
        .await
        .context("on one Mosquitto")?;
    ingest.stop().await;
    Ok(measured)
}

/// The flags every ingest of both runs gets: its own window log in `dir`, the long window, and
/// the publish budget asked for.
fn ingest_flags(args: &ClusterArgs, dir: &TempDir) -> Vec<String> {
    let mut flags = vec![
        "--data-dir".to_owned(),
        dir.path().display().to_string(),
        "--window-seconds".to_owned(),
        WINDOW_SECONDS.to_owned(),
    ];
    if let Some(ms) = args.publish_interval_ms {
        flags.extend(["--publish-interval-ms".to_owned(), ms.to_string()]);
    }
    if let Some(burst) = args.publish_burst {
        flags.extend(["--publish-burst".to_owned(), burst.to_string()]);
    }
    flags.extend(args.ingest_flag.iter().cloned());
    flags
}

/// Every JetStream consumer's delivery state as node 1 sees it (`/jsz`), one line each, for a
/// failure message: which subscriber is waiting for what.
async fn consumer_states(cluster: &NatsCluster) -> String {
    let url = format!(
        "http://127.0.0.1:{}/jsz?consumers=true&config=true",
        cluster.ports(0).http
    );
    let body = match test_support::try_http_get(&url).await {
        Ok((200, body)) => body,
        other => return format!("{url}: {other:?}"),
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
        return format!("{url}: not JSON");
    };
    let mut lines = Vec::new();
    for account in json["account_details"].as_array().into_iter().flatten() {
        for stream in account["stream_detail"].as_array().into_iter().flatten() {
            for consumer in stream["consumer_detail"].as_array().into_iter().flatten() {
                lines.push(format!(
                    "{} {} filter={} delivered={} ack_floor={} ack_pending={} redelivered={} waiting={} pending={} max_ack_pending={}",
                    stream["name"],
                    consumer["name"],
                    consumer["config"]["filter_subject"],
                    consumer["delivered"]["stream_seq"],
                    consumer["ack_floor"]["stream_seq"],
                    consumer["num_ack_pending"],
                    consumer["num_redelivered"],
                    consumer["num_waiting"],
                    consumer["num_pending"],
                    consumer["config"]["max_ack_pending"],
                ));
            }
        }
    }
    lines.join("\n")
}

/// What `nats-server --version` prints (`nats-server: v2.9.10`), without the prefix: which
/// server the figures are for matters (docs/scale-out.md).
fn nats_server_version() -> anyhow::Result<String> {
    let binary = test_support::require_tool("nats-server", test_support::NATS_INSTALL_HINT);
    let output = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.trim().trim_start_matches("nats-server:").trim();
    if !output.status.success() || version.is_empty() {
        bail!("{} --version printed nothing useful", binary.display());
    }
    Ok(format!("nats-server {version}"))
}

/// A fresh window-log directory, removed when dropped.
fn data_dir(name: &str) -> anyhow::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("scrap-pulse-loadtest-{name}-"))
        .tempdir()
        .context("creating a data dir")
}
