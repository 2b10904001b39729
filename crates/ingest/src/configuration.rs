//! Ingest's settings, each declared once with its default and limits (`service_kit::settings!`),
//! and the checks that relate two of them; [`Settings::validate`] turns them into the
//! [`IngestConfig`] the service runs on. The reference of every key is `ingest.example.toml`
//! (`ingest --example-config`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aggregator_core::HistoryConfig;
use aggregator_core::alarm::{AlarmRule, AlarmRules};
use aggregator_core::plant_time::PlantClock;
use aggregator_core::topic::machine_from_readings_topic;
use aggregator_core::trend::TrendConfig;
use aggregator_core::{ParseLimits, WindowConfig};
use service_kit::{Binary, MqttConfig, MqttSettings, SettingsError, ensure};

use crate::pipeline::sparkplug::SparkplugConfig;
use crate::shard::Shard;

/// How the binary names itself and its settings.
pub const BINARY: Binary = Binary {
    name: "ingest",
    env_prefix: "INGEST",
    about: "Subscribes to machines/+/scrap, keeps exact sliding-window sums per (machine, scrap \
            index) and republishes them retained on aggregates/{machineId}/{scrapIndex}.",
};

/// Room for the fixed header, topic (up to 64 KiB) and packet id around a payload.
const PACKET_HEADROOM: usize = 64 * 1024 + 16;

