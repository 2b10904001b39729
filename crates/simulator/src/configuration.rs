//! Settings of the simulator: built-in defaults < TOML file (`--config`) < environment <
//! flags, layered by [`service_kit::Layers`] and validated once into [`SimConfig`].
//!
//! File: the broker under `[mqtt]` (the block ingest and gateway share, plus
//! `connect_timeout_secs`), the rest as top-level keys named like the flags. Environment:
//! `MQTT_BROKER` and `MQTT_PORT` (the original service's names), and `SIMULATOR_<KEY>` for
//! every key (`SIMULATOR_RATE=1000`, `SIMULATOR_MQTT_CLIENT_ID`; the nested form
//! `SIMULATOR_MQTT__CLIENT_ID` works too).

use std::collections::HashMap;
use std::time::Duration;

use aggregator_core::RejectionReason;
use aggregator_core::topic::validate_topic_level;
use clap::Parser;
use rumqttc::QoS;
use serde::{Deserialize, Serialize};
use service_kit::{ClientId, CommonFlags, Flag, FlagValue, Layers, SettingsError};

use crate::invalid;

/// Environment names besides `SIMULATOR_<KEY>`; a later one wins.
pub const ENV_ALIASES: &[(&str, &str)] =
    &[("MQTT_BROKER", "mqtt.host"), ("MQTT_PORT", "mqtt.port")];

const LAYERS: Layers<'static> = Layers {
    env_prefix: "SIMULATOR",
    file_aliases: &[],
    env_aliases: ENV_ALIASES,
};

/// Command-line flags; each one overrides the file and the environment. Numbers are signed so
/// that a negative value (`--rate -5`) reaches its setting's check.
#[derive(Debug, Default, Parser)]
#[command(
    name = "simulator",
    version,
    allow_negative_numbers = true,
    about = "Publishes scrap readings on machines/{id}/scrap like real machines; doubles as the load generator.",
    after_help = "Environment: MQTT_BROKER, MQTT_PORT, SIMULATOR_<SETTING> (e.g. SIMULATOR_RATE, SIMULATOR_MACHINES),\n\
                  RUST_LOG, LOG_FORMAT=json. Precedence: defaults < --config file < environment < flags.\n\
                  Without --rate every machine sends one reading every 0.5 to 2 s, like the original.\n\
                  With TLS, QoS 0 goes through rumqttc instead of the raw writer.\n\
                  With a list in --mqtt-host (a,b:1884), machine i of --machines publishes through broker i mod n,\n\
                  one connection per broker; a connection whose broker stays down fails over to the next and\n\
                  re-sends what was not acknowledged. The summary then counts per broker too."
)]
pub struct Cli {
    /// `--config` (keys as the flags with `_`, broker under `[mqtt]`), broker address, client
    /// id, keep-alive, login and TLS.
    #[command(flatten)]
    pub common: CommonFlags,
    /// Messages per second, all machines together (e.g. 200000 for load tests).
    /// Without it, every machine sends one message every 0.5 to 2 s at random.
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,
    /// Stop after this many messages (valid and invalid together).
    #[arg(long, value_name = "N")]
    pub count: Option<i64>,
    /// Stop after this long: `90`, `90s`, `500ms`, `2m`, `1h`.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Machine ids as a list (`A1,B1,C1`) or a count (`100` gives M1..M100).
    #[arg(long, value_name = "LIST|N")]
    pub machines: Option<String>,
    /// Scrap indices as a list (`1,2,5`), a range (`0..9`) or a count (`3` gives 1..3).
    #[arg(long, value_name = "LIST|A..B|N")]
    pub indices: Option<String>,
    /// Value range `MIN..MAX` (inclusive); integers when both bounds are integers, else
    /// values with two decimals.
    #[arg(long, value_name = "MIN..MAX")]
    pub values: Option<String>,
    /// MQTT QoS of the readings: 0, 1 or 2.
    #[arg(long, value_name = "0|1|2")]
    pub qos: Option<i64>,
    /// Random seed: the same seed gives the same messages (apart from the time values,
    /// which carry the send time). Without it a random seed is chosen and logged.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Share of malformed payloads, 0 to 1; they cycle through every rejection reason.
    #[arg(long, value_name = "0..1")]
    pub invalid_ratio: Option<f64>,
    /// Rejection reasons the malformed payloads cycle through [default: all], e.g. `late,future`.
    #[arg(long, value_name = "LIST")]
    pub invalid_kinds: Option<String>,
    /// Print the run summary as one JSON line on stdout at the end: sent, acknowledged, lost,
    /// invalid per reason, and `keys`: [{maschinenId, scrapIndex, sum, count}] of the valid
    /// readings sent (totals over the run; fresh `too_many_keys` ids not included).
    #[arg(long)]
    pub print_expected: bool,
    /// Send readings without the `id` field (by default each valid reading carries a unique
    /// id, `<seed>-<n>`, so that ingest drops a resent copy).
    #[arg(long)]
    pub no_ids: bool,
}

