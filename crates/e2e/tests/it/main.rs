//! End-to-end tests across services: ingest and gateway run as their real binaries against a
//! Mosquitto started per test; the tests see them only through MQTT and HTTP.
//!
//! The binaries must be built first (`cargo build -p ingest -p gateway`; `scripts/test.sh`
//! does it): cargo gives a test only the binaries of its own crate.
//! The Sparkplug tests also run Eclipse Tahu's edge node under Node.js: `npm ci --prefix
//! interop/sparkplug-tahu` (scripts/test.sh does that too).

mod dev_script;
mod failover;
mod helpers;
mod history;
mod nats_cluster;
mod nats_scale;
mod security;
mod shards;
mod sparkplug;
