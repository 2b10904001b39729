//! The system under test, started fresh for every run: a private Mosquitto on a free
//! 127.0.0.1 port (via `test-support`), stock or with the project's setting
//! ([`BrokerConfig`]), or for `latency` and `compare` also the three-node NATS cluster of
//! `deploy/nats` ([`AnyBroker`]), and the real `ingest` and `gateway` binaries.
//!
//! The binaries come from `--bin-dir`, by default the directory of the `loadtest` executable
//! itself, so `target/release/loadtest` measures `target/release/{ingest,gateway}`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
pub use test_support::Rss;
use test_support::{
    Broker, BrokerOptions, Metrics, NATS_NODES, NatsCluster, QoS, ServiceProcess, unique_client_id,
};

/// How long a service may take to become ready: generous, because a service's first session
/// on a fresh NATS cluster takes seconds (JetStream creates its streams) and the machine may
/// be loaded.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long each NATS node may take to accept its first MQTT connection (JetStream creates the
/// MQTT streams then, which is slow on a loaded machine).
const NATS_MQTT_READY: Duration = Duration::from_secs(90);
/// On the NATS cluster, the node the load's publisher connects to (node 1)...
const NATS_PUBLISH_NODE: usize = 0;
/// ...the node ingest connects to first (node 2), and the plain subscriber beside it...
const NATS_INGEST_NODE: usize = 1;
/// ...and the gateway's first node (node 3): every hop of a reading crosses a cluster route.
const NATS_GATEWAY_NODE: usize = 2;
/// Every reading on the shipped cluster: its mapping moves `machines/{m}/scrap` to
/// `shard/{k}/machines/{m}/scrap`, and nothing arrives on the plain filter.
const NATS_READINGS_FILTER: &str = "shard/+/machines/+/scrap";

/// Where the service binaries are.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `ingest`.
    pub ingest: PathBuf,
    /// `gateway`.
    pub gateway: PathBuf,
}

impl Bins {
    /// Finds the binaries in `dir`, else next to the running executable.
    ///
    /// # Errors
    /// When one is missing (the message says how to build them).
    pub fn locate(dir: Option<&Path>) -> anyhow::Result<Self> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::current_exe()
                .context("locating the loadtest executable")?
                .parent()
                .context("the executable has no directory")?
                .to_path_buf(),
        };
        let bins = Self {
            ingest: dir.join("ingest"),
            gateway: dir.join("gateway"),
        };
        for bin in [&bins.ingest, &bins.gateway] {
            if !bin.is_file() {
                bail!(
                    "{} not found: build it first (`cargo build --release -p ingest -p gateway`, or pass --bin-dir)",
                    bin.display()
                );
            }
        }
        Ok(bins)
    }
}

impl Bins {
    /// Another binary of the same build, e.g. `historian`.
    ///
    /// # Errors
    /// When it is missing (the message says how to build it).
    pub fn sibling(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.ingest.with_file_name(name);
        if !path.is_file() {
            bail!(
                "{} not found: build it first (`cargo build --release -p historian`)",
                path.display()
            );
        }
        Ok(path)
    }
}

/// Which Mosquitto configuration a run measures: the one place that says what each writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerConfig {
    /// Mosquitto's own defaults, as on a plant's broker nobody tuned: only what a private
    /// broker needs (a listener on a free port, anonymous access, a log file), Nagle's
    /// algorithm on in its client sockets.
    #[default]
    Stock,
    /// The project's latency setting (`mosquitto/config/mosquitto.conf`): no Nagle delay on
    /// client sockets (`set_tcp_nodelay true`), and test-support's raised queue limits.
    Project,
}

impl BrokerConfig {
    /// What a table row calls it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Stock => "stock Mosquitto",
            Self::Project => "project Mosquitto config (set_tcp_nodelay)",
        }
    }

    /// The broker's options; persistence off in both, as it is by Mosquitto's default.
    pub fn options(self) -> BrokerOptions {
        let (extra_config, large_queues) = match self {
            Self::Stock => (String::new(), false),
            Self::Project => ("set_tcp_nodelay true\n".to_owned(), true),
        };
        BrokerOptions {
            extra_config,
            persistence: false,
            large_queues,
            ..BrokerOptions::default()
        }
    }

    /// Starts a private broker with this configuration for one run.
    pub async fn start(self) -> Broker {
        Broker::start_with(self.options()).await
    }
}

