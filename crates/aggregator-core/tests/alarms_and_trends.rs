//! The alarm and trend pieces driven the way ingest drives them: readings into the window
//! store, every changed key (expiry included) evaluated against its resolved rule, trends
//! sampled on the tick grid, and a restart that replays the window and reads back the
//! retained alarm and trend without raising again or leaving a seam.

use std::collections::HashMap;
use std::time::Duration;

use aggregator_core::alarm::{AlarmMessage, AlarmRule, AlarmRules, AlarmState, KeyAlarm};
use aggregator_core::trend::{Trend, TrendConfig, TrendMessage};
use aggregator_core::{KeyId, Reading, Timestamp, WindowConfig, WindowStore};

const SEC: i64 = 1_000_000_000;
const BASE: i64 = 1_767_268_800 * SEC;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix_nanos(BASE + secs * SEC)
}

fn rules() -> AlarmRules {
    let toml_like = serde_json::json!([
        {"machine": "*", "sum_above": 100.0},
        {"machine": "A1", "sum_above": 10.0, "clear_below": 5.0},
        {"machine": "A1", "index": 2, "avg_above": 3.0},
    ]);
    let rules: Vec<AlarmRule> = serde_json::from_value(toml_like).unwrap();
    AlarmRules::new(&rules).unwrap()
}

/// What ingest keeps: the store, each key's alarm, and the messages it would publish.
struct Ingest {
    store: WindowStore,
    rules: AlarmRules,
    alarms: HashMap<KeyId, KeyAlarm>,
    published: Vec<AlarmMessage>,
}

impl Ingest {
    fn new() -> Self {
        Ingest {
            store: WindowStore::new(WindowConfig::default()),
            rules: rules(),
            alarms: HashMap::new(),
            published: Vec::new(),
        }
    }

    fn evaluate(&mut self, id: KeyId, now: Timestamp) {
        let key = self.store.key(id).unwrap().clone();
        let rules = &self.rules;
        let alarm = self.alarms.entry(id).or_insert_with(|| {
            KeyAlarm::new(rules.resolve(&key.machine, key.scrap_index).unwrap())
        });
        if let Some(change) = alarm.evaluate(self.store.totals(id).unwrap(), now) {
            self.published.push(AlarmMessage::new(
                &key.machine,
                key.scrap_index,
                &change,
                now,
            ));
        }
    }

    fn read(&mut self, machine: &str, index: u32, value: f64, now: Timestamp) {
        let reading = Reading {
            machine,
            scrap_index: index,
            value,
            event_time: now,
            time_from_payload: false,
        };
        let id = self.store.accept(&reading, now).unwrap();
        self.evaluate(id, now);
    }

    fn tick(&mut self, now: Timestamp) {
        let mut changed = Vec::new();
        self.store.expire(now, &mut changed);
        for id in changed {
            self.evaluate(id, now);
        }
    }

    fn states(&self) -> Vec<(String, u32, AlarmState, String)> {
        self.published
            .iter()
            .map(|m| {
                (
                    m.machine_id.clone(),
                    m.scrap_index,
                    m.state,
                    m.metric.as_str().to_owned(),
                )
            })
            .collect()
    }
}

