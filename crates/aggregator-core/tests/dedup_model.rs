//! Property test: duplicate detection by reading id against a brute-force model that keeps
//! every counted reading, over random readings (with and without ids, in and out of order,
//! same id on other indices and machines), clock advances, and expiry that runs behind the
//! clock (so stale ids of readings already outside the window are exercised), with idle keys
//! forgotten and their slots reused.

use std::time::Duration;

use aggregator_core::rejection::RejectionReason;
use aggregator_core::{Accepted, Reading, ReadingId, Timestamp, WindowConfig, WindowStore};
use proptest::prelude::*;

const MS: i64 = 1_000_000;
const WINDOW_MS: i64 = 10_000;
const SKEW_MS: i64 = 2_000;
const TTL_MS: i64 = 3_000;
const MACHINES: [&str; 3] = ["A1", "B1", "C10"];
const IDS: [&str; 5] = ["1", "2", "x", "a-rather-long-id-stored-on-the-heap", "ü"];

#[derive(Clone, Debug)]
enum Op {
    Read {
        machine: usize,
        index: u32,
        id: Option<usize>,
        value: u8,
        offset_ms: i64,
    },
    Advance {
        ms: i64,
    },
    /// Expiry and forgetting catch up with the clock.
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..MACHINES.len(), 0..2_u32, prop::option::weighted(0.8, 0..IDS.len()), any::<u8>(), -(WINDOW_MS + 500)..(SKEW_MS + 500))
            .prop_map(|(machine, index, id, value, offset_ms)| Op::Read { machine, index, id, value, offset_ms }),
        3 => (0..3_000_i64).prop_map(|ms| Op::Advance { ms }),
        1 => (3_000..15_000_i64).prop_map(|ms| Op::Advance { ms }),
        3 => Just(Op::Expire),
    ]
}

struct Counted {
    machine: usize,
    index: u32,
    id: Option<usize>,
    time: i64,
    value: f64,
}

fn in_window(c: &Counted, now: i64) -> bool {
    now - WINDOW_MS * MS < c.time
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn duplicates_match_a_brute_force_model(ops in prop::collection::vec(op(), 1..300)) {
        let mut store = WindowStore::new(WindowConfig {
            window: Duration::from_millis(WINDOW_MS as u64),
            max_future_skew: Duration::from_millis(SKEW_MS as u64),
            max_keys: 1_000,
            key_idle_ttl: Duration::from_millis(TTL_MS as u64),
        });
        let ids: Vec<ReadingId> = IDS.iter().map(|s| ReadingId::new(s).unwrap()).collect();
        let mut counted: Vec<Counted> = Vec::new();
        let mut now = 1_767_268_800_000 * MS;
        let mut expired_at = now;
        let (mut changed, mut forgotten) = (Vec::new(), Vec::new());
        for op in ops {
            match op {
                Op::Advance { ms } => now += ms * MS,
                Op::Expire => {
                    let clock = Timestamp::from_unix_nanos(now);
                    store.expire(clock, &mut changed);
                    store.forget_idle(clock, &mut forgotten);
                    changed.clear();
                    forgotten.clear();
                    expired_at = now;
                }
                Op::Read { machine, index, id, value, offset_ms } => {
                    let t = now + offset_ms * MS;
                    let reading = Reading {
                        machine: MACHINES[machine],
                        scrap_index: index,
                        value: f64::from(value),
                        event_time: Timestamp::from_unix_nanos(t),
                        time_from_payload: true,
                    };
                    let got = store.accept_with_id(
                        &reading,
                        id.map(|i| &ids[i]),
                        Timestamp::from_unix_nanos(now),
                    );
                    let first = id.and_then(|id| {
                        counted
                            .iter()
                            .find(|c| c.machine == machine && c.id == Some(id) && in_window(c, now))
                            .map(|c| c.time)
                    });
                    if t <= now - WINDOW_MS * MS {
                        prop_assert_eq!(got.map_err(|e| e.reason()), Err(RejectionReason::Late));
                    } else if t > now + SKEW_MS * MS {
                        prop_assert_eq!(got.map_err(|e| e.reason()), Err(RejectionReason::Future));
                    } else if let Some(first) = first {
                        prop_assert_eq!(
                            got,
                            Ok(Accepted::Duplicate { first_counted_at: Timestamp::from_unix_nanos(first) })
                        );
                    } else {
                        prop_assert!(matches!(got, Ok(Accepted::Counted(_))), "{:?}", got);
                        counted.push(Counted { machine, index, id, time: t, value: f64::from(value) });
                    }
                }
            }
            if expired_at == now {
                // Totals are those of the last expiry; compare when it has caught up.
                for (m, machine) in MACHINES.iter().enumerate() {
                    for index in 0..2 {
                        let live: Vec<&Counted> = counted
                            .iter()
                            .filter(|c| c.machine == m && c.index == index && in_window(c, now))
                            .collect();
                        let sum: f64 = live.iter().map(|c| c.value).sum();
                        let totals = store.lookup(machine, index).and_then(|k| store.totals(k));
                        let (got_sum, got_count) = totals.map_or((0.0, 0), |t| (t.sum, t.count));
                        prop_assert_eq!((got_sum, got_count), (sum, live.len() as u64), "{}/{}", machine, index);
                    }
                }
                let held = counted.iter().filter(|c| c.id.is_some() && in_window(c, now)).count();
                prop_assert_eq!(store.tracked_ids(), held, "ids leave with their readings");
            }
        }
        // Everything expires in the end, and every id with it.
        now += 2 * WINDOW_MS * MS;
        store.expire(Timestamp::from_unix_nanos(now), &mut changed);
        prop_assert_eq!(store.tracked_ids(), 0);
        prop_assert_eq!(store.buffered_readings(), 0);
    }
}
