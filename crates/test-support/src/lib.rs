//! Integration-test helpers shared by every scrap-pulse crate.
//!
//! Tests run against real things: a Mosquitto child process per test on a free port
//! ([`Broker`]) or a three-node NATS cluster from the shipped configs ([`NatsCluster`]), a
//! PostgreSQL server per test ([`Postgres`]), real MQTT clients that record what they
//! receive ([`Collector`]) or count acknowledgements of what they send ([`Publisher`]), and
//! the service binaries themselves
//! ([`ServiceProcess`]). Waiting is always on a condition with a deadline ([`wait_until`],
//! [`Collector::wait_for`]), never a bare sleep.
//!
//! What tests read back from a service comes through one helper each: its bound address
//! ([`ServiceProcess::wait_listening`], from the kernel, not the log), its metrics
//! ([`scrape_metrics`], [`Metrics`]) and its memory ([`Rss`]). [`service_binary`] finds a
//! service binary built by another crate, for the end-to-end tests.
//!
//! Helpers panic with a message that carries the relevant logs when the environment is broken
//! (missing tool, broker that never comes up); conditions a test asserts on return `Result`
//! so the test decides how to fail.

mod broker;
mod collector;
mod http;
mod metrics;
mod nats;
mod postgres;
mod process;
mod procfs;
mod publisher;
mod settings;
mod tools;
mod wait;

pub use broker::{Broker, BrokerOptions};
pub use collector::{Collector, Message};
pub use http::{http_get, try_http_get};
pub use metrics::{Metrics, Sample, scrape as scrape_metrics};
pub use nats::{NATS_INSTALL_HINT, NATS_NODES, NATS_SHARDS, NatsCluster, NodePorts};
pub use postgres::{POSTGRES_INSTALL_HINT, Postgres};
pub use process::ServiceProcess;
pub use procfs::{Rss, listening_addrs, tcp_connection_open};
pub use publisher::{Publisher, publish_retained};
pub use rumqttc::QoS;
pub use settings::{check_example_file, settings_error as expect_settings_error, settings_file};
pub use tools::{free_port, require_tool, service_binary, unique_client_id};
pub use wait::wait_until;

/// The install hint used for Mosquitto everywhere, so every failing test says the same thing.
pub const MOSQUITTO_INSTALL_HINT: &str =
    "apt-get install mosquitto mosquitto-clients (Debian/Ubuntu), brew install mosquitto (macOS)";
