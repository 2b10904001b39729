//! Settings of the ingest service: built-in defaults < TOML file (`--config`) < environment <
//! flags, layered by [`service_kit::Layers`] and validated once into [`IngestConfig`].
//!
//! File: the broker under `[mqtt]` (shared with gateway and simulator), everything else as
//! top-level keys named like the flags (`window_seconds = 60`). The flat broker keys of
//! earlier versions (`mqtt_host`, `mqtt_username`, `client_id`, `keep_alive_secs`, ...) are
//! still accepted: see [`FILE_ALIASES`]. Environment: `INGEST_<KEY>` for every key
//! (`INGEST_WINDOW_SECONDS`, `INGEST_MQTT_USERNAME`), plus [`ENV_ALIASES`] (`MQTT_BROKER`,
//! `MQTT_PORT`, `INGEST_CLIENT_ID`, `INGEST_KEEP_ALIVE_SECS`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use crate::shard::Shard;
use aggregator_core::alarm::{AlarmRule, AlarmRules};
use aggregator_core::topic::machine_from_readings_topic;
use aggregator_core::trend::TrendConfig;
use aggregator_core::{ParseLimits, WindowConfig};
use clap::Parser;
use rumqttc::{LastWill, MqttOptions, QoS};
use serde::{Deserialize, Serialize};
use service_kit::{
    ClientId, CommonFlags, Flag, FlagValue, Layers, MqttSettings, SettingsError, at_least, in_range,
};

/// Largest MQTT packet the protocol allows (remaining length of 256 MiB).
const MQTT_MAX_PACKET: usize = 268_435_455;
/// Room for the fixed header, topic (up to 64 KiB) and packet id around a payload.
const PACKET_HEADROOM: usize = 64 * 1024 + 16;

/// File keys of earlier versions, as `(old, new)`: the broker keys were flat.
pub const FILE_ALIASES: &[(&str, &str)] = &[
    ("mqtt_host", "mqtt.host"),
    ("mqtt_port", "mqtt.port"),
    ("client_id", "mqtt.client_id"),
    ("keep_alive_secs", "mqtt.keep_alive_secs"),
    ("mqtt_username", "mqtt.username"),
    ("mqtt_password", "mqtt.password"),
    ("mqtt_password_file", "mqtt.password_file"),
    ("mqtt_tls", "mqtt.tls"),
    ("mqtt_tls_ca_file", "mqtt.tls_ca_file"),
    ("mqtt_tls_client_cert_file", "mqtt.tls_client_cert_file"),
    ("mqtt_tls_client_key_file", "mqtt.tls_client_key_file"),
];

/// Environment names besides `INGEST_<KEY>`; a later one wins (`MQTT_BROKER` over
/// `INGEST_MQTT_HOST`, as before).
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("INGEST_CLIENT_ID", "mqtt.client_id"),
    ("INGEST_KEEP_ALIVE_SECS", "mqtt.keep_alive_secs"),
    ("MQTT_BROKER", "mqtt.host"),
    ("MQTT_PORT", "mqtt.port"),
];

const LAYERS: Layers<'static> = Layers {
    env_prefix: "INGEST",
    file_aliases: FILE_ALIASES,
    env_aliases: ENV_ALIASES,
};

