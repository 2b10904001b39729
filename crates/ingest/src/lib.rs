//! The scrap-pulse ingest service as a library; `main.rs` only loads settings and calls
//! [`Application::build`] and [`Application::run`].
//!
//! - [`mqtt`]: the broker link, one task owning rumqttc's event loop.
//! - [`pipeline`]: the aggregation task around `aggregator_core::WindowStore`, with what it
//!   hands to the MQTT client (`outbox`), the per-key publish budget (`coalesce`), the
//!   settled re-send (`settle`) and the minute buckets (`history`).
//! - [`durability`]: the window log and the recognition of redeliveries (exactly once
//!   through restarts; see the crate README).
//! - [`restart`]: the retained state a previous run left behind, and the keys of it this
//!   process does not track.
//! - [`signals`]: alarms and trends, published retained.
//! - [`shard`]: which machines this process owns.
//! - [`metrics`], [`http`]: `/metrics` and `/health`.
//! - [`configuration`], [`startup`]: settings and wiring (signals and logs: `service_kit`).
#![warn(missing_docs)]

pub mod configuration;
pub mod durability;
pub mod http;
pub mod metrics;
pub mod mqtt;
pub mod pipeline;
pub mod restart;
pub mod shard;
pub mod signals;
pub mod startup;

pub use startup::{Application, StartupError};