/// `--broker`, shared by every subcommand that starts a Mosquitto.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct BrokerArgs {
    /// Mosquitto configuration to measure: `stock` (Mosquitto's defaults, what plants run) or
    /// `project` (`set_tcp_nodelay true`, as in mosquitto/config/mosquitto.conf).
    #[arg(long = "broker", value_name = "BROKER", value_enum, default_value_t = BrokerConfig::Stock)]
    pub config: BrokerConfig,
}

/// `--broker` of `latency` and `compare`: one Mosquitto ([`BrokerConfig`]), or the NATS cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AnyBroker {
    /// One Mosquitto with its own defaults ([`BrokerConfig::Stock`]).
    #[default]
    Stock,
    /// One Mosquitto with the project's config ([`BrokerConfig::Project`]).
    Project,
    /// The scale-out deployment: the three nodes of `deploy/nats` (MQTT, JetStream, R3
    /// streams), one ingest on every shard's readings and one gateway, each given the node list.
    Nats,
}

impl AnyBroker {
    /// The Mosquitto configuration, or None for the cluster.
    pub fn mosquitto(self) -> Option<BrokerConfig> {
        match self {
            Self::Stock => Some(BrokerConfig::Stock),
            Self::Project => Some(BrokerConfig::Project),
            Self::Nats => None,
        }
    }

    /// What a table row calls it.
    pub fn label(self) -> &'static str {
        match self.mosquitto() {
            Some(config) => config.label(),
            None => "NATS cluster (3 nodes)",
        }
    }

    /// Starts it for one run; on the cluster, returns once every node accepts MQTT.
    ///
    /// # Errors
    /// When a NATS node does not accept MQTT in time (the message holds the nodes' logs).
    pub async fn start(self) -> anyhow::Result<RunningBroker> {
        Ok(match self.mosquitto() {
            Some(config) => RunningBroker::Mosquitto(config.start().await),
            None => RunningBroker::Nats(start_nats_cluster().await?),
        })
    }
}

/// `--broker` of the subcommands that also run on the NATS cluster.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct AnyBrokerArgs {
    /// Broker to measure: `stock` (Mosquitto's defaults, what plants run), `project`
    /// (`set_tcp_nodelay true`, as in mosquitto/config/mosquitto.conf) or `nats` (the
    /// three-node NATS cluster of deploy/nats, one ingest and one gateway on it).
    #[arg(long = "broker", value_name = "BROKER", value_enum, default_value_t = AnyBroker::Stock)]
    pub kind: AnyBroker,
}

/// The shipped three-node NATS cluster on free ports, once every node accepts MQTT: the first
/// MQTT session of each node is slow, and none of that belongs in a measurement.
///
/// # Errors
/// When a node does not accept MQTT in time (the message holds the nodes' logs).
///
/// # Panics
/// When `nats-server` is missing or the cluster does not form (test-support's
/// [`NatsCluster::start`]).
pub async fn start_nats_cluster() -> anyhow::Result<NatsCluster> {
    let cluster = NatsCluster::start().await;
    for node in 0..NATS_NODES {
        cluster
            .wait_mqtt(node, NATS_MQTT_READY)
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", cluster.logs()))?;
    }
    Ok(cluster)
}

/// The broker side of a run, from [`AnyBroker::start`]. Dropping it stops the broker or nodes.
#[derive(Debug)]
pub enum RunningBroker {
    /// One private Mosquitto.
    Mosquitto(Broker),
    /// The three NATS nodes.
    Nats(NatsCluster),
}

impl RunningBroker {
    /// The port a load publisher connects to: the Mosquitto's, or node 1's.
    pub fn publish_port(&self) -> u16 {
        match self {
            Self::Mosquitto(broker) => broker.port(),
            Self::Nats(cluster) => cluster.mqtt_port(NATS_PUBLISH_NODE),
        }
    }

    /// Where a plain subscriber of the readings connects ([`Self::readings_filter`] at
    /// [`Self::readings_qos`]), so that it gets them as ingest does: the Mosquitto, or ingest's
    /// node.
    pub fn readings_port(&self) -> u16 {
        match self {
            Self::Mosquitto(broker) => broker.port(),
            Self::Nats(cluster) => cluster.mqtt_port(NATS_INGEST_NODE),
        }
    }

