//! Per-key publish coalescing: at most one aggregate per key per `publish_interval`, and the
//! last change is always published (trailing edge).
//!
//! Pure decision logic: the caller passes `now` in and does the publishing, so the rules are
//! tested without a runtime or a clock.
//!
//! A key that changes while it is not cooling down is published at once (leading edge) and
//! then cools down for one interval; changes during the cool-down are folded into one publish
//! when it ends, which starts the next cool-down. A key that stays quiet through a whole
//! cool-down is dropped, so memory is bounded by the keys changed in the last interval.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hash;
use std::time::Duration;

use aggregator_core::Timestamp;
use hashbrown::HashMap;

#[derive(Debug, Clone, Copy)]
struct State {
    /// Changed since the last publish.
    dirty: bool,
    /// Has an entry in the cool-down heap.
    cooling: bool,
}

/// Decides when each key's aggregate is published.
#[derive(Debug)]
pub struct Coalescer<K> {
    interval: Duration,
    states: HashMap<K, State>,
    /// Changed keys not cooling down: published by the next [`Coalescer::take_ready`].
    fresh: Vec<K>,
    /// `(end of cool-down, key)`; each cooling key has exactly one entry.
    cooldowns: BinaryHeap<Reverse<(Timestamp, K)>>,
}

impl<K: Copy + Eq + Hash + Ord> Coalescer<K> {
    /// A coalescer publishing each key at most once per `interval` (zero: every change).
    pub fn new(interval: Duration) -> Self {
        Coalescer {
            interval,
            states: HashMap::new(),
            fresh: Vec::new(),
            cooldowns: BinaryHeap::new(),
        }
    }

    /// True when every change is to be published at once (interval zero).
    pub fn is_immediate(&self) -> bool {
        self.interval.is_zero()
    }

    /// Records that `key`'s aggregate changed.
    pub fn touch(&mut self, key: K) {
        match self.states.get_mut(&key) {
            Some(state) => state.dirty = true,
            None => {
                self.states.insert(
                    key,
                    State {
                        dirty: true,
                        cooling: false,
                    },
                );
                self.fresh.push(key);
            }
        }
    }

    /// Appends to `out` the keys whose aggregate is to be published now, at most `limit` of
    /// them (the rest stay due for the next call), and starts their cool-down at `now`.
    pub fn take_ready(&mut self, now: Timestamp, limit: usize, out: &mut Vec<K>) {
        let mut taken = 0;
        while taken < limit {
            let Some(Reverse((end, key))) = self.cooldowns.peek().copied() else {
                break;
            };
            if end > now {
                break;
            }
            self.cooldowns.pop();
            let Some(state) = self.states.get_mut(&key) else {
                continue;
            };
            state.cooling = false;
            if state.dirty {
                out.push(key);
                taken += 1;
                self.start_cooldown(key, now);
            } else {
                self.states.remove(&key);
            }
        }
        while taken < limit {
            let Some(key) = self.fresh.pop() else {
                break;
            };
            let Some(state) = self.states.get(&key) else {
                continue;
            };
            if state.cooling || !state.dirty {
                // Already handled by a cool-down that ended above, or rescheduled by retry.
                continue;
            }
            out.push(key);
            taken += 1;
            self.start_cooldown(key, now);
        }
    }

    /// The earliest instant at which [`Coalescer::take_ready`] has work: `now` while changed
    /// keys wait for their leading edge, else the end of the earliest cool-down.
    pub fn next_deadline_at(&self, now: Timestamp) -> Option<Timestamp> {
        if self.fresh.is_empty() {
            self.next_deadline()
        } else {
            Some(now)
        }
    }

    fn start_cooldown(&mut self, key: K, now: Timestamp) {
        if self.interval.is_zero() {
            self.states.remove(&key);
            return;
        }
        if let Some(state) = self.states.get_mut(&key) {
            state.dirty = false;
            state.cooling = true;
            self.cooldowns
                .push(Reverse((now.saturating_add(self.interval), key)));
        }
    }

    /// A publish of `key` could not be handed to the client: publish it again at `at` or at
    /// the end of its cool-down, whichever comes later.
    pub fn retry(&mut self, key: K, at: Timestamp) {
        let state = self.states.entry(key).or_insert(State {
            dirty: true,
            cooling: false,
        });
        state.dirty = true;
        if !state.cooling {
            state.cooling = true;
            self.cooldowns.push(Reverse((at, key)));
        }
    }

    /// The end of the earliest cool-down, when a trailing-edge publish or a retry may be due.
    /// Keys waiting for their leading edge are reported by [`Coalescer::has_fresh`] instead.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.cooldowns.peek().map(|Reverse((end, _))| *end)
    }

    /// True when changed keys wait for their leading-edge publish.
    pub fn has_fresh(&self) -> bool {
        !self.fresh.is_empty()
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
        self.cooldowns.clear();
    }

    /// Keys currently tracked (changed or cooling down).
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
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
        let mut c = Coalescer::new(Duration::from_millis(100));
        c.touch(1);
        assert!(c.has_fresh());
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
        let mut c = Coalescer::new(Duration::from_millis(100));
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
        let mut c = Coalescer::new(Duration::from_millis(100));
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
        let mut c = Coalescer::new(Duration::ZERO);
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
        let mut c = Coalescer::new(Duration::from_millis(100));
        c.touch(1);
        assert_eq!(ready(&mut c, ms(0)), vec![1]);
        // The client refused it: retry at 20 ms, but the cool-down (100 ms) wins.
        c.retry(1, ms(20));
        assert_eq!(ready(&mut c, ms(20)), Vec::<u32>::new());
        assert_eq!(ready(&mut c, ms(100)), vec![1]);

        let mut z = Coalescer::new(Duration::ZERO);
        z.touch(2);
        assert_eq!(ready(&mut z, ms(0)), vec![2]);
        z.retry(2, ms(20));
        assert_eq!(z.next_deadline(), Some(ms(20)));
        assert_eq!(ready(&mut z, ms(20)), vec![2]);
        assert!(z.is_empty());
    }

    #[test]
    fn at_most_limit_keys_per_call_and_the_rest_stay_due() {
        let mut c = Coalescer::new(Duration::from_millis(100));
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
        let mut c = Coalescer::new(Duration::from_millis(100));
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
}