service_kit::settings! {
    /// Every setting of ingest.
    pub struct Settings {
        /// Address of the HTTP server for /health and /metrics.
        listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 9100));
        /// Directory of the window log: with it, the windows and the open history minutes
        /// survive restarts and crashes and QoS 2 readings count exactly once; without it,
        /// they start empty after a restart.
        data_dir: Option<PathBuf> = None;
        /// How long a stop may take to hand pending aggregates to the broker, in ms.
        shutdown_timeout_ms: u64 = 5_000, in 0..=600_000;
        /// At most one log line per rejection reason per this many seconds.
        rejection_log_interval_secs: u64 = 10, in 1..=86_400;
        /// The broker. The client id names ingest's persistent session: readings published
        /// while ingest is down arrive when it returns.
        mqtt: MqttSettings = MqttSettings {
            client_id: "scrap-pulse-ingest".into(),
            ..MqttSettings::default()
        };
        /// The sliding window.
        window: WindowSettings = WindowSettings::default();
        /// When aggregates are published.
        publish: PublishSettings = PublishSettings::default();
        /// Sizes of payloads, queues and batches.
        limits: LimitSettings = LimitSettings::default();
        /// The trend of every key.
        trend: TrendSettings = TrendSettings::default();
        /// Minute buckets of the accepted readings on history/{machineId}/{scrapIndex}.
        history: HistorySettings = HistorySettings::default();
        /// Several ingest processes sharing the machines.
        shard: ShardSettings = ShardSettings::default();
        /// The plant's clock.
        plant: PlantSettings = PlantSettings::default();
        /// Sparkplug B input, beside the JSON readings.
        sparkplug: SparkplugSettings = SparkplugSettings::default();
        /// Alarm rules, in the file only, any number of them. For each key the most specific
        /// rule applies (machine and index, then machine, then `*`):
        ///
        /// [[alarm]]
        /// machine = "A1"        # or "*" for every machine
        /// index = 2             # optional: only this scrap index
        /// sum_above = 30.0      # and/or avg_above
        /// clear_below = 25.0    # optional hysteresis; default: the raise threshold
        alarm: Vec<AlarmRule> = Vec::new();
    }

    /// The sliding window.
    pub struct WindowSettings {
        /// Window length in seconds.
        seconds: u64 = 60, in 1..=86_400;
        /// Most (machine, scrap index) keys tracked at once; more are rejected as too_many_keys.
        max_keys: usize = 100_000, in 1..=100_000_000;
        /// Seconds a key's window stays empty before the key is forgotten and its retained
        /// aggregate cleared.
        key_idle_ttl_seconds: u64 = 600, in 0..=31_536_000;
        /// How far ahead of the ingest clock a reading may be, in ms; further is `future`.
        max_future_skew_ms: u64 = 5_000, in 0..=86_400_000;
    }

    /// When aggregates are published.
    pub struct PublishSettings {
        /// Sustained, at most one aggregate per key per this many ms; 0 publishes every change.
        interval_ms: u64 = 50, in 0..=3_600_000;
        /// Aggregates a key may publish at once after a quiet spell, on top of the interval.
        burst: u32 = 5, in 1..=1_000;
        /// Publish a key's last aggregate once more this many ms after it went quiet, for a
        /// broker that may lose a delivery (NATS before 2.9.16 with two gateways); 0: never.
        again_after_ms: u64 = 0, in 0..=3_600_000;
    }

    /// Sizes of payloads, queues and batches.
    pub struct LimitSettings {
        /// Payloads larger than this are rejected as too_large, in bytes; mqtt.max_packet_bytes
        /// must exceed it by 64 KiB, so that they arrive to be rejected.
        max_payload_bytes: usize = 65_536, in 1..=268_000_000;
        /// Capacity of the queue between the MQTT reader and the aggregation.
        incoming_capacity: usize = 8_192, in 1..=10_000_000;
        /// Most messages aggregated in one batch.
        batch_size: usize = 1_024, in 1..=1_000_000;
        /// Capacity of the MQTT client's outgoing request queue.
        request_capacity: usize = 16_384, in 16..=10_000_000;
        /// Most unacknowledged QoS 1 publishes in flight.
        inflight: u16 = 1_000, in 1..=65_535;
    }

    /// The trend of every key.
    pub struct TrendSettings {
        /// Seconds between two samples of every key's window sum.
        interval_seconds: u64 = 10, in 1..=86_400;
        /// Samples kept and published per trend (90 x 10 s is 15 minutes); a trend is
        /// published whole, so it stays in the kilobytes.
        points: usize = 90, in 1..=10_000;
    }

    /// Minute buckets of the accepted readings on history/{machineId}/{scrapIndex}.
    pub struct HistorySettings {
        /// Publish the minute buckets (QoS 1, not retained); with data_dir the log then keeps
        /// readings one minute and one interval longer than the window, until their minute
        /// is final.
        enabled: bool = true;
        /// How often an open minute is re-sent per key while it changes, in seconds; it is
        /// sent once more, final, when no reading can change it any more. Each key sends at
        /// its own fixed offset within the interval, so that many keys do not send at once.
        interval_seconds: u64 = 10, in 1..=3_600;
    }

    /// Several ingest processes sharing the machines.
    pub struct ShardSettings {
        /// Ingest processes sharing the machines; machine m belongs to shard fnv1a32(m) mod
        /// count (NATS's partition(N,1)).
        count: u32 = 1, in 1..=1_024;
        /// This process's shard, below count.
        index: u32 = 0;
        /// Readings subscription, ending in machines/+/scrap; {shard} expands to the shard
        /// index (shard/{shard}/machines/+/scrap for a partitioning broker). Without {shard}
        /// and with several shards, each drops other shards' machines itself.
        subscribe_topic: String = aggregator_core::topic::READINGS_FILTER.into();
    }
}

service_kit::settings! {
    /// The plant's clock.
    pub struct PlantSettings {
        /// The plant's time zone, an IANA name (Europe/Berlin); device times without an offset
        /// (2026-12-01T14:14:54) are read in it.
        timezone: String = "UTC".into(), env "PLANT_TIMEZONE";
        /// Reject device times without an offset as bad_value instead of reading them in
        /// timezone.
        reject_naive_times: bool = false;
    }

    /// Sparkplug B input, beside the JSON readings.
    pub struct SparkplugSettings {
        /// Sparkplug groups to follow as a host application (spBv1.0/{group}/#); + follows
        /// every group; empty: no Sparkplug input.
        groups: Vec<String> = Vec::new();
        /// This host application's id: ingest then publishes its retained STATE on
        /// spBv1.0/STATE/{host_id}, with the offline state as will; empty: no STATE.
        host_id: String = String::new();
        /// Metric names that carry scrap, with {index} where the scrap index stands.
        metric_pattern: String = "scrap/{index}".into();
        /// Which id is the machine: device (the device's, else the edge node's) or node (the
        /// edge node's, for all its devices).
        machine: String = "device".into();
        /// Which time is the reading's: metric (the metric's timestamp, else the payload's,
        /// else arrival) or arrival (ingest's clock, for edge nodes with wrong clocks).
        time: String = "metric".into();
        /// How long a skipped sequence number may take to arrive before the node is asked
        /// for a rebirth, in ms.
        reorder_timeout_ms: u64 = 2_000, in 0..=600_000;
        /// At most one rebirth request per edge node per this many ms.
        rebirth_cooldown_ms: u64 = 5_000, in 0..=3_600_000;
        /// Most edge nodes remembered; messages of further nodes are refused as too_many_nodes.
        max_nodes: usize = 10_000, in 1..=10_000_000;
    }
}

