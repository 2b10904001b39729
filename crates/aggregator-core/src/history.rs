//! Minute buckets of the accepted readings: for every (machine, scrap index) the exact sum,
//! count, minimum and maximum of the readings whose event time lies in one UTC minute, sent
//! while the minute can still change and once more, final, when it cannot.
//!
//! # When a minute closes
//! A reading at `t` is accepted while `t > now - W` (`W` the window length), so the minute
//! `[M, M + 60 s)` can change until `now` reaches `M + 60 s + W`; the key's offset
//! ([`key_offset`], less than the interval) later it is **closed**, its bucket is emitted with
//! `final = true` exactly once and dropped. Memory is therefore bounded
//! by the keys times the minutes open at once, about `(W + 60 s) / 60 s` each.
//!
//! # Emission
//! A bucket that changed is emitted at most once per `interval`, and at its close whether it
//! changed or not. Each key's emissions are shifted by its own offset within the interval
//! ([`key_offset`]): its first change that long after it comes, its close that long after
//! the window's, so that many keys do not all send at the same instant. Every emission of a bucket carries a higher
//! `revision` than the one before: `max(previous + 1, now in unix ms)`, so that a process
//! that restarts (and starts again from `previous = 0`) still counts upwards as long as its
//! clock does.
//!
//! The accumulator neither judges readings nor reads a clock: the caller adds exactly the
//! readings its window counted, at their event time, and passes `now` in.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use hashbrown::{Equivalent, HashMap};

use crate::sum::CompensatedSum;
use crate::timestamp::Timestamp;
use crate::wire::HistoryBucket;

/// Length of a bucket.
pub const MINUTE: Duration = Duration::from_secs(60);
const MINUTE_NANOS: i64 = 60_000_000_000;

/// Settings of the [`HistoryAccumulator`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// The window length `W`: how long after its end a minute can still change.
    pub window: Duration,
    /// Least time between two emissions of an open bucket.
    pub interval: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            window: Duration::from_secs(60),
            interval: Duration::from_secs(10),
        }
    }
}

/// One bucket's identity; `minute` is the start of its minute in unix nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct BucketKey {
    machine: Arc<str>,
    scrap_index: u32,
    minute: i64,
}

/// A borrowed [`BucketKey`] for lookups; hashes exactly like it (a `str`, a `u32`, an `i64`).
#[derive(Hash)]
struct BucketQuery<'a> {
    machine: &'a str,
    scrap_index: u32,
    minute: i64,
}

impl Equivalent<BucketKey> for BucketQuery<'_> {
    fn equivalent(&self, key: &BucketKey) -> bool {
        self.minute == key.minute
            && self.scrap_index == key.scrap_index
            && self.machine == &*key.machine
    }
}

/// An open bucket.
#[derive(Clone, Debug)]
struct Bucket {
    sum: CompensatedSum,
    count: u64,
    min: f64,
    max: f64,
    /// When no reading of this minute can be accepted any more.
    closes_at: Timestamp,
    /// Revision of the last emission; 0 before the first.
    revision: u64,
    /// Changed since its last emission.
    changed: bool,
    /// Earliest next non-final emission: the last one plus the interval.
    next_allowed: Timestamp,
    /// The emission queued in [`HistoryAccumulator`]'s schedule, if one is.
    send_at: Option<Timestamp>,
}

/// Where a reading went: its minute was open and it was counted, or the minute had closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// Counted in its minute's bucket.
    Counted,
    /// Its minute had closed at `now`: not counted (only the restore of older readings meets
    /// this; a reading the window accepts is always in an open minute).
    Closed,
}

/// The open minute buckets of every key, with their emission schedule.
#[derive(Debug)]
pub struct HistoryAccumulator {
    config: HistoryConfig,
    buckets: HashMap<BucketKey, Bucket>,
    /// Emissions and closes by time: (when, which). An entry whose bucket is gone, or whose
    /// time is not the bucket's `send_at` or `closes_at`, is stale and skipped.
    schedule: BTreeSet<(Timestamp, BucketKey)>,
}

/// Where in every `interval` the key's emissions fall: a fixed offset in `[0, interval)`, in
/// whole milliseconds, from a hash of the key that is the same in every process. A bucket's
/// first change goes out that long after it, and its final that long after the window closes
/// the minute: with many keys, the minute's start would otherwise send every key's first
/// change and every key's final at the same instant, a burst a broker's queue limit can drop
/// (a stock Mosquitto keeps 1 000 messages per subscriber).
pub fn key_offset(machine: &str, scrap_index: u32, interval: Duration) -> Duration {
    // FNV-1a: stable across processes and releases, unlike the standard hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in machine.bytes().chain(scrap_index.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let millis = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(hash % millis)
}

