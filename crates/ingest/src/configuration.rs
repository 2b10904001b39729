//! Settings of the ingest service: built-in defaults < TOML file (`--config`) < environment <
//! flags, layered with the `config` crate and validated once into [`IngestConfig`].
//!
//! Every setting is a flat key (the flag name with `_`, e.g. `window_seconds`). Environment:
//! `MQTT_BROKER` and `MQTT_PORT` (the original service's names) and `INGEST_<KEY>` for every key
//! (e.g. `INGEST_WINDOW_SECONDS=60`, `INGEST_LISTEN=0.0.0.0:9100`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aggregator_core::{ParseLimits, WindowConfig};
use clap::Parser;
use service_kit::SettingsError;
use rumqttc::{LastWill, MqttOptions, QoS};
use serde::Deserialize;

/// Largest MQTT packet the protocol allows (remaining length of 256 MiB).
const MQTT_MAX_PACKET: usize = 268_435_455;
/// Room for the fixed header, topic (up to 64 KiB) and packet id around a payload.
const PACKET_HEADROOM: usize = 64 * 1024 + 16;

/// Command-line flags; each one overrides the file and the environment.
#[derive(Debug, Default, Parser)]
#[command(
    name = "ingest",
    version,
    about = "Subscribes to machines/+/scrap, keeps exact sliding-window sums per (machine, scrap index) \
             and republishes them retained on aggregates/{machineId}/{scrapIndex}.",
    after_help = "Environment: MQTT_BROKER, MQTT_PORT, INGEST_<SETTING> (e.g. INGEST_LISTEN, \
                  INGEST_WINDOW_SECONDS, INGEST_CLIENT_ID), RUST_LOG, LOG_FORMAT=json.\n\
                  Precedence: defaults < --config file < environment < flags."
)]
pub struct Cli {
    /// TOML settings file; keys as the flags with `_` (e.g. `window_seconds = 60`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Broker host [env: MQTT_BROKER] [default: localhost].
    #[arg(long, value_name = "HOST")]
    pub mqtt_host: Option<String>,
    /// Broker port [env: MQTT_PORT] [default: 1883].
    #[arg(long, value_name = "PORT")]
    pub mqtt_port: Option<u16>,
    /// Broker login and TLS (`--mqtt-username` ... `--mqtt-tls-client-key-file`).
    #[command(flatten)]
    pub mqtt_security: service_kit::SecurityFlags,
    /// Stable MQTT client id of the persistent session [default: scrap-pulse-ingest].
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// MQTT keep-alive in seconds [default: 30].
    #[arg(long, value_name = "SECS")]
    pub keep_alive_secs: Option<u64>,
    /// Address of the HTTP server for /health and /metrics [default: 0.0.0.0:9100].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Window length in seconds [default: 60].
    #[arg(long, value_name = "SECS")]
    pub window_seconds: Option<u64>,
    /// Sustained, at most one aggregate per key per this many ms; 0 publishes every change
    /// [default: 50].
    #[arg(long, value_name = "MS")]
    pub publish_interval_ms: Option<u64>,
    /// Aggregates a key may publish at once after a quiet spell, on top of the interval
    /// [default: 5].
    #[arg(long, value_name = "N")]
    pub publish_burst: Option<u32>,
    /// Most (machine, scrap index) keys tracked at once [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_keys: Option<usize>,
    /// Seconds a key's window stays empty before the key is forgotten [default: 600].
    #[arg(long, value_name = "SECS")]
    pub key_idle_ttl_seconds: Option<u64>,
    /// Payloads above this size are rejected as too_large [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub max_payload_bytes: Option<usize>,
    /// How far ahead of the ingest clock a reading may be, in ms [default: 5000].
    #[arg(long, value_name = "MS")]
    pub max_future_skew_ms: Option<u64>,
    /// Largest MQTT packet read from the broker; must exceed max_payload_bytes plus 64 KiB
    /// [default: 1114112].
    #[arg(long, value_name = "BYTES")]
    pub max_packet_bytes: Option<usize>,
    /// Capacity of the queue between the MQTT reader and the aggregation [default: 8192].
    #[arg(long, value_name = "N")]
    pub incoming_capacity: Option<usize>,
    /// Most messages aggregated in one batch [default: 1024].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Capacity of the MQTT client's outgoing request queue [default: 16384].
    #[arg(long, value_name = "N")]
    pub request_capacity: Option<usize>,
    /// Most unacknowledged QoS 1 publishes in flight [default: 1000].
    #[arg(long, value_name = "N")]
    pub inflight: Option<u16>,
    /// First pause after a broker connection error, in ms [default: 100].
    #[arg(long, value_name = "MS")]
    pub reconnect_min_ms: Option<u64>,
    /// Longest pause between reconnection attempts, in ms [default: 5000].
    #[arg(long, value_name = "MS")]
    pub reconnect_max_ms: Option<u64>,
    /// How long a shutdown may take to hand pending aggregates to the broker, in ms [default: 5000].
    #[arg(long, value_name = "MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// At most one log line per rejection reason per this many seconds [default: 10].
    #[arg(long, value_name = "SECS")]
    pub rejection_log_interval_secs: Option<u64>,
    /// Directory of the window log; without it the windows start empty after a restart
    /// [env: INGEST_DATA_DIR] [default: none].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Raw settings as layered from all sources, before validation.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Broker host name or address.
    pub mqtt_host: String,
    /// Broker TCP port.
    pub mqtt_port: u16,
    /// Broker username.
    #[serde(default)]
    pub mqtt_username: Option<String>,
    /// Broker password (redacted in `Debug`).
    #[serde(default)]
    pub mqtt_password: Option<service_kit::Secret>,
    /// File holding the broker password.
    #[serde(default)]
    pub mqtt_password_file: Option<PathBuf>,
    /// TLS on/off; unset: on when a CA file is set.
    #[serde(default)]
    pub mqtt_tls: Option<bool>,
    /// PEM CA file for TLS.
    #[serde(default)]
    pub mqtt_tls_ca_file: Option<PathBuf>,
    /// PEM client certificate for TLS.
    #[serde(default)]
    pub mqtt_tls_client_cert_file: Option<PathBuf>,
    /// PEM client key for TLS.
    #[serde(default)]
    pub mqtt_tls_client_key_file: Option<PathBuf>,
    /// Stable MQTT client id (the persistent session is bound to it).
    pub client_id: String,
    /// Keep-alive interval in seconds.
    pub keep_alive_secs: u64,
    /// HTTP listen address.
    pub listen: String,
    /// Window length in seconds.
    pub window_seconds: u64,
    /// Coalescing interval per key in ms; 0 publishes every change.
    pub publish_interval_ms: u64,
    /// Publish burst allowance per key.
    pub publish_burst: u32,
    /// Most keys tracked.
    pub max_keys: usize,
    /// Idle time before a key is forgotten, in seconds.
    pub key_idle_ttl_seconds: u64,
    /// Payload size limit.
    pub max_payload_bytes: usize,
    /// Allowed clock skew into the future, in ms.
    pub max_future_skew_ms: u64,
    /// Largest incoming MQTT packet.
    pub max_packet_bytes: usize,
    /// Reader-to-aggregation queue capacity.
    pub incoming_capacity: usize,
    /// Messages per aggregation batch.
    pub batch_size: usize,
    /// MQTT request queue capacity.
    pub request_capacity: usize,
    /// QoS 1 publishes in flight.
    pub inflight: u16,
    /// First reconnect pause in ms.
    pub reconnect_min_ms: u64,
    /// Longest reconnect pause in ms.
    pub reconnect_max_ms: u64,
    /// Shutdown drain limit in ms.
    pub shutdown_timeout_ms: u64,
    /// Rejection log interval in seconds.
    pub rejection_log_interval_secs: u64,
    /// Window log directory; none or empty: no log.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

/// Built-in defaults, the lowest layer (docs/contract.md, "Command line, environment and files").
const DEFAULTS: &str = r#"
mqtt_host = "localhost"
mqtt_port = 1883
client_id = "scrap-pulse-ingest"
keep_alive_secs = 30
listen = "0.0.0.0:9100"
window_seconds = 60
publish_interval_ms = 50
publish_burst = 5
max_keys = 100000
key_idle_ttl_seconds = 600
max_payload_bytes = 65536
max_future_skew_ms = 5000
max_packet_bytes = 1114112
incoming_capacity = 8192
batch_size = 1024
request_capacity = 16384
inflight = 1000
reconnect_min_ms = 100
reconnect_max_ms = 5000
shutdown_timeout_ms = 5000
rejection_log_interval_secs = 10
"#;

impl Settings {
    /// Layers defaults < `--config` file < environment < flags.
    ///
    /// # Errors
    /// When the file cannot be read or a value has the wrong type.
    pub fn load(cli: &Cli) -> Result<Self, SettingsError> {
        Self::load_from(cli, &std::env::vars().collect())
    }

