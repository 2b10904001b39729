//! Deterministic message content: which machine, index and value, which field-name variant
//! and timestamp form, and when a malformed payload is due. Everything is drawn from one
//! seeded RNG, so the same seed gives the same messages; only the time values differ, because
//! they carry the send time (readings must fall inside ingest's window).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::SystemTime;

use aggregator_core::sum::CompensatedSum;
use aggregator_core::{RejectionReason, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::{format_description, offset};

use crate::configuration::SimConfig;
use crate::invalid::{self, FUTURE_BY, LATE_BY};
use crate::workload::ValueRange;

/// The time values of one send instant, formatted once and shared by a batch of messages.
#[derive(Debug, Clone)]
pub struct TimeStamps {
    /// The JSON values of the time forms of valid readings: RFC 3339 UTC, RFC 3339 at +02:00
    /// (a plant's local time), epoch milliseconds.
    forms: [String; 3],
    /// RFC 3339 UTC: the send time, [`LATE_BY`] before it and [`FUTURE_BY`] after it.
    pub(crate) utc: String,
    pub(crate) late: String,
    pub(crate) future: String,
}

impl TimeStamps {
    /// Formats the time values of `now`.
    pub fn at(now: SystemTime) -> Self {
        let ts = Timestamp::from_system_time(now);
        let utc = ts.to_rfc3339_millis();
        let local = OffsetDateTime::from(now)
            .to_offset(offset!(+2))
            .format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory]:[offset_minute]"
            ))
            // The format has no component that can fail for a real clock; fall back to UTC.
            .unwrap_or_else(|_| utc.clone());
        Self {
            forms: [
                format!("\"{utc}\""),
                format!("\"{local}\""),
                ts.unix_millis().to_string(),
            ],
            late: ts.saturating_sub(LATE_BY).to_rfc3339_millis(),
            future: ts.saturating_add(FUTURE_BY).to_rfc3339_millis(),
            utc,
        }
    }
}

/// What one generated message was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Generated {
    /// A valid reading for configured machine `machine` (index into the machine list).
    Valid {
        /// Index into the configured machines.
        machine: usize,
        /// The scrap index.
        scrap_index: u32,
        /// The value.
        value: f64,
    },
    /// A malformed payload that ingest rejects for this reason.
    Invalid(RejectionReason),
}

/// Expected aggregate of one key over everything sent.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExpectedKey {
    /// Machine id.
    #[serde(rename = "maschinenId")]
    pub machine: String,
    /// Scrap index.
    #[serde(rename = "scrapIndex")]
    pub scrap_index: u32,
    /// Sum of the valid values sent.
    pub sum: f64,
    /// Number of valid readings sent.
    pub count: u64,
}

/// Produces the topic and payload of every message into reused buffers.
#[derive(Debug)]
pub struct Generator {
    config: SimConfig,
    rng: StdRng,
    invalid_debt: f64,
    next_kind: usize,
    /// Valid readings written so far: the `n` of the next id `<seed>-<n>`.
    valid_next: u64,
    /// Per key, in machine then index order.
    sums: Vec<(CompensatedSum, u64)>,
    invalid_counts: [u64; RejectionReason::COUNT],
}

impl Generator {
    /// A generator for `config`, seeded with `config.seed`.
    pub fn new(config: &SimConfig) -> Self {
        Self {
            config: config.clone(),
            rng: StdRng::seed_from_u64(config.seed),
            invalid_debt: 0.0,
            next_kind: 0,
            valid_next: 0,
            sums: vec![(CompensatedSum::ZERO, 0); config.machines.len() * config.indices.len()],
            invalid_counts: [0; RejectionReason::COUNT],
        }
    }

    /// Draws a machine uniformly (used when the schedule does not fix one).
    pub fn pick_machine(&mut self) -> usize {
        self.rng.random_range(0..self.config.machines.len())
    }

