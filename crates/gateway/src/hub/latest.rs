//! The latest value per key of one retained topic family (aggregates, alarms or trends), as
//! the hub ([`crate::hub`]) keeps it for each.
//!
//! A change is pending until the batcher flushes it; snapshots and the HTTP API show only the
//! flushed state, so the frames of a flush carry exactly the difference between two flushed
//! states. `None` (an empty retained payload) forgets a key. After a reconnect the broker
//! replays every retained message: a key not replayed between `begin_resync` and
//! `finish_resync` was cleared while the gateway was away and is forgotten too.
//!
//! A broker may deliver an old message again, late (a NATS node after a restart): a value
//! stamped before the one held for its key is refused, in every family alike, so that an old
//! "raised" never follows the "cleared" that ended it.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use aggregator_core::alarm::AlarmMessage;
use aggregator_core::trend::TrendMessage;
use aggregator_core::{Aggregate, KeyRef};

use crate::hub::frame::{EncodedSize, Key, MachineFilter};

/// The latest value per key, with the changes not yet flushed.
#[derive(Debug)]
pub(crate) struct Latest<V> {
    /// What clients have been told; shared, so that a snapshot part takes its values under
    /// the hub's lock without copying them and encodes them after.
    shown: BTreeMap<Key, Arc<V>>,
    /// Changes since the last flush, latest per key; `None` forgets the key.
    pending: BTreeMap<Key, Option<V>>,
    /// During a retained replay: keys heard of since the reconnect.
    seen: Option<HashSet<Key>>,
}

impl<V> Default for Latest<V> {
    fn default() -> Self {
        Self {
            shown: BTreeMap::new(),
            pending: BTreeMap::new(),
            seen: None,
        }
    }
}

/// A value that says when ingest made it.
pub(crate) trait Stamped {
    /// Ingest's clock when the value was made, RFC 3339 UTC with milliseconds
    /// (`2026-01-01T12:00:41.337Z`); `None` when unknown.
    fn stamp(&self) -> Option<&str>;
}

impl Stamped for Aggregate {
    fn stamp(&self) -> Option<&str> {
        Some(&self.timestamp)
    }
}

impl Stamped for AlarmMessage {
    fn stamp(&self) -> Option<&str> {
        Some(&self.timestamp)
    }
}

/// A trend is as new as its newest sample.
impl Stamped for TrendMessage {
    fn stamp(&self) -> Option<&str> {
        self.points.last().map(|point| point.t.as_str())
    }
}

/// Whether `held` was made after `incoming`. Only times in ingest's fixed form are compared
/// (as text, which orders them); a time in another form never makes a value stale.
fn stamped_later(held: &impl Stamped, incoming: &impl Stamped) -> bool {
    let fixed = |t: &&str| t.len() == 24 && t.ends_with('Z');
    match (held.stamp().filter(fixed), incoming.stamp().filter(fixed)) {
        (Some(held), Some(incoming)) => held > incoming,
        _ => false,
    }
}

/// What [`Latest::set`] did with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Recorded for the next flush.
    Changed,
    /// The key already has (or will have) this value.
    Unchanged,
    /// Stamped before the value held for its key: a late redelivery, ignored.
    Stale,
}

/// What one flush of a [`Latest`] changed.
#[derive(Debug)]
pub(crate) struct Changes<V> {
    /// New or changed values, sorted by key.
    pub changed: Vec<V>,
    /// Keys forgotten that clients had been shown, sorted.
    pub removed: Vec<KeyRef>,
}

impl<V> Changes<V> {
    pub(crate) fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }

    /// The changes in batches of at most `max` values of about `max_bytes` in all and `max`
    /// removed keys each, made into frames of bounded size by `frame`; none when nothing
    /// changed.
    pub(crate) fn batches<F>(
        self,
        max: usize,
        max_bytes: usize,
        frame: impl Fn(Vec<V>, Vec<KeyRef>) -> F,
    ) -> impl Iterator<Item = F>
    where
        V: EncodedSize,
    {
        let mut changed = chunks_within(self.changed, max, max_bytes);
        let mut removed = chunks(self.removed, max);
        std::iter::from_fn(move || match (changed.next(), removed.next()) {
            (None, None) => None,
            (c, r) => Some(frame(c.unwrap_or_default(), r.unwrap_or_default())),
        })
    }
}

