//! A batch: the messages one transaction answers for. It keeps, per (machine, index, minute),
//! only the bucket of the highest revision among its messages (a store keeping the highest
//! revision ends the same), the hours those minutes lie in, and every message's
//! acknowledgement, valid or not, to be sent once the transaction has committed.

use std::collections::{BTreeSet, HashMap};

use crate::bucket::Bucket;

/// A (machine, index, minute) key.
type MinuteKey = (String, u32, i64);

/// Messages gathered for one transaction; `A` is what acknowledges one of them.
#[derive(Debug)]
pub struct Batch<A> {
    buckets: HashMap<MinuteKey, Bucket>,
    acks: Vec<A>,
}

impl<A> Default for Batch<A> {
    fn default() -> Self {
        Self {
            buckets: HashMap::new(),
            acks: Vec::new(),
        }
    }
}

impl<A> Batch<A> {
    /// Adds a message that carries `bucket` (none when it was skipped); `ack` acknowledges it.
    pub fn push(&mut self, bucket: Option<Bucket>, ack: A) {
        self.acks.push(ack);
        let Some(bucket) = bucket else { return };
        let key = (bucket.machine.clone(), bucket.index, bucket.minute);
        match self.buckets.get_mut(&key) {
            Some(held) if held.revision >= bucket.revision => {}
            Some(held) => *held = bucket,
            None => {
                self.buckets.insert(key, bucket);
            }
        }
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.acks.len()
    }

    /// No message yet.
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }

    /// The buckets to write, one per minute key, in key order (so that concurrent writers
    /// would lock rows in the same order).
    pub fn buckets(&self) -> Vec<&Bucket> {
        let mut buckets: Vec<&Bucket> = self.buckets.values().collect();
        buckets.sort_by(|a, b| a.key().cmp(&b.key()));
        buckets
    }

    /// The (machine, index, hour start) of every hour the batch's minutes lie in.
    pub fn hours(&self) -> BTreeSet<(&str, u32, i64)> {
        self.buckets
            .values()
            .map(|b| (b.machine.as_str(), b.index, b.hour()))
            .collect()
    }

    /// The acknowledgements, in arrival order, once the batch is committed.
    pub fn into_acks(self) -> Vec<A> {
        self.acks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(machine: &str, minute: i64, revision: i64, sum: f64) -> Bucket {
        Bucket {
            machine: machine.into(),
            index: 1,
            minute,
            sum,
            count: 1,
            min: sum,
            max: sum,
            revision,
            is_final: false,
        }
    }

    #[test]
    fn the_highest_revision_of_a_minute_wins_whatever_the_order() {
        let mut batch = Batch::default();
        batch.push(Some(bucket("A", 60, 2, 2.0)), 1);
        batch.push(Some(bucket("A", 60, 3, 3.0)), 2);
        batch.push(Some(bucket("A", 60, 1, 1.0)), 3);
        batch.push(Some(bucket("A", 60, 3, 9.0)), 4);
        batch.push(None, 5);
        batch.push(Some(bucket("B", 3_600, 1, 5.0)), 6);
        assert_eq!(batch.len(), 6);
        let sums: Vec<(String, f64)> = batch
            .buckets()
            .iter()
            .map(|b| (b.machine.clone(), b.sum))
            .collect();
        assert_eq!(sums, [("A".into(), 3.0), ("B".into(), 5.0)]);
        assert_eq!(batch.into_acks(), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn hours_are_those_the_minutes_lie_in() {
        let mut batch = Batch::default();
        for minute in [0, 60, 3_540, 3_600, 7_260] {
            batch.push(Some(bucket("A", minute, 1, 1.0)), ());
        }
        batch.push(Some(bucket("B", 60, 1, 1.0)), ());
        let hours: Vec<_> = batch.hours().into_iter().collect();
        assert_eq!(
            hours,
            [("A", 1, 0), ("A", 1, 3_600), ("A", 1, 7_200), ("B", 1, 0)]
        );
        let empty: Batch<()> = Batch::default();
        assert!(empty.is_empty() && empty.hours().is_empty());
    }
}
