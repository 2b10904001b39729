//! The settled re-send: a key's aggregate is published once more a fixed time after its last
//! publish, when nothing newer went out meanwhile.
//!
//! A broker may acknowledge a retained QoS 1 message and still fail to deliver it to a
//! subscriber (NATS 2.9 did, now and then, under load: a gateway kept a key's previous
//! aggregate while the broker held the new one). While a key keeps changing the next publish
//! repairs that; the last one of a burst has nothing after it. Re-sending that last one once,
//! after the key went quiet, bounds how long a lost delivery can show. Off (`None`) by
//! default: Mosquitto needs none of it. Pure: time comes in as an argument.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use aggregator_core::Timestamp;

/// Which keys are due for their one re-send.
#[derive(Debug)]
pub struct Settle<K> {
    after: Option<Duration>,
    /// `(due, key)` in publish order; the delay is constant, so also in due order.
    queue: VecDeque<(Timestamp, K)>,
    /// Each waiting key's last publish.
    last: HashMap<K, Timestamp>,
}

impl<K: Copy + Eq + Hash> Settle<K> {
    /// Re-sends `after` the last publish; `None` never re-sends.
    pub fn new(after: Option<Duration>) -> Self {
        Self {
            after,
            queue: VecDeque::new(),
            last: HashMap::new(),
        }
    }

    /// `key`'s aggregate went out at `now` (a regular publish, not a re-send).
    pub fn published(&mut self, key: K, now: Timestamp) {
        let Some(after) = self.after else {
            return;
        };
        self.queue.push_back((now.saturating_add(after), key));
        self.last.insert(key, now);
    }

    /// Moves the keys whose re-send is due at `now` into `due`: those published last
    /// `after` ago or longer, each once.
    pub fn take_due(&mut self, now: Timestamp, due: &mut Vec<K>) {
        let Some(after) = self.after else {
            return;
        };
        while let Some(&(at, key)) = self.queue.front() {
            if at > now {
                break;
            }
            self.queue.pop_front();
            // A newer publish of the key has its own, later entry.
            if self
                .last
                .get(&key)
                .is_some_and(|last| last.saturating_add(after) <= now)
            {
                self.last.remove(&key);
                due.push(key);
            }
        }
    }

    /// When the next entry falls due.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.queue.front().map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_nanos((1_700_000_000_000 + ms) * 1_000_000)
    }

    fn due(settle: &mut Settle<u32>, now: i64) -> Vec<u32> {
        let mut keys = Vec::new();
        settle.take_due(at(now), &mut keys);
        keys
    }

    #[test]
    fn the_last_publish_of_a_burst_is_re_sent_once_after_the_quiet_time() {
        let mut settle = Settle::new(Some(Duration::from_millis(2_000)));
        for (key, ms) in [(7, 0), (7, 100), (8, 150), (7, 200)] {
            settle.published(key, at(ms));
        }
        assert_eq!(settle.next_deadline(), Some(at(2_000)));
        // 7's entries of 0 and 100 ms pass: it changed again at 200 ms.
        assert!(due(&mut settle, 2_149).is_empty());
        assert_eq!(due(&mut settle, 2_150), vec![8]);
        assert_eq!(due(&mut settle, 2_200), vec![7]);
        assert!(due(&mut settle, 9_000).is_empty());
    }

    #[test]
    fn keys_come_due_in_publish_order_and_only_once() {
        let mut settle = Settle::new(Some(Duration::from_millis(1_000)));
        settle.published(1, at(0));
        settle.published(2, at(10));
        assert_eq!(due(&mut settle, 5_000), vec![1, 2]);
        assert!(due(&mut settle, 10_000).is_empty());
        assert_eq!(settle.next_deadline(), None);
        // A key published again after its re-send gets a new one.
        settle.published(1, at(20_000));
        assert_eq!(due(&mut settle, 21_000), vec![1]);
    }

    #[test]
    fn a_disabled_settle_re_sends_nothing() {
        let mut off = Settle::new(None);
        off.published(1, at(0));
        assert_eq!(off.next_deadline(), None);
        assert!(due(&mut off, 1_000_000).is_empty());
    }
}
