//! Integration tests of the `ingest` binary: a real Mosquitto per test (test-support), the
//! real service process, real MQTT clients publishing readings and collecting aggregates.

mod aggregates;
mod alarms;
mod cli;
mod coalescing;
mod connections;
mod durability;
mod expiry;
mod flood;
mod helpers;
mod history;
mod hostile;
mod lifecycle;
mod orphans;
mod plant_time;
mod rejections;
mod resilience;
mod security;
mod shards;
mod sparkplug_state;