/// Command-line flags; each one overrides the file and the environment. Numbers are signed so
/// that a negative value reaches its setting's check.
#[derive(Debug, Default, Parser)]
#[command(
    name = "ingest",
    version,
    allow_negative_numbers = true,
    about = "Subscribes to machines/+/scrap, keeps exact sliding-window sums per (machine, scrap index) \
             and republishes them retained on aggregates/{machineId}/{scrapIndex}.",
    after_help = "Environment: MQTT_BROKER, MQTT_PORT, INGEST_<SETTING> (e.g. INGEST_LISTEN, \
                  INGEST_WINDOW_SECONDS, INGEST_MQTT_CLIENT_ID), RUST_LOG, LOG_FORMAT=json.\n\
                  File: broker keys under [mqtt] (the flat mqtt_host, client_id, ... still work), \
                  the rest as the flags with `_`; [[alarm]] rules only in the file.\n\
                  Precedence: defaults < --config file < environment < flags."
)]
pub struct Cli {
    /// `--config`, broker address, client id, keep-alive, login and TLS.
    #[command(flatten)]
    pub common: CommonFlags,
    /// Address of the HTTP server for /health and /metrics [default: 0.0.0.0:9100].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Window length in seconds [default: 60].
    #[arg(long, value_name = "SECS")]
    pub window_seconds: Option<i64>,
    /// Sustained, at most one aggregate per key per this many ms; 0 publishes every change
    /// [default: 50].
    #[arg(long, value_name = "MS")]
    pub publish_interval_ms: Option<i64>,
    /// Aggregates a key may publish at once after a quiet spell, on top of the interval
    /// [default: 5].
    #[arg(long, value_name = "N")]
    pub publish_burst: Option<i64>,
    /// Publish a key's aggregate once more this many ms after its last change, for brokers
    /// that may lose a delivery (NATS 2.9); 0 never [default: 0].
    #[arg(long, value_name = "MS")]
    pub republish_after_ms: Option<i64>,
    /// Most (machine, scrap index) keys tracked at once [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_keys: Option<i64>,
    /// Seconds a key's window stays empty before the key is forgotten [default: 600].
    #[arg(long, value_name = "SECS")]
    pub key_idle_ttl_seconds: Option<i64>,
    /// Payloads above this size are rejected as too_large [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub max_payload_bytes: Option<i64>,
    /// How far ahead of the ingest clock a reading may be, in ms [default: 5000].
    #[arg(long, value_name = "MS")]
    pub max_future_skew_ms: Option<i64>,
    /// Largest MQTT packet read from the broker; must exceed max_payload_bytes plus 64 KiB
    /// [default: 1114112].
    #[arg(long, value_name = "BYTES")]
    pub max_packet_bytes: Option<i64>,
    /// Capacity of the queue between the MQTT reader and the aggregation [default: 8192].
    #[arg(long, value_name = "N")]
    pub incoming_capacity: Option<i64>,
    /// Most messages aggregated in one batch [default: 1024].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<i64>,
    /// Capacity of the MQTT client's outgoing request queue [default: 16384].
    #[arg(long, value_name = "N")]
    pub request_capacity: Option<i64>,
    /// Most unacknowledged QoS 1 publishes in flight [default: 1000].
    #[arg(long, value_name = "N")]
    pub inflight: Option<i64>,
    /// First pause after a broker connection error, in ms [default: 100].
    #[arg(long, value_name = "MS")]
    pub reconnect_min_ms: Option<i64>,
    /// Longest pause between reconnection attempts, in ms [default: 5000].
    #[arg(long, value_name = "MS")]
    pub reconnect_max_ms: Option<i64>,
    /// How long a shutdown may take to hand pending aggregates to the broker, in ms [default: 5000].
    #[arg(long, value_name = "MS")]
    pub shutdown_timeout_ms: Option<i64>,
    /// At most one log line per rejection reason per this many seconds [default: 10].
    #[arg(long, value_name = "SECS")]
    pub rejection_log_interval_secs: Option<i64>,
    /// Directory of the window log; without it the windows start empty after a restart
    /// [env: INGEST_DATA_DIR] [default: none].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seconds between two samples of every key's trend [default: 10].
    #[arg(long, value_name = "SECS")]
    pub trend_interval_seconds: Option<i64>,
    /// Samples kept in (and published with) every key's trend [default: 90].
    #[arg(long, value_name = "N")]
    pub trend_points: Option<i64>,
    /// Ingest processes sharing the machines; machine m belongs to shard
    /// fnv1a32(m) mod this (NATS's partition(N,1)) [default: 1].
    #[arg(long, value_name = "N")]
    pub shard_count: Option<i64>,
    /// This process's shard, below shard_count [default: 0].
    #[arg(long, value_name = "K")]
    pub shard_index: Option<i64>,
    /// Readings subscription, ending in machines/+/scrap; {shard} expands to the shard index,
    /// e.g. shard/{shard}/machines/+/scrap [default: machines/+/scrap].
    #[arg(long, value_name = "FILTER")]
    pub subscribe_topic: Option<String>,
}

