//! scrap-pulse gateway: keeps the latest retained aggregate per (machine, scrap index) from
//! MQTT and relays changes to browsers over `/ws`; serves the dashboard, `/api/health`,
//! `/api/aggregates`, `/api/alarms`, the history paths passed to the historian, and
//! `/metrics` (see `docs/contract.md`, "Gateway HTTP endpoints").
//!
//! - [`configuration`]: settings, layered and validated.
//! - [`mqtt`]: the broker link (`service_kit::Link`) feeding the hub; [`decode`]: what each
//!   MQTT message means for the hub.
//! - [`hub`]: the state and its fan-out: the latest aggregates, alarms and trends, ingest's
//!   liveness, when changes become frames and what the frames say.
//! - [`http`]: what browsers and scripts reach: the routes, the WebSocket upgrade and
//!   per-client task, the Origin and token rules, the embedded dashboard.
//! - [`metrics`]; [`startup`]: build and run (logs and signals: `service_kit`).
#![warn(missing_docs)]

pub mod configuration;
pub mod decode;
#[cfg(test)]
mod fixtures;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod mqtt;
pub mod startup;

pub use configuration::{GatewayConfig, Settings};
pub use startup::Application;