    /// Writes the next message for `machine` into `topic` and `payload` (both cleared first).
    ///
    /// Malformed payloads come at `invalid_ratio` exactly on average (error diffusion, not
    /// chance), cycling through the configured kinds in order.
    pub fn next(
        &mut self,
        machine: usize,
        times: &TimeStamps,
        topic: &mut String,
        payload: &mut Vec<u8>,
    ) -> Generated {
        topic.clear();
        payload.clear();
        let index_slot = self.rng.random_range(0..self.config.indices.len());
        let scrap_index = self.config.indices[index_slot];
        let value = self.draw_value();
        self.invalid_debt += self.config.settings.invalid_ratio;
        // The epsilon keeps ratios like 0.1 from missing their share through rounding.
        if self.invalid_debt >= 1.0 - 1e-9 {
            self.invalid_debt -= 1.0;
            let kind = self.config.invalid_kinds[self.next_kind % self.config.invalid_kinds.len()];
            self.next_kind += 1;
            self.write_invalid(kind, machine, scrap_index, times, topic, payload);
            return Generated::Invalid(kind);
        }
        self.write_valid(machine, scrap_index, value, times, topic, payload);
        let slot = &mut self.sums[machine * self.config.indices.len() + index_slot];
        slot.0.add(value);
        slot.1 += 1;
        Generated::Valid {
            machine,
            scrap_index,
            value,
        }
    }

    /// Draws the next valid reading of `machine` without writing it: the position of its index
    /// in the configured indices, and its value. For Sparkplug, whose payloads the edge node
    /// writes; malformed payloads do not apply.
    pub fn next_reading(&mut self, machine: usize) -> (usize, f64) {
        let index_slot = self.rng.random_range(0..self.config.indices.len());
        let value = self.draw_value();
        let slot = &mut self.sums[machine * self.config.indices.len() + index_slot];
        slot.0.add(value);
        slot.1 += 1;
        (index_slot, value)
    }

    fn draw_value(&mut self) -> f64 {
        let ValueRange { min, max, integers } = self.config.values;
        if integers {
            // Bounds were checked to be integers below 1e15, so the casts are exact.
            #[allow(clippy::cast_possible_truncation)]
            let (lo, hi) = (min as i64, max as i64);
            self.rng.random_range(lo..=hi) as f64
        } else {
            (self.rng.random_range(min..=max) * 100.0).round() / 100.0
        }
    }

    fn write_valid(
        &mut self,
        machine: usize,
        scrap_index: u32,
        value: f64,
        times: &TimeStamps,
        topic: &mut String,
        payload: &mut Vec<u8>,
    ) {
        let id = &self.config.machines[machine];
        let _ = write!(topic, "machines/{id}/scrap");
        // One draw per choice, always in the same order, so the stream stays reproducible.
        let machine_name = ["machineId", "maschinenId"][usize::from(self.rng.random_bool(0.5))];
        let index_name = ["scrapIndex", "scrapeIndex"][usize::from(self.rng.random_bool(0.5))];
        let time_name = ["timestamp", "zeitstempel"][usize::from(self.rng.random_bool(0.5))];
        let with_machine = self.rng.random_bool(0.9);
        let index_quote = ["", "\""][usize::from(self.rng.random_bool(0.1))];
        let value_quote = ["", "\""][usize::from(self.rng.random_bool(0.1))];
        // The fourth form has no time: ingest uses the time of receipt.
        let time = times.forms.get(usize::from(self.rng.random_range(0..4_u8)));

        payload.push(b'{');
        if with_machine {
            let _ = write!(payload, "\"{machine_name}\":\"{id}\",");
        }
        let _ = write!(
            payload,
            "\"{index_name}\":{index_quote}{scrap_index}{index_quote},\"value\":{value_quote}{value}{value_quote}"
        );
        if let Some(time) = time {
            let _ = write!(payload, ",\"{time_name}\":{time}");
        }
        if self.config.settings.ids {
            // Unique within a run and the same for the same seed; drawn from no RNG, so the
            // rest of the stream does not change with or without ids.
            let _ = write!(
                payload,
                ",\"id\":\"{}-{}\"",
                self.config.seed, self.valid_next
            );
        }
        self.valid_next += 1;
        payload.push(b'}');
    }