impl Cli {
    /// Every flag as an override of its key (`None`: not given).
    fn overrides(&self) -> Vec<Flag<'static>> {
        let int = |v: Option<i64>| v.map(FlagValue::from);
        let mut flags = self.common.overrides();
        flags.extend([
            ("listen", self.listen.clone().map(FlagValue::from)),
            ("window_seconds", int(self.window_seconds)),
            ("publish_interval_ms", int(self.publish_interval_ms)),
            ("publish_burst", int(self.publish_burst)),
            ("republish_after_ms", int(self.republish_after_ms)),
            ("max_keys", int(self.max_keys)),
            ("key_idle_ttl_seconds", int(self.key_idle_ttl_seconds)),
            ("max_payload_bytes", int(self.max_payload_bytes)),
            ("max_future_skew_ms", int(self.max_future_skew_ms)),
            ("max_packet_bytes", int(self.max_packet_bytes)),
            ("incoming_capacity", int(self.incoming_capacity)),
            ("batch_size", int(self.batch_size)),
            ("request_capacity", int(self.request_capacity)),
            ("inflight", int(self.inflight)),
            ("reconnect_min_ms", int(self.reconnect_min_ms)),
            ("reconnect_max_ms", int(self.reconnect_max_ms)),
            ("shutdown_timeout_ms", int(self.shutdown_timeout_ms)),
            (
                "rejection_log_interval_secs",
                int(self.rejection_log_interval_secs),
            ),
            ("trend_interval_seconds", int(self.trend_interval_seconds)),
            ("trend_points", int(self.trend_points)),
            ("shard_count", int(self.shard_count)),
            ("shard_index", int(self.shard_index)),
            (
                "subscribe_topic",
                self.subscribe_topic.clone().map(FlagValue::from),
            ),
            (
                "data_dir",
                self.data_dir
                    .as_ref()
                    .map(|p| FlagValue::from(p.to_string_lossy().into_owned())),
            ),
        ]);
        flags
    }
}

/// Raw settings as layered from all sources, before validation; `Default` is the built-in
/// layer (the contract's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The broker block shared with gateway and simulator.
    pub mqtt: MqttSettings,
    /// HTTP listen address.
    pub listen: String,
    /// Window length in seconds.
    pub window_seconds: u64,
    /// Coalescing interval per key in ms; 0 publishes every change.
    pub publish_interval_ms: u64,
    /// Publish burst allowance per key.
    pub publish_burst: u32,
    /// Re-send delay of a key's last aggregate in ms; 0 never.
    pub republish_after_ms: u64,
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
    pub data_dir: Option<PathBuf>,
    /// Seconds between trend samples.
    pub trend_interval_seconds: u64,
    /// Samples per trend.
    pub trend_points: usize,
    /// Ingest shards in all.
    pub shard_count: u32,
    /// This process's shard.
    pub shard_index: u32,
    /// Readings subscription template (`{shard}` expands to the shard index).
    pub subscribe_topic: String,
    /// The `[[alarm]]` tables of the file (only the file sets them).
    pub alarm: Vec<AlarmRule>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mqtt: MqttSettings {
                client_id: "scrap-pulse-ingest".into(),
                ..MqttSettings::default()
            },
            listen: "0.0.0.0:9100".into(),
            window_seconds: 60,
            publish_interval_ms: 50,
            publish_burst: 5,
            republish_after_ms: 0,
            max_keys: 100_000,
            key_idle_ttl_seconds: 600,
            max_payload_bytes: 65_536,
            max_future_skew_ms: 5_000,
            max_packet_bytes: 1_114_112,
            incoming_capacity: 8_192,
            batch_size: 1_024,
            request_capacity: 16_384,
            inflight: 1_000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5_000,
            shutdown_timeout_ms: 5_000,
            rejection_log_interval_secs: 10,
            data_dir: None,
            trend_interval_seconds: 10,
            trend_points: 90,
            shard_count: 1,
            shard_index: 0,
            subscribe_topic: aggregator_core::topic::READINGS_FILTER.into(),
            alarm: Vec::new(),
        }
    }
}