impl Cli {
    /// Every flag as an override of its key (`None`: not given).
    fn overrides(&self) -> Vec<Flag<'static>> {
        let text = |v: &Option<String>| v.clone().map(FlagValue::from);
        let mut flags = self.common.overrides();
        flags.extend([
            ("rate", self.rate.map(FlagValue::from)),
            ("count", self.count.map(FlagValue::from)),
            ("duration", text(&self.duration)),
            ("machines", text(&self.machines)),
            ("indices", text(&self.indices)),
            ("values", text(&self.values)),
            ("qos", self.qos.map(FlagValue::from)),
            ("seed", self.seed.map(FlagValue::from)),
            ("invalid_ratio", self.invalid_ratio.map(FlagValue::from)),
            ("invalid_kinds", text(&self.invalid_kinds)),
            (
                "print_expected",
                self.print_expected.then_some(FlagValue::from(true)),
            ),
            ("ids", self.no_ids.then_some(FlagValue::from(false))),
        ]);
        flags
    }
}

service_kit::mqtt_block! {
    /// Broker connection settings (`[mqtt]` in the file): the shared block plus how long to
    /// keep trying.
    pub struct MqttSettings {
        /// How long to keep trying to reach the broker at start and after a connection loss,
        /// in seconds.
        pub connect_timeout_secs: u64 = 30,
    }
}

/// Raw settings as layered from all sources, before validation; `Default` is the built-in
/// layer, the original simulator's behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Broker connection.
    pub mqtt: MqttSettings,
    /// Messages per second overall; absent means the original per-machine timing.
    pub rate: Option<f64>,
    /// Total messages to send; absent means no limit.
    pub count: Option<u64>,
    /// Run time limit (`90s`, `2m`, ...); absent means no limit.
    pub duration: Option<String>,
    /// Machine list or count.
    pub machines: String,
    /// Index list, range or count.
    pub indices: String,
    /// Value range `MIN..MAX`.
    pub values: String,
    /// QoS 0, 1 or 2.
    pub qos: u8,
    /// Random seed; absent means random.
    pub seed: Option<u64>,
    /// Share of malformed payloads.
    pub invalid_ratio: f64,
    /// Comma-separated rejection reasons to cycle through; empty means all.
    pub invalid_kinds: String,
    /// Print expected sums at the end.
    pub print_expected: bool,
    /// Seconds between progress lines.
    pub progress_interval_secs: f64,
    /// Give every valid reading a unique `id`.
    pub ids: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mqtt: MqttSettings::default(),
            rate: None,
            count: None,
            duration: None,
            machines: "A1,B1,C1".into(),
            indices: "1..3".into(),
            values: "1..5".into(),
            qos: 0,
            seed: None,
            invalid_ratio: 0.0,
            invalid_kinds: String::new(),
            print_expected: false,
            progress_interval_secs: 1.0,
            ids: true,
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
        LAYERS.load(
            &Self::default(),
            cli.common.config.as_deref(),
            &|name| env.get(name).cloned(),
            cli.overrides(),
        )
    }

    /// Checks every setting once and turns it into its working type.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<SimConfig, SettingsError> {
        let mqtt = self
            .mqtt
            .shared()
            .validate(ClientId::Generated("scrap-pulse-simulator"))?;
        let rate = match self.rate {
            None => None,
            Some(r) if r.is_finite() && r > 0.0 => Some(r),
            Some(r) => {
                return Err(SettingsError::invalid(
                    "rate",
                    format!("{r} is not a positive number of messages per second"),
                ));
            }
        };
        if self.count == Some(0) {
            return Err(SettingsError::invalid(
                "count",
                "must be at least 1 (omit it to run without a limit)",
            ));
        }
        let duration = self
            .duration
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|m| SettingsError::invalid("duration", m))?;
        let machines =
            parse_machines(&self.machines).map_err(|m| SettingsError::invalid("machines", m))?;
        let indices =
            parse_indices(&self.indices).map_err(|m| SettingsError::invalid("indices", m))?;
        let values =
            ValueRange::parse(&self.values).map_err(|m| SettingsError::invalid("values", m))?;
        let qos = match self.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            other => {
                return Err(SettingsError::invalid(
                    "qos",
                    format!("{other} is not 0, 1 or 2"),
                ));
            }
        };
        if !(0.0..=1.0).contains(&self.invalid_ratio) {
            return Err(SettingsError::invalid(
                "invalid_ratio",
                format!("{} is not between 0 and 1", self.invalid_ratio),
            ));
        }
        let invalid_kinds = invalid::parse_reasons(&self.invalid_kinds)
            .map_err(|m| SettingsError::invalid("invalid_kinds", m))?;
        if !(self.progress_interval_secs.is_finite() && self.progress_interval_secs > 0.0) {
            return Err(SettingsError::invalid(
                "progress_interval_secs",
                "must be a positive number of seconds",
            ));
        }
        Ok(SimConfig {
            host: mqtt.host,
            port: mqtt.port,
            brokers: mqtt.brokers,
            security: mqtt.security,
            client_id: mqtt.client_id,
            keep_alive: mqtt.keep_alive,
            connect_timeout: Duration::from_secs(self.mqtt.connect_timeout_secs),
            rate,
            count: self.count,
            duration,
            machines,
            indices,
            values,
            qos,
            seed: self.seed.unwrap_or_else(rand::random),
            invalid_ratio: self.invalid_ratio,
            invalid_kinds,
            print_expected: self.print_expected,
            progress_interval: Duration::from_secs_f64(self.progress_interval_secs),
            ids: self.ids,
        })
    }
}

