//! The `[mqtt]` block every binary's settings file has: broker host and port, client id,
//! keep-alive, login and TLS. One definition ([`mqtt_block!`]), one set of flags
//! ([`CommonFlags`]), one check ([`MqttSettings::validate`]) into one working type
//! ([`MqttConfig`]).
//!
//! A binary with broker knobs of its own (the gateway's resync quiet time, the simulator's
//! connect timeout) declares its block with [`mqtt_block!`], which adds them to the shared
//! keys. It is a macro rather than `#[serde(flatten)]` because flattened fields lose the
//! `config` crate's string-to-number conversion and the key in its error messages.

use std::path::PathBuf;
use std::time::Duration;

use config::Value;
use rumqttc::MqttOptions;

use crate::layers::Flag;
use crate::{MqttSecurity, SecurityFlags, SecuritySettings, SettingsError};

/// Declares a binary's `[mqtt]` block: the shared keys of [`MqttSettings`] (same names, same
/// defaults) followed by the binary's own, each with its default:
///
/// ```
/// service_kit::mqtt_block! {
///     /// The simulator's `[mqtt]` block.
///     pub struct SimMqtt {
///         /// How long to keep trying to reach the broker, in seconds.
///         pub connect_timeout_secs: u64 = 30,
///     }
/// }
/// let block = SimMqtt::default();
/// assert_eq!((block.port, block.connect_timeout_secs), (1883, 30));
/// assert_eq!(block.shared().host, "localhost");
/// ```
///
/// The calling crate needs `serde` with `derive`.
#[macro_export]
macro_rules! mqtt_block {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty = $default:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(default)]
        pub struct $name {
            /// Broker host name or address; with TLS, the name its certificate must carry.
            /// A comma-separated list (`a,b:1884`) names several brokers to fail over between.
            pub host: String,
            /// Broker TCP port.
            pub port: u16,
            /// MQTT client id; empty means the binary's own default.
            pub client_id: String,
            /// MQTT keep-alive in seconds.
            pub keep_alive_secs: u64,
            /// Broker username; none connects anonymously.
            pub username: Option<String>,
            /// Broker password (shown as `<redacted>`); prefer `password_file`.
            pub password: Option<$crate::Secret>,
            /// File holding the broker password (a trailing newline is ignored).
            pub password_file: Option<::std::path::PathBuf>,
            /// TLS on or off; unset means on when `tls_ca_file` is set.
            pub tls: Option<bool>,
            /// PEM CA certificates the broker's certificate must chain to.
            pub tls_ca_file: Option<::std::path::PathBuf>,
            /// PEM client certificate, for brokers that require one.
            pub tls_client_cert_file: Option<::std::path::PathBuf>,
            /// PEM private key of the client certificate.
            pub tls_client_key_file: Option<::std::path::PathBuf>,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl ::std::default::Default for $name {
            fn default() -> Self {
                Self {
                    host: "localhost".into(),
                    port: 1883,
                    client_id: String::new(),
                    keep_alive_secs: 30,
                    username: None,
                    password: None,
                    password_file: None,
                    tls: None,
                    tls_ca_file: None,
                    tls_client_cert_file: None,
                    tls_client_key_file: None,
                    $( $field: $default, )*
                }
            }
        }

        impl $name {
            /// The shared keys, for [`MqttSettings::validate`]($crate::MqttSettings::validate).
            pub fn shared(&self) -> $crate::MqttSettings {
                $crate::MqttSettings {
                    host: self.host.clone(),
                    port: self.port,
                    client_id: self.client_id.clone(),
                    keep_alive_secs: self.keep_alive_secs,
                    username: self.username.clone(),
                    password: self.password.clone(),
                    password_file: self.password_file.clone(),
                    tls: self.tls,
                    tls_ca_file: self.tls_ca_file.clone(),
                    tls_client_cert_file: self.tls_client_cert_file.clone(),
                    tls_client_key_file: self.tls_client_key_file.clone(),
                }
            }
        }
    };
}

mqtt_block! {
    /// The keys of the `[mqtt]` block all three binaries share (ingest's whole block).
    pub struct MqttSettings {}
}