/// The start of the UTC minute holding `t`.
pub fn minute_of(t: Timestamp) -> Timestamp {
    Timestamp::from_unix_nanos(t.unix_nanos().div_euclid(MINUTE_NANOS) * MINUTE_NANOS)
}

impl HistoryAccumulator {
    /// An empty accumulator.
    pub fn new(config: HistoryConfig) -> Self {
        HistoryAccumulator {
            config,
            buckets: HashMap::new(),
            schedule: BTreeSet::new(),
        }
    }

    /// When the minute starting at `minute` closes for the key (`machine`, `scrap_index`):
    /// `minute + 60 s + W` plus the key's [`key_offset`].
    pub fn closes_at(&self, machine: &str, scrap_index: u32, minute: Timestamp) -> Timestamp {
        minute
            .saturating_add(MINUTE)
            .saturating_add(self.config.window)
            .saturating_add(key_offset(machine, scrap_index, self.config.interval))
    }

    /// Counts `value` at event time `time` of key (`machine`, `scrap_index`), as of `now`.
    pub fn add(
        &mut self,
        machine: &str,
        scrap_index: u32,
        time: Timestamp,
        value: f64,
        now: Timestamp,
    ) -> Added {
        let minute = minute_of(time);
        let closes_at = self.closes_at(machine, scrap_index, minute);
        if now >= closes_at {
            return Added::Closed;
        }
        let query = BucketQuery {
            machine,
            scrap_index,
            minute: minute.unix_nanos(),
        };
        if self.buckets.get(&query).is_none() {
            let key = BucketKey {
                machine: Arc::from(machine),
                scrap_index,
                minute: minute.unix_nanos(),
            };
            self.schedule.insert((closes_at, key.clone()));
            let first = now.saturating_add(key_offset(machine, scrap_index, self.config.interval));
            self.buckets.insert(key, Bucket::new(closes_at, first));
        }
        // unwrap: present, inserted just above if it was not.
        let (key, bucket) = self.buckets.get_key_value_mut(&query).unwrap();
        bucket.count_value(value);
        if bucket.send_at.is_none() {
            let at = bucket.next_allowed.max(now);
            // From its close on, the final emission carries the change.
            if at < closes_at {
                bucket.send_at = Some(at);
                self.schedule.insert((at, key.clone()));
            }
        }
        Added::Counted
    }

    /// Moves to `out` the emissions due at `now`, at most `limit` of them: changed open buckets
    /// whose interval has passed (not final), and closed buckets (final, then dropped).
    pub fn take_due(&mut self, now: Timestamp, limit: usize, out: &mut Vec<HistoryBucket>) {
        let mut emitted = 0;
        while emitted < limit {
            let Some((at, _)) = self.schedule.first() else {
                break;
            };
            if *at > now {
                break;
            }
            // unwrap: `first` just returned an entry.
            let (at, key) = self.schedule.pop_first().unwrap();
            emitted += usize::from(self.due(at, &key, now, out));
        }
    }

    /// Handles one schedule entry; true when it emitted.
    fn due(
        &mut self,
        at: Timestamp,
        key: &BucketKey,
        now: Timestamp,
        out: &mut Vec<HistoryBucket>,
    ) -> bool {
        let Some(bucket) = self.buckets.get_mut(key) else {
            return false;
        };
        if now >= bucket.closes_at {
            // unwrap: found just above.
            let mut bucket = self.buckets.remove(key).unwrap();
            out.push(bucket.emit(key, true, now));
            return true;
        }
        if bucket.send_at != Some(at) {
            return false;
        }
        bucket.send_at = None;
        if !bucket.changed {
            // Sent meanwhile by `drain_changed`.
            return false;
        }
        bucket.next_allowed = now.saturating_add(self.config.interval);
        out.push(bucket.emit(key, false, now));
        true
    }

    /// Moves to `out` the current state of every open bucket that changed since its last
    /// emission, regardless of the interval (not final: they stay open). For a clean stop,
    /// after [`HistoryAccumulator::take_due`].
    pub fn drain_changed(&mut self, now: Timestamp, out: &mut Vec<HistoryBucket>) {
        for (key, bucket) in &mut self.buckets {
            if bucket.changed {
                out.push(bucket.emit(key, false, now));
            }
        }
    }

    /// When [`HistoryAccumulator::take_due`] has something to do next (perhaps a stale entry).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.schedule.first().map(|(at, _)| *at)
    }

    /// Buckets open now.
    pub fn open_buckets(&self) -> usize {
        self.buckets.len()
    }
}

