//! scrap-pulse gateway: keeps the latest retained aggregate per (machine, scrap index) from
//! MQTT and relays changes to browsers over `/ws`; serves the dashboard, `/api/health`,
//! `/api/aggregates` and `/metrics` (see `DESIGN.md`, "Gateway").
//!
//! - [`configuration`]: settings, layered and validated.
//! - [`mqtt`]: the broker link, one task owning the event loop.
//! - [`hub`]: the state, batching and the shared frames.
//! - [`ws`]: the upgrade checks and the per-client task; [`origin`]: the Origin rule.
//! - [`routes`]: the plain HTTP endpoints; [`assets`]: the embedded dashboard, security headers; [`startup`]: build and run; [`telemetry`]: logs.
#![warn(missing_docs)]

pub mod assets;
pub mod auth;
pub mod configuration;
pub mod hub;
pub mod metrics;
pub mod mqtt;
pub mod origin;
pub mod routes;
pub mod startup;
pub mod telemetry;
pub mod ws;

pub use configuration::{Cli, Settings};
pub use startup::{Application, shutdown_signal};
