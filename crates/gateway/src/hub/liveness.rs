//! Ingest liveness from the retained status topics: `status/ingest` of a single ingest and
//! `status/ingest/{k}` of each shard, folded into the one view clients see.
//!
//! Shards decide: once any shard has a status, the view counts shards online of expected, and
//! a single-ingest status (left over from before the scale-out, say) no longer shows.

use std::collections::{BTreeMap, BTreeSet};

use crate::hub::frame::IngestView;

/// What one shard said in `status/ingest/{k}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardStatus {
    /// Whether the shard said it is online (its last will says `false`).
    pub online: bool,
    /// How many shards it was configured with, when it said so.
    pub shard_count: Option<u32>,
}

/// The latest status of the single ingest and of every shard heard of.
#[derive(Debug, Default)]
pub struct IngestLiveness {
    single: Option<bool>,
    shards: BTreeMap<u32, ShardStatus>,
    /// During a retained replay: what was re-delivered so far (`single`, shard indices).
    replayed: Option<(bool, BTreeSet<u32>)>,
}

impl IngestLiveness {
    /// Records `status/ingest` (`None`: its retained status was cleared).
    pub fn set_single(&mut self, online: Option<bool>) {
        self.single = online;
        if let Some((single, _)) = &mut self.replayed {
            *single = true;
        }
    }

    /// Records `status/ingest/{shard}` (`None`: its retained status was cleared).
    pub fn set_shard(&mut self, shard: u32, status: Option<ShardStatus>) {
        match status {
            Some(status) => self.shards.insert(shard, status),
            None => self.shards.remove(&shard),
        };
        if let Some((_, shards)) = &mut self.replayed {
            shards.insert(shard);
        }
    }

    /// Starts a retained replay (after a ConnAck of a clean session): statuses not
    /// re-delivered by [`IngestLiveness::finish_resync`] were cleared while the gateway was
    /// away (a shard removed from the deployment), and must not be counted any more.
    pub fn begin_resync(&mut self) {
        self.replayed = Some((false, BTreeSet::new()));
    }

    /// Ends the replay: forgets the statuses that were not re-delivered. `true` when that
    /// changed anything.
    pub fn finish_resync(&mut self) -> bool {
        let Some((single, shards)) = self.replayed.take() else {
            return false;
        };
        let before = (self.single, self.shards.len());
        if !single {
            self.single = None;
        }
        self.shards.retain(|k, _| shards.contains(k));
        before != (self.single, self.shards.len())
    }

    /// The view for clients: `None` when no ingest ever said anything.
    ///
    /// The expected shard count is the largest any shard announced, and at least one more
    /// than the highest shard index heard of, so a shard that never came up counts as offline
    /// once any of its peers names the count.
    pub fn view(&self) -> Option<IngestView> {
        if self.shards.is_empty() {
            return self.single.map(IngestView::single);
        }
        let announced = self.shards.values().filter_map(|s| s.shard_count).max();
        let highest = self
            .shards
            .keys()
            .next_back()
            .map_or(0, |k| k.saturating_add(1));
        let count = announced.unwrap_or(0).max(highest);
        let online = self.shards.values().filter(|s| s.online).count();
        let online = u32::try_from(online).unwrap_or(u32::MAX);
        Some(IngestView {
            online: online >= count,
            shards_online: Some(online),
            shard_count: Some(count),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(online: bool, count: u32) -> Option<ShardStatus> {
        Some(ShardStatus {
            online,
            shard_count: Some(count),
        })
    }

    fn counts(view: Option<IngestView>) -> Option<(bool, u32, u32)> {
        view.map(|v| (v.online, v.shards_online.unwrap(), v.shard_count.unwrap()))
    }

    #[test]
    fn single_ingest_keeps_the_plain_view() {
        let mut live = IngestLiveness::default();
        assert_eq!(live.view(), None);
        live.set_single(Some(true));
        assert_eq!(live.view(), Some(IngestView::single(true)));
        live.set_single(Some(false));
        assert_eq!(live.view(), Some(IngestView::single(false)));
        live.set_single(None);
        assert_eq!(live.view(), None);
    }

    #[test]
    fn shards_count_online_of_expected() {
        let mut live = IngestLiveness::default();
        live.set_single(Some(true));
        live.set_shard(0, shard(true, 3));
        // Shards 1 and 2 have not said anything yet: expected from shard 0's count.
        assert_eq!(counts(live.view()), Some((false, 1, 3)));
        live.set_shard(1, shard(true, 3));
        live.set_shard(2, shard(true, 3));
        assert_eq!(counts(live.view()), Some((true, 3, 3)));
        // A last will.
        live.set_shard(1, shard(false, 3));
        assert_eq!(counts(live.view()), Some((false, 2, 3)));
        // Cleared shards leave; with none left the single status shows again.
        for k in 0..3 {
            live.set_shard(k, None);
        }
        assert_eq!(live.view(), Some(IngestView::single(true)));
    }

    #[test]
    fn a_replay_forgets_statuses_cleared_while_away() {
        let mut live = IngestLiveness::default();
        live.set_single(Some(true));
        for k in 0..4 {
            live.set_shard(k, shard(true, 4));
        }
        assert_eq!(counts(live.view()), Some((true, 4, 4)));
        // Scaled from 4 shards to 3 while the gateway was disconnected: the broker replays
        // shards 0 to 2 only, all announcing 3, and no single status.
        live.begin_resync();
        for k in 0..3 {
            live.set_shard(k, shard(true, 3));
        }
        assert!(live.finish_resync());
        assert_eq!(counts(live.view()), Some((true, 3, 3)));
        assert!(!live.finish_resync(), "only once per replay");
        live.set_shard(0, None);
        assert_eq!(live.view().map(|v| v.shard_count), Some(Some(3)));
        // A replay that re-delivers everything changes nothing.
        live.begin_resync();
        live.set_shard(1, shard(true, 3));
        live.set_shard(2, shard(true, 3));
        assert!(!live.finish_resync());
        // Nothing re-delivered at all: no ingest status is known any more.
        live.begin_resync();
        assert!(live.finish_resync());
        assert_eq!(live.view(), None);
    }

    #[test]
    fn the_highest_index_bounds_the_count_when_none_is_announced() {
        let mut live = IngestLiveness::default();
        live.set_shard(
            4,
            Some(ShardStatus {
                online: true,
                shard_count: None,
            }),
        );
        assert_eq!(counts(live.view()), Some((false, 1, 5)));
        live.set_shard(0, shard(true, 2));
        assert_eq!(counts(live.view()), Some((false, 2, 5)));
    }
}