    /// As [`Settings::load`], with the environment given as a map (for tests).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_from(cli: &Cli, env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = &cli.config {
            builder = builder.add_source(
                config::File::from(path.as_path())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let prefixed: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("INGEST_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder
            .add_source(
                // Flat keys contain `_`, so nesting would need a separator nobody uses.
                config::Environment::with_prefix("INGEST")
                    .prefix_separator("_")
                    .separator("__")
                    .source(Some(prefixed)),
            )
            .set_override_option("mqtt_host", env.get("MQTT_BROKER").cloned())?
            .set_override_option("mqtt_port", env.get("MQTT_PORT").cloned())?
            .set_override_option("mqtt_host", cli.mqtt_host.clone())?
            .set_override_option("mqtt_port", cli.mqtt_port)?;
        builder = cli
            .mqtt_security
            .set_overrides(builder, "mqtt_")?
            .set_override_option("client_id", cli.client_id.clone())?
            .set_override_option("keep_alive_secs", cli.keep_alive_secs)?
            .set_override_option("listen", cli.listen.clone())?
            .set_override_option("window_seconds", cli.window_seconds)?
            .set_override_option("publish_interval_ms", cli.publish_interval_ms)?
            .set_override_option("publish_burst", cli.publish_burst)?
            .set_override_option("max_keys", cli.max_keys.map(to_u64))?
            .set_override_option("key_idle_ttl_seconds", cli.key_idle_ttl_seconds)?
            .set_override_option("max_payload_bytes", cli.max_payload_bytes.map(to_u64))?
            .set_override_option("max_future_skew_ms", cli.max_future_skew_ms)?
            .set_override_option("max_packet_bytes", cli.max_packet_bytes.map(to_u64))?
            .set_override_option("incoming_capacity", cli.incoming_capacity.map(to_u64))?
            .set_override_option("batch_size", cli.batch_size.map(to_u64))?
            .set_override_option("request_capacity", cli.request_capacity.map(to_u64))?
            .set_override_option("inflight", cli.inflight)?
            .set_override_option("reconnect_min_ms", cli.reconnect_min_ms)?
            .set_override_option("reconnect_max_ms", cli.reconnect_max_ms)?
            .set_override_option("shutdown_timeout_ms", cli.shutdown_timeout_ms)?
            .set_override_option(
                "rejection_log_interval_secs",
                cli.rejection_log_interval_secs,
            )?
            .set_override_option(
                "data_dir",
                cli.data_dir
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
            )?;
        Ok(builder.build()?.try_deserialize()?)
    }

    /// Checks every setting and turns it into its working type.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<IngestConfig, SettingsError> {
        if self.mqtt_host.trim().is_empty() {
            return Err(SettingsError::invalid("mqtt_host", "must not be empty"));
        }
        if self.mqtt_port == 0 {
            return Err(SettingsError::invalid("mqtt_port", "must be 1 to 65535"));
        }
        let security = service_kit::SecuritySettings {
            username: self.mqtt_username.clone(),
            password: self.mqtt_password.clone(),
            password_file: self.mqtt_password_file.clone(),
            tls: self.mqtt_tls,
            tls_ca_file: self.mqtt_tls_ca_file.clone(),
            tls_client_cert_file: self.mqtt_tls_client_cert_file.clone(),
            tls_client_key_file: self.mqtt_tls_client_key_file.clone(),
        }
        .load("mqtt_")?;
        if self.client_id.trim().is_empty() {
            return Err(SettingsError::invalid(
                "client_id",
                "must not be empty: the persistent session is bound to it",
            ));
        }
        if self.client_id.len() > 65_535 {
            return Err(SettingsError::invalid(
                "client_id",
                "is longer than 65535 bytes",
            ));
        }
        if self.keep_alive_secs == 0 || self.keep_alive_secs > 65_535 {
            return Err(SettingsError::invalid(
                "keep_alive_secs",
                "must be 1 to 65535 seconds",
            ));
        }
        let listen: SocketAddr = self.listen.parse().map_err(|e| {
            SettingsError::invalid(
                "listen",
                format!("{:?} is not an address like 0.0.0.0:9100: {e}", self.listen),
            )
        })?;
        if self.window_seconds == 0 {
            return Err(SettingsError::invalid(
                "window_seconds",
                "must be at least 1",
            ));
        }
        if self.window_seconds > 86_400 {
            return Err(SettingsError::invalid(
                "window_seconds",
                "must be at most 86400 (one day)",
            ));
        }
        if self.publish_interval_ms > 3_600_000 {
            return Err(SettingsError::invalid(
                "publish_interval_ms",
                "must be at most 3600000 (one hour)",
            ));
        }
        if !(1..=1_000).contains(&self.publish_burst) {
            return Err(SettingsError::invalid(
                "publish_burst",
                "must be between 1 and 1000",
            ));
        }
        if self.max_keys == 0 {
            return Err(SettingsError::invalid("max_keys", "must be at least 1"));
        }
        if self.max_keys > 100_000_000 {
            return Err(SettingsError::invalid(
                "max_keys",
                "must be at most 100000000",
            ));
        }
        if self.key_idle_ttl_seconds > 365 * 86_400 {
            return Err(SettingsError::invalid(
                "key_idle_ttl_seconds",
                "must be at most one year",
            ));
        }
        if self.max_payload_bytes == 0 {
            return Err(SettingsError::invalid(
                "max_payload_bytes",
                "must be at least 1",
            ));
        }
        if self.max_future_skew_ms > 86_400_000 {
            return Err(SettingsError::invalid(
                "max_future_skew_ms",
                "must be at most 86400000 (one day)",
            ));
        }
        let min_packet = self.max_payload_bytes.saturating_add(PACKET_HEADROOM);
        if self.max_packet_bytes < min_packet || self.max_packet_bytes > MQTT_MAX_PACKET {
            return Err(SettingsError::invalid(
                "max_packet_bytes",
                format!(
                    "must be between max_payload_bytes + 64 KiB ({min_packet}) and {MQTT_MAX_PACKET}, \
                     so that an oversized payload is rejected as too_large instead of breaking the connection"
                ),
            ));
        }
        if self.incoming_capacity == 0 {
            return Err(SettingsError::invalid(
                "incoming_capacity",
                "must be at least 1",
            ));
        }
        if self.batch_size == 0 {
            return Err(SettingsError::invalid("batch_size", "must be at least 1"));
        }
        if self.request_capacity < 16 {
            return Err(SettingsError::invalid(
                "request_capacity",
                "must be at least 16",
            ));
        }
        if self.inflight == 0 {
            return Err(SettingsError::invalid("inflight", "must be at least 1"));
        }
        if self.reconnect_min_ms == 0 {
            return Err(SettingsError::invalid(
                "reconnect_min_ms",
                "must be at least 1",
            ));
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return Err(SettingsError::invalid(
                "reconnect_max_ms",
                "must not be below reconnect_min_ms",
            ));
        }
        if self.rejection_log_interval_secs == 0 {
            return Err(SettingsError::invalid(
                "rejection_log_interval_secs",
                "must be at least 1",
            ));
        }
        Ok(IngestConfig {
            mqtt_host: self.mqtt_host.clone(),
            mqtt_port: self.mqtt_port,
            security,
            client_id: self.client_id.clone(),
            keep_alive: Duration::from_secs(self.keep_alive_secs),
            listen,
            window: WindowConfig {
                window: Duration::from_secs(self.window_seconds),
                max_future_skew: Duration::from_millis(self.max_future_skew_ms),
                max_keys: self.max_keys,
                key_idle_ttl: Duration::from_secs(self.key_idle_ttl_seconds),
            },
            limits: ParseLimits {
                max_payload_bytes: self.max_payload_bytes,
            },
            publish_interval: Duration::from_millis(self.publish_interval_ms),
            publish_burst: self.publish_burst,
            max_packet_bytes: self.max_packet_bytes,
            incoming_capacity: self.incoming_capacity,
            batch_size: self.batch_size,
            request_capacity: self.request_capacity,
            inflight: self.inflight,
            reconnect_min: Duration::from_millis(self.reconnect_min_ms),
            reconnect_max: Duration::from_millis(self.reconnect_max_ms),
            shutdown_timeout: Duration::from_millis(self.shutdown_timeout_ms),
            rejection_log_interval: Duration::from_secs(self.rejection_log_interval_secs),
            data_dir: self
                .data_dir
                .clone()
                .filter(|dir| !dir.as_os_str().is_empty()),
        })
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Validated settings in their working types.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Broker host.
    pub mqtt_host: String,
    /// Broker port.
    pub mqtt_port: u16,
    /// Broker login and TLS (`Display` for logs; never shows the password).
    pub security: service_kit::MqttSecurity,
    /// Stable MQTT client id.
    pub client_id: String,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// HTTP listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Window store settings.
    pub window: WindowConfig,
    /// Parser limits.
    pub limits: ParseLimits,
    /// Coalescing interval per key; zero publishes every change.
    pub publish_interval: Duration,
    /// Publish burst allowance per key (at least 1).
    pub publish_burst: u32,
    /// Largest incoming MQTT packet.
    pub max_packet_bytes: usize,
    /// Reader-to-aggregation queue capacity.
    pub incoming_capacity: usize,
    /// Messages per aggregation batch.
    pub batch_size: usize,
    /// MQTT request queue capacity.
    pub request_capacity: usize,
    /// QoS 1 publishes in flight.
    pub inflight: u16,
    /// First reconnect pause.
    pub reconnect_min: Duration,
    /// Longest reconnect pause.
    pub reconnect_max: Duration,
    /// How long shutdown may wait for the broker to take the last messages.
    pub shutdown_timeout: Duration,
    /// Rejection log interval per reason.
    pub rejection_log_interval: Duration,
    /// Directory of the window log (durable windows, exactly-once through restarts).
    pub data_dir: Option<PathBuf>,
}

impl IngestConfig {
    /// The defaults pointed at `host:port`, for tests and embedding.
    ///
    /// # Panics
    /// Never: the built-in defaults are valid.
    pub fn for_broker(host: &str, port: u16) -> Self {
        let cli = Cli {
            mqtt_host: Some(host.to_owned()),
            mqtt_port: Some(port),
            ..Cli::default()
        };
        // expect: the built-in defaults and these two overrides are always valid.
        Settings::load_from(&cli, &HashMap::new())
            .and_then(|s| s.validate())
            .expect("built-in defaults are valid")
    }