    /// The filter that receives every reading: the plain one, or every shard's subject on the
    /// cluster, whose mapping moves the readings there.
    pub fn readings_filter(&self) -> &'static str {
        match self {
            Self::Mosquitto(_) => aggregator_core::topic::READINGS_FILTER,
            Self::Nats(_) => NATS_READINGS_FILTER,
        }
    }

    /// The QoS of a plain subscriber of the readings next to ingest: 1, but 0 on the cluster,
    /// because nats-server before 2.9.16 may delete a QoS 1 message of two QoS 1 subscribers
    /// before both have it (docs/scale-out.md), and ingest must get every reading.
    pub fn readings_qos(&self) -> QoS {
        match self {
            Self::Mosquitto(_) => QoS::AtLeastOnce,
            Self::Nats(_) => QoS::AtMostOnce,
        }
    }

    /// Starts one ingest with `extra` flags; on the cluster, with the node list from node 2 and
    /// subscribed to every shard's readings (a single ingest, shard count 1, as the shipped
    /// mapping sends nothing to the plain filter). Returns once `/health` says ready.
    ///
    /// # Errors
    /// As [`start_ingest`].
    pub async fn start_ingest(&self, bins: &Bins, extra: &[String]) -> anyhow::Result<Service> {
        match self {
            Self::Mosquitto(broker) => start_ingest(bins, broker, extra).await,
            Self::Nats(cluster) => {
                let mut flags = vec![
                    "--shard-subscribe-topic".to_owned(),
                    NATS_READINGS_FILTER.to_owned(),
                ];
                flags.extend_from_slice(extra);
                start_ingest_at(
                    bins,
                    &cluster.mqtt_hosts_from(NATS_INGEST_NODE),
                    cluster.mqtt_port(NATS_INGEST_NODE),
                    &flags,
                )
                .await
                .with_context(|| {
                    format!("ingest on the NATS cluster; its nodes:\n{}", cluster.logs())
                })
            }
        }
    }

    /// Starts one gateway with `extra` flags; on the cluster, with the node list from node 3.
    /// Returns once `/api/health` is 200.
    ///
    /// # Errors
    /// As [`start_ingest`].
    pub async fn start_gateway(&self, bins: &Bins, extra: &[String]) -> anyhow::Result<Service> {
        match self {
            Self::Mosquitto(broker) => start_gateway(bins, broker, extra).await,
            Self::Nats(cluster) => start_gateway_at(
                bins,
                &cluster.mqtt_hosts_from(NATS_GATEWAY_NODE),
                cluster.mqtt_port(NATS_GATEWAY_NODE),
                extra,
            )
            .await
            .with_context(|| {
                format!(
                    "gateway on the NATS cluster; its nodes:\n{}",
                    cluster.logs()
                )
            }),
        }
    }
}

/// A running service and the address of its HTTP listener.
pub struct Service {
    /// The process.
    pub process: ServiceProcess,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Service {
    /// The process id.
    ///
    /// # Errors
    /// When the process has exited.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.process.pid().context("the service has exited")
    }

    /// Current and peak resident memory, in bytes.
    ///
    /// # Errors
    /// When `/proc` cannot be read.
    pub fn rss(&self) -> anyhow::Result<Rss> {
        self.process.rss().map_err(anyhow::Error::msg)
    }

    /// Stops the service with SIGTERM.
    pub async fn stop(mut self) {
        self.process.terminate().await;
    }
}

/// Starts ingest against `broker` with `extra` flags; returns once `/health` says ready.
///
/// # Errors
/// When it does not become ready in time (the message holds its log).
pub async fn start_ingest(
    bins: &Bins,
    broker: &Broker,
    extra: &[String],
) -> anyhow::Result<Service> {
    start_ingest_at(bins, broker.host(), broker.port(), extra).await
}

