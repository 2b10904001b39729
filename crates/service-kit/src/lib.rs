//! Broker login and TLS for every scrap-pulse binary, so ingest, gateway and simulator read,
//! check and apply them the same way.
//!
//! - [`Secret`]: a password that never shows in `Debug`, `Display` or serialized settings.
//! - [`SecurityFlags`]: the seven `--mqtt-username` ... `--mqtt-tls-client-key-file` flags,
//!   flattened into each binary's `Cli` and set as overrides under the binary's key prefix.
//! - [`SecuritySettings`]: the raw settings as each binary's `configuration.rs` loads them.
//! - [`MqttSecurity`]: the checked result, with files read and the rustls client config built
//!   at start-up (a bad CA or key fails there, naming the setting, not at the first connect);
//!   [`MqttSecurity::apply_to`] puts it into rumqttc's `MqttOptions`.
//! - [`SettingsError`]: what each binary's settings loading returns, so a bad setting reads
//!   the same in every binary's start-up error.
//! - [`Backoff`]: the reconnect pacing of every MQTT event loop.
//! - [`mqtt_wire`]: the hand-written MQTT packets of the load generators (simulator, loadtest).
//!
//! TLS uses rustls with the `ring` provider (no system OpenSSL, no C++ toolchain). The CA file
//! is required when TLS is on: for a broker with a publicly signed certificate point it at the
//! system bundle (e.g. `/etc/ssl/certs/ca-certificates.crt`).
#![warn(missing_docs)]

mod backoff;
mod flags;
pub mod mqtt_wire;
mod secret;
mod security;
mod settings_error;

pub use backoff::Backoff;
pub use flags::SecurityFlags;
pub use secret::Secret;
pub use security::{MqttSecurity, SecurityError, SecuritySettings};
pub use settings_error::SettingsError;