    /// MQTT options: persistent session under the stable client id, the offline status as
    /// retained last will, packet limits above `max_payload_bytes`.
    pub fn mqtt_options(&self, offline_status: Vec<u8>) -> MqttOptions {
        let mut options = MqttOptions::new(&self.client_id, &self.mqtt_host, self.mqtt_port);
        options
            .set_keep_alive(self.keep_alive)
            // clean_session off: the broker queues readings while ingest is away.
            .set_clean_session(false)
            // Incoming above max_payload_bytes so oversized payloads arrive and are rejected as
            // too_large; a smaller limit would drop the connection and loop on redelivery.
            .set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes)
            .set_inflight(self.inflight)
            .set_request_channel_capacity(self.request_capacity)
            .set_last_will(LastWill::new(
                aggregator_core::topic::INGEST_STATUS_TOPIC,
                offline_status,
                QoS::AtLeastOnce,
                true,
            ));
        self.security.apply_to(&mut options);
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_those_of_the_contract() {
        let config = Settings::load_from(&Cli::default(), &HashMap::new())
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(config.mqtt_host, "localhost");
        assert_eq!(config.mqtt_port, 1883);
        assert_eq!(config.client_id, "scrap-pulse-ingest");
        assert_eq!(config.listen, "0.0.0.0:9100".parse().unwrap());
        assert_eq!(config.window, WindowConfig::default());
        assert_eq!(config.publish_interval, Duration::from_millis(50));
        assert_eq!(config.publish_burst, 5);
        assert_eq!(config.limits.max_payload_bytes, 64 * 1024);
    }

