//! The historian's settings, each declared once with its default and limits
//! (`service_kit::settings!`), and the checks that relate two of them; [`Settings::validate`]
//! turns them into the [`HistorianConfig`] the service runs on. The reference of every key is
//! `historian.example.toml` (`historian --example-config`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aggregator_core::plant_time::{PlantClock, PlantTimeError, ShiftCalendar, ShiftRule};

use service_kit::{Binary, MqttConfig, MqttSettings, SettingsError, ensure};

/// How the binary names itself and its settings.
pub const BINARY: Binary = Binary {
    name: "historian",
    env_prefix: "HISTORIAN",
    about: "Subscribes to history/+/+ and stores ingest's minute buckets of every (machine, scrap \
            index), with hourly rollups, in SQLite or PostgreSQL.",
};

/// The client id, and the prefix of a made-up one.
const CLIENT_ID: &str = "scrap-pulse-historian";

service_kit::settings! {
    /// Every setting of the historian.
    pub struct Settings {
        /// Address of the HTTP server for /health and /metrics.
        listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 9102));
        /// How long a stop may take to commit the batch at hand and hand its acknowledgements
        /// to the broker, in ms.
        shutdown_timeout_ms: u64 = 5_000, in 0..=600_000;
        /// The broker. The client id names the historian's persistent session: buckets published
        /// while the historian or its store is down wait at the broker.
        mqtt: MqttSettings = MqttSettings {
            client_id: CLIENT_ID.into(),
            ..MqttSettings::default()
        };
        /// Where the buckets are stored.
        store: StoreSettings = StoreSettings::default();
        /// How long stored buckets are kept.
        retention: RetentionSettings = RetentionSettings::default();
        /// The plant's clock: its zone and when its day starts.
        plant: PlantSettings = PlantSettings::default();
        /// The history API.
        api: ApiSettings = ApiSettings::default();
        /// Shift rules, in the file only, any number of them; none: no shifts. A shift whose
        /// end is not after its start ends on the next day and belongs to the day it starts.
        /// Rules that share a machine must not overlap:
        ///
        /// [[shift]]
        /// name = "Early"           # unique
        /// start = "06:00"          # local time, HH:MM
        /// end = "14:00"
        /// weekdays = ["mon", "tue", "wed", "thu", "fri"]   # optional; default every day
        /// machines = ["A1", "B7"]  # optional; default every machine
        shift: Vec<ShiftRule> = Vec::new();
    }

    /// The plant's clock: its zone and when its day starts.
    pub struct PlantSettings {
        /// The plant's time zone, an IANA name (Europe/Berlin): hours, shifts, days and weeks
        /// are local to it, 23 or 25 hours long days included.
        timezone: String = "UTC".into(), env "PLANT_TIMEZONE";
        /// Local time (HH:MM) at which a plant day, and on Mondays its week, starts.
        day_start: String = "00:00".into(), env "PLANT_DAY_START";
    }

    /// The history API.
    pub struct ApiSettings {
        /// Most rows one answer of /api/history holds (keys x periods); a larger range is
        /// refused with 400.
        max_rows: usize = 100_000, in 100..=10_000_000;
        /// Seconds after its end that a period counts as final: ingest's window length plus 60
        /// (until then a reading for its last minute may still come).
        final_after_secs: u64 = 120, in 60..=86_400;
        /// Seconds between two recomputations of the retained shifts/{machineId}/{scrapIndex}
        /// (each key's running and last shift total; only changed ones are published again);
        /// without [[shift]] rules nothing is published.
        shift_topic_interval_secs: u64 = 30, in 1..=3_600;
    }

    /// Where the buckets are stored.
    pub struct StoreSettings {
        /// The database: `sqlite://historian.db` (a file, created when missing; an absolute
        /// path is `sqlite:///var/lib/historian/historian.db`) or
        /// `postgres://user:password@host:5432/database` (the database must exist; the tables
        /// are created). The schema is created or brought up to date at start.
        url: String = "sqlite://historian.db".into();
        /// Most messages written in one transaction.
        batch_size: usize = 500, in 1..=100_000;
        /// Longest wait, in ms, from a batch's first message to its commit.
        batch_max_ms: u64 = 200, in 1..=60_000;
        /// A batch is also committed once no message has come for this many ms: a broker may
        /// hold back further messages until it has the acknowledgements of those in flight
        /// (Mosquitto's max_inflight_messages, 100 in the shipped config), which come only
        /// after the commit.
        batch_quiet_ms: u64 = 10, in 1..=60_000;
        /// First pause after a failed write or connection, in ms; the pauses double from there.
        retry_min_ms: u64 = 100, in 1..=60_000;
        /// Longest pause between two attempts, in ms.
        retry_max_ms: u64 = 5_000, in 1..=600_000;
    }

    /// How long stored buckets are kept.
    pub struct RetentionSettings {
        /// Days a minute bucket is kept; older minutes are deleted and older messages skipped.
        minute_days: u32 = 35, in 1..=36_500;
        /// Days an hourly rollup is kept; at least minute_days.
        hour_days: u32 = 730, in 1..=36_500;
        /// Minutes between two pruning runs (the first is at start).
        prune_interval_minutes: u64 = 15, in 1..=10_080;
    }
}

/// Which database a `store.url` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl StoreKind {
    /// The kind named by `url`'s scheme, if it is one of ours.
    pub fn of(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }
}

/// The settings checked, with what the checks built.
#[derive(Debug, Clone)]
pub struct HistorianConfig {
    /// Every setting as given.
    pub settings: Settings,
    /// The broker connection in working types.
    pub mqtt: MqttConfig,
    /// The database the store URL names.
    pub store_kind: StoreKind,
    /// The plant's clock and shift rules.
    pub calendar: Arc<ShiftCalendar>,
}

