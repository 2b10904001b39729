//! The simulator's settings, each declared once with its default and limits
//! (`service_kit::settings!`); [`Settings::validate`] parses the workload they describe
//! ([`crate::workload`]) into the [`SimConfig`] the run takes. The reference of every key is
//! `simulator.example.toml` (`simulator --example-config`).

use std::time::Duration;

use aggregator_core::RejectionReason;
use aggregator_core::topic::validate_topic_level;
use rumqttc::QoS;
use service_kit::{Binary, MqttConfig, MqttSettings, SettingsError, ensure};

use crate::invalid;
use crate::workload::{ValueRange, parse_duration, parse_indices, parse_machines};

/// How the binary names itself and its settings.
pub const BINARY: Binary = Binary {
    name: "simulator",
    env_prefix: "SIMULATOR",
    about: "Publishes scrap readings on machines/{id}/scrap like real machines; doubles as the \
            load generator. With a list in --mqtt-host (a,b:1884), machine i publishes through \
            broker i mod n, one connection per broker; a connection whose broker stays down \
            fails over to the next and re-sends what was not acknowledged.",
};

service_kit::settings! {
    /// Every setting of the simulator.
    pub struct Settings {
        /// Messages per second, all machines together (e.g. 200000 for load tests); unset:
        /// every machine sends one message every 0.5 to 2 s, like the original.
        rate: Option<f64> = None;
        /// Stop after this many messages (valid and invalid together); unset: no limit.
        count: Option<u64> = None;
        /// Stop after this long: 90, 90s, 500ms, 2m, 1h; unset: no limit.
        duration: Option<String> = None;
        /// Machine ids as a list (A1,B1,C1) or a count (100 gives M1..M100).
        machines: String = "A1,B1,C1".into();
        /// Scrap indices as a list (1,2,5), a range (0..9) or a count (3 gives 1..3).
        indices: String = "1..3".into();
        /// Value range MIN..MAX (inclusive): integers when both bounds are integers, else
        /// values with two decimals.
        values: String = "1..5".into();
        /// MQTT QoS of the readings.
        qos: u8 = 0, in 0..=2;
        /// Random seed: the same seed gives the same messages (apart from their send times);
        /// unset: a random one, logged.
        seed: Option<u64> = None;
        /// Share of malformed payloads; they cycle through the rejection reasons.
        invalid_ratio: f64 = 0.0, in 0.0..=1.0;
        /// Rejection reasons the malformed payloads cycle through (e.g. late,future); empty: all.
        invalid_kinds: String = String::new();
        /// Print the run summary as one JSON line on stdout at the end: sent, acknowledged,
        /// lost, invalid per reason, and the sum and count per key of the valid readings sent.
        print_expected: bool = false;
        /// Seconds between progress lines.
        progress_interval_secs: f64 = 1.0, in 0.001..=86_400.0;
        /// Give every valid reading a unique id (<seed>-<n>), so that ingest drops a resent copy.
        ids: bool = true;
        /// How long to keep trying to reach the broker, at start and after a connection loss,
        /// in seconds.
        connect_timeout_secs: u64 = 30, in 1..=86_400;
        /// What the readings look like: `json` (one JSON reading per message on
        /// machines/{id}/scrap) or `sparkplug` (Sparkplug B edge nodes, one per connection,
        /// named sim-node-{n}, whose devices are the machines; metrics scrap/{index}, one
        /// reading per DDATA). Sparkplug takes no malformed payloads (`invalid_ratio` 0) and
        /// no reading ids; its births and deaths go at QoS 0, its will at QoS 1, `qos` is the
        /// readings' (Sparkplug says 0).
        protocol: String = "json".into();
        /// The Sparkplug group id of the edge nodes (with `protocol = "sparkplug"`).
        sparkplug_group: String = "scrap-pulse".into();
        /// The broker. A connection whose broker is gone tries again within 2 s at most, so
        /// that it fails over to the next broker of a list quickly.
        mqtt: MqttSettings = MqttSettings {
            reconnect_max_ms: 2_000,
            ..MqttSettings::default()
        };
    }
}

