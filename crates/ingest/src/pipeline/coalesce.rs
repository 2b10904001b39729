//! Per-key publish budget: a change to a key with budget is published at once; changes beyond
//! the budget wait, and the last change is always published (trailing edge). Pure: the caller
//! passes `now` in and does the publishing.
//!
//! Each key has a token bucket of `burst` tokens that refills one token per `interval`; a
//! publish takes one. A key that changes while it has a token is published on the next
//! [`Coalescer::take_ready`]; while it has none, its changes are folded into one publish when
//! the next token arrives. `burst` 1 is the plain cool-down.
//!
//! The bucket is kept in its GCRA form, one instant per key (the theoretical arrival time
//! `tat`): a publish at `now` is allowed when `now >= tat - (burst - 1) * interval`, and moves
//! `tat` to `max(tat, now) + interval`. A key whose bucket is full again (`tat <= now`) and
//! that has nothing to publish is dropped, so memory is bounded by the keys changed in the
//! last `burst` intervals.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hash;
use std::time::Duration;

use aggregator_core::Timestamp;
use hashbrown::HashMap;

#[derive(Debug, Clone, Copy, Default)]
struct State {
    /// Changed since the last publish.
    dirty: bool,
    /// Theoretical arrival time of the next publish (see the module doc).
    tat: Timestamp,
    /// In the `fresh` list.
    fresh: bool,
    /// The instant of this key's live entry in the `wakeups` heap; other entries are stale.
    wake_at: Option<Timestamp>,
}

/// Decides when each key's aggregate is published.
#[derive(Debug)]
pub struct Coalescer<K> {
    interval: Duration,
    /// `(burst - 1) * interval`: how far ahead of `now` a key's `tat` may be for a publish.
    tolerance: Duration,
    states: HashMap<K, State>,
    /// Changed keys to be looked at by the next [`Coalescer::take_ready`]: published at once
    /// when they have budget.
    fresh: Vec<K>,
    /// `(instant, key)`: when a waiting change gets budget, or when a quiet key's bucket is
    /// full again and it can be dropped. Entries not matching their key's `wake_at` are stale.
    wakeups: BinaryHeap<Reverse<(Timestamp, K)>>,
}

impl<K: Copy + Eq + Hash + Ord> Coalescer<K> {
    /// A coalescer with a budget of `burst` messages per key (at least 1) refilled one per
    /// `interval` (zero: every change).
    pub fn new(interval: Duration, burst: u32) -> Self {
        Coalescer {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
            states: HashMap::new(),
            fresh: Vec::new(),
            wakeups: BinaryHeap::new(),
        }
    }

    /// True when every change is to be published at once (interval zero).
    pub fn is_immediate(&self) -> bool {
        self.interval.is_zero()
    }

    /// Records that `key`'s aggregate changed.
    pub fn touch(&mut self, key: K) {
        let state = self.states.entry(key).or_default();
        state.dirty = true;
        if !state.fresh {
            state.fresh = true;
            self.fresh.push(key);
        }
    }

    /// Appends to `out` the keys whose aggregate is to be published now, at most `limit` of
    /// them (the rest stay due for the next call), and takes a token from each.
    pub fn take_ready(&mut self, now: Timestamp, limit: usize, out: &mut Vec<K>) {
        let mut taken = 0;
        while taken < limit {
            let Some(Reverse((at, key))) = self.wakeups.peek().copied() else {
                break;
            };
            if at > now {
                break;
            }
            self.wakeups.pop();
            let Some(state) = self.states.get_mut(&key) else {
                continue;
            };
            if state.wake_at != Some(at) {
                continue; // stale: superseded by an earlier wake-up
            }
            state.wake_at = None;
            taken += usize::from(self.settle(key, now, out));
        }
        while taken < limit {
            let Some(key) = self.fresh.pop() else {
                break;
            };
            let Some(state) = self.states.get_mut(&key) else {
                continue;
            };
            state.fresh = false;
            taken += usize::from(self.settle(key, now, out));
        }
    }

