//! The scrap-pulse simulator: publishes scrap readings on `machines/{id}/scrap` the way the
//! factory's machines do, and doubles as the load generator.
//!
//! - [`configuration`]: flags, file, environment, validation; [`workload`]: the machines,
//!   indices, values and duration they describe, parsed.
//! - [`schedule`]: when messages are due (fixed overall rate, or per-machine 0.5 to 2 s).
//! - [`generator`]: what each message says (seeded, reproducible), including the malformed
//!   ones of [`invalid`], and the expected sums.
//! - [`sparkplug`]: with `protocol = "sparkplug"`, what each edge node publishes (births,
//!   data, deaths, sequence numbers, aliases), without I/O.
//! - [`transport`]: how they reach the broker (raw QoS 0 writer, rumqttc for QoS 1/2), and
//!   with several brokers which machine goes to which, and fail-over.
//! - [`run`](run()): the loop, progress lines and the summary.

pub mod configuration;
pub mod generator;
pub mod invalid;
mod run;
pub mod schedule;
pub mod sparkplug;
pub mod transport;
pub mod workload;

pub use run::{StopReason, Summary, run};