/// How the readings are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// One JSON reading per message on `machines/{id}/scrap`.
    Json,
    /// Sparkplug B edge nodes in this group, the machines their devices.
    Sparkplug {
        /// The group id, a legal topic level.
        group: String,
    },
}

/// The settings checked, with the workload parsed.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Every setting as given.
    pub settings: Settings,
    /// The broker connection in working types; machines are spread over its brokers.
    pub mqtt: MqttConfig,
    /// The seed actually used (chosen at random when not set).
    pub seed: u64,
    /// How long to keep trying to reach the broker (shortened to a short run's duration).
    pub connect_timeout: Duration,
    /// Run time; `None`: no limit.
    pub duration: Option<Duration>,
    /// Machine ids, each a legal topic level.
    pub machines: Vec<String>,
    /// Scrap indices.
    pub indices: Vec<u32>,
    /// Value range.
    pub values: ValueRange,
    /// QoS of the readings.
    pub qos: QoS,
    /// Rejection reasons cycled through by malformed payloads, never empty.
    pub invalid_kinds: Vec<RejectionReason>,
    /// JSON readings or Sparkplug B.
    pub protocol: Protocol,
}

impl Settings {
    /// Parses the workload and checks what the limits cannot.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first bad setting.
    pub fn validate(self) -> Result<SimConfig, SettingsError> {
        let mqtt = self.mqtt.connection("scrap-pulse-simulator")?;
        if let Some(rate) = self.rate {
            let message = format!("{rate} is not a positive number of messages per second");
            ensure(rate.is_finite() && rate > 0.0, "rate", message)?;
        }
        let message = "must be at least 1 (leave it unset to run without a limit)";
        ensure(self.count != Some(0), "count", message)?;
        let invalid = |setting| move |message| SettingsError::invalid(setting, message);
        let duration = self.duration.as_deref().map(parse_duration).transpose();
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(self.qos)];
        let protocol = self.protocol()?;
        Ok(SimConfig {
            mqtt,
            seed: self.seed.unwrap_or_else(rand::random),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            duration: duration.map_err(invalid("duration"))?,
            machines: parse_machines(&self.machines).map_err(invalid("machines"))?,
            indices: parse_indices(&self.indices).map_err(invalid("indices"))?,
            values: ValueRange::parse(&self.values).map_err(invalid("values"))?,
            qos,
            invalid_kinds: invalid::parse_reasons(&self.invalid_kinds)
                .map_err(invalid("invalid_kinds"))?,
            protocol,
            settings: self,
        })
    }

    /// The protocol the settings name, with what it cannot do refused.
    fn protocol(&self) -> Result<Protocol, SettingsError> {
        match self.protocol.as_str() {
            "json" => Ok(Protocol::Json),
            "sparkplug" => {
                let group = &self.sparkplug_group;
                validate_topic_level(group).map_err(|e| {
                    SettingsError::invalid("sparkplug_group", format!("{group:?} {e}"))
                })?;
                // A Sparkplug metric is a typed number: none of the malformed JSON payloads
                // has a Sparkplug counterpart that ingest rejects for the same reason.
                let message =
                    "must be 0 with protocol = \"sparkplug\" (malformed payloads are JSON)";
                ensure(self.invalid_ratio == 0.0, "invalid_ratio", message)?;
                Ok(Protocol::Sparkplug {
                    group: group.clone(),
                })
            }
            other => Err(SettingsError::invalid(
                "protocol",
                format!("{other:?} is neither \"json\" nor \"sparkplug\""),
            )),
        }
    }
}

