//! The minute buckets' side of the aggregation task: every reading the window counts goes into
//! its minute's bucket ([`HistoryAccumulator`](aggregator_core::HistoryAccumulator)), and due buckets go to the [`Outbox`] on
//! `history/{machineId}/{scrapIndex}` (QoS 1, not retained).
//!
//! The accumulator holds what is due until the outbox has room: while the client's queue
//! refuses buckets, none more are taken, so the outgoing backlog stays below one tick's worth
//! and a final bucket is delayed, never lost.
//!
//! [`Outbox`]: crate::pipeline::outbox::Outbox

use aggregator_core::history::Added;
use aggregator_core::{Reading, Timestamp};

use super::{PUBLISHES_PER_TICK, Pipeline, gauge};

impl Pipeline {
    /// Counts a reading the window counted (now or before a restart) in its minute's bucket;
    /// true when that minute was still open.
    pub(super) fn count_in_history(&mut self, reading: &Reading<'_>, now: Timestamp) -> bool {
        let Some(history) = &mut self.history else {
            return false;
        };
        let added = history.add(
            reading.machine,
            reading.scrap_index,
            reading.event_time,
            reading.value,
            now,
        );
        added == Added::Counted
    }

    /// Hands the buckets due at `now` to the outbox, unless it is paused or still holds some.
    pub(super) fn publish_history(&mut self, now: Timestamp) {
        let Some(history) = &mut self.history else {
            return;
        };
        if self.outbox.paused_at(now).is_none() && self.outbox.history_backlog() == 0 {
            let due = &mut self.scratch.buckets;
            history.take_due(now, PUBLISHES_PER_TICK, due);
            for bucket in due.drain(..) {
                self.outbox.publish_history(&bucket, now);
            }
        }
        let open = history.open_buckets();
        self.metrics.history_open_buckets.set(gauge(open));
    }

    /// At a clean stop: the buckets due (finals included) and the current state of every open
    /// bucket that changed since it was last sent, all handed to the outbox to go out before
    /// the offline status.
    pub(super) fn flush_history(&mut self, now: Timestamp) -> usize {
        let Some(history) = &mut self.history else {
            return 0;
        };
        let mut buckets = Vec::new();
        history.take_due(now, usize::MAX, &mut buckets);
        history.drain_changed(now, &mut buckets);
        for bucket in &buckets {
            self.outbox.publish_history(bucket, now);
        }
        buckets.len()
    }

    /// When the next bucket is due (not before a pause of the outbox ends).
    pub(super) fn history_deadline(&self) -> Option<Timestamp> {
        let next = self.history.as_ref()?.next_deadline()?;
        Some(self.outbox.not_before_pause_end(next))
    }
}
