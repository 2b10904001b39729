//! The simulator's settings, each declared once with its default and limits
//! (`service_kit::settings!`); [`Settings::validate`] parses the workload (machines, indices,
//! values, duration) into the [`SimConfig`] the run takes. The reference of every key is
//! `simulator.example.toml` (`simulator --example-config`).

use std::time::Duration;

use aggregator_core::RejectionReason;
use aggregator_core::topic::validate_topic_level;
use rumqttc::QoS;
use service_kit::{Binary, MqttConfig, MqttSettings, SettingsError};

use crate::invalid;

/// How the binary names itself and its settings.
pub const BINARY: Binary = Binary {
    name: "simulator",
    env_prefix: "SIMULATOR",
    about: "Publishes scrap readings on machines/{id}/scrap like real machines; doubles as the \
            load generator. With a list in --mqtt-host (a,b:1884), machine i publishes through \
            broker i mod n, one connection per broker; a connection whose broker stays down \
            fails over to the next and re-sends what was not acknowledged.",
    env_aliases: &[("MQTT_BROKER", "mqtt.host"), ("MQTT_PORT", "mqtt.port")],
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
        /// The broker. A connection whose broker is gone tries again within 2 s at most, so
        /// that it fails over to the next broker of a list quickly.
        mqtt: MqttSettings = MqttSettings {
            reconnect_max_ms: 2_000,
            ..MqttSettings::default()
        };
    }
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
}

impl Settings {
    /// Parses the workload and checks what the limits cannot.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first bad setting.
    pub fn validate(self) -> Result<SimConfig, SettingsError> {
        let mqtt = self.mqtt.connection("scrap-pulse-simulator")?;
        if let Some(rate) = self.rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
            let message = format!("{rate} is not a positive number of messages per second");
            return Err(SettingsError::invalid("rate", message));
        }
        if self.count == Some(0) {
            let message = "must be at least 1 (leave it unset to run without a limit)";
            return Err(SettingsError::invalid("count", message));
        }
        let invalid = |setting| move |message| SettingsError::invalid(setting, message);
        let duration = self.duration.as_deref().map(parse_duration).transpose();
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(self.qos)];
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
            settings: self,
        })
    }

    /// Time between progress lines.
    pub fn progress_interval(&self) -> Duration {
        Duration::from_secs_f64(self.progress_interval_secs)
    }
}

/// Inclusive range of reading values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueRange {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Draw whole numbers (both bounds were integers).
    pub integers: bool,
}

impl ValueRange {
    /// Parses `MIN..MAX` (also `MIN..=MAX`).
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (a, b) = text
            .split_once("..")
            .ok_or_else(|| format!("{text:?} is not MIN..MAX"))?;
        let b = b.strip_prefix('=').unwrap_or(b);
        let parse = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{s:?} is not a finite number"))
        };
        let (min, max) = (parse(a)?, parse(b)?);
        if min > max {
            return Err(format!("minimum {min} is above maximum {max}"));
        }
        let integers =
            min.fract() == 0.0 && max.fract() == 0.0 && min.abs() < 1e15 && max.abs() < 1e15;
        Ok(Self { min, max, integers })
    }
}

/// Parses `90`, `90s`, `500ms`, `2m`, `1h`, `1.5s`.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 500ms, 2m or 1h"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A list `A1,B1`, or a count `N` giving `M1..MN`.
fn parse_machines(text: &str) -> Result<Vec<String>, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u32>() {
        if n == 0 {
            return Err("a machine count must be at least 1".into());
        }
        return Ok((1..=n).map(|i| format!("M{i}")).collect());
    }
    let machines: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if machines.is_empty() {
        return Err("no machine ids given".into());
    }
    for id in &machines {
        validate_topic_level(id).map_err(|e| format!("machine id {id:?} {e}"))?;
    }
    Ok(machines)
}

/// A list `1,2,5`, a range `A..B` (inclusive) or a count `N` giving `1..N`.
fn parse_indices(text: &str) -> Result<Vec<u32>, String> {
    let text = text.trim();
    let number = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("{s:?} is not a non-negative integer"))
    };
    let indices: Vec<u32> = if let Some((a, b)) = text.split_once("..") {
        let (a, b) = (number(a)?, number(b.strip_prefix('=').unwrap_or(b))?);
        if a > b {
            return Err(format!("range {a}..{b} is empty"));
        }
        if b - a >= 1_000_000 {
            return Err(format!("range {a}..{b} has more than a million indices"));
        }
        (a..=b).collect()
    } else if !text.contains(',') {
        let n = number(text)?;
        if n == 0 || n > 1_000_000 {
            return Err("an index count must be 1 to 1000000".into());
        }
        (1..=n).collect()
    } else {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(number)
            .collect::<Result<_, _>>()?
    };
    if indices.is_empty() {
        return Err("no indices given".into());
    }
    Ok(indices)
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
    fn lists_ranges_and_counts() {
        assert_eq!(parse_indices("0..2").unwrap(), [0, 1, 2]);
        assert_eq!(parse_indices("4").unwrap(), [1, 2, 3, 4]);
        assert_eq!(parse_indices("7,0").unwrap(), [7, 0]);
        assert_eq!(parse_machines(" A1 , B2 ").unwrap(), ["A1", "B2"]);
        let range = ValueRange::parse("0.5..2.5").unwrap();
        assert_eq!((range.min, range.max, range.integers), (0.5, 2.5, false));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
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