impl Bucket {
    fn new(closes_at: Timestamp, first: Timestamp) -> Self {
        Bucket {
            sum: CompensatedSum::ZERO,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            closes_at,
            revision: 0,
            changed: false,
            next_allowed: first,
            send_at: None,
        }
    }

    fn count_value(&mut self, value: f64) {
        self.sum.add(value);
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.changed = true;
    }

    /// The wire form with the next revision; the bucket counts as unchanged after it.
    fn emit(&mut self, key: &BucketKey, is_final: bool, now: Timestamp) -> HistoryBucket {
        let now_ms = u64::try_from(now.unix_millis()).unwrap_or(0);
        self.revision = (self.revision + 1).max(now_ms);
        self.changed = false;
        HistoryBucket {
            machine_id: key.machine.to_string(),
            scrap_index: key.scrap_index,
            minute: Timestamp::from_unix_nanos(key.minute).to_rfc3339_millis(),
            sum: self.sum.value(),
            count: self.count,
            min: self.min,
            max: self.max,
            revision: self.revision,
            is_final,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const W: Duration = Duration::from_secs(2);
    const INTERVAL: Duration = Duration::from_secs(10);

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms).unwrap()
    }

    fn accumulator(window: Duration, interval: Duration) -> HistoryAccumulator {
        HistoryAccumulator::new(HistoryConfig { window, interval })
    }

    /// The key's offset in milliseconds, at the tests' interval.
    fn off(machine: &str, index: u32) -> i64 {
        i64::try_from(key_offset(machine, index, INTERVAL).as_millis()).unwrap()
    }

    fn due(h: &mut HistoryAccumulator, now: Timestamp) -> Vec<HistoryBucket> {
        let mut out = Vec::new();
        h.take_due(now, usize::MAX, &mut out);
        out
    }

    /// A minute start well after the epoch, so revisions (unix ms) are realistic.
    const M: i64 = 1_796_000_000_000 - 1_796_000_000_000 % 60_000;

    #[test]
    fn the_first_change_goes_out_at_the_key_offset_later_ones_per_interval_and_the_close_is_final()
    {
        let mut h = accumulator(W, INTERVAL);
        let o = off("A1", 2);
        assert_eq!(
            h.add("A1", 2, at(M + 1_000), 3.0, at(M + 1_000)),
            Added::Counted
        );
        assert!(due(&mut h, at(M + 999 + o)).is_empty(), "before the offset");
        let first = due(&mut h, at(M + 1_000 + o));
        assert_eq!(first.len(), 1);
        let b = &first[0];
        assert_eq!((b.sum, b.count, b.min, b.max), (3.0, 1, 3.0, 3.0));
        assert_eq!(b.minute, at(M).to_rfc3339_millis());
        assert!(!b.is_final);
        assert_eq!(b.revision, u64::try_from(M + 1_000 + o).unwrap());

        h.add("A1", 2, at(M + 2_000), -1.0, at(M + 2_000 + o));
        assert!(
            due(&mut h, at(M + 10_999 + o)).is_empty(),
            "within the interval"
        );
        assert_eq!(h.next_deadline(), Some(at(M + 11_000 + o)));
        let second = due(&mut h, at(M + 11_000 + o));
        assert_eq!(
            (second[0].sum, second[0].min, second[0].count),
            (2.0, -1.0, 2)
        );
        assert!(due(&mut h, at(M + 50_000)).is_empty(), "unchanged: nothing");

        let closes = M + 62_000 + o;
        assert_eq!(h.next_deadline(), Some(at(closes)));
        assert!(due(&mut h, at(closes - 1)).is_empty());
        let last = due(&mut h, at(closes));
        assert_eq!(last.len(), 1);
        assert!(last[0].is_final && last[0].revision > second[0].revision);
        assert_eq!(h.open_buckets(), 0);
        assert_eq!(h.next_deadline(), None);
    }

    #[test]
    fn a_reading_of_a_closed_minute_is_not_counted() {
        let mut h = accumulator(W, INTERVAL);
        let now = at(M + 62_000 + off("A1", 1));
        assert_eq!(h.add("A1", 1, at(M + 59_999), 1.0, now), Added::Closed);
        assert_eq!(h.add("A1", 1, at(M + 60_000), 1.0, now), Added::Counted);
        assert_eq!(h.open_buckets(), 1);
        // Until its key's offset after the window's close, a minute still takes a reading
        // (only a restart's rebuild from the log meets this).
        let before = at(M + 61_999 + off("A1", 1));
        assert_eq!(h.add("A1", 1, at(M + 59_999), 1.0, before), Added::Counted);
    }

