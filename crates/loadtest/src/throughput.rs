//! `loadtest throughput`: how fast one ingest accounts for QoS 1 readings from one publisher
//! connection, compared with a bare `mosquitto_sub` that only counts, both subscribed to the
//! same Mosquitto in the same run (the measurement itself is [`crate::delivery`]). With
//! `--protocol sparkplug` the same readings (machines, keys, values, order, QoS, publisher)
//! go as Sparkplug B DDATA, one per message, and ingest follows the group; the figures of
//! the two runs compare the payload paths.

use std::path::PathBuf;
use std::time::Duration;

use crate::delivery::{self, Load, Target};
use crate::report::{Row, Verdict};
use crate::stack::{self, Bins, BrokerArgs};
use crate::workload::{Protocol, SPARKPLUG_DATA_FILTER, SPARKPLUG_GROUP};

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
    /// How the readings are published: json, or sparkplug (one DDATA per reading; ingest
    /// started with `--sparkplug-groups scrap-pulse`).
    #[arg(long, value_enum, default_value_t = Protocol::Json)]
    pub protocol: Protocol,
    /// Ingest settings file passed as its `--config` (e.g. a set of `[[alarm]]` rules).
    #[arg(long, value_name = "FILE")]
    pub ingest_config: Option<PathBuf>,
    /// Which Mosquitto configuration to start.
    #[command(flatten)]
    pub broker: BrokerArgs,
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
    let broker = args.broker.config.start().await;
    let mut extra: Vec<String> = args
        .ingest_config
        .iter()
        .flat_map(|file| ["--config".to_owned(), file.display().to_string()])
        .collect();
    if args.protocol == Protocol::Sparkplug {
        extra.extend(["--sparkplug-groups".to_owned(), SPARKPLUG_GROUP.to_owned()]);
    }
    let ingest = stack::start_ingest(&bins, &broker, &extra).await?;
    let n = args.messages;
    let load = Load {
        messages: n,
        machines: args.machines,
        indices: args.indices,
        ids: false,
        protocol: args.protocol,
    };
    let mut target = Target::one_mosquitto(&broker, &ingest, 1)?;
    if args.protocol == Protocol::Sparkplug {
        target.subscriber_filter = SPARKPLUG_DATA_FILTER;
    }
    let m = delivery::measure(&target, &load, timeout).await?;
    ingest.stop().await;

    let ratio = m.ratio();
    Ok(Row::new(
        format!(
            "throughput, QoS 1, {}, {} x {} keys, {n} msgs, {}",
            args.protocol.label(),
            args.machines,
            args.indices,
            args.broker.config.label()
        ),
        format!(
            "ingest {:.0}/s, mosquitto_sub {:.0}/s, ratio **{ratio:.2}**; publisher {:.0}/s; sums exact (max error {:e}, {} accepted); CPU: {} of one core",
            m.ingest_rate,
            m.subscriber_rate,
            m.publisher_rate,
            m.max_error,
            m.accepted[0],
            m.cpu_text()
        ),
        "ratio >= 0.9, exact sums",
        Verdict::from_ok(ratio >= 0.9),
    ))
}
