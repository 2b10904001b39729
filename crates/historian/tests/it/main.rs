//! Integration tests of the `historian` binary: a real Mosquitto per test, a real store
//! (a SQLite file or a PostgreSQL server of its own), the real service process, and a real MQTT
//! client publishing buckets. Every test of the store runs against both stores.

mod api;
mod backlog;
mod cli;
mod concurrent;
mod demo;
mod faults;
mod helpers;
mod retention;
mod shift_totals;
mod storing;