impl Settings {
    /// Layers defaults < `--config` file < environment < flags.
    ///
    /// # Errors
    /// When the file cannot be read, has an unknown key, or a value has the wrong type.
    pub fn load(cli: &Cli) -> Result<Self, SettingsError> {
        Self::load_from(cli, &std::env::vars().collect())
    }

    /// As [`Settings::load`], with the environment given as a map (for tests).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_from(cli: &Cli, env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        LAYERS
            .load(
                &Self::default(),
                cli.common.config.as_deref(),
                &|name| env.get(name).cloned(),
                cli.overrides(),
            )
            .map_err(|e| e.with_old_spelling(FILE_ALIASES))
    }

    /// Checks every setting once and turns it into its working type. The numeric limits are
    /// the table below, one line per setting; then the rules that relate two settings.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first bad setting (with its old spelling).
    pub fn validate(&self) -> Result<IngestConfig, SettingsError> {
        self.checked()
            .map_err(|e| e.with_old_spelling(FILE_ALIASES))
    }

    fn checked(&self) -> Result<IngestConfig, SettingsError> {
        let mqtt = self.mqtt.validate(ClientId::Required)?;
        let listen: SocketAddr = self.listen.parse().map_err(|e| {
            SettingsError::invalid(
                "listen",
                format!("{:?} is not an address like 0.0.0.0:9100: {e}", self.listen),
            )
        })?;
        const DAY_SECS: u64 = 86_400;
        in_range("window_seconds", self.window_seconds, 1..=DAY_SECS)?;
        in_range(
            "publish_interval_ms",
            self.publish_interval_ms,
            0..=3_600_000,
        )?;
        in_range("publish_burst", self.publish_burst, 1..=1_000)?;
        in_range("republish_after_ms", self.republish_after_ms, 0..=3_600_000)?;
        in_range("max_keys", self.max_keys, 1..=100_000_000)?;
        in_range(
            "key_idle_ttl_seconds",
            self.key_idle_ttl_seconds,
            0..=365 * DAY_SECS,
        )?;
        at_least("max_payload_bytes", self.max_payload_bytes, 1)?;
        in_range(
            "max_future_skew_ms",
            self.max_future_skew_ms,
            0..=DAY_SECS * 1_000,
        )?;
        at_least("incoming_capacity", self.incoming_capacity, 1)?;
        at_least("batch_size", self.batch_size, 1)?;
        at_least("request_capacity", self.request_capacity, 16)?;
        at_least("inflight", self.inflight, 1)?;
        at_least("reconnect_min_ms", self.reconnect_min_ms, 1)?;
        at_least(
            "rejection_log_interval_secs",
            self.rejection_log_interval_secs,
            1,
        )?;
        in_range(
            "trend_interval_seconds",
            self.trend_interval_seconds,
            1..=DAY_SECS,
        )?;
        // A trend is published whole on every sample: keep a message in the kilobytes.
        in_range("trend_points", self.trend_points, 1..=10_000)?;
        in_range("shard_count", self.shard_count, 1..=1_024)?;
        if self.shard_index >= self.shard_count {
            return Err(SettingsError::invalid(
                "shard_index",
                format!(
                    "{} is not below shard_count ({})",
                    self.shard_index, self.shard_count
                ),
            ));
        }
        let shard = Shard::new(self.shard_index, self.shard_count, &self.subscribe_topic);
        // A reading's topic ends in machines/{id}/scrap: a filter of another shape would
        // deliver nothing ingest can read.
        if machine_from_readings_topic(&shard.filter) != Some("+") {
            return Err(SettingsError::invalid(
                "subscribe_topic",
                format!(
                    "{:?} must end in machines/+/scrap (a prefix, with {{shard}}, may come first)",
                    self.subscribe_topic
                ),
            ));
        }
        // The rule's own error names it (`[[alarm]] rule 2 (machine = "A1", ...): ...`).
        let alarms = AlarmRules::new(&self.alarm)
            .map_err(|e| SettingsError::invalid("alarm", e.to_string()))?;

        let min_packet = self.max_payload_bytes.saturating_add(PACKET_HEADROOM);
        if !(min_packet..=MQTT_MAX_PACKET).contains(&self.max_packet_bytes) {
            return Err(SettingsError::invalid(
                "max_packet_bytes",
                format!(
                    "must be between max_payload_bytes + 64 KiB ({min_packet}) and {MQTT_MAX_PACKET}, \
                     so that an oversized payload is rejected as too_large instead of breaking the connection"
                ),
            ));
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return Err(SettingsError::invalid(
                "reconnect_max_ms",
                "must not be below reconnect_min_ms",
            ));
        }
        Ok(IngestConfig {
            mqtt_host: mqtt.host,
            mqtt_port: mqtt.port,
            brokers: mqtt.brokers,
            security: mqtt.security,
            client_id: mqtt.client_id,
            keep_alive: mqtt.keep_alive,
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
            republish_after: (self.republish_after_ms > 0)
                .then(|| Duration::from_millis(self.republish_after_ms)),
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
            alarms: Arc::new(alarms),
            trend: TrendConfig {
                interval: Duration::from_secs(self.trend_interval_seconds),
                points: self.trend_points,
            },
            shard,
        })
    }
}

