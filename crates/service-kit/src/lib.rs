//! The plumbing every scrap-pulse binary shares, so ingest, gateway, historian and simulator
//! start, read their settings, log and stop the same way.
//!
//! - Settings: [`settings!`] declares a service's settings once, each with its doc, default
//!   and limits; [`Binary`] turns that into the file keys, environment names, flags, `--help`
//!   and the example file, and layers defaults < file < environment < flags; [`MqttSettings`]
//!   is the `[mqtt]` section of all three, checked once into [`MqttConfig`]; [`SettingsError`]
//!   names the bad setting in one line and [`SettingsError::exit`] ends the process with
//!   code 2.
//! - Broker login and TLS: [`Secret`] never shows in logs; the login and TLS keys of [`MqttSettings`] are checked into
//!   [`MqttSecurity`] (files read, rustls config built at start-up, so a bad CA or key fails
//!   there, naming the setting); [`MqttSecurity::apply_to`] puts it into rumqttc's options.
//! - [`shutdown`]: one SIGINT/SIGTERM handling; [`telemetry`]: one logging set-up.
//! - [`Backoff`]: the reconnect pacing of every MQTT event loop.
//! - [`link`]: the one MQTT link loop of ingest, gateway and historian ([`Link`],
//!   [`LinkHandler`]): reconnect, fail-over, subscription, stop.
//! - [`LogLimit`]: at most one log line of a kind per interval.
//! - [`metrics!`]: a service's Prometheus metrics, declared once.
//! - [`mqtt_wire`]: the hand-written MQTT packets of the load generators (simulator, loadtest).
//!
//! TLS uses rustls with the `ring` provider (no system OpenSSL, no C++ toolchain). The CA file
//! is required when TLS is on: for a broker with a publicly signed certificate point it at the
//! system bundle (e.g. `/etc/ssl/certs/ca-certificates.crt`).
#![warn(missing_docs)]

mod backoff;
mod brokers;
pub mod link;
mod log_limit;
pub mod metrics;
pub mod mqtt_wire;
mod secret;
mod security;
mod settings;
pub mod shutdown;
pub mod telemetry;

pub use backoff::Backoff;
pub use brokers::{BrokerAddr, Failover, OptionsFor, parse_hosts};
pub use link::{Link, LinkHandler};
pub use log_limit::LogLimit;
pub use secret::Secret;
pub use security::MqttSecurity;
pub use settings::{
    Binary, Field, MqttConfig, MqttSettings, Setting, SettingsError, describe_range, ensure,
    in_range, join_key,
};