    /// Publishes `key` if it changed and has budget, schedules its next look otherwise, and
    /// drops it once it is quiet with a full bucket. True when it was published.
    fn settle(&mut self, key: K, now: Timestamp, out: &mut Vec<K>) -> bool {
        let Some(state) = self.states.get_mut(&key) else {
            return false;
        };
        let mut published = false;
        if state.dirty {
            let allowed_at = state.tat.saturating_sub(self.tolerance);
            if allowed_at <= now {
                out.push(key);
                published = true;
                state.dirty = false;
                state.tat = state.tat.max(now).saturating_add(self.interval);
            } else {
                schedule(&mut self.wakeups, key, state, allowed_at);
                return false;
            }
        }
        if state.tat <= now {
            if !state.fresh {
                self.states.remove(&key);
            }
        } else {
            // Quiet for now: look again when the bucket is full, to drop the key.
            schedule(&mut self.wakeups, key, state, state.tat);
        }
        published
    }

    /// The earliest instant at which [`Coalescer::take_ready`] has work: `now` while changed
    /// keys wait to be looked at, else the earliest wake-up.
    pub fn next_deadline_at(&self, now: Timestamp) -> Option<Timestamp> {
        if self.fresh.is_empty() {
            self.next_deadline()
        } else {
            Some(now)
        }
    }

    /// A publish of `key` could not be handed to the client: publish it again at `at`, or
    /// when the key has budget again, whichever comes later.
    pub fn retry(&mut self, key: K, at: Timestamp) {
        let state = self.states.entry(key).or_default();
        state.dirty = true;
        let at = at.max(state.tat.saturating_sub(self.tolerance));
        schedule(&mut self.wakeups, key, state, at);
    }

    /// The earliest wake-up, when a waiting change may be due, a retry is due or a quiet key
    /// can be dropped; keys waiting to be looked at are not counted (see
    /// [`Coalescer::next_deadline_at`]).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.wakeups.peek().map(|Reverse((at, _))| *at)
    }

    /// Appends every key with an unpublished change to `out` and forgets all state: the final
    /// flush at shutdown.
    pub fn drain_dirty(&mut self, out: &mut Vec<K>) {
        let mut keys: Vec<K> = self
            .states
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(k, _)| *k)
            .collect();
        keys.sort_unstable();
        out.extend(keys);
        self.states.clear();
        self.fresh.clear();
        self.wakeups.clear();
    }

    /// True when no key is tracked (changed or refilling).
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

