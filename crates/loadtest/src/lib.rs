//! Load tests of scrap-pulse, run against the real `ingest` and `gateway` binaries and a
//! private Mosquitto started for each run on a free 127.0.0.1 port: nothing else is touched,
//! every run is bounded in messages and time and stops by itself. The Mosquitto is a stock one
//! unless `--broker project` asks for the project's tuned config ([`stack::BrokerConfig`]):
//! users run scrap-pulse against their plant's broker, whose configuration is not ours.
//! `latency` and `compare` also take `--broker nats`, the three-node NATS cluster of
//! `deploy/nats` ([`stack::AnyBroker`]); the other subcommands refuse it.
//!
//! Each subcommand prints one markdown table row (see [`report::HEADER`]):
//! - [`throughput`]: ingest's rate vs a bare `mosquitto_sub` on the same broker, exact sums;
//!   JSON readings, or the same readings as Sparkplug B DDATA (`--protocol sparkplug`).
//! - [`cluster`]: three ingest shards on a three-node NATS cluster vs a bare `mosquitto_sub` on
//!   it, and one ingest on one Mosquitto under the same many-connection load.
//! - [`latency`]: publish to WebSocket frame delay through broker, ingest and gateway.
//! - [`cap`]: one key changed fast gives at most the publish budget's messages, last exact.
//! - [`memory`]: ingest RSS holding many readings or many keys, and the window store alone.
//! - [`fanout`]: one gateway, thousands of WebSocket clients.
//! - [`history`]: the historian keeping up with ingest, and its shift totals' query time.

pub mod cap;
pub mod client_memory;
pub mod cluster;
pub mod delivery;
pub mod fanout;
pub mod history;
pub mod latency;
pub mod memory;
pub mod publisher;
pub mod report;
pub mod stack;
pub mod throughput;
pub mod workload;
pub mod wsclient;

use clap::{Parser, Subcommand};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    about = "scrap-pulse load tests: each subcommand starts its own Mosquitto (free port on 127.0.0.1; stock unless --broker project; latency and compare also take --broker nats, a three-node NATS cluster) and the release ingest/gateway binaries, runs a bounded load and prints one markdown table row.",
    after_help = "Build first: cargo build --release -p loadtest -p ingest -p gateway -p historian. `--header` prints the table header. scripts/bench.sh runs them all."
)]
pub struct Cli {
    /// Print the table header before the row.
    #[arg(long, global = true)]
    pub header: bool,
    /// What to measure.
    #[command(subcommand)]
    pub command: Command,
}

/// The measurements.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// QoS 1 readings (JSON, or Sparkplug B with --protocol sparkplug): ingest's accounting
    /// rate vs a bare mosquitto_sub's delivery rate.
    Throughput(throughput::ThroughputArgs),
    /// Three ingest shards on a three-node NATS cluster (QoS 1, readings with ids, many
    /// connections) vs a bare mosquitto_sub on it; one ingest on one Mosquitto beside it.
    Cluster(cluster::ClusterArgs),
    /// Publish -> WebSocket frame delay per reading at a fixed rate (p50/p99).
    Latency(latency::LatencyArgs),
    /// One key changed 1000 times/s: aggregate messages per second stay within the per-key
    /// publish budget, and the last value arrives exact.
    Cap(cap::CapArgs),
    /// The original Python service's load (100 msg/s, 9 keys): our p99 publish -> frame delay.
    Compare(latency::CompareArgs),
    /// Ingest RSS holding many readings (`--scenario readings`) or keys (`keys`), or the
    /// window store's own memory in this process (`store`).
    Memory(memory::MemoryArgs),
    /// One gateway, many WebSocket clients, keys updating at a fixed rate.
    Fanout(fanout::FanoutArgs),
    /// Readings at a fixed rate through ingest to the historian (SQLite or PostgreSQL): its
    /// backlog does not grow and the stored totals are exact.
    HistoryKeepup(history::KeepupArgs),
    /// Shift totals of a store filled with N days x K keys of synthetic history (p50/p95), and
    /// the store's size per key and day.
    HistoryQuery(history::QueryArgs),
}

/// Runs the chosen measurement and returns its row.
///
/// # Errors
/// Whatever the measurement reports: start-up failures, deadlines, wrong results.
pub async fn run(command: &Command) -> anyhow::Result<report::Row> {
    match command {
        Command::Throughput(a) => throughput::run(a).await,
        Command::Cluster(a) => cluster::run(a).await,
        Command::Latency(a) => latency::run(a).await,
        Command::Compare(a) => latency::compare(a).await,
        Command::Cap(a) => cap::run(a).await,
        Command::Memory(a) => memory::run(a).await,
        Command::Fanout(a) => fanout::run(a).await,
        Command::HistoryKeepup(a) => history::keepup(a).await,
        Command::HistoryQuery(a) => history::query(a).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};
    use crate::stack::AnyBroker;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once(&"loadtest").chain(args)).map(|cli| cli.command)
    }

    fn latency_broker(args: &[&str]) -> AnyBroker {
        let args: Vec<&str> = std::iter::once("latency")
            .chain(args.iter().copied())
            .collect();
        match parse(&args).unwrap_or_else(|e| panic!("{e}")) {
            Command::Latency(latency) => latency.broker.kind,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn latency_runs_on_a_stock_broker_unless_told_otherwise() {
        assert_eq!(latency_broker(&[]), AnyBroker::Stock);
        assert_eq!(latency_broker(&["--broker", "project"]), AnyBroker::Project);
        assert_eq!(latency_broker(&["--broker", "stock"]), AnyBroker::Stock);
        assert!(parse(&["latency", "--broker", "tuned"]).is_err());
    }

    #[test]
    fn latency_and_compare_take_the_nats_cluster_and_the_mosquitto_only_runs_refuse_it() {
        assert_eq!(latency_broker(&["--broker", "nats"]), AnyBroker::Nats);
        assert_eq!(AnyBroker::Nats.label(), "NATS cluster (3 nodes)");
        match parse(&["compare", "--broker", "nats"]).unwrap_or_else(|e| panic!("{e}")) {
            Command::Compare(compare) => assert_eq!(compare.broker.kind, AnyBroker::Nats),
            other => panic!("parsed as {other:?}"),
        }
        for subcommand in ["throughput", "cluster", "cap", "memory", "fanout"] {
            let error = parse(&[subcommand, "--broker", "nats"])
                .map(|c| format!("{c:?}"))
                .expect_err(subcommand)
                .to_string();
            assert!(
                error.contains("invalid value 'nats'") && error.contains("stock, project"),
                "{subcommand}: {error}"
            );
        }
    }
}
