//! Drift: after millions of add/expire cycles with fractional values the running sum still
//! equals a fresh recomputation to 1e-9 relative, and is exactly 0 once the window is empty.

use std::time::Duration;

use aggregator_core::sum::CompensatedSum;
use aggregator_core::{Reading, Timestamp, WindowConfig, WindowStore};

/// A small deterministic generator (xorshift), so the test needs no extra crate and is the
/// same on every run.
struct XorShift(u64);

impl XorShift {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1_u64 << 53) as f64
    }
}

fn run_drift(readings: i64, value_of: impl Fn(&mut XorShift) -> f64) {
    const STEP_NS: i64 = 10_000; // 100 000 readings per second
    let mut store = WindowStore::new(WindowConfig {
        window: Duration::from_millis(100), // 10 000 readings in the window
        ..WindowConfig::default()
    });
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut changed = Vec::new();
    let start = 1_767_268_800_000_000_000_i64;
    let mut window: std::collections::VecDeque<(i64, f64)> = Default::default();
    let mut id = None;
    for i in 0..readings {
        let now = start + i * STEP_NS;
        let value = value_of(&mut rng);
        let reading = Reading {
            machine: "A1",
            scrap_index: 1,
            value,
            event_time: Timestamp::from_unix_nanos(now),
            time_from_payload: false,
        };
        id = Some(
            store
                .accept(&reading, Timestamp::from_unix_nanos(now))
                .unwrap(),
        );
        window.push_back((now, value));
        if i % 997 == 0 {
            store.expire(Timestamp::from_unix_nanos(now), &mut changed);
            while window.front().is_some_and(|&(t, _)| t <= now - 100_000_000) {
                window.pop_front();
            }
            let fresh = CompensatedSum::of(window.iter().map(|&(_, v)| v)).value();
            let sum = store.totals(id.unwrap()).unwrap().sum;
            let scale = window
                .iter()
                .map(|&(_, v)| v.abs())
                .sum::<f64>()
                .max(f64::MIN_POSITIVE);
            assert!(
                (sum - fresh).abs() <= 1e-9 * scale.max(fresh.abs()),
                "after {i} readings: running {sum} vs fresh {fresh}"
            );
        }
    }
    let end = start + readings * STEP_NS + 1_000_000_000;
    store.expire(Timestamp::from_unix_nanos(end), &mut changed);
    let totals = store.totals(id.unwrap()).unwrap();
    assert_eq!(totals.count, 0);
    assert_eq!(
        totals.sum.to_bits(),
        0.0_f64.to_bits(),
        "exactly +0 when empty"
    );
}

#[test]
fn five_million_fractional_values_do_not_drift() {
    run_drift(5_000_000, |rng| 0.1 + rng.next_f64() * 4.9);
}

#[test]
fn values_of_wildly_different_magnitude_do_not_drift() {
    run_drift(2_000_000, |rng| {
        let x = rng.next_f64();
        if x < 0.001 { 1e12 * x } else { x * 1e-3 }
    });
}