/// As [`start_ingest`] against `mqtt_host` (one host or a comma-separated broker list, whose
/// entries may carry their own port) and `mqtt_port`.
///
/// # Errors
/// As [`start_ingest`].
pub async fn start_ingest_at(
    bins: &Bins,
    mqtt_host: &str,
    mqtt_port: u16,
    extra: &[String],
) -> anyhow::Result<Service> {
    let client_id = [
        "--mqtt-client-id".to_owned(),
        unique_client_id("loadtest-ingest"),
    ];
    start_service(
        &bins.ingest,
        (mqtt_host, mqtt_port),
        &client_id,
        extra,
        "/health",
    )
    .await
}

/// Starts a gateway against `broker` with `extra` flags; returns once `/api/health` is 200.
///
/// # Errors
/// As [`start_ingest`].
pub async fn start_gateway(
    bins: &Bins,
    broker: &Broker,
    extra: &[String],
) -> anyhow::Result<Service> {
    start_gateway_at(bins, broker.host(), broker.port(), extra).await
}

/// As [`start_gateway`] against `mqtt_host` (one host or a broker list, as for
/// [`start_ingest_at`]) and `mqtt_port`.
///
/// # Errors
/// As [`start_ingest`].
pub async fn start_gateway_at(
    bins: &Bins,
    mqtt_host: &str,
    mqtt_port: u16,
    extra: &[String],
) -> anyhow::Result<Service> {
    start_service(
        &bins.gateway,
        (mqtt_host, mqtt_port),
        &[],
        extra,
        "/api/health",
    )
    .await
}

/// Starts the historian next to `bins.ingest` against `broker` with `extra` flags and a fresh
/// client id; returns once `/health` is 200 (its store ready).
///
/// # Errors
/// As [`start_ingest`]; also when the binary is missing.
pub async fn start_historian(
    bins: &Bins,
    broker: &Broker,
    extra: &[String],
) -> anyhow::Result<Service> {
    let client_id = [
        "--mqtt-client-id".to_owned(),
        unique_client_id("loadtest-historian"),
    ];
    start_service(
        &bins.sibling("historian")?,
        (broker.host(), broker.port()),
        &client_id,
        extra,
        "/health",
    )
    .await
}

/// Starts `bin` with the broker (host, port) and HTTP on port 0, then `own` and `extra` flags;
/// returns once `health_path` answers 200.
async fn start_service(
    bin: &Path,
    (mqtt_host, mqtt_port): (&str, u16),
    own: &[String],
    extra: &[String],
    health_path: &str,
) -> anyhow::Result<Service> {
    let (process, addr) = ServiceProcess::start_service(
        bin,
        mqtt_host,
        mqtt_port,
        own.iter().chain(extra),
        [("RUST_LOG", "warn")],
        READY_TIMEOUT,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let service = Service {
        process,
        base: format!("http://{addr}"),
    };
    wait_ready(&service, health_path).await?;
    Ok(service)
}

async fn wait_ready(service: &Service, path: &str) -> anyhow::Result<()> {
    let url = format!("{}{path}", service.base);
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok((200, _)) = test_support::try_http_get(&url).await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{url} not ready within {READY_TIMEOUT:?}\n{}",
                service.process.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads one Prometheus counter or gauge (no labels) from `{base}/metrics`.
///
/// # Errors
/// When the endpoint fails or the metric is absent.
pub async fn metric(client: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Metrics::parse(&text)
        .get(name, &[])
        .with_context(|| format!("metric {name} not found at {base}/metrics"))
}

/// Mebibytes, for tables.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// CPU time (user + system) a process has used so far.
///
/// # Errors
/// When `/proc/PID/stat` cannot be read or parsed.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Linux reports clock ticks of 1/100 s (USER_HZ) on every common platform.
    Ok(Duration::from_millis((ticks(11) + ticks(12)) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_project_broker_turns_nagle_off_or_raises_the_queue_limits() {
        let stock = BrokerConfig::Stock.options();
        assert!(!stock.extra_config.contains("set_tcp_nodelay"), "{stock:?}");
        assert!(stock.extra_config.trim().is_empty(), "{stock:?}");
        assert!(!stock.large_queues && !stock.persistence, "{stock:?}");
        let project = BrokerConfig::Project.options();
        assert!(
            project.extra_config.contains("set_tcp_nodelay true"),
            "{project:?}"
        );
        assert!(project.large_queues && !project.persistence, "{project:?}");
    }
}