/// The settings checked, with what the checks built.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Every setting as given.
    pub settings: Settings,
    /// The broker connection in working types.
    pub mqtt: MqttConfig,
    /// The validated `[[alarm]]` rules (shared: thousands of them are not copied around).
    pub alarms: Arc<AlarmRules>,
    /// Which machines this process owns, its subscription and status topic.
    pub shard: Shard,
    /// What parsing a reading allows.
    pub parse: ParseLimits,
    /// The Sparkplug B input, when groups are followed.
    pub sparkplug: Option<SparkplugConfig>,
}

impl Settings {
    /// Checks what the limits cannot: settings that relate to each other, the subscription's
    /// shape, the alarm rules, the broker's login and TLS files.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first bad setting.
    pub fn validate(self) -> Result<IngestConfig, SettingsError> {
        let named = !self.mqtt.client_id.trim().is_empty();
        let message = "must not be empty: ingest's persistent session is bound to it";
        ensure(named, "mqtt.client_id", message)?;
        let mqtt = self.mqtt.connection("scrap-pulse-ingest")?;
        let shard = &self.shard;
        let message = format!("{} is not below shard.count ({})", shard.index, shard.count);
        ensure(shard.index < shard.count, "shard.index", message)?;
        let topic = &shard.subscribe_topic;
        let shard = Shard::new(shard.index, shard.count, topic);
        // A reading's topic ends in machines/{id}/scrap: a filter of another shape would
        // deliver nothing ingest can read.
        let readable = machine_from_readings_topic(&shard.filter) == Some("+");
        let message = format!(
            "{topic:?} must end in machines/+/scrap (a prefix, with {{shard}}, may come first)"
        );
        ensure(readable, "shard.subscribe_topic", message)?;
        let max_payload = self.limits.max_payload_bytes;
        let min_packet = max_payload.saturating_add(PACKET_HEADROOM);
        let fits = self.mqtt.max_packet_bytes >= min_packet;
        let message = format!(
            "must be at least limits.max_payload_bytes + 64 KiB ({min_packet}), so that an \
             oversized payload is rejected as too_large instead of breaking the connection"
        );
        ensure(fits, "mqtt.max_packet_bytes", message)?;
        // The rule's own error names it (`[[alarm]] rule 2 (machine = "A1", ...): ...`).
        let alarms = AlarmRules::new(&self.alarm)
            .map_err(|e| SettingsError::invalid("alarm", e.to_string()))?;
        let clock = PlantClock::new(&self.plant.timezone, "00:00")
            .map_err(|e| SettingsError::invalid("plant.timezone", e.to_string()))?;
        let sparkplug = SparkplugConfig::new(&self.sparkplug)?;
        let parse = ParseLimits {
            max_payload_bytes: max_payload,
            naive_times: (!self.plant.reject_naive_times).then_some(clock),
        };
        Ok(IngestConfig {
            settings: self,
            mqtt,
            alarms: Arc::new(alarms),
            shard,
            parse,
            sparkplug,
        })
    }

    /// How long the window log keeps a reading: the window, and with history one minute and
    /// one history interval more (a key's final goes out up to an interval after the window
    /// closes its minute), so that a restart rebuilds every minute that is not final yet.
    pub fn log_retention(&self) -> Duration {
        let window = self.window.config().window;
        if self.history.enabled {
            let interval = Duration::from_secs(self.history.interval_seconds);
            window + aggregator_core::history::MINUTE + interval
        } else {
            window
        }
    }

    /// The window log's directory; an empty one means none.
    pub fn data_dir(&self) -> Option<&PathBuf> {
        self.data_dir.as_ref().filter(|d| !d.as_os_str().is_empty())
    }
}

