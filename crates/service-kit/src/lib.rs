//! The plumbing every scrap-pulse binary shares, so ingest, gateway and simulator start, read
//! their settings, log and stop the same way.
//!
//! - Settings: [`Layers`] layers defaults < TOML file < environment < flags and refuses unknown
//!   file keys; [`mqtt_block!`] / [`MqttSettings`] is the `[mqtt]` block of all three, checked
//!   once into [`MqttConfig`]; [`CommonFlags`] are the flags all three have; [`in_range`] and
//!   [`at_least`] describe limits once per setting; [`SettingsError`] names the bad setting in
//!   one line and [`SettingsError::exit`] ends the process with code 2.
//! - Broker login and TLS: [`Secret`] never shows in logs; [`SecuritySettings`] is checked into
//!   [`MqttSecurity`] (files read, rustls config built at start-up, so a bad CA or key fails
//!   there, naming the setting); [`MqttSecurity::apply_to`] puts it into rumqttc's options.
//! - [`shutdown`]: one SIGINT/SIGTERM handling; [`telemetry`]: one logging set-up.
//! - [`Backoff`]: the reconnect pacing of every MQTT event loop.
//! - [`mqtt_wire`]: the hand-written MQTT packets of the load generators (simulator, loadtest).
//!
//! TLS uses rustls with the `ring` provider (no system OpenSSL, no C++ toolchain). The CA file
//! is required when TLS is on: for a broker with a publicly signed certificate point it at the
//! system bundle (e.g. `/etc/ssl/certs/ca-certificates.crt`).
#![warn(missing_docs)]

mod backoff;
mod brokers;
mod check;
pub mod cli;
mod flags;
mod layers;
mod mqtt_block;
pub mod mqtt_wire;
mod secret;
mod security;
mod settings_error;
pub mod shutdown;
pub mod telemetry;

pub use backoff::Backoff;
pub use brokers::{BrokerAddr, Failover, OptionsFor, parse_hosts};
pub use check::{at_least, in_range};
pub use flags::SecurityFlags;
pub use layers::{Flag, Layers};
pub use mqtt_block::{ClientId, CommonFlags, MqttConfig, MqttSettings, no_delay};
pub use secret::Secret;
pub use security::{MqttSecurity, SecurityError, SecuritySettings};
pub use settings_error::{EXIT_BAD_SETTINGS, SettingsError};

/// Re-exported for [`Flag`] values, so binaries need not name the `config` crate's types.
pub use config::Value as FlagValue;