impl Settings {
    /// Checks what the limits cannot: the store URL's scheme, retention and retry order, the
    /// broker's client id, login and TLS files.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first bad setting.
    pub fn validate(self) -> Result<HistorianConfig, SettingsError> {
        let named = !self.mqtt.client_id.trim().is_empty();
        let message = "must not be empty: the historian's persistent session is bound to it";
        ensure(named, "mqtt.client_id", message)?;
        let mqtt = self.mqtt.connection(CLIENT_ID)?;
        let store_kind = StoreKind::of(&self.store.url).ok_or_else(|| {
            SettingsError::invalid(
                "store.url",
                format!(
                    "{:?} is neither sqlite://... nor postgres://...",
                    redact(&self.store.url)
                ),
            )
        })?;
        let store = &self.store;
        let ordered = store.retry_max_ms >= store.retry_min_ms;
        ensure(
            ordered,
            "store.retry_max_ms",
            "must not be below store.retry_min_ms",
        )?;
        let retention = &self.retention;
        let ordered = retention.hour_days >= retention.minute_days;
        let message = "must not be below retention.minute_days: an hour is rolled up from minutes";
        ensure(ordered, "retention.hour_days", message)?;
        let calendar = Arc::new(self.calendar()?);
        Ok(HistorianConfig {
            settings: self,
            mqtt,
            store_kind,
            calendar,
        })
    }
}

impl HistorianConfig {
    /// The shift rules as the store keeps their text: the same for the same zone, day start
    /// and rules, in order.
    pub fn shift_rules(&self) -> crate::store::ShiftRules {
        let plant = &self.settings.plant;
        let rules = (&plant.timezone, &plant.day_start, &self.settings.shift);
        let text = serde_json::to_string(&rules).unwrap_or_default();
        crate::store::ShiftRules::new(Arc::clone(&self.calendar), text)
    }
}

impl Settings {
    /// The plant's clock with its shift rules, each error naming its setting.
    fn calendar(&self) -> Result<ShiftCalendar, SettingsError> {
        let plant = &self.plant;
        let clock = PlantClock::new(&plant.timezone, &plant.day_start).map_err(|e| {
            let key = match e {
                PlantTimeError::UnknownZone(_) => "plant.timezone",
                _ => "plant.day_start",
            };
            SettingsError::invalid(key, e.to_string())
        })?;
        ShiftCalendar::new(clock, &self.shift)
            .map_err(|e| SettingsError::invalid("shift", e.to_string()))
    }
}

impl StoreSettings {
    /// The longest a batch waits for more messages.
    pub fn batch_max(&self) -> Duration {
        Duration::from_millis(self.batch_max_ms)
    }

    /// How long a batch waits for one more message.
    pub fn batch_quiet(&self) -> Duration {
        Duration::from_millis(self.batch_quiet_ms)
    }

    /// The pacing of write and connection retries.
    pub fn backoff(&self) -> service_kit::Backoff {
        let ms = Duration::from_millis;
        service_kit::Backoff::new(ms(self.retry_min_ms), ms(self.retry_max_ms))
    }
}

/// `url` without its password (`postgres://user:***@host/db`), for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((login, host)) => match login.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<HistorianConfig, SettingsError> {
        let args = std::iter::once("historian").chain(args.iter().copied());
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        BINARY.load::<Settings>(args, env)?.validate()
    }

    #[test]
    fn defaults_are_those_of_the_contract() {
        let config = load(&[], &[]).unwrap();
        assert_eq!(config.mqtt.client_id, "scrap-pulse-historian");
        let s = &config.settings;
        assert_eq!(s.listen, "0.0.0.0:9102".parse().unwrap());
        assert_eq!(s.store.url, "sqlite://historian.db");
        assert_eq!(config.store_kind, StoreKind::Sqlite);
        assert_eq!((s.store.batch_size, s.store.batch_max_ms), (500, 200));
        assert_eq!((s.retention.minute_days, s.retention.hour_days), (35, 730));
    }

    #[test]
    fn env_and_flags_set_the_store() {
        let env = [("HISTORIAN_STORE_URL", "postgres://h:pw@db:5432/history")];
        let config = load(&["--store-batch-size", "10"], &env).unwrap();
        assert_eq!(config.store_kind, StoreKind::Postgres);
        assert_eq!(config.settings.store.batch_size, 10);
        let config = load(&["--store-url", "postgresql://db/x"], &env).unwrap();
        assert_eq!(config.store_kind, StoreKind::Postgres);
    }

    #[test]
    fn bad_settings_are_named() {
        for (args, setting) in [
            (&["--store-url", "mysql://x"][..], "`store.url`"),
            (&["--store-batch-size", "0"], "`store.batch_size`"),
            (
                &[
                    "--retention-minute-days",
                    "40",
                    "--retention-hour-days",
                    "30",
                ],
                "`retention.hour_days`",
            ),
            (&["--mqtt-client-id", " "], "`mqtt.client_id`"),
        ] {
            let err = load(args, &[]).unwrap_err().to_string();
            assert!(err.contains(setting), "{setting}: {err}");
        }
        let err = load(&["--store-url", "mysql://u:secret@x/db"], &[]).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn a_password_in_a_url_is_never_shown() {
        assert_eq!(
            redact("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://a.db"), "sqlite://a.db");
    }

    /// The example file is the settings reference: it must say what the code does.
    #[test]
    fn the_example_file_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/historian.example.toml");
        test_support::check_example_file(path, &BINARY.example::<Settings>(), |file| {
            load(&["--config", file], &[])
                .map(drop)
                .map_err(|e| e.to_string())
        });
    }
}
