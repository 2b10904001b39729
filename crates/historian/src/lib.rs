//! The scrap-pulse historian as a library; `main.rs` only loads settings and calls
//! [`Application::build`] and [`Application::run`].
//!
//! - [`mqtt`]: the broker link (persistent session, `history/+/+` at QoS 1, manual acks).
//! - [`bucket`]: a message read and checked into a [`bucket::Bucket`].
//! - [`batch`]: the messages one transaction answers for.
//! - [`store`]: SQLite or PostgreSQL through one code path; the tables in [`store::schema`].
//! - [`writer`]: batches written, then acknowledged; retries while the store is down; pruning.
//! - [`metrics`], [`http`]: `/metrics` and `/health`.
//! - [`configuration`], [`startup`]: settings and wiring (signals and logs: `service_kit`).
#![warn(missing_docs)]

pub mod api;
pub mod batch;
pub mod bucket;
pub mod configuration;
pub mod demo;
pub mod http;
pub mod metrics;
pub mod mqtt;
pub mod shift_feed;
pub mod startup;
pub mod store;
pub mod writer;

pub use startup::{Application, StartupError};
