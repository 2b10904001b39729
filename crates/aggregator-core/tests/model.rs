//! Property test: the window store against a brute-force model that keeps every accepted
//! reading and recomputes each aggregate from scratch, over random sequences of readings (in
//! and out of order, late, future, new keys past the cap) and clock advances.

use std::collections::BTreeMap;
use std::time::Duration;

use aggregator_core::rejection::RejectionReason;
use aggregator_core::sum::CompensatedSum;
use aggregator_core::{Reading, Timestamp, WindowConfig, WindowStore};
use proptest::prelude::*;

const MS: i64 = 1_000_000;
const WINDOW_MS: i64 = 10_000;
const SKEW_MS: i64 = 2_000;
const TTL_MS: i64 = 5_000;
const MAX_KEYS: usize = 5;
const MACHINES: [&str; 3] = ["A1", "B1", "C10"];

#[derive(Clone, Debug)]
enum Op {
    /// A reading whose event time is `offset_ms` from the current clock.
    Read {
        machine: usize,
        index: u32,
        value: f64,
        offset_ms: i64,
    },
    /// The clock moves on.
    Advance { ms: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..MACHINES.len(), 0..3_u32, 0.0..1000.0_f64, -(WINDOW_MS + 1_000)..(SKEW_MS + 1_000))
            .prop_map(|(machine, index, value, offset_ms)| Op::Read { machine, index, value, offset_ms }),
        // Offsets that hit the boundaries exactly.
        1 => (0..MACHINES.len(), 0..3_u32, prop_oneof![Just(-WINDOW_MS), Just(-WINDOW_MS + 1), Just(SKEW_MS), Just(SKEW_MS + 1)])
            .prop_map(|(machine, index, offset_ms)| Op::Read { machine, index, value: 0.1, offset_ms }),
        3 => (0..4_000_i64).prop_map(|ms| Op::Advance { ms }),
        1 => (4_000..20_000_i64).prop_map(|ms| Op::Advance { ms }),
    ]
}

#[derive(Default)]
struct Model {
    /// Every accepted reading: key -> (time ns, value).
    readings: BTreeMap<(usize, u32), Vec<(i64, f64)>>,
}

impl Model {
    fn in_window(&self, key: (usize, u32), now: i64) -> Vec<(i64, f64)> {
        self.readings
            .get(&key)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|&(t, _)| now - WINDOW_MS * MS < t)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A key is tracked until its window has been empty for the idle TTL.
    fn alive(&self, key: (usize, u32), now: i64) -> bool {
        self.readings
            .get(&key)
            .and_then(|v| v.iter().map(|&(t, _)| t).max())
            .is_some_and(|last| last + (WINDOW_MS + TTL_MS) * MS > now)
    }

    fn alive_count(&self, now: i64) -> usize {
        self.readings
            .keys()
            .filter(|k| self.alive(**k, now))
            .count()
    }
}

fn check(store: &WindowStore, model: &Model, now: i64) -> Result<(), TestCaseError> {
    let mut buffered = 0;
    let mut next_expiry: Option<i64> = None;
    for (machine, name) in MACHINES.iter().enumerate() {
        for index in 0..3 {
            let key = (machine, index);
            let id = store.lookup(name, index);
            prop_assert_eq!(id.is_some(), model.alive(key, now), "key {:?} tracked", key);
            let Some(id) = id else { continue };
            let expected = model.in_window(key, now);
            buffered += expected.len();
            if let Some(min) = expected.iter().map(|&(t, _)| t + WINDOW_MS * MS).min() {
                next_expiry = Some(next_expiry.map_or(min, |n: i64| n.min(min)));
            }
            let totals = store.totals(id).unwrap();
            prop_assert_eq!(totals.count, expected.len() as u64);
            let fresh = CompensatedSum::of(expected.iter().map(|&(_, v)| v)).value();
            if expected.is_empty() {
                prop_assert_eq!(
                    totals.sum.to_bits(),
                    0.0_f64.to_bits(),
                    "empty sum is exactly +0"
                );
                prop_assert_eq!(totals.avg(), None);
            } else {
                let tolerance = 1e-9 * fresh.abs().max(f64::MIN_POSITIVE);
                prop_assert!(
                    (totals.sum - fresh).abs() <= tolerance,
                    "sum {} vs {}",
                    totals.sum,
                    fresh
                );
            }
        }
    }
    prop_assert_eq!(store.buffered_readings(), buffered);
    prop_assert_eq!(store.key_count(), model.alive_count(now));
    prop_assert_eq!(store.next_expiry().map(|t| t.unix_nanos()), next_expiry);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_a_brute_force_model(ops in prop::collection::vec(op(), 1..300)) {
        let mut store = WindowStore::new(WindowConfig {
            window: Duration::from_millis(WINDOW_MS as u64),
            max_future_skew: Duration::from_millis(SKEW_MS as u64),
            max_keys: MAX_KEYS,
            key_idle_ttl: Duration::from_millis(TTL_MS as u64),
        });
        let mut model = Model::default();
        let mut now = 1_767_268_800_000 * MS;
        let (mut changed, mut forgotten) = (Vec::new(), Vec::new());
        for op in ops {
            match op {
                Op::Advance { ms } => now += ms * MS,
                Op::Read { machine, index, value, offset_ms } => {
                    let t = now + offset_ms * MS;
                    let reading = Reading {
                        machine: MACHINES[machine],
                        scrap_index: index,
                        value,
                        event_time: Timestamp::from_unix_nanos(t),
                        time_from_payload: true,
                    };
                    let key = (machine, index);
                    let expected = if t <= now - WINDOW_MS * MS {
                        Some(RejectionReason::Late)
                    } else if t > now + SKEW_MS * MS {
                        Some(RejectionReason::Future)
                    } else if !model.alive(key, now) && model.alive_count(now) >= MAX_KEYS {
                        Some(RejectionReason::TooManyKeys)
                    } else {
                        None
                    };
                    let got = store.accept(&reading, Timestamp::from_unix_nanos(now));
                    prop_assert_eq!(got.as_ref().err().map(|e| e.reason()), expected);
                    if got.is_ok() {
                        if !model.alive(key, now) {
                            // A forgotten key starts afresh.
                            model.readings.remove(&key);
                        }
                        model.readings.entry(key).or_default().push((t, value));
                    }
                }
            }
            let clock = Timestamp::from_unix_nanos(now);
            store.expire(clock, &mut changed);
            store.forget_idle(clock, &mut forgotten);
            changed.clear();
            forgotten.clear();
            check(&store, &model, now)?;
        }
    }
}