/// How a binary names itself when the client id is left empty.
#[derive(Debug, Clone, Copy)]
pub enum ClientId {
    /// The id must be set: it names a persistent session (ingest), so making one up would
    /// silently lose the readings queued for the old one.
    Required,
    /// Made up per process as `<prefix>-<pid>-<nanos>`, so replicas never share one (the
    /// broker drops the older of two clients with the same id). The pid alone is not enough:
    /// in containers every service is pid 1.
    Generated(&'static str),
}

/// Turns Nagle's algorithm off on the broker connection. rumqttc leaves it on, so a small
/// PUBLISH (an aggregate) waited for the broker's ACK of the segment sent just before, i.e. for
/// the next reading: 20 ms of latency at 50 msg/s. Latency matters more here than segment count.
pub fn no_delay(event_loop: &mut rumqttc::EventLoop) {
    let mut network = event_loop.network_options();
    network.set_tcp_nodelay(true);
    event_loop.set_network_options(network);
}

/// `<prefix>-<pid>-<nanos>`: unique per process and start.
fn generated_client_id(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// The checked `[mqtt]` block in working types.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// The first broker's host.
    pub host: String,
    /// The first broker's port, never 0.
    pub port: u16,
    /// Every broker of `mqtt.host`, in order (at least one; the first is `host:port`).
    pub brokers: Vec<crate::BrokerAddr>,
    /// The client id actually used.
    pub client_id: String,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Login and TLS with their files read (`Display` never shows a secret).
    pub security: MqttSecurity,
}

impl MqttSettings {
    /// Checks the block once and reads the login and TLS files.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first bad `mqtt.*` key.
    pub fn validate(&self, client_id: ClientId) -> Result<MqttConfig, SettingsError> {
        if self.port == 0 {
            return Err(SettingsError::invalid("mqtt.port", "must be 1 to 65535"));
        }
        let brokers = crate::parse_hosts(&self.host, self.port)?;
        let keep_alive_secs =
            crate::in_range("mqtt.keep_alive_secs", self.keep_alive_secs, 1..=65_535)?;
        let client_id = match client_id {
            _ if !self.client_id.trim().is_empty() => self.client_id.clone(),
            ClientId::Generated(prefix) => generated_client_id(prefix),
            ClientId::Required => {
                return Err(SettingsError::invalid(
                    "mqtt.client_id",
                    "must not be empty: the persistent session is bound to it",
                ));
            }
        };
        if client_id.len() > usize::from(u16::MAX) {
            return Err(SettingsError::invalid(
                "mqtt.client_id",
                "is longer than 65535 bytes",
            ));
        }
        let security = SecuritySettings {
            username: self.username.clone(),
            password: self.password.clone(),
            password_file: self.password_file.clone(),
            tls: self.tls,
            tls_ca_file: self.tls_ca_file.clone(),
            tls_client_cert_file: self.tls_client_cert_file.clone(),
            tls_client_key_file: self.tls_client_key_file.clone(),
        }
        .load("mqtt.")?;
        Ok(MqttConfig {
            host: brokers[0].host.clone(),
            port: brokers[0].port,
            brokers,
            client_id,
            keep_alive: Duration::from_secs(keep_alive_secs),
            security,
        })
    }
}

impl MqttConfig {
    /// rumqttc options with the id, address, keep-alive, login and TLS; each binary adds its
    /// session, packet and queue settings.
    pub fn options(&self) -> MqttOptions {
        self.options_at(&self.brokers[0])
    }