/// Validated settings in their working types.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Every broker of `mqtt.host`, in order; the first is `host:port`. Machines are spread
    /// over them, and each connection fails over along this list.
    pub brokers: Vec<service_kit::BrokerAddr>,
    /// Broker login and TLS (`Display` for logs; never shows the password).
    pub security: service_kit::MqttSecurity,
    /// MQTT client id.
    pub client_id: String,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// How long to keep trying to (re)connect before giving up.
    pub connect_timeout: Duration,
    /// Messages per second overall; `None`: every machine every 0.5 to 2 s.
    pub rate: Option<f64>,
    /// Total messages; `None`: no limit.
    pub count: Option<u64>,
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
    /// Seed actually used (chosen at random when not configured).
    pub seed: u64,
    /// Share of malformed payloads.
    pub invalid_ratio: f64,
    /// Rejection reasons cycled through by malformed payloads, never empty.
    pub invalid_kinds: Vec<RejectionReason>,
    /// Print expected sums at the end.
    pub print_expected: bool,
    /// Time between progress lines.
    pub progress_interval: Duration,
    /// Give every valid reading a unique `id` (`<seed>-<n>`).
    pub ids: bool,
}

impl SimConfig {
    /// The defaults with `host:port`, for tests and embedding.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(cli: &Cli, env: &[(&str, &str)]) -> Result<SimConfig, SettingsError> {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load_from(cli, &env)?.validate()
    }

    #[test]
    fn defaults_are_the_original_simulator() {
        let config = load(&Cli::default(), &[]).unwrap();
        assert_eq!(config.machines, ["A1", "B1", "C1"]);
        assert_eq!(config.indices, [1, 2, 3]);
        assert_eq!(
            config.values,
            ValueRange {
                min: 1.0,
                max: 5.0,
                integers: true
            }
        );
        assert_eq!((config.host.as_str(), config.port), ("localhost", 1883));
        assert_eq!(config.rate, None);
        assert_eq!(config.qos, QoS::AtMostOnce);
        assert_eq!(config.invalid_kinds.len(), 8);
    }

    #[test]
    fn ids_are_on_by_default_and_off_by_flag_env_or_file() {
        assert!(load(&Cli::default(), &[]).unwrap().ids);
        let no_ids = Cli::try_parse_from(["simulator", "--no-ids"]).unwrap();
        assert!(!load(&no_ids, &[]).unwrap().ids);
        assert!(
            !load(&Cli::default(), &[("SIMULATOR_IDS", "false")])
                .unwrap()
                .ids
        );
    }

    #[test]
    fn a_broker_list_is_taken_from_flag_env_and_file() {
        let addr = |host: &str, port| service_kit::BrokerAddr {
            host: host.into(),
            port,
        };
        let env = load(
            &Cli::default(),
            &[("MQTT_BROKER", "a,b:1884"), ("MQTT_PORT", "7")],
        )
        .unwrap();
        assert_eq!(env.brokers, [addr("a", 7), addr("b", 1884)]);
        assert_eq!((env.host.as_str(), env.port), ("a", 7));
        let flag = Cli::try_parse_from(["simulator", "--mqtt-host", "x:1,y"]).unwrap();
        assert_eq!(
            load(&flag, &[]).unwrap().brokers,
            [addr("x", 1), addr("y", 1883)]
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "[mqtt]\nhost = \"f1, f2:9\"\n").unwrap();
        let cli = Cli {
            common: CommonFlags {
                config: Some(file.path().to_owned()),
                ..CommonFlags::default()
            },
            ..Cli::default()
        };
        assert_eq!(
            load(&cli, &[]).unwrap().brokers,
            [addr("f1", 1883), addr("f2", 9)]
        );
        let one = load(&Cli::default(), &[("MQTT_BROKER", "a:1884")]).unwrap();
        assert_eq!((one.host.as_str(), one.port), ("a", 1884));
        assert_eq!(one.brokers, [addr("a", 1884)]);
        let err = load(&Cli::default(), &[("MQTT_BROKER", "a,,b")]).unwrap_err();
        assert!(err.to_string().contains("`mqtt.host`"), "{err}");
    }

    #[test]
    fn env_overrides_defaults_and_flags_override_env() {
        let env = [("MQTT_BROKER", "broker.local"), ("MQTT_PORT", "1999")];
        let config = load(&Cli::default(), &env).unwrap();
        assert_eq!((config.host.as_str(), config.port), ("broker.local", 1999));
        let cli = Cli {
            common: CommonFlags {
                mqtt_port: Some(2000),
                ..CommonFlags::default()
            },
            ..Cli::default()
        };
        let config = load(&cli, &env).unwrap();
        assert_eq!((config.host.as_str(), config.port), ("broker.local", 2000));
    }

    #[test]
    fn file_is_between_defaults_and_env() {
        let dir = std::env::temp_dir().join(format!("sim-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sim.toml");
        std::fs::write(
            &path,
            "rate = 50.0\nmachines = \"4\"\n[mqtt]\nport = 1234\nhost = \"file-host\"\n",
        )
        .unwrap();
        let cli = Cli {
            common: CommonFlags {
                config: Some(path),
                ..CommonFlags::default()
            },
            ..Cli::default()
        };
        let config = load(&cli, &[("MQTT_BROKER", "env-host")]).unwrap();
        assert_eq!(config.rate, Some(50.0));
        assert_eq!(config.machines, ["M1", "M2", "M3", "M4"]);
        assert_eq!((config.host.as_str(), config.port), ("env-host", 1234));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            (
                Cli {
                    qos: Some(3),
                    ..Cli::default()
                },
                "qos",
            ),
            (
                Cli {
                    rate: Some(-1.0),
                    ..Cli::default()
                },
                "rate",
            ),
            (
                Cli {
                    machines: Some("A/1".into()),
                    ..Cli::default()
                },
                "machines",
            ),
            (
                Cli {
                    values: Some("5..1".into()),
                    ..Cli::default()
                },
                "values",
            ),
            (
                Cli {
                    invalid_ratio: Some(1.5),
                    ..Cli::default()
                },
                "invalid_ratio",
            ),
            (
                Cli {
                    invalid_kinds: Some("nonsense".into()),
                    ..Cli::default()
                },
                "invalid_kinds",
            ),
            (
                Cli {
                    duration: Some("10 parsecs".into()),
                    ..Cli::default()
                },
                "duration",
            ),
        ];
        for (cli, setting) in cases {
            let err = load(&cli, &[]).unwrap_err().to_string();
            assert!(err.contains(&format!("`{setting}`")), "{setting}: {err}");
        }
        let config = load(
            &Cli::default(),
            &[
                ("SIMULATOR_RATE", "250"),
                ("SIMULATOR_MQTT_CLIENT_ID", "sim-x"),
            ],
        )
        .unwrap();
        assert_eq!(
            (config.rate, config.client_id.as_str()),
            (Some(250.0), "sim-x")
        );
        let err = load(&Cli::default(), &[("MQTT_PORT", "not-a-port")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn lists_ranges_and_counts() {
        assert_eq!(parse_indices("0..2").unwrap(), [0, 1, 2]);
        assert_eq!(parse_indices("4").unwrap(), [1, 2, 3, 4]);
        assert_eq!(parse_indices("7,0").unwrap(), [7, 0]);
        assert_eq!(parse_machines(" A1 , B2 ").unwrap(), ["A1", "B2"]);
        assert_eq!(
            ValueRange::parse("0.5..2.5").unwrap(),
            ValueRange {
                min: 0.5,
                max: 2.5,
                integers: false
            }
        );
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
    }
}
