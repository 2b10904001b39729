//! Keys with a retained aggregate from a previous run that this process does not track.
//!
//! A key that gets no new reading would show its old sum forever. Every key of the start-up
//! snapshot ([`crate::restart::snapshot`]) that this process does not track becomes an orphan: an
//! aggregate stamped at `T` only holds readings from before `T`, so at `T + window` it is
//! published as empty, and `key_idle_ttl` later it is cleared, as if the old process had kept
//! running. A key that receives a reading meanwhile is tracked again, and its orphan actions
//! are skipped.

use std::collections::BTreeSet;
use std::time::Duration;

use aggregator_core::topic::aggregate_topic;
use aggregator_core::{Aggregate, Key, Timestamp};

use crate::pipeline::outbox::{Outbox, RETRY_DELAY};
use crate::restart::snapshot::RetainedAggregate;

/// What to do for an orphan key when its time comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OrphanAction {
    /// Publish the empty aggregate: every reading it counted has left the window.
    Empty,
    /// Clear the retained topic: the key has been idle for `key_idle_ttl`.
    Clear,
}

/// The orphans' actions, by due time.
#[derive(Debug)]
pub struct Orphans {
    window: Duration,
    idle_ttl: Duration,
    schedule: BTreeSet<(Timestamp, String, u32, OrphanAction)>,
}

impl Orphans {
    /// Orphans handled with the given window and idle TTL.
    pub fn new(window: Duration, idle_ttl: Duration) -> Self {
        Orphans {
            window,
            idle_ttl,
            schedule: BTreeSet::new(),
        }
    }

    /// Adopts the retained aggregates of a previous run whose key is not `tracked`.
    pub fn adopt(&mut self, found: Vec<RetainedAggregate>, tracked: impl Fn(&str, u32) -> bool) {
        let before = self.schedule.len();
        for one in found {
            if !tracked(&one.machine, one.scrap_index) {
                self.add(one);
            }
        }
        tracing::info!(
            keys = self.schedule.len() - before,
            "retained aggregates of a previous run will be emptied and cleared on schedule"
        );
    }

    fn add(&mut self, found: RetainedAggregate) {
        let (after, action) = if found.count > 0 {
            (self.window, OrphanAction::Empty)
        } else {
            (self.idle_ttl, OrphanAction::Clear)
        };
        let at = found.stamped.saturating_add(after);
        self.schedule
            .insert((at, found.machine, found.scrap_index, action));
    }

    /// Empties, then clears, through `outbox`, the orphans due at `now` whose key is still not
    /// `tracked`. An empty aggregate the queue refuses is tried again shortly.
    pub fn handle_due(
        &mut self,
        now: Timestamp,
        tracked: impl Fn(&str, u32) -> bool,
        outbox: &mut Outbox,
    ) {
        let mut due = Vec::new();
        self.take_due(now, &mut due);
        for (machine, index, action) in due {
            if tracked(&machine, index) {
                continue;
            }
            match action {
                OrphanAction::Clear => outbox.clear_later(Key {
                    machine: machine.into(),
                    scrap_index: index,
                }),
                OrphanAction::Empty => {
                    let empty = Aggregate::empty(&machine, index, self.window.as_secs(), now);
                    let topic = aggregate_topic(&machine, index);
                    let payload = serde_json::to_vec(&empty).unwrap_or_default();
                    let (after, action) = if outbox.try_publish_retained(topic, payload) {
                        (self.idle_ttl, OrphanAction::Clear)
                    } else {
                        (RETRY_DELAY, OrphanAction::Empty)
                    };
                    let at = now.saturating_add(after);
                    self.schedule.insert((at, machine, index, action));
                }
            }
        }
    }

    /// Moves every action due at `now` to `out`.
    fn take_due(&mut self, now: Timestamp, out: &mut Vec<(String, u32, OrphanAction)>) {
        while self.schedule.first().is_some_and(|first| first.0 <= now) {
            if let Some((_, machine, index, action)) = self.schedule.pop_first() {
                out.push((machine, index, action));
            }
        }
    }

    /// When the next action is due.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.schedule.first().map(|(at, ..)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: i64) -> Timestamp {
        Timestamp::from_unix_nanos(n * 1_000_000_000)
    }

    fn found(machine: &str, stamped: i64, count: u64) -> RetainedAggregate {
        RetainedAggregate {
            machine: machine.into(),
            scrap_index: 1,
            stamped: secs(stamped),
            count,
            offline: false,
        }
    }

    #[test]
    fn an_orphan_empties_one_window_after_its_stamp_and_clears_a_ttl_later() {
        let mut o = Orphans::new(Duration::from_secs(60), Duration::from_secs(600));
        o.add(found("A1", 100, 3));
        o.add(found("B1", 130, 0));
        assert_eq!(o.next_deadline(), Some(secs(160)));
        let mut due = Vec::new();
        o.take_due(secs(159), &mut due);
        assert!(due.is_empty());
        o.take_due(secs(161), &mut due);
        assert_eq!(due, vec![("A1".to_owned(), 1, OrphanAction::Empty)]);
        let at = secs(161).saturating_add(o.idle_ttl);
        o.schedule.insert((at, "A1".into(), 1, OrphanAction::Clear));
        due.clear();
        o.take_due(secs(730), &mut due);
        assert_eq!(due, vec![("B1".to_owned(), 1, OrphanAction::Clear)]);
        due.clear();
        o.take_due(secs(761), &mut due);
        assert_eq!(due, vec![("A1".to_owned(), 1, OrphanAction::Clear)]);
        assert!(o.schedule.is_empty());
    }
}