    #[test]
    fn keys_and_minutes_have_buckets_of_their_own() {
        let mut h = accumulator(Duration::from_secs(60), INTERVAL);
        let now = at(M + 61_000);
        h.add("A1", 1, at(M + 10_000), 1.0, now);
        h.add("A1", 1, at(M + 60_500), 2.0, now);
        h.add("A1", 2, at(M + 60_500), 4.0, now);
        h.add("B1", 1, at(M + 60_500), 8.0, now);
        let later = now.saturating_add(INTERVAL);
        let mut sums: Vec<f64> = due(&mut h, later).iter().map(|b| b.sum).collect();
        sums.sort_by(f64::total_cmp);
        assert_eq!(sums, [1.0, 2.0, 4.0, 8.0]);
    }

    #[test]
    fn a_stop_sends_the_changed_open_buckets_and_a_restart_counts_revisions_upwards() {
        let mut h = accumulator(W, INTERVAL);
        let start = M + 1_000;
        h.add("A1", 1, at(start), 1.0, at(start));
        let first = due(&mut h, at(start + off("A1", 1)));
        assert_eq!(first.len(), 1);
        // A second reading of A1/1 waits for the interval; A1/2's first for its offset.
        let now = start + off("A1", 1) + 1;
        h.add("A1", 1, at(start + 500), 1.0, at(now));
        h.add("A1", 2, at(start + 500), 5.0, at(now));
        let mut out = Vec::new();
        h.drain_changed(at(now + 1), &mut out);
        out.sort_by_key(|b| b.scrap_index);
        assert_eq!(out.len(), 2, "both changed buckets go out at a stop");
        assert_eq!((out[0].scrap_index, out[0].count), (1, 2));
        let mut again = Vec::new();
        h.drain_changed(at(now + 2), &mut again);
        assert!(again.is_empty(), "nothing changed since");
        assert!(due(&mut h, at(now + 20_000)).is_empty(), "already sent");

        // The next process rebuilds the bucket and sends it with a higher revision.
        let mut next = accumulator(W, INTERVAL);
        let restart = now + 100;
        next.add("A1", 1, at(start), 1.0, at(restart));
        next.add("A1", 1, at(start + 500), 1.0, at(restart));
        let rebuilt = due(&mut next, at(restart + off("A1", 1)));
        assert!(rebuilt[0].revision > out[0].revision);
    }