    /// As [`options`](Self::options), pointed at `broker` (one of [`brokers`](Self::brokers)).
    pub fn options_at(&self, broker: &crate::BrokerAddr) -> MqttOptions {
        let mut options = MqttOptions::new(&self.client_id, &broker.host, broker.port);
        options.set_keep_alive(self.keep_alive);
        self.security.apply_to(&mut options);
        options
    }
}

/// The flags every binary has: `--config`, the broker address, client id, keep-alive, login
/// and TLS. Flattened into each binary's `Cli`; each flag overrides the file and the
/// environment. Numbers are taken signed so that `-5` reaches the setting's check instead of
/// being mistaken for a flag.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonFlags {
    /// TOML settings file; an unknown key in it is an error (see the README, "Configuration").
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Broker host, or a comma-separated list `a,b:1884` to fail over between (port default
    /// --mqtt-port) [env: MQTT_BROKER, <PREFIX>_MQTT_HOST] [default: localhost].
    #[arg(long, value_name = "HOST[:PORT],...")]
    pub mqtt_host: Option<String>,
    /// Broker port [env: MQTT_PORT, <PREFIX>_MQTT_PORT] [default: 1883].
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub mqtt_port: Option<i64>,
    /// MQTT client id [env: <PREFIX>_MQTT_CLIENT_ID] [default: scrap-pulse-<binary>, plus
    /// the process id for gateway and simulator].
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// MQTT keep-alive in seconds [env: <PREFIX>_MQTT_KEEP_ALIVE_SECS] [default: 30, gateway 10].
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub keep_alive_secs: Option<i64>,
    /// Broker login and TLS (`--mqtt-username` ... `--mqtt-tls-client-key-file`).
    #[command(flatten)]
    pub mqtt_security: SecurityFlags,
}

impl CommonFlags {
    /// The flags as overrides of `mqtt.*` keys (`--config` is not a setting).
    pub fn overrides(&self) -> Vec<Flag<'static>> {
        let mut flags = vec![
            ("mqtt.host", self.mqtt_host.clone().map(Value::from)),
            ("mqtt.port", self.mqtt_port.map(Value::from)),
            ("mqtt.client_id", self.client_id.clone().map(Value::from)),
            (
                "mqtt.keep_alive_secs",
                self.keep_alive_secs.map(Value::from),
            ),
        ];
        flags.extend(self.mqtt_security.overrides());
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mqtt_block! {
        /// A block with one knob of its own.
        pub struct Extended {
            /// A binary's own knob.
            pub resync_quiet_ms: u64 = 1_000,
        }
    }

    #[test]
    fn an_extended_block_has_the_shared_keys_and_defaults() {
        let block = Extended::default();
        assert_eq!(block.shared(), MqttSettings::default());
        assert_eq!(block.resync_quiet_ms, 1_000);
        let json = serde_json::to_value(&block).unwrap();
        for key in [
            "host",
            "port",
            "client_id",
            "keep_alive_secs",
            "tls_ca_file",
            "resync_quiet_ms",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
    }

    #[test]
    fn validate_makes_up_or_requires_the_client_id() {
        let generated = MqttSettings::default()
            .validate(ClientId::Generated("made-up"))
            .unwrap();
        let pid = format!("made-up-{}-", std::process::id());
        assert!(
            generated.client_id.starts_with(&pid),
            "{}",
            generated.client_id
        );
        assert_eq!(generated.options().client_id(), generated.client_id);
        let err = MqttSettings {
            client_id: " ".into(),
            ..MqttSettings::default()
        }
        .validate(ClientId::Required)
        .unwrap_err();
        assert!(err.to_string().contains("`mqtt.client_id`"), "{err}");
        let named = MqttSettings {
            client_id: "ingest-1".into(),
            keep_alive_secs: 7,
            ..MqttSettings::default()
        }
        .validate(ClientId::Required)
        .unwrap();
        assert_eq!(named.options().keep_alive(), Duration::from_secs(7));
    }

    #[test]
    fn bad_keys_are_named() {
        let cases = [
            (
                MqttSettings {
                    host: " ".into(),
                    ..MqttSettings::default()
                },
                "mqtt.host",
            ),
            (
                MqttSettings {
                    port: 0,
                    ..MqttSettings::default()
                },
                "mqtt.port",
            ),
            (
                MqttSettings {
                    keep_alive_secs: 0,
                    ..MqttSettings::default()
                },
                "mqtt.keep_alive_secs",
            ),
            (
                MqttSettings {
                    tls: Some(true),
                    ..MqttSettings::default()
                },
                "mqtt.tls_ca_file",
            ),
        ];
        for (block, key) in cases {
            let err = block.validate(ClientId::Generated("test")).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{key}`")),
                "{key}: {err}"
            );
        }
    }
}