#[test]
fn alarms_raise_on_readings_and_clear_by_expiry_without_input() {
    let mut ingest = Ingest::new();
    for s in 0..4 {
        ingest.read("A1", 1, 3.0, at(s)); // sum 12 > 10 at the fourth
        ingest.read("B1", 1, 30.0, at(s)); // sum 120 > 100 at the fourth
    }
    ingest.read("A1", 2, 4.0, at(4)); // avg 4 > 3 at once
    assert_eq!(
        ingest.states(),
        [
            ("A1".into(), 1, AlarmState::Raised, "sum".into()),
            ("B1".into(), 1, AlarmState::Raised, "sum".into()),
            ("A1".into(), 2, AlarmState::Raised, "avg".into()),
        ]
    );
    ingest.published.clear();
    // One reading of each key leaves per second from 60 s. B1/1: 90 is below 100 at once.
    ingest.tick(at(60));
    let b1 = &ingest.published[..];
    assert_eq!(b1.len(), 1, "{b1:?}");
    assert_eq!(
        (
            b1[0].machine_id.as_str(),
            b1[0].state,
            b1[0].value,
            b1[0].threshold
        ),
        ("B1", AlarmState::Cleared, Some(90.0), 100.0)
    );
    ingest.published.clear();
    // A1/1: sums 9 at 60 s and 6 at 61 s are held by clear_below 5; 3 at 62 s clears.
    ingest.tick(at(61));
    assert!(ingest.published.is_empty(), "{:?}", ingest.published);
    ingest.tick(at(62));
    let a1 = &ingest.published[..];
    assert_eq!(a1.len(), 1, "{a1:?}");
    assert_eq!(
        (
            a1[0].machine_id.as_str(),
            a1[0].state,
            a1[0].value,
            a1[0].threshold
        ),
        ("A1", AlarmState::Cleared, Some(3.0), 5.0)
    );
    ingest.published.clear();
    ingest.tick(at(64));
    let last = &ingest.published[..];
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(
        (last[0].scrap_index, last[0].value),
        (2, None),
        "emptied average"
    );
}

#[test]
fn a_restart_neither_raises_again_nor_leaves_a_seam_in_the_trend() {
    let config = TrendConfig::default();
    let mut before = Ingest::new();
    let mut trend = Trend::new(config.points);
    for s in 0..30 {
        before.read("A1", 1, 1.0, at(s));
        if at(s) == config.next_tick(at(s - 1)) {
            let id = before.store.lookup("A1", 1).unwrap();
            trend.push(at(s), before.store.totals(id).unwrap().sum);
        }
    }
    let retained_alarm = before.published.last().unwrap().clone();
    assert_eq!(retained_alarm.state, AlarmState::Raised);
    let retained_trend = serde_json::to_vec(&trend.to_message("A1", 1, &config)).unwrap();

    // Restart at 35 s: replay the same readings, then read back the retained topics.
    let now = at(35);
    let mut after = Ingest::new();
    for s in 0..30 {
        let reading = Reading {
            machine: "A1",
            scrap_index: 1,
            value: 1.0,
            event_time: at(s),
            time_from_payload: true,
        };
        after.store.accept(&reading, now).unwrap();
    }
    let id = after.store.lookup("A1", 1).unwrap();
    let mut alarm = KeyAlarm::new(after.rules.resolve("A1", 1).unwrap());
    let (metric, since) = retained_alarm.raised_state().unwrap().unwrap();
    assert!(alarm.restore_raised(metric, since));
    after.alarms.insert(id, alarm);
    after.evaluate(id, now);
    assert!(
        after.published.is_empty(),
        "no flapping: {:?}",
        after.published
    );
    assert_eq!(after.alarms[&id].raised(), Some((metric, since)));

    let mut continued = Trend::new(config.points);
    let read_back = TrendMessage::parse(&retained_trend)
        .unwrap()
        .points()
        .unwrap();
    continued.merge(read_back, &config, now);
    assert_eq!(continued.points().len(), 3, "ticks 0, 10 and 20 are back");
    let next = config.next_tick(now);
    assert_eq!(next, at(40));
    assert!(continued.push(next, 30.0));
    let times: Vec<Timestamp> = continued.points().map(|p| p.t).collect();
    assert_eq!(times, [at(0), at(10), at(20), at(40)]);
}

#[test]
fn trend_sampling_follows_the_tick_grid() {
    let config = TrendConfig {
        interval: Duration::from_secs(10),
        points: 3,
    };
    let mut trend = Trend::new(config.points);
    let mut next = config.next_tick(at(-3));
    for s in -3..50 {
        if at(s) >= next {
            assert!(trend.push(next, s as f64));
            next = config.next_tick(at(s));
        }
    }
    let got: Vec<(Timestamp, f64)> = trend.points().map(|p| (p.t, p.sum)).collect();
    assert_eq!(got, [(at(20), 20.0), (at(30), 30.0), (at(40), 40.0)]);
}