    #[test]
    fn the_emission_limit_leaves_the_rest_for_the_next_call() {
        let mut h = accumulator(W, INTERVAL);
        let now = at(M + 1_000);
        for i in 0..10 {
            h.add(&format!("M{i}"), 1, now, 1.0, now);
        }
        let later = now.saturating_add(INTERVAL);
        let mut out = Vec::new();
        h.take_due(later, 4, &mut out);
        assert_eq!(out.len(), 4);
        h.take_due(later, 100, &mut out);
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn many_keys_opening_a_minute_together_send_spread_over_the_interval() {
        let mut h = accumulator(Duration::from_secs(60), INTERVAL);
        let now = at(M);
        for i in 0..1_000 {
            h.add(&format!("M{i:03}"), 1, now, 1.0, now);
        }
        // First changes: none in the first tenth of a second beyond a few, and no second
        // of the interval gets more than a fifth of the keys.
        let per_second: Vec<usize> = (0..10)
            .map(|s| due(&mut h, at(M + 999 + 1_000 * s)).len())
            .collect();
        assert_eq!(per_second.iter().sum::<usize>(), 1_000);
        assert!(per_second.iter().all(|&n| n < 200), "{per_second:?}");
        // Finals likewise, from the window's close on.
        let closes = M + 120_000;
        let finals: Vec<usize> = (0..10)
            .map(|s| {
                let out = due(&mut h, at(closes + 999 + 1_000 * s));
                assert!(out.iter().all(|b| b.is_final));
                out.len()
            })
            .collect();
        assert_eq!(finals.iter().sum::<usize>(), 1_000);
        assert!(finals.iter().all(|&n| n < 200), "{finals:?}");
    }

    #[test]
    fn a_key_offset_is_the_same_everywhere_and_within_the_interval() {
        assert_eq!(off("A1", 1), off("A1", 1));
        assert_ne!(
            (off("A1", 1), off("A1", 2), off("B1", 1)),
            (off("A1", 1), off("A1", 1), off("A1", 1))
        );
        for i in 0..500 {
            let o = key_offset(&format!("M{i}"), 3, Duration::from_secs(1));
            assert!(o < Duration::from_secs(1));
        }
        assert_eq!(key_offset("A1", 1, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn minutes_are_utc_minutes() {
        assert_eq!(minute_of(at(M + 59_999)), at(M));
        assert_eq!(minute_of(at(M)), at(M));
        assert_eq!(minute_of(at(-1)), at(-60_000));
    }

    /// One step of a run: time passes, then a reading the window accepts arrives.
    #[derive(Clone, Debug)]
    struct Step {
        advance_ms: i64,
        key: (u8, u32),
        /// How far before `now` its event time lies, as a fraction of the window.
        age: f64,
        value: i32,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            0..4_000_i64,
            (0..3_u8, 0..2_u32),
            0.0..1.0,
            -1_000..1_000_i32,
        )
            .prop_map(|(advance_ms, key, age, value)| Step {
                advance_ms,
                key,
                age,
                value,
            })
    }

    type BucketId = (String, u32, String);
    type Emitted = BTreeMap<BucketId, Vec<(Timestamp, HistoryBucket)>>;

    /// What a run emitted per bucket: (emitted at, message), in order.
    fn run(
        window: Duration,
        interval: Duration,
        steps: &[Step],
    ) -> (Emitted, BTreeMap<BucketId, Vec<f64>>) {
        let mut h = accumulator(window, interval);
        let mut now = at(M + 17_321);
        let mut emitted = Emitted::new();
        let mut readings: BTreeMap<BucketId, Vec<f64>> = BTreeMap::new();
        let window_ms = i64::try_from(window.as_millis()).unwrap();
        let mut record = |now: Timestamp, out: Vec<HistoryBucket>| {
            for b in out {
                let id = (b.machine_id.clone(), b.scrap_index, b.minute.clone());
                emitted.entry(id).or_default().push((now, b));
            }
        };
        for s in steps {
            now = now.saturating_add(Duration::from_millis(s.advance_ms.unsigned_abs()));
            record(now, due(&mut h, now));
            // Strictly inside the window: t > now - W.
            let age_ms = ((window_ms - 1) as f64 * s.age) as i64;
            let t = at(now.unix_millis() - age_ms);
            let machine = format!("M{}", s.key.0);
            let value = f64::from(s.value) / 4.0;
            assert_eq!(h.add(&machine, s.key.1, t, value, now), Added::Counted);
            let id = (machine, s.key.1, minute_of(t).to_rfc3339_millis());
            readings.entry(id).or_default().push(value);
            record(now, due(&mut h, now));
        }
        // Long after every close: everything final, nothing left.
        let end = now.saturating_add(window + MINUTE * 2);
        while let Some(next) = h.next_deadline() {
            record(next.max(now), due(&mut h, next.max(now)));
            assert!(next <= end);
        }
        assert_eq!(h.open_buckets(), 0);
        (emitted, readings)
    }

    proptest! {
        #[test]
        fn finals_hold_the_accepted_readings_once_with_rising_revisions_and_paced_updates(
            window_s in prop::sample::select(vec![1_u64, 2, 30, 60]),
            interval_s in prop::sample::select(vec![1_u64, 10]),
            steps in prop::collection::vec(step(), 1..200),
        ) {
            let (window, interval) = (Duration::from_secs(window_s), Duration::from_secs(interval_s));
            let (emitted, readings) = run(window, interval, &steps);
            let buckets: Vec<_> = emitted.keys().collect();
            let with_readings: Vec<_> = readings.keys().collect();
            prop_assert_eq!(buckets, with_readings, "a bucket exactly for every minute with readings");
            for (id, messages) in &emitted {
                let values = &readings[id];
                let finals = messages.iter().filter(|(_, b)| b.is_final).count();
                prop_assert_eq!(finals, 1, "{:?}", id);
                let (closed_at, last) = messages.last().unwrap();
                prop_assert!(last.is_final);
                // Quarter values sum exactly.
                prop_assert_eq!(last.sum, values.iter().sum::<f64>());
                prop_assert_eq!(last.count, values.len() as u64);
                prop_assert_eq!(last.min, values.iter().copied().fold(f64::INFINITY, f64::min));
                prop_assert_eq!(last.max, values.iter().copied().fold(f64::NEG_INFINITY, f64::max));
                let minute = Timestamp::parse_rfc3339(&id.2).unwrap();
                prop_assert!(*closed_at >= minute.saturating_add(MINUTE + window));
                for pair in messages.windows(2) {
                    prop_assert!(pair[1].1.revision > pair[0].1.revision, "{:?}", id);
                }
                let open: Vec<_> = messages.iter().filter(|(_, b)| !b.is_final).collect();
                for pair in open.windows(2) {
                    prop_assert!(pair[1].0.duration_since(pair[0].0) >= interval, "{:?}", id);
                }
            }
        }
    }
}
