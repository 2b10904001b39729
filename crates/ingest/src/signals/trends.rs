//! Trends of every tracked key: every `trend_interval_seconds`, on the grid of multiples of
//! the interval since the epoch, each key's current window sum is appended to its trend and
//! the last `trend_points` samples are published retained QoS 1 on
//! `trends/{machineId}/{scrapIndex}`.
//!
//! Sampling every key is cheap; encoding and queuing every trend is not (at 100 000 keys it
//! took seconds, and aggregates waited behind it). So a round's messages are spread evenly
//! over the first half of the interval ([`Round`]), at most [`TRENDS_PER_TURN`] per turn of the
//! aggregation task, between batches of input, and only while the outbox has nothing else
//! waiting.
//!
//! The broker is the store: at start the retained trends are read back
//! ([`Trends::restore`]) and continued with `aggregator_core::trend::Trend::merge`. Until
//! then samples are taken but not published, so that a fresh, short trend never overwrites
//! the retained one before it was read. A read-back trend of a key not tracked yet waits for
//! the key's first sample.

use aggregator_core::topic::trend_topic;
use aggregator_core::trend::{Trend, TrendConfig, TrendPoint};
use aggregator_core::{Key, KeyId, Timestamp, WindowStore};
use std::collections::VecDeque;
use std::time::Duration;

use hashbrown::HashMap;

use crate::metrics::Metrics;
use crate::pipeline::outbox::Outbox;
use crate::restart::snapshot::{ReadBack, RetainedTrend};
use crate::signals::round::Round;

/// Most trend messages handed to the outbox per turn of the aggregation task.
pub const TRENDS_PER_TURN: usize = 256;

/// The trends of every tracked key.
pub struct Trends {
    config: TrendConfig,
    trends: HashMap<KeyId, Trend>,
    /// Keys whose trend is still to be published in this round, in order.
    due: VecDeque<KeyId>,
    /// The pace of the round in `due`.
    round: Round,
    /// Read-back trends of keys not tracked (yet), by (machine, index).
    read_back: HashMap<(String, u32), Vec<TrendPoint>>,
    /// The next sample instant.
    next_tick: Timestamp,
    /// The start-up snapshot has been taken into account: trends are published.
    ready: bool,
    metrics: Metrics,
}

impl Trends {
    /// Empty trends, the first sample due on the grid after `now`.
    pub fn new(config: TrendConfig, now: Timestamp, metrics: Metrics) -> Self {
        Trends {
            config,
            trends: HashMap::new(),
            due: VecDeque::new(),
            round: Round::new(now, Duration::ZERO, 0),
            read_back: HashMap::new(),
            next_tick: config.next_tick(now),
            ready: false,
            metrics,
        }
    }

    /// When there is work at `now` or later: at once while a round is being published, else
    /// the next sample.
    pub fn next_deadline(&self, now: Timestamp) -> Timestamp {
        if self.due.is_empty() {
            self.next_tick
        } else {
            self.round.next_at(now)
        }
    }

    /// Samples every tracked key when a sample is due at `now` (the window expired as of
    /// `now`), starts a round of messages once the snapshot has been read, and hands the
    /// next part of the round to the outbox.
    pub fn tick(&mut self, store: &WindowStore, now: Timestamp, out: &mut Outbox) {
        if now >= self.next_tick {
            self.sample(store, now);
        }
        self.publish_some(store, now, out);
    }

    fn sample(&mut self, store: &WindowStore, now: Timestamp) {
        // A late wake-up (a busy or suspended process) takes one sample, at the tick that was
        // due, and goes on from the next tick after now: no burst of catch-up samples.
        let at = self.next_tick;
        self.next_tick = self.config.next_tick(now);
        // A trend message carries the whole trend, so a new round replaces what is left of the
        // last one (the broker was away): the keys it missed are in the new one.
        if self.ready {
            self.due.clear();
        }
        for id in store.key_ids() {
            let (Some(key), Some(totals)) = (store.key(id), store.totals(id)) else {
                continue;
            };
            let trend = self.trends.entry(id).or_insert_with(|| {
                let mut trend = Trend::new(self.config.points);
                if let Some(points) = self
                    .read_back
                    .remove(&(key.machine.to_string(), key.scrap_index))
                {
                    trend.merge(points, &self.config, now);
                }
                trend
            });
            trend.push(at, totals.sum);
            if self.ready {
                self.due.push_back(id);
            }
        }
        self.start_round(now);
    }

    /// Paces what `due` holds over the first half of the interval from `now`.
    fn start_round(&mut self, now: Timestamp) {
        self.round = Round::new(now, self.config.interval / 2, self.due.len());
    }

    /// Hands the next trends of the round to the outbox: what the round's pace allows, at most
    /// [`TRENDS_PER_TURN`], fewer while other messages wait there (the client's queue is full).
    fn publish_some(&mut self, store: &WindowStore, now: Timestamp, out: &mut Outbox) {
        let room = TRENDS_PER_TURN.saturating_sub(out.in_order_backlog());
        let budget = room.min(self.round.allowance(now));
        for _ in 0..budget {
            let Some(id) = self.due.pop_front() else {
                return;
            };
            self.round.sent(1);
            // A key forgotten meanwhile has no trend any more; its retained one is cleared.
            if let (Some(key), Some(trend)) = (store.key(id), self.trends.get(&id))
                && !trend.is_empty()
            {
                publish(&self.config, &self.metrics, key, trend, now, out);
            }
        }
    }

    /// Continues the trends read back at start and publishes every tracked key's trend.
    /// `read` says whether `retained` was read from the broker at all.
    pub fn restore(
        &mut self,
        store: &WindowStore,
        retained: Vec<RetainedTrend>,
        read: ReadBack,
        now: Timestamp,
        out: &mut Outbox,
    ) {
        if self.ready {
            return;
        }
        let found = retained.len();
        for one in retained {
            match store.lookup(&one.machine, one.scrap_index) {
                Some(id) => self
                    .trends
                    .entry(id)
                    .or_insert_with(|| Trend::new(self.config.points))
                    .merge(one.points, &self.config, now),
                None => {
                    self.read_back
                        .insert((one.machine, one.scrap_index), one.points);
                }
            }
        }
        if read.happened() {
            tracing::info!(
                found,
                waiting = self.read_back.len(),
                complete = read == ReadBack::Complete,
                "trends: retained trends read back"
            );
        } else {
            tracing::info!("trends: no retained trends were read, starting from the windows alone");
        }
        self.ready = true;
        self.due.extend(self.trends.keys().copied());
        self.start_round(now);
        self.publish_some(store, now, out);
    }

    /// Drops the trends of keys the store no longer tracks (their retained trend is cleared
    /// by the outbox).
    pub fn forget_untracked(&mut self, store: &WindowStore) {
        self.trends.retain(|id, _| store.key(*id).is_some());
    }
}

fn publish(
    config: &TrendConfig,
    metrics: &Metrics,
    key: &Key,
    trend: &Trend,
    now: Timestamp,
    out: &mut Outbox,
) {
    let message = trend.to_message(&key.machine, key.scrap_index, config);
    // Plain numbers and strings: serialization cannot fail.
    let payload = serde_json::to_vec(&message).unwrap_or_default();
    out.publish_in_order(trend_topic(&key.machine, key.scrap_index), payload, now);
    metrics.trends_published.inc();
}