impl WindowSettings {
    /// The window store's settings.
    pub fn config(&self) -> WindowConfig {
        WindowConfig {
            window: Duration::from_secs(self.seconds),
            max_future_skew: Duration::from_millis(self.max_future_skew_ms),
            max_keys: self.max_keys,
            key_idle_ttl: Duration::from_secs(self.key_idle_ttl_seconds),
        }
    }
}

impl HistorySettings {
    /// The accumulator's settings for a window of `window`, or `None` when disabled.
    pub fn config(&self, window: Duration) -> Option<HistoryConfig> {
        self.enabled.then(|| HistoryConfig {
            window,
            interval: Duration::from_secs(self.interval_seconds),
        })
    }
}

impl TrendSettings {
    /// The trends' settings.
    pub fn config(&self) -> TrendConfig {
        TrendConfig {
            interval: Duration::from_secs(self.interval_seconds),
            points: self.points,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<IngestConfig, SettingsError> {
        let args = std::iter::once("ingest").chain(args.iter().copied());
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        BINARY.load::<Settings>(args, env)?.validate()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn defaults_are_those_of_the_contract() {
        let config = load(&[], &[]).unwrap();
        assert_eq!(config.mqtt.brokers[0].to_string(), "localhost:1883");
        assert_eq!(config.mqtt.client_id, "scrap-pulse-ingest");
        let s = &config.settings;
        assert_eq!(s.listen, "0.0.0.0:9100".parse().unwrap());
        assert_eq!(s.window.config(), WindowConfig::default());
        assert_eq!((s.publish.interval_ms, s.publish.burst), (50, 5));
        assert_eq!(s.limits.max_payload_bytes, 64 * 1024);
        assert_eq!(s.trend.config(), TrendConfig::default());
        assert!(config.alarms.is_empty() && s.data_dir().is_none());
    }

    #[test]
    fn layers_apply_in_order_env_over_file_and_flags_over_env() {
        let f =
            file("[window]\nseconds = 30\n[publish]\ninterval_ms = 7\n[mqtt]\nhost = \"file\"\n");
        let path = f.path().to_str().unwrap();
        let env = [
            ("INGEST_CONFIG", path),
            ("MQTT_BROKER", "env-host"),
            ("MQTT_PORT", "1999"),
            ("INGEST_PUBLISH_INTERVAL_MS", "50"),
            ("INGEST_WINDOW_MAX_KEYS", "12"),
            ("INGEST_LISTEN", "127.0.0.1:0"),
            ("INGEST_DATA_DIR", "/var/lib/x"),
        ];
        let config = load(
            &["--publish-interval-ms", "0", "--data-dir", "/tmp/flag"],
            &env,
        )
        .unwrap();
        let s = &config.settings;
        assert_eq!(s.window.seconds, 30, "file");
        assert_eq!(
            config.mqtt.brokers[0].to_string(),
            "env-host:1999",
            "env over file"
        );
        assert_eq!((s.window.max_keys, s.listen.port()), (12, 0));
        assert_eq!(s.publish.interval_ms, 0, "flag over env");
        assert_eq!(s.data_dir(), Some(&PathBuf::from("/tmp/flag")));
        let config = load(&[], &[("INGEST_DATA_DIR", "")]).unwrap();
        assert_eq!(config.settings.data_dir(), None);
    }

    #[test]
    fn broker_login_comes_from_env_and_never_shows() {
        let password = file("pw-from-file-7731\n");
        let env = [
            ("INGEST_MQTT_USERNAME", "ingest"),
            (
                "INGEST_MQTT_PASSWORD_FILE",
                password.path().to_str().unwrap(),
            ),
        ];
        let config = load(&[], &env).unwrap();
        let options = config.mqtt.options_at(&config.mqtt.brokers[0]);
        assert_eq!(options.credentials().unwrap().password, "pw-from-file-7731");

        let args = [
            "--mqtt-username",
            "ingest",
            "--mqtt-password",
            "pw-inline-9924",
        ];
        let config = load(&args, &[]).unwrap();
        for shown in [format!("{config:?}"), config.mqtt.security.to_string()] {
            assert!(!shown.contains("pw-inline-9924"), "{shown}");
        }
        let err = load(&[], &[("INGEST_MQTT_TLS", "true")]).unwrap_err();
        assert!(err.to_string().contains("`mqtt.tls_ca_file`"), "{err}");
    }

    #[test]
    fn bad_settings_are_named() {
        for (args, setting) in [
            (&["--window-seconds", "0"][..], "`window.seconds`"),
            (&["--listen", "nowhere"], "`listen`"),
            (
                &["--mqtt-max-packet-bytes", "100000"],
                "`mqtt.max_packet_bytes`",
            ),
            (
                &["--shard-count", "3", "--shard-index", "3"],
                "`shard.index`",
            ),
            (
                &["--shard-subscribe-topic", "readings/#"],
                "`shard.subscribe_topic`",
            ),
            (&["--trend-points", "0"], "`trend.points`"),
        ] {
            let err = load(args, &[]).unwrap_err().to_string();
            assert!(err.contains(setting), "{setting}: {err}");
        }
        let err = load(&[], &[("INGEST_WINDOW_MAX_KEYS", "many")]).unwrap_err();
        assert!(err.to_string().contains("`window.max_keys`"), "{err}");
        let err = load(&[], &[("INGEST_WINDOW_SECOND", "30")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("did you mean INGEST_WINDOW_SECONDS?"),
            "{err}"
        );
    }

    #[test]
    fn alarm_rules_come_from_the_file_and_their_typos_are_named() {
        let rules = file(
            "[trend]\npoints = 30\n\
             [[alarm]]\nmachine = \"*\"\nsum_above = 100\n\
             [[alarm]]\nmachine = \"A1\"\nindex = 2\nsum_above = 30.0\nclear_below = 25.0\n",
        );
        let path = rules.path().to_str().unwrap();
        let config = load(&["--config", path, "--trend-interval-seconds", "5"], &[]).unwrap();
        assert_eq!(config.alarms.len(), 2);
        let a1 = config.alarms.resolve("A1", 2).unwrap().sum.unwrap();
        assert_eq!((a1.raise, a1.clear), (30.0, 25.0));
        assert_eq!(
            config.settings.trend.config().interval,
            Duration::from_secs(5)
        );
        assert_eq!(config.settings.trend.points, 30);

        let bad = file(
            "[[alarm]]\nmachine = \"A1\"\nsum_above = 1\n\
             [[alarm]]\nmachine = \"B1\"\nindex = 2\nsum_above = 30\nclear_below = 35\n",
        );
        let err = load(&["--config", bad.path().to_str().unwrap()], &[]).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("`alarm`") && err.contains("rule 2") && err.contains("\"B1\""),
            "{err}"
        );
        let typo = file("[[alarm]]\nmachine = \"A1\"\nsum_above = 1\nclear_belw = 0.5\n");
        let err = load(&["--config", typo.path().to_str().unwrap()], &[]).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains(&typo.path().display().to_string())
                && err.contains(
                    "unknown setting `alarm[1].clear_belw`; did you mean `alarm[1].clear_below`?"
                ),
            "{err}"
        );
    }

    #[test]
    fn the_log_keeps_readings_a_minute_and_an_interval_longer_while_history_is_on() {
        let on = load(&["--window-seconds", "2"], &[]).unwrap().settings;
        assert_eq!(on.log_retention(), Duration::from_secs(72));
        assert_eq!(
            on.history.config(Duration::from_secs(2)),
            Some(HistoryConfig {
                window: Duration::from_secs(2),
                interval: Duration::from_secs(10),
            })
        );
        let args = ["--window-seconds", "2", "--history-enabled", "false"];
        let off = load(&args, &[]).unwrap().settings;
        assert_eq!(off.log_retention(), Duration::from_secs(2));
        assert_eq!(off.history.config(Duration::from_secs(2)), None);
        let err = load(&["--history-interval-seconds", "0"], &[]).unwrap_err();
        assert!(
            err.to_string().contains("`history.interval_seconds`"),
            "{err}"
        );
    }

    /// The example file is the settings reference: it must say what the code does.
    #[test]
    fn the_example_file_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ingest.example.toml");
        test_support::check_example_file(path, &BINARY.example::<Settings>(), |file| {
            load(&["--config", file], &[])
                .map(drop)
                .map_err(|e| e.to_string())
        });
    }
}