/// Validated settings in their working types.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Broker host.
    pub mqtt_host: String,
    /// Broker port.
    pub mqtt_port: u16,
    /// Every broker of `mqtt.host`, in order; the first is `mqtt_host:mqtt_port`.
    pub brokers: Vec<service_kit::BrokerAddr>,
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
    /// Re-send delay of a key's last aggregate; `None`: never.
    pub republish_after: Option<Duration>,
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
    /// The validated `[[alarm]]` rules (shared: thousands of them are not copied around).
    pub alarms: Arc<AlarmRules>,
    /// Trend sampling interval and length.
    pub trend: TrendConfig,
    /// Which machines this process owns, its subscription and status topic.
    pub shard: Shard,
}

impl IngestConfig {
    /// The defaults pointed at `host:port`, for tests and embedding.
    ///
    /// # Panics
    /// Never: the built-in defaults are valid.
    pub fn for_broker(host: &str, port: u16) -> Self {
        let cli = Cli {
            common: CommonFlags {
                mqtt_host: Some(host.to_owned()),
                mqtt_port: Some(i64::from(port)),
                ..CommonFlags::default()
            },
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
        let first = service_kit::BrokerAddr {
            host: self.mqtt_host.clone(),
            port: self.mqtt_port,
        };
        self.mqtt_options_at(&first, offline_status)
    }

    /// [`mqtt_options`](Self::mqtt_options) pointed at one broker of the `mqtt.host` list.
    pub fn mqtt_options_at(
        &self,
        broker: &service_kit::BrokerAddr,
        offline_status: Vec<u8>,
    ) -> MqttOptions {
        let mut options = MqttOptions::new(&self.client_id, &broker.host, broker.port);
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
                self.shard.status_topic(),
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
            common: CommonFlags {
                config: Some(file.clone()),
                ..CommonFlags::default()
            },
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
            common: CommonFlags {
                mqtt_security: service_kit::SecurityFlags {
                    mqtt_username: Some("ingest".into()),
                    mqtt_password: Some("pw-inline-9924".into()),
                    ..service_kit::SecurityFlags::default()
                },
                ..CommonFlags::default()
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
                    common: CommonFlags {
                        client_id: Some(" ".into()),
                        ..CommonFlags::default()
                    },
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
    fn the_mqtt_block_and_the_old_flat_keys_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let load_file = |text: &str| {
            let file = dir.path().join("ingest.toml");
            std::fs::write(&file, text).unwrap();
            let cli = Cli {
                common: CommonFlags {
                    config: Some(file),
                    ..CommonFlags::default()
                },
                ..Cli::default()
            };
            Settings::load_from(&cli, &HashMap::new()).and_then(|s| s.validate())
        };
        let nested = load_file(
            "[mqtt]\nhost = \"b\"\nport = 1884\nclient_id = \"i\"\nkeep_alive_secs = 7\nusername = \"u\"\npassword = \"p\"\n",
        )
        .unwrap();
        let flat = load_file(
            "mqtt_host = \"b\"\nmqtt_port = 1884\nclient_id = \"i\"\nkeep_alive_secs = 7\nmqtt_username = \"u\"\nmqtt_password = \"p\"\n",
        )
        .unwrap();
        for config in [&nested, &flat] {
            assert_eq!((config.mqtt_host.as_str(), config.mqtt_port), ("b", 1884));
            assert_eq!(config.client_id, "i");
            assert_eq!(config.keep_alive, Duration::from_secs(7));
            assert_eq!(config.security.username(), Some("u"));
        }
        let err = load_file("mqtt_tls = true\n").unwrap_err().to_string();
        assert!(
            err.contains("`mqtt.tls_ca_file`") && err.contains("`mqtt_tls_ca_file`"),
            "{err}"
        );
        let err = load_file("window_secs = 5\n").unwrap_err().to_string();
        assert!(
            err.contains("`window_secs`") && err.contains("`window_seconds`"),
            "{err}"
        );
    }

    #[test]
    fn alarm_rules_and_trend_settings_come_from_the_file_env_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let load_file = |text: &str, cli: Cli, vars: &[(&str, &str)]| {
            let file = dir.path().join("ingest.toml");
            std::fs::write(&file, text).unwrap();
            let cli = Cli {
                common: CommonFlags {
                    config: Some(file),
                    ..CommonFlags::default()
                },
                ..cli
            };
            Settings::load_from(&cli, &env(vars)).and_then(|s| s.validate())
        };
        let rules = "trend_points = 30\n\
                     [[alarm]]\nmachine = \"*\"\nsum_above = 100\n\
                     [[alarm]]\nmachine = \"A1\"\nindex = 2\nsum_above = 30.0\nclear_below = 25.0\n";
        let config = load_file(
            rules,
            Cli {
                trend_interval_seconds: Some(5),
                ..Cli::default()
            },
            &[
                ("INGEST_TREND_INTERVAL_SECONDS", "7"),
                ("INGEST_TREND_POINTS", "40"),
            ],
        )
        .unwrap();
        assert_eq!(config.alarms.len(), 2);
        let a1 = config.alarms.resolve("A1", 2).unwrap().sum.unwrap();
        assert_eq!((a1.raise, a1.clear), (30.0, 25.0));
        assert_eq!(config.alarms.resolve("B1", 1).unwrap().rule, 1);
        assert_eq!(
            config.trend.interval,
            Duration::from_secs(5),
            "flag over env"
        );
        assert_eq!(config.trend.points, 40, "env over file");

        let defaults = load_file("", Cli::default(), &[]).unwrap();
        assert!(defaults.alarms.is_empty());
        assert_eq!(defaults.trend, TrendConfig::default());

        let bad = "[[alarm]]\nmachine = \"A1\"\nsum_above = 1\n\
                   [[alarm]]\nmachine = \"B1\"\nindex = 2\nsum_above = 30\nclear_below = 35\n";
        let err = load_file(bad, Cli::default(), &[]).unwrap_err().to_string();
        assert!(
            err.contains("`alarm`") && err.contains("rule 2") && err.contains("\"B1\""),
            "{err}"
        );
        let typo = "[[alarm]]\nmachine = \"A1\"\nsum_above = 1\nclear_belw = 0.5\n";
        let err = load_file(typo, Cli::default(), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("clear_belw"), "{err}");
        for (flag, value) in [("trend_interval_seconds", 0), ("trend_points", 0)] {
            let cli = Cli {
                trend_interval_seconds: (flag == "trend_interval_seconds").then_some(value),
                trend_points: (flag == "trend_points").then_some(value),
                ..Cli::default()
            };
            let err = load_file("", cli, &[]).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
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
