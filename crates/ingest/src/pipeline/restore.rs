//! Start-up replay of the window log into a fresh [`Pipeline`]: every logged reading back in
//! its window at its logged event time, minus what expired meanwhile, what another shard owns
//! now, and copies of a reading already restored under the same id.
//!
//! The history's open minutes are rebuilt from the same records: every reading restored into
//! its window, and every reading that left the window meanwhile but whose minute is not final
//! yet (the log keeps readings until their minute has closed, see
//! [`Settings::log_retention`](crate::configuration::Settings::log_retention)). Both were
//! counted by the process that logged them, so each minute gets back exactly its readings; a
//! minute that closed while ingest was down is not rebuilt (its final state is unknown here).

use aggregator_core::{Accepted, Rejection, Timestamp};

use super::{Pipeline, gauge};
use crate::durability::window_log::{Record, WindowLog};

/// What [`Pipeline::restore`] did with the log's readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Readings back in their windows.
    pub readings: u64,
    /// Readings that had left the window meanwhile.
    pub expired: u64,
    /// Of the `expired`, those back in a minute bucket that is still open.
    pub history_only: u64,
    /// Readings refused otherwise: ahead of the clock (it went back) or over `max_keys`.
    pub refused: u64,
    /// Readings of machines another shard owns (the shard count changed).
    pub other_shard: u64,
    /// Copies of a reading already restored under the same (machine, id).
    pub duplicates: u64,
}

impl Pipeline {
    /// Takes over `log` and puts the readings it recovered back into their windows at their
    /// logged event times, as of `now`. Every restored key is marked for publishing, so the
    /// aggregates go out on the first tick, before any new input. The packet ids of the log
    /// rebuild the redelivery table.
    pub fn restore(&mut self, log: WindowLog, records: Vec<Record>, now: Timestamp) -> Restored {
        let mut restored = Restored::default();
        for record in records {
            match record {
                Record::SessionStart => self.redeliveries.clear(),
                Record::Reading(r) => {
                    if let Some(d) = r.delivery {
                        self.redeliveries.logged(d);
                    }
                    // With another shard count, machines moved: their windows restart on
                    // their new shard, and are not counted twice here.
                    if !self.shard.owns(&r.machine) {
                        restored.other_shard += 1;
                        continue;
                    }
                    match self.store.accept_with_id(&r.reading(), r.id.as_ref(), now) {
                        Ok(Accepted::Counted(id)) => {
                            restored.readings += 1;
                            self.coalescer.touch(id);
                            self.count_in_history(&r.reading(), now);
                        }
                        Ok(Accepted::Duplicate { .. }) => restored.duplicates += 1,
                        Err(Rejection::Late { .. }) => {
                            restored.expired += 1;
                            let added = self.count_in_history(&r.reading(), now);
                            restored.history_only += u64::from(added);
                        }
                        Err(_) => restored.refused += 1,
                    }
                }
            }
        }
        self.metrics.readings_restored.inc_by(restored.readings);
        self.metrics.log_segments.set(gauge(log.segment_count()));
        self.log = Some(log);
        tracing::info!(
            restored = restored.readings,
            expired = restored.expired,
            history_only = restored.history_only,
            refused = restored.refused,
            other_shard = restored.other_shard,
            duplicates = restored.duplicates,
            keys = self.store.key_count(),
            packet_ids = self.redeliveries.len(),
            "window log replayed"
        );
        restored
    }
}