/// Makes `at` the key's wake-up unless it already has an earlier (or the same) one.
fn schedule<K: Copy + Ord>(
    wakeups: &mut BinaryHeap<Reverse<(Timestamp, K)>>,
    key: K,
    state: &mut State,
    at: Timestamp,
) {
    if state.wake_at.is_some_and(|current| current <= at) {
        return;
    }
    state.wake_at = Some(at);
    wakeups.push(Reverse((at, key)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: i64) -> Timestamp {
        Timestamp::from_unix_nanos(n * 1_000_000)
    }

    fn ready(c: &mut Coalescer<u32>, now: Timestamp) -> Vec<u32> {
        let mut out = Vec::new();
        c.take_ready(now, usize::MAX, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn first_change_is_published_at_once_then_the_key_cools_down() {
        let mut c = Coalescer::new(Duration::from_millis(100), 1);
        c.touch(1);
        assert_eq!(
            c.next_deadline_at(ms(0)),
            Some(ms(0)),
            "changed, not yet looked at"
        );
        assert_eq!(ready(&mut c, ms(0)), vec![1]);
        c.touch(1);
        c.touch(1);
        assert_eq!(ready(&mut c, ms(50)), Vec::<u32>::new());
        assert_eq!(c.next_deadline(), Some(ms(100)));
        assert_eq!(ready(&mut c, ms(99)), Vec::<u32>::new());
        assert_eq!(ready(&mut c, ms(100)), vec![1], "trailing edge");
        assert_eq!(c.next_deadline(), Some(ms(200)));
        assert_eq!(ready(&mut c, ms(200)), Vec::<u32>::new());
        assert!(c.is_empty(), "a quiet key is dropped after one cool-down");
        c.touch(1);
        assert_eq!(ready(&mut c, ms(250)), vec![1], "leading edge again");
    }

    #[test]
    fn a_burst_gives_one_message_per_interval_and_the_last_change_is_published() {
        let mut c = Coalescer::new(Duration::from_millis(100), 1);
        let mut published = Vec::new();
        // One change every millisecond for one second, then silence.
        for t in 0..1000 {
            c.touch(7);
            c.take_ready(ms(t), usize::MAX, &mut published);
        }
        let mut t = 1000;
        while let Some(deadline) = c.next_deadline() {
            t = t.max(deadline.unix_nanos() / 1_000_000);
            c.take_ready(ms(t), usize::MAX, &mut published);
        }
        assert!(published.len() <= 11, "{} publishes", published.len());
        assert!(published.len() >= 10, "{} publishes", published.len());
        assert!(c.is_empty());
    }

    #[test]
    fn keys_are_independent() {
        let mut c = Coalescer::new(Duration::from_millis(100), 1);
        c.touch(1);
        assert_eq!(ready(&mut c, ms(0)), vec![1]);
        c.touch(2);
        c.touch(1);
        assert_eq!(ready(&mut c, ms(10)), vec![2]);
        assert_eq!(ready(&mut c, ms(100)), vec![1]);
        c.touch(2);
        assert_eq!(ready(&mut c, ms(110)), vec![2]);
    }

    #[test]
    fn zero_interval_publishes_every_change_and_keeps_no_state() {
        let mut c = Coalescer::new(Duration::ZERO, 1);
        assert!(c.is_immediate());
        for t in 0..5 {
            c.touch(3);
            assert_eq!(ready(&mut c, ms(t)), vec![3]);
        }
        assert!(c.is_empty());
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn a_failed_publish_is_retried() {
        let mut c = Coalescer::new(Duration::from_millis(100), 1);
        c.touch(1);
        assert_eq!(ready(&mut c, ms(0)), vec![1]);
        // The client refused it: retry at 20 ms, but the cool-down (100 ms) wins.
        c.retry(1, ms(20));
        assert_eq!(ready(&mut c, ms(20)), Vec::<u32>::new());
        assert_eq!(ready(&mut c, ms(100)), vec![1]);

        let mut z = Coalescer::new(Duration::ZERO, 1);
        z.touch(2);
        assert_eq!(ready(&mut z, ms(0)), vec![2]);
        z.retry(2, ms(20));
        assert_eq!(z.next_deadline(), Some(ms(20)));
        assert_eq!(ready(&mut z, ms(20)), vec![2]);
        assert!(z.is_empty());
    }

    #[test]
    fn at_most_limit_keys_per_call_and_the_rest_stay_due() {
        let mut c = Coalescer::new(Duration::from_millis(100), 1);
        for key in 0..10 {
            c.touch(key);
        }
        let mut out = Vec::new();
        c.take_ready(ms(0), 4, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(c.next_deadline_at(ms(0)), Some(ms(0)), "still due");
        c.take_ready(ms(0), 4, &mut out);
        c.take_ready(ms(0), 4, &mut out);
        out.sort_unstable();
        assert_eq!(out, (0..10).collect::<Vec<u32>>());
        assert_eq!(c.next_deadline_at(ms(0)), Some(ms(100)));
    }

    #[test]
    fn drain_returns_every_unpublished_change() {
        let mut c = Coalescer::new(Duration::from_millis(100), 1);
        c.touch(1);
        c.touch(2);
        assert_eq!(ready(&mut c, ms(0)), vec![1, 2]);
        c.touch(2);
        c.touch(3);
        let mut out = Vec::new();
        c.drain_dirty(&mut out);
        assert_eq!(out, vec![2, 3]);
        assert!(c.is_empty());
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn a_quiet_key_spends_its_burst_at_once_then_waits_for_tokens() {
        let mut c = Coalescer::new(Duration::from_millis(50), 5);
        for t in 0..5 {
            c.touch(1);
            assert_eq!(ready(&mut c, ms(t)), vec![1], "change {t} has budget");
        }
        c.touch(1);
        c.touch(1);
        assert_eq!(ready(&mut c, ms(5)), Vec::<u32>::new(), "budget spent");
        // Tokens come back one per interval after the first publish: the first at 50 ms.
        assert_eq!(c.next_deadline(), Some(ms(50)));
        assert_eq!(ready(&mut c, ms(50)), vec![1], "the folded changes");
        c.touch(1);
        assert_eq!(ready(&mut c, ms(60)), Vec::<u32>::new());
        assert_eq!(ready(&mut c, ms(100)), vec![1]);
        // Quiet until the bucket is full again: the key is dropped.
        while let Some(at) = c.next_deadline() {
            c.take_ready(at, usize::MAX, &mut Vec::new());
        }
        assert!(c.is_empty());
    }

    #[test]
    fn eleven_changes_a_second_never_wait_with_the_default_budget() {
        // 100 msg/s over 9 keys, the original's load: about one change per key every 90 ms,
        // here with jitter that puts two changes 10 ms apart.
        let mut c = Coalescer::new(Duration::from_millis(50), 5);
        let mut t = 0;
        for n in 0..1_000 {
            t += if n % 2 == 0 { 10 } else { 170 };
            c.touch(9);
            assert_eq!(ready(&mut c, ms(t)), vec![9], "change {n} at {t} ms waited");
        }
    }

    /// Drives a coalescer through changes of one key at the given instants (ms), calling
    /// `take_ready` at every change and every deadline, and returns the publish instants.
    fn drive(interval_ms: u64, burst: u32, changes: &[i64]) -> (Vec<i64>, Coalescer<u32>) {
        let mut c = Coalescer::new(Duration::from_millis(interval_ms), burst);
        let mut published = Vec::new();
        let mut out = Vec::new();
        let mut step = |c: &mut Coalescer<u32>, t: i64, published: &mut Vec<i64>| {
            c.take_ready(ms(t), usize::MAX, &mut out);
            published.extend(out.drain(..).map(|_| t));
        };
        for &t in changes {
            while let Some(at) = c.next_deadline().filter(|at| *at < ms(t)) {
                step(&mut c, at.unix_nanos() / 1_000_000, &mut published);
            }
            c.touch(0);
            step(&mut c, t, &mut published);
        }
        while let Some(at) = c.next_deadline() {
            step(&mut c, at.unix_nanos() / 1_000_000, &mut published);
        }
        (published, c)
    }

    proptest::proptest! {
        #[test]
        fn the_budget_caps_every_window_and_the_last_change_goes_out(
            interval_ms in 1_u64..200,
            burst in 1_u32..8,
            gaps in proptest::collection::vec(0_i64..150, 1..300),
        ) {
            let changes: Vec<i64> = gaps
                .iter()
                .scan(0, |t, gap| {
                    *t += gap;
                    Some(*t)
                })
                .collect();
            let (published, c) = drive(interval_ms, burst, &changes);
            let last_change = *changes.last().unwrap();
            // The last change always goes out, and nothing is left behind.
            proptest::prop_assert!(published.last().is_some_and(|p| *p >= last_change));
            proptest::prop_assert!(c.is_empty());
            // Never more than `burst` plus one per interval in any window.
            let interval = interval_ms as i64;
            for (i, start) in published.iter().enumerate() {
                for (j, end) in published.iter().enumerate().skip(i) {
                    let allowed = i64::from(burst) + (end - start) / interval;
                    proptest::prop_assert!(
                        (j - i + 1) as i64 <= allowed,
                        "{} publishes in [{start}, {end}] ms, allowed {allowed}", j - i + 1
                    );
                }
            }
            // A change after `burst` quiet intervals goes out at once.
            for (n, &t) in changes.iter().enumerate() {
                let quiet_since = t - interval * i64::from(burst);
                let recent = published.iter().any(|p| *p > quiet_since && *p < t)
                    || changes[..n].iter().any(|c| *c > quiet_since && *c < t);
                if !recent {
                    proptest::prop_assert!(published.contains(&t), "change at {t} ms waited");
                }
            }
        }
    }
}