    #[test]
    fn layers_apply_in_order_env_over_file_and_flags_over_env() {
        let dir = std::env::temp_dir().join(format!("ingest-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ingest.toml");
        std::fs::write(
            &file,
            "window_seconds = 30\npublish_interval_ms = 7\nmqtt_host = \"file-host\"\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(file.clone()),
            publish_interval_ms: Some(0),
            ..Cli::default()
        };
        let vars = env(&[
            ("MQTT_BROKER", "env-host"),
            ("MQTT_PORT", "1999"),
            ("INGEST_PUBLISH_INTERVAL_MS", "50"),
            ("INGEST_MAX_KEYS", "12"),
            ("INGEST_LISTEN", "127.0.0.1:0"),
        ]);
        let config = Settings::load_from(&cli, &vars)
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(config.window.window, Duration::from_secs(30), "file");
        assert_eq!(config.mqtt_host, "env-host", "env over file");
        assert_eq!(config.mqtt_port, 1999);
        assert_eq!(config.window.max_keys, 12);
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.publish_interval, Duration::ZERO, "flag over env");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn broker_login_comes_from_env_and_never_shows() {
        let dir = std::env::temp_dir().join(format!("ingest-login-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "pw-from-file-7731\n").unwrap();
        let vars = env(&[
            ("INGEST_MQTT_USERNAME", "ingest"),
            ("INGEST_MQTT_PASSWORD_FILE", file.to_str().unwrap()),
        ]);
        let settings = Settings::load_from(&Cli::default(), &vars).unwrap();
        let config = settings.validate().unwrap();
        assert_eq!(config.security.username(), Some("ingest"));
        let login = config.mqtt_options(Vec::new()).credentials().unwrap();
        assert_eq!(login.password, "pw-from-file-7731");

        let cli = Cli {
            mqtt_security: service_kit::SecurityFlags {
                mqtt_username: Some("ingest".into()),
                mqtt_password: Some("pw-inline-9924".into()),
                ..service_kit::SecurityFlags::default()
            },
            ..Cli::default()
        };
        let settings = Settings::load_from(&cli, &HashMap::new()).unwrap();
        let config = settings.validate().unwrap();
        for shown in [
            format!("{settings:?}"),
            format!("{config:?}"),
            config.security.to_string(),
        ] {
            assert!(!shown.contains("pw-inline-9924"), "{shown}");
        }
        let err = Settings::load_from(&Cli::default(), &env(&[("INGEST_MQTT_TLS", "true")]))
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("mqtt_tls_ca_file"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: [(Cli, &str); 4] = [
            (
                Cli {
                    window_seconds: Some(0),
                    ..Cli::default()
                },
                "window_seconds",
            ),
            (
                Cli {
                    listen: Some("nowhere".into()),
                    ..Cli::default()
                },
                "listen",
            ),
            (
                Cli {
                    max_payload_bytes: Some(2_000_000),
                    ..Cli::default()
                },
                "max_packet_bytes",
            ),
            (
                Cli {
                    client_id: Some(" ".into()),
                    ..Cli::default()
                },
                "client_id",
            ),
        ];
        for (cli, setting) in cases {
            let err = Settings::load_from(&cli, &HashMap::new())
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(setting), "{setting}: {err}");
        }
        let err =
            Settings::load_from(&Cli::default(), &env(&[("INGEST_MAX_KEYS", "many")])).unwrap_err();
        assert!(err.to_string().contains("max_keys"), "{err}");
    }

    #[test]
    fn data_dir_is_off_by_default_and_set_by_env_or_flag() {
        let load = |cli: &Cli, vars: &[(&str, &str)]| {
            Settings::load_from(cli, &env(vars))
                .unwrap()
                .validate()
                .unwrap()
                .data_dir
        };
        assert_eq!(load(&Cli::default(), &[]), None);
        assert_eq!(load(&Cli::default(), &[("INGEST_DATA_DIR", "")]), None);
        let from_env = load(&Cli::default(), &[("INGEST_DATA_DIR", "/var/lib/x")]);
        assert_eq!(from_env, Some(PathBuf::from("/var/lib/x")));
        let cli = Cli {
            data_dir: Some("/tmp/flag".into()),
            ..Cli::default()
        };
        let from_flag = load(&cli, &[("INGEST_DATA_DIR", "/var/lib/x")]);
        assert_eq!(from_flag, Some(PathBuf::from("/tmp/flag")));
    }
}