    /// Writes a malformed payload that ingest rejects for `kind` (see [`crate::invalid`]).
    fn write_invalid(
        &mut self,
        kind: RejectionReason,
        machine: usize,
        scrap_index: u32,
        times: &TimeStamps,
        topic: &mut String,
        payload: &mut Vec<u8>,
    ) {
        let fresh;
        let id = if kind == RejectionReason::TooManyKeys {
            fresh = format!("x{}-{}", self.config.seed, self.flood_keys());
            &fresh
        } else {
            &self.config.machines[machine]
        };
        let _ = write!(topic, "machines/{id}/scrap");
        invalid::write(kind, id, scrap_index, times, payload);
        self.invalid_counts[kind.index()] += 1;
    }

    /// Malformed messages sent so far, per reason (indexed like [`RejectionReason::ALL`]).
    pub fn invalid_counts(&self) -> [u64; RejectionReason::COUNT] {
        self.invalid_counts
    }

    /// Fresh machine ids used by `too_many_keys` messages so far.
    pub fn flood_keys(&self) -> u64 {
        self.invalid_counts[RejectionReason::TooManyKeys.index()]
    }

    /// The expected sum and count per key of the valid readings generated so far (keys with
    /// no reading left out), in machine then index order.
    pub fn expected(&self) -> Vec<ExpectedKey> {
        let (machines, indices) = (&self.config.machines, &self.config.indices);
        let keys = machines
            .iter()
            .flat_map(|m| indices.iter().map(move |&i| (m, i)));
        keys.zip(&self.sums)
            .filter(|(_, (_, count))| *count > 0)
            .map(|((machine, scrap_index), (sum, count))| ExpectedKey {
                machine: machine.clone(),
                scrap_index,
                sum: sum.value(),
                count: *count,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aggregator_core::{ParseLimits, WindowConfig, WindowStore, parse_reading};

    use super::*;
    use crate::invalid::TOO_LARGE_PADDING;

    fn config(seed: u64, invalid_ratio: f64) -> SimConfig {
        let mut config = SimConfig::for_broker("localhost", 1883);
        config.seed = seed;
        config.settings.invalid_ratio = invalid_ratio;
        config
    }

    fn generate(config: &SimConfig, n: usize) -> (Generator, Vec<(String, Vec<u8>, Generated)>) {
        let mut generator = Generator::new(config);
        let times = TimeStamps::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let mut out = Vec::new();
        for _ in 0..n {
            let (mut topic, mut payload) = (String::new(), Vec::new());
            let machine = generator.pick_machine();
            let what = generator.next(machine, &times, &mut topic, &mut payload);
            out.push((topic, payload, what));
        }
        (generator, out)
    }

    #[test]
    fn every_valid_reading_has_a_unique_id_unless_turned_off() {
        let (_, with) = generate(&config(9, 0.2), 500);
        let received = Timestamp::from_unix_nanos(1_800_000_000_000_000_000);
        let mut ids = std::collections::HashSet::new();
        for (topic, payload, what) in &with {
            let parsed = aggregator_core::parse_reading_with_id(
                topic,
                payload,
                received,
                &ParseLimits::default(),
            );
            match what {
                Generated::Valid { .. } => {
                    let id = parsed.unwrap().id.expect("a valid reading has an id");
                    assert!(id.as_str().starts_with("9-"), "{id}");
                    assert!(ids.insert(id.as_str().to_owned()), "{id} twice");
                }
                Generated::Invalid(_) => {}
            }
        }
        assert_eq!(ids.len(), 400);

        let mut off = config(9, 0.2);
        off.settings.ids = false;
        let (_, without) = generate(&off, 500);
        for ((_, with_payload, a), (_, payload, b)) in with.iter().zip(&without) {
            // The same stream, only without the field.
            assert_eq!(a, b);
            let text = String::from_utf8_lossy(payload);
            assert!(!text.contains("\"id\""), "{text}");
            if matches!(a, Generated::Valid { .. }) {
                assert!(
                    String::from_utf8_lossy(with_payload).starts_with(text.trim_end_matches('}'))
                );
            }
        }
    }

    #[test]
    fn same_seed_same_messages_other_seed_others() {
        let (_, a) = generate(&config(7, 0.2), 500);
        let (_, b) = generate(&config(7, 0.2), 500);
        let (_, c) = generate(&config(8, 0.2), 500);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn valid_messages_parse_in_the_core_to_what_was_generated() {
        let (generator, messages) = generate(&config(1, 0.0), 2000);
        let received = Timestamp::from_unix_millis(1_800_000_000_000).unwrap();
        let mut forms = std::collections::HashSet::new();
        for (topic, payload, what) in &messages {
            let reading = parse_reading(topic, payload, received, &ParseLimits::default()).unwrap();
            let Generated::Valid {
                machine,
                scrap_index,
                value,
            } = *what
            else {
                panic!("all valid")
            };
            assert_eq!(reading.machine, ["A1", "B1", "C1"][machine]);
            assert_eq!((reading.scrap_index, reading.value), (scrap_index, value));
            assert!((1.0..=5.0).contains(&value) && value.fract() == 0.0);
            assert_eq!(
                reading.event_time, received,
                "every time form means the same instant"
            );
            let text = String::from_utf8_lossy(payload);
            for needle in [
                "machineId",
                "maschinenId",
                "scrapIndex",
                "scrapeIndex",
                "\"timestamp\"",
                "zeitstempel",
                "Z\"",
                "+02:00",
                ":1800000000000",
                "\"value\":\"",
            ] {
                if text.contains(needle) {
                    forms.insert(needle);
                }
            }
            if !text.contains("timestamp") && !text.contains("zeitstempel") {
                forms.insert("no time");
            }
        }
        assert_eq!(forms.len(), 11, "every variant occurs: {forms:?}");
        let total: u64 = generator.expected().iter().map(|k| k.count).sum();
        assert_eq!(total, 2000);
    }

    #[test]
    fn invalid_ratio_cycles_through_every_reason_and_the_core_agrees() {
        let (generator, messages) = generate(&config(3, 0.5), 160);
        let received = Timestamp::from_unix_millis(1_800_000_000_000).unwrap();
        // Room for exactly the 9 configured keys, created up front: every fresh key is refused.
        let mut store = WindowStore::new(WindowConfig {
            max_keys: 9,
            ..WindowConfig::default()
        });
        for machine in ["A1", "B1", "C1"] {
            for index in 1..=3 {
                let topic = format!("machines/{machine}/scrap");
                let payload = format!("{{\"scrapIndex\":{index},\"value\":0}}");
                let reading = parse_reading(
                    &topic,
                    payload.as_bytes(),
                    received,
                    &ParseLimits::default(),
                )
                .unwrap();
                store.accept(&reading, received).unwrap();
            }
        }
        let mut seen = Vec::new();
        for (topic, payload, what) in &messages {
            let outcome = parse_reading(topic, payload, received, &ParseLimits::default())
                .and_then(|r| store.accept(&r, received).map(|_| ()));
            match what {
                Generated::Valid { .. } => assert!(
                    outcome.is_ok(),
                    "{topic} {}",
                    String::from_utf8_lossy(payload)
                ),
                Generated::Invalid(RejectionReason::TooManyKeys) => {
                    assert_eq!(outcome.unwrap_err().reason(), RejectionReason::TooManyKeys);
                    seen.push(RejectionReason::TooManyKeys);
                }
                Generated::Invalid(kind) => {
                    let reason = outcome.unwrap_err().reason();
                    assert_eq!(reason, *kind, "{topic}");
                    seen.push(reason);
                }
            }
        }
        assert_eq!(generator.invalid_counts(), [10; 8]);
        for reason in RejectionReason::ALL {
            assert!(seen.contains(&reason), "{reason} never produced");
        }
        assert_eq!(
            generator.expected().iter().map(|k| k.count).sum::<u64>(),
            80
        );
    }

    /// The bytes of every malformed payload, so that a change to how they are written cannot
    /// quietly change what ingest receives (the integration test checks only the reasons).
    #[test]
    fn every_reason_has_its_exact_payload() {
        let mut generator = Generator::new(&config(9, 0.0));
        let times = TimeStamps::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let padding = "x".repeat(TOO_LARGE_PADDING);
        let expected = [
            (
                RejectionReason::TooLarge,
                "machines/B1/scrap",
                format!(r#"{{"machineId":"B1","scrapIndex":7,"value":1,"padding":"{padding}"}}"#),
            ),
            (
                RejectionReason::InvalidJson,
                "machines/B1/scrap",
                r#"{"machineId":"B1","scrapIndex":7,"value":"#.to_owned(),
            ),
            (
                RejectionReason::MissingField,
                "machines/B1/scrap",
                r#"{"machineId":"B1","scrapIndex":7,"timestamp":"2027-01-15T08:00:00.000Z"}"#
                    .to_owned(),
            ),
            (
                RejectionReason::BadValue,
                "machines/B1/scrap",
                r#"{"machineId":"B1","scrapIndex":7,"value":"not-a-number","timestamp":"2027-01-15T08:00:00.000Z"}"#
                    .to_owned(),
            ),
            (
                RejectionReason::MachineMismatch,
                "machines/B1/scrap",
                r#"{"machineId":"not-B1","scrapIndex":7,"value":1,"timestamp":"2027-01-15T08:00:00.000Z"}"#
                    .to_owned(),
            ),
            (
                RejectionReason::Late,
                "machines/B1/scrap",
                r#"{"machineId":"B1","scrapIndex":7,"value":1,"timestamp":"2027-01-15T07:00:00.000Z"}"#
                    .to_owned(),
            ),
            (
                RejectionReason::Future,
                "machines/B1/scrap",
                r#"{"machineId":"B1","scrapIndex":7,"value":1,"timestamp":"2027-01-15T09:00:00.000Z"}"#
                    .to_owned(),
            ),
            (
                RejectionReason::TooManyKeys,
                "machines/x9-0/scrap",
                r#"{"machineId":"x9-0","scrapIndex":7,"value":1}"#.to_owned(),
            ),
            // Every `too_many_keys` reading takes the next fresh machine id.
            (
                RejectionReason::TooManyKeys,
                "machines/x9-1/scrap",
                r#"{"machineId":"x9-1","scrapIndex":7,"value":1}"#.to_owned(),
            ),
        ];
        for (kind, want_topic, want_payload) in expected {
            let (mut topic, mut payload) = (String::new(), Vec::new());
            generator.write_invalid(kind, 1, 7, &times, &mut topic, &mut payload);
            assert_eq!(topic, want_topic, "{kind}");
            assert!(
                payload == want_payload.as_bytes(),
                "{kind}: {}",
                String::from_utf8_lossy(&payload)
            );
        }
        assert_eq!(generator.flood_keys(), 2);
    }

    #[test]
    fn readings_without_payloads_are_counted_in_the_expected_sums() {
        let mut generator = Generator::new(&config(4, 0.0));
        let mut sums = std::collections::BTreeMap::new();
        for n in 0..300 {
            let machine = n % 3;
            let (slot, value) = generator.next_reading(machine);
            let entry = sums.entry((machine, [1, 2, 3][slot])).or_insert((0.0, 0));
            entry.0 += value;
            entry.1 += 1;
        }
        let expected = generator.expected();
        assert_eq!(expected.len(), sums.len());
        for key in expected {
            let machine = ["A1", "B1", "C1"]
                .iter()
                .position(|m| *m == key.machine)
                .unwrap();
            let (sum, count) = sums[&(machine, key.scrap_index)];
            assert_eq!((key.sum, key.count), (sum, count));
        }
    }

    #[test]
    fn float_ranges_give_two_decimals() {
        let mut config = config(5, 0.0);
        config.values = ValueRange::parse("0.5..1.5").unwrap();
        let (_, messages) = generate(&config, 200);
        for (_, _, what) in messages {
            let Generated::Valid { value, .. } = what else {
                panic!()
            };
            assert!((0.5..=1.5).contains(&value));
            assert!(((value * 100.0).round() - value * 100.0).abs() < 1e-9);
        }
    }
}
