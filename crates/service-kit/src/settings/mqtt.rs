//! The `[mqtt]` section every service has, checked once into [`MqttConfig`], which builds
//! rumqttc's options.

use std::path::PathBuf;

use crate::{BrokerAddr, MqttSecurity, Secret, SettingsError, ensure};

/// The largest packet MQTT can express: a remaining length of 268 435 455 bytes (256 MiB),
/// which is also what a stock Mosquitto (`max_packet_size` unset) lets through.
pub const MQTT_MAX_PACKET_BYTES: usize = 268_435_455;

crate::settings! {
    /// The broker connection.
    pub struct MqttSettings {
        /// Broker host or address; with TLS, the name its certificate carries. A
        /// comma-separated list `a,b:1884` (port defaults to `port`) names brokers to fail
        /// over between: after a connection loss the next one is tried, round-robin.
        host: String = "localhost".into(), env "MQTT_BROKER";
        /// Broker TCP port.
        port: u16 = 1883, in 1..=65_535, env "MQTT_PORT";
        /// MQTT client id; empty: `scrap-pulse-<service>-<pid>-<random>`, unique per process.
        client_id: String = String::new();
        /// MQTT keep-alive in seconds.
        keep_alive_secs: u64 = 30, in 1..=65_535;
        /// Broker username; none connects anonymously.
        username: Option<String> = None;
        /// Broker password (never logged); prefer `password_file`.
        password: Option<Secret> = None;
        /// File holding the broker password (a trailing newline is ignored).
        password_file: Option<PathBuf> = None;
        /// TLS (rustls) to the broker; unset: on when `tls_ca_file` is set.
        tls: Option<bool> = None;
        /// PEM CA certificates the broker's certificate must chain to.
        tls_ca_file: Option<PathBuf> = None;
        /// PEM client certificate, for brokers that require one.
        tls_client_cert_file: Option<PathBuf> = None;
        /// PEM private key of the client certificate.
        tls_client_key_file: Option<PathBuf> = None;
        /// First pause after a broker connection error, in ms; the pauses double from there.
        reconnect_min_ms: u64 = 100, in 1..=60_000;
        /// Longest pause between reconnection attempts, in ms.
        reconnect_max_ms: u64 = 5_000, in 1..=600_000;
        /// Largest MQTT packet read from the broker, in bytes; the default is MQTT's maximum
        /// (256 MiB), so that every message a broker delivers is read and, if too large for
        /// the service, rejected. A larger one drops the connection and, redelivered, loops:
        /// lower this only together with the broker's max_packet_size. A packet is held in
        /// memory whole while it is read.
        max_packet_bytes: usize = MQTT_MAX_PACKET_BYTES, in 1_024..=MQTT_MAX_PACKET_BYTES;
    }
}

/// The checked `[mqtt]` section, with what the checks built.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// The section as given.
    pub settings: MqttSettings,
    /// Every broker of `mqtt.host`, in order (at least one).
    pub brokers: Vec<BrokerAddr>,
    /// The client id actually used.
    pub client_id: String,
    /// Login and TLS with their files read (`Display` never shows a secret).
    pub security: MqttSecurity,
}

impl MqttSettings {
    /// Checks what the limits cannot (the host list, login and TLS, whose files are read now
    /// so that a bad CA fails at start-up, naming its setting). An empty client id is made up
    /// as `<prefix>-<pid>-<nanos>`, so that replicas never share one (the broker drops the
    /// older of two clients with the same id; in containers every pid is 1).
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first bad `mqtt.*` key.
    pub fn connection(&self, prefix: &str) -> Result<MqttConfig, SettingsError> {
        let client_id = match self.client_id.trim() {
            "" => generated_client_id(prefix),
            _ => self.client_id.clone(),
        };
        let fits = client_id.len() <= usize::from(u16::MAX);
        ensure(fits, "mqtt.client_id", "is longer than 65535 bytes")?;
        let ordered = self.reconnect_max_ms >= self.reconnect_min_ms;
        let message = "must not be below mqtt.reconnect_min_ms";
        ensure(ordered, "mqtt.reconnect_max_ms", message)?;
        Ok(MqttConfig {
            brokers: crate::parse_hosts(&self.host, self.port)?,
            security: MqttSecurity::load(self)?,
            client_id,
            settings: self.clone(),
        })
    }
}

/// `<prefix>-<pid>-<nanos>`: unique per process and start.
fn generated_client_id(prefix: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    format!(
        "{prefix}-{}-{:x}",
        std::process::id(),
        now.map(|d| d.subsec_nanos()).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Setting;

    #[test]
    fn the_client_id_is_generated_or_given() {
        let settings = MqttSettings::default();
        let generated = settings.connection("made-up").unwrap();
        let pid = format!("made-up-{}-", std::process::id());
        assert!(
            generated.client_id.starts_with(&pid),
            "{}",
            generated.client_id
        );
        let broker = &generated.brokers[0];
        assert_eq!(
            generated.options_at(broker).client_id(),
            generated.client_id
        );
        let given = MqttSettings {
            client_id: "ingest-1".into(),
            keep_alive_secs: 7,
            ..MqttSettings::default()
        }
        .connection("ingest")
        .unwrap();
        assert_eq!(given.client_id, "ingest-1");
        assert_eq!(
            given.options_at(&given.brokers[0]).keep_alive(),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn bad_keys_are_named() {
        let cases = [
            (
                MqttSettings {
                    host: " ".into(),
                    ..Default::default()
                },
                "mqtt.host",
            ),
            (
                MqttSettings {
                    reconnect_max_ms: 50,
                    ..Default::default()
                },
                "mqtt.reconnect_max_ms",
            ),
            (
                MqttSettings {
                    tls: Some(true),
                    ..Default::default()
                },
                "mqtt.tls_ca_file",
            ),
        ];
        for (block, key) in cases {
            let err = block.connection("test").unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{key}`")),
                "{key}: {err}"
            );
        }
        for (block, key) in [
            (
                MqttSettings {
                    port: 0,
                    ..Default::default()
                },
                "mqtt.port",
            ),
            (
                MqttSettings {
                    keep_alive_secs: 0,
                    ..Default::default()
                },
                "mqtt.keep_alive_secs",
            ),
        ] {
            let err = block.check("mqtt").unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{key}`")),
                "{key}: {err}"
            );
        }
    }
}