/// `items` in order, in runs of at most `max` items and `max_bytes` by [`EncodedSize`] (a
/// larger item goes alone); none when `items` is empty.
fn chunks_within<T: EncodedSize>(
    items: Vec<T>,
    max: usize,
    max_bytes: usize,
) -> impl Iterator<Item = Vec<T>> {
    let mut items = items.into_iter().peekable();
    std::iter::from_fn(move || {
        let (mut run, mut size) = (Vec::new(), 0);
        while let Some(item) = items.next_if(|item| {
            run.is_empty() || (run.len() < max && size + item.encoded_size() <= max_bytes)
        }) {
            size += item.encoded_size();
            run.push(item);
        }
        (!run.is_empty()).then_some(run)
    })
}

/// `items` in order, in runs of at most `max`; none when `items` is empty.
pub(crate) fn chunks<T>(mut items: Vec<T>, max: usize) -> impl Iterator<Item = Vec<T>> {
    std::iter::from_fn(move || {
        let rest = items.split_off(items.len().min(max));
        let run = std::mem::replace(&mut items, rest);
        (!run.is_empty()).then_some(run)
    })
}

impl<V: PartialEq + Clone + Stamped> Latest<V> {
    /// Records `value` (`None`: forget) for `key`, unless it changes nothing or is stale.
    /// Either way the key was heard of: a replay does not forget it.
    pub(crate) fn set(&mut self, key: Key, value: Option<V>) -> Outcome {
        if let (Some(held), Some(incoming)) = (self.current(&key), &value)
            && stamped_later(held, incoming)
        {
            self.heard_of(&key);
            return Outcome::Stale;
        }
        match self.record(key, value) {
            true => Outcome::Changed,
            false => Outcome::Unchanged,
        }
    }
}

impl<V: PartialEq + Clone> Latest<V> {
    /// Records `value` (`None`: forget) for `key` as heard of; `false` when it changes
    /// nothing.
    fn record(&mut self, key: Key, value: Option<V>) -> bool {
        self.heard_of(&key);
        if self.current(&key) == value.as_ref() {
            return false;
        }
        self.pending.insert(key, value);
        true
    }

    /// During a retained replay, notes that `key` was replayed.
    fn heard_of(&mut self, key: &Key) {
        if let Some(seen) = self.seen.as_mut() {
            seen.insert(key.clone());
        }
    }

    /// The value `key` will have after the next flush.
    pub(crate) fn current(&self, key: &Key) -> Option<&V> {
        match self.pending.get(key) {
            Some(pending) => pending.as_ref(),
            None => self.shown.get(key).map(|v| &**v),
        }
    }

    /// Keys shown.
    pub(crate) fn len(&self) -> usize {
        self.shown.len()
    }

