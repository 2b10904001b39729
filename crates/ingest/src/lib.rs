//! The scrap-pulse ingest service as a library; `main.rs` only loads settings and calls
//! [`Application::build`] and [`Application::run`].
//!
//! - [`mqtt`]: the task that owns rumqttc's event loop and forwards messages.
//! - [`pipeline`]: the aggregation task around `aggregator_core::WindowStore`; [`outbox`]:
//!   what it hands to the MQTT client (retries, acknowledgements, back-pressure).
//! - [`alarms`], [`trends`]: `[[alarm]]` evaluation on every change and the periodic trends,
//!   published retained (the logic is `aggregator_core`'s).
//! - [`coalesce`]: per-key publish coalescing (pure).
//! - [`rejections`]: rate-limited logging of rejections (pure).
//! - [`snapshot`]: reading the retained aggregates a previous run left behind; [`orphans`]:
//!   emptying and clearing those of untracked keys.
//! - [`window_log`], [`redelivery`]: the durable window log and recognising redeliveries
//!   (exactly once through restarts; see the crate README).
//! - [`metrics`], [`http`]: `/metrics` and `/health`.
//! - [`configuration`], [`startup`]: settings and wiring (signals and logs: `service_kit`).
#![warn(missing_docs)]

pub mod alarms;
pub mod coalesce;
pub mod configuration;
pub mod http;
pub mod metrics;
pub mod mqtt;
pub mod orphans;
pub mod outbox;
pub mod pipeline;
pub mod redelivery;
pub mod rejections;
pub mod settle;
pub mod shard;
pub mod snapshot;
pub mod startup;
pub mod trends;
pub mod window_log;

pub use startup::{Application, StartupError};
