//! scrap-pulse gateway: keeps the latest retained aggregate per (machine, scrap index) from
//! MQTT and relays changes to browsers over `/ws`; serves the dashboard, `/api/health`,
//! `/api/aggregates`, `/api/alarms` and `/metrics` (see `docs/contract.md`, "Gateway HTTP endpoints").
//!
//! - [`configuration`]: settings, layered and validated.
//! - [`mqtt`]: the broker link, one task owning the event loop.
//! - [`hub`]: the state, subscriptions and admission; [`signals`]: the relayed alarms and
//!   trends; [`batcher`]: when changes become
//!   frames; [`frame`]: what the frames say and their shared encoding.
//! - [`ws`]: the upgrade checks and the per-client task; [`origin`]: the Origin rule.
//! - [`routes`]: the plain HTTP endpoints; [`assets`]: the embedded dashboard and security
//!   headers; [`state`]: what handlers share; [`startup`]: build and run (logs and signals:
//!   `service_kit`).
#![warn(missing_docs)]

pub mod assets;
pub mod auth;
pub mod batcher;
pub mod configuration;
#[cfg(test)]
mod fixtures;
pub mod frame;
pub mod hub;
pub mod liveness;
pub mod metrics;
pub mod mqtt;
pub mod origin;
pub mod routes;
pub mod signals;
pub mod startup;
pub mod state;
pub mod ws;

pub use configuration::{Cli, GatewayConfig, Settings};
pub use startup::Application;