/// For the unit tests of the modules that take a [`SimConfig`].
#[cfg(test)]
impl SimConfig {
    /// The built-in settings pointed at `host:port`, for tests and embedding.
    ///
    /// # Panics
    /// Never: the built-in defaults are valid.
    pub(crate) fn for_broker(host: &str, port: u16) -> Self {
        let mut settings = Settings::default();
        settings.mqtt.host = host.to_owned();
        settings.mqtt.port = port;
        // expect: the built-in defaults with a broker address are valid.
        settings.validate().expect("built-in defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<SimConfig, SettingsError> {
        let args = std::iter::once("simulator").chain(args.iter().copied());
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        BINARY.load::<Settings>(args, env)?.validate()
    }

    fn addr(host: &str, port: u16) -> service_kit::BrokerAddr {
        service_kit::BrokerAddr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn defaults_are_the_original_simulator() {
        let config = load(&[], &[]).unwrap();
        assert_eq!(config.mqtt.brokers, [addr("localhost", 1883)]);
        assert_eq!(config.machines, ["A1", "B1", "C1"]);
        assert_eq!(config.indices, [1, 2, 3]);
        assert_eq!((config.values.min, config.values.max), (1.0, 5.0));
        assert_eq!(config.qos, QoS::AtMostOnce);
        assert_eq!((config.settings.rate, config.settings.count), (None, None));
        assert!(config.settings.ids && config.duration.is_none());
        assert!(config.mqtt.client_id.starts_with("scrap-pulse-simulator-"));
        assert_eq!(config.invalid_kinds.len(), RejectionReason::ALL.len());
    }

    #[test]
    fn flags_env_and_file_layer_in_order() {
        let file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
        std::fs::write(
            file.path(),
            "rate = 50.0\nmachines = \"4\"\n[mqtt]\nport = 1234\nhost = \"file-host\"\n",
        )
        .unwrap();
        let env = [
            ("SIMULATOR_CONFIG", file.path().to_str().unwrap()),
            ("MQTT_BROKER", "env-host"),
            ("SIMULATOR_MQTT_CLIENT_ID", "sim-x"),
        ];
        let config = load(&["--rate", "250", "--ids", "false"], &env).unwrap();
        assert_eq!(config.settings.rate, Some(250.0), "flag over file");
        assert_eq!(config.machines, ["M1", "M2", "M3", "M4"]);
        assert_eq!(
            config.mqtt.brokers,
            [addr("env-host", 1234)],
            "env over file"
        );
        assert_eq!(config.mqtt.client_id, "sim-x");
        assert!(!config.settings.ids);
        let config = load(&["--mqtt-host", "f1,f2:9"], &[]).unwrap();
        assert_eq!(config.mqtt.brokers, [addr("f1", 1883), addr("f2", 9)]);
    }

    #[test]
    fn bad_settings_are_named() {
        for (flag, value, setting) in [
            ("--qos", "3", "qos"),
            ("--rate", "-1", "rate"),
            ("--count", "0", "count"),
            ("--machines", "A/1", "machines"),
            ("--values", "5..1", "values"),
            ("--invalid-ratio", "1.5", "invalid_ratio"),
            ("--invalid-kinds", "nonsense", "invalid_kinds"),
            ("--duration", "10 parsecs", "duration"),
            ("--mqtt-port", "not-a-port", "mqtt.port"),
            ("--protocol", "sparkplugb", "protocol"),
        ] {
            let err = load(&[flag, value], &[]).unwrap_err().to_string();
            assert!(err.contains(&format!("`{setting}`")), "{setting}: {err}");
        }
        let err = load(&[], &[("SIMULATOR_RATES", "5")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean SIMULATOR_RATE?"), "{err}");
    }

    #[test]
    fn sparkplug_takes_a_group_and_refuses_malformed_payloads() {
        let config = load(&["--protocol", "sparkplug"], &[]).unwrap();
        let group = "scrap-pulse".to_owned();
        assert_eq!(config.protocol, Protocol::Sparkplug { group });
        assert_eq!(load(&[], &[]).unwrap().protocol, Protocol::Json);
        for (args, setting) in [
            (&["--sparkplug-group", "a/b"][..], "sparkplug_group"),
            (&["--invalid-ratio", "0.1"][..], "invalid_ratio"),
        ] {
            let args: Vec<&str> = ["--protocol", "sparkplug"]
                .iter()
                .chain(args)
                .copied()
                .collect();
            let err = load(&args, &[]).unwrap_err().to_string();
            assert!(err.contains(&format!("`{setting}`")), "{setting}: {err}");
        }
    }

    /// The example file is the settings reference: it must say what the code does.
    #[test]
    fn the_example_file_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/simulator.example.toml");
        test_support::check_example_file(path, &BINARY.example::<Settings>(), |file| {
            load(&["--config", file], &[])
                .map(drop)
                .map_err(|e| e.to_string())
        });
    }
}