    /// The shown values of the machines `filter` passes (all without one), sorted by key.
    pub(crate) fn values<'a>(
        &'a self,
        filter: Option<&'a MachineFilter>,
    ) -> impl Iterator<Item = &'a V> + 'a {
        (self.shown.iter())
            .filter(move |((machine, _), _)| filter.is_none_or(|f| f.matches(machine)))
            .map(|(_, value)| &**value)
    }

    /// The shown entries after `after` (from the first without it) of the machines `filter`
    /// passes, sorted by key: where a snapshot part resumes.
    pub(crate) fn after<'a>(
        &'a self,
        after: Option<&Key>,
        filter: Option<&'a MachineFilter>,
    ) -> impl Iterator<Item = (&'a Key, &'a Arc<V>)> + 'a {
        let start = after.map_or(Bound::Unbounded, |key| Bound::Excluded(key.clone()));
        (self.shown.range((start, Bound::Unbounded)))
            .filter(move |((machine, _), _)| filter.is_none_or(|f| f.matches(machine)))
    }

    /// Starts a retained replay: keys not [`Latest::set`] until [`Latest::finish_resync`]
    /// are forgotten then.
    pub(crate) fn begin_resync(&mut self) {
        self.seen = Some(HashSet::new());
    }

    /// Forgets every key not heard of since [`Latest::begin_resync`]. Returns how many keys
    /// that forgot (0 outside a replay).
    pub(crate) fn finish_resync(&mut self) -> usize {
        let Some(seen) = self.seen.take() else {
            return 0;
        };
        let unseen: Vec<Key> = (self.shown.keys().chain(self.pending.keys()))
            .filter(|key| !seen.contains(*key))
            .cloned()
            .collect();
        // A key both shown and pending is listed twice; `record` forgets it once.
        unseen
            .into_iter()
            .filter(|key| self.record(key.clone(), None))
            .count()
    }

    /// Applies the pending changes to the shown state and returns them.
    pub(crate) fn flush(&mut self) -> Changes<V> {
        let mut changes = Changes {
            changed: Vec::new(),
            removed: Vec::new(),
        };
        for (key, value) in std::mem::take(&mut self.pending) {
            match value {
                Some(value) => {
                    self.shown.insert(key, Arc::new(value.clone()));
                    changes.changed.push(value);
                }
                // Added and forgotten within one batch: never shown, nothing to say.
                None => {
                    if self.shown.remove(&key).is_some() {
                        changes.removed.push(KeyRef {
                            machine_id: key.0,
                            scrap_index: key.1,
                        });
                    }
                }
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(machine: &str, index: u32) -> Key {
        (machine.to_owned(), index)
    }

    /// Test values carry no time: none is ever stale.
    impl Stamped for u32 {
        fn stamp(&self) -> Option<&str> {
            None
        }
    }

    /// Whether setting `value` changed something.
    fn set(latest: &mut Latest<u32>, key: Key, value: Option<u32>) -> bool {
        latest.set(key, value) == Outcome::Changed
    }

    /// A store that has shown `values` under machine `A1`, `B1`, ... (index 1).
    fn flushed(values: &[u32]) -> Latest<u32> {
        let mut latest = Latest::default();
        for (machine, value) in ["A1", "B1", "C1", "D1"].iter().zip(values) {
            set(&mut latest, key(machine, 1), Some(*value));
        }
        latest.flush();
        latest
    }

    fn shown(latest: &Latest<u32>) -> Vec<u32> {
        latest.values(None).copied().collect()
    }

    fn removed(changes: &Changes<u32>) -> Vec<(String, u32)> {
        (changes.removed.iter())
            .map(|k| (k.machine_id.clone(), k.scrap_index))
            .collect()
    }

    #[test]
    fn changes_stay_pending_until_flushed() {
        let mut latest: Latest<u32> = Latest::default();
        assert!(set(&mut latest, key("B1", 1), Some(2)));
        assert!(set(&mut latest, key("A1", 1), Some(1)));
        assert_eq!(
            shown(&latest),
            Vec::<u32>::new(),
            "nothing shown before a flush"
        );
        assert_eq!(latest.len(), 0);
        let changes = latest.flush();
        assert_eq!(changes.changed, vec![1, 2], "sorted by key");
        assert_eq!(shown(&latest), vec![1, 2]);
        assert!(
            latest.flush().is_empty(),
            "a flush applies the changes once"
        );
    }

    #[test]
    fn a_change_is_measured_against_the_pending_value_first() {
        let mut latest = flushed(&[1]);
        assert!(!set(&mut latest, key("A1", 1), Some(1)), "same as shown");
        assert!(set(&mut latest, key("A1", 1), Some(2)));
        assert!(!set(&mut latest, key("A1", 1), Some(2)), "same as pending");
        // Back to the shown value: still a pending change, which the flush reports.
        assert!(set(&mut latest, key("A1", 1), Some(1)));
        assert_eq!(latest.flush().changed, vec![1]);
    }

    #[test]
    fn removal_reports_only_keys_that_were_shown() {
        let mut latest = flushed(&[1]);
        assert!(
            !set(&mut latest, key("Z9", 1), None),
            "an unknown key: no change"
        );
        assert!(set(&mut latest, key("A1", 1), None));
        assert!(!set(&mut latest, key("A1", 1), None), "already pending");
        assert!(set(&mut latest, key("B1", 1), Some(5)));
        assert!(set(&mut latest, key("B1", 1), None));
        let changes = latest.flush();
        assert!(changes.changed.is_empty());
        assert_eq!(
            removed(&changes),
            vec![("A1".into(), 1)],
            "B1/1 was never shown"
        );
        assert_eq!(latest.len(), 0);
        assert!(latest.flush().is_empty());
    }

    #[test]
    fn a_resync_forgets_what_was_not_replayed() {
        let mut latest = flushed(&[1, 2, 3]);
        set(&mut latest, key("C1", 1), Some(4));
        set(&mut latest, key("D1", 1), Some(5));
        latest.begin_resync();
        // Replayed unchanged: heard of, though it changes nothing.
        assert!(!set(&mut latest, key("A1", 1), Some(1)));
        // B1 is not replayed; C1 (shown and pending) and D1 (pending only) neither.
        assert_eq!(latest.finish_resync(), 3);
        let changes = latest.flush();
        assert!(changes.changed.is_empty());
        assert_eq!(
            removed(&changes),
            vec![("B1".into(), 1), ("C1".into(), 1)],
            "D1/1 was never shown"
        );
        assert_eq!(shown(&latest), vec![1]);
        assert_eq!(latest.finish_resync(), 0, "only once per replay");
    }

    #[test]
    fn a_resync_does_not_count_keys_already_forgotten() {
        let mut latest = flushed(&[1]);
        set(&mut latest, key("A1", 1), None);
        latest.begin_resync();
        assert_eq!(latest.finish_resync(), 0);
        assert_eq!(latest.flush().removed.len(), 1);
    }

    #[test]
    fn values_keep_the_filtered_machines() {
        let latest = flushed(&[1, 2, 3]);
        let filter = MachineFilter::parse("C1,A1").unwrap();
        let kept: Vec<u32> = latest.values(Some(&filter)).copied().collect();
        assert_eq!(kept, vec![1, 3]);
    }

    #[test]
    fn batches_bound_both_lists() {
        let changes = Changes {
            changed: (0..5).collect::<Vec<u32>>(),
            removed: (0..3)
                .map(|i| KeyRef {
                    machine_id: "A1".into(),
                    scrap_index: i,
                })
                .collect(),
        };
        let sizes: Vec<(usize, usize)> = changes
            .batches(2, 1_000, |changed, removed| (changed.len(), removed.len()))
            .collect();
        assert_eq!(sizes, vec![(2, 2), (2, 1), (1, 0)]);
        // By size: values of 0..5 "bytes" each, at most 4 bytes a batch; a value larger than
        // that would go alone.
        let by_size = Changes {
            changed: vec![3_u32, 1, 2, 2, 9, 1],
            removed: Vec::new(),
        };
        let batches: Vec<Vec<u32>> = by_size.batches(10, 4, |changed, _| changed).collect();
        assert_eq!(batches, vec![vec![3, 1], vec![2, 2], vec![9], vec![1]]);
        let none = Changes::<u32> {
            changed: Vec::new(),
            removed: Vec::new(),
        };
        assert_eq!(none.batches(2, 1_000, |_, _| ()).count(), 0);
        assert_eq!(
            chunks(vec![1, 2, 3], 3).collect::<Vec<_>>(),
            vec![vec![1, 2, 3]]
        );
    }

    impl EncodedSize for u32 {
        fn encoded_size(&self) -> usize {
            *self as usize
        }
    }
}
