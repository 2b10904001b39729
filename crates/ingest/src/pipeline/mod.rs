//! The aggregation task: owns the window store (no locks on the hot path), turns incoming
//! messages into readings or rejections, and hands aggregates, retained clears, dead letters
//! and the liveness status to the MQTT client through the [`Outbox`].
//!
//! It sleeps on one timer, set to the earliest of the next expiry or forgetting
//! ([`WindowStore::next_deadline`]), publish budget refill, retry and the other modules'
//! deadlines: no periodic scans. Every change of a window is also evaluated by the [`Alarms`];
//! the [`Trends`] sample every key on their own tick; every reading a window counts also goes
//! into its minute bucket (`history`), sent on the accumulator's deadlines; the retained
//! aggregates of a previous run are the [`Orphans`]'.
//!
//! Acknowledgements are manual: every QoS 1/2 message of a batch is acknowledged only after
//! the batch's accepted readings are durable in the [`WindowLog`] (one fsync per batch),
//! rejected ones included, so that after a crash the broker sends again exactly what was not
//! yet durable. Redeliveries of logged readings are recognised ([`Redeliveries`]) and skipped.

use std::time::{Duration, Instant, SystemTime};

use aggregator_core::topic::{aggregate_topic, machine_from_readings_topic};
use aggregator_core::{
    Accepted, HistoryAccumulator, HistoryBucket, Key, KeyId, ParseLimits, Rejection,
    RejectionReason, Timestamp, WindowStore, parse_reading_with_id,
};
use prometheus_client::metrics::counter::Counter;
use rumqttc::{Publish, QoS};
use service_kit::LogLimit;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::configuration::IngestConfig;
use crate::durability::redelivery::{Delivery, Redeliveries};
use crate::durability::window_log::{LogError, Record, WindowLog};
use crate::metrics::Metrics;
use crate::mqtt::{Clients, Inbound, LinkState};
use crate::pipeline::coalesce::Coalescer;
use crate::pipeline::outbox::Outbox;
use crate::pipeline::settle::Settle;
use crate::restart::orphans::Orphans;
use crate::restart::snapshot::Snapshot;
use crate::shard::Shard;
use crate::signals::alarms::Alarms;
use crate::signals::trends::Trends;
pub mod coalesce;
mod history;
pub mod outbox;
mod restore;
pub mod settle;
pub mod sparkplug;
pub use restore::Restored;
use sparkplug::SparkplugInput;

/// Most aggregates handed to the client per tick, so that a burst (every key after a
/// reconnect) is spread over several loop turns and input keeps flowing.
const PUBLISHES_PER_TICK: usize = 4096;

/// How every Sparkplug B topic starts.
const SPARKPLUG_PREFIX: &str = "spBv1.0/";

/// The ingest clock: wall-clock time, as the contract's window is defined on it.
pub fn clock_now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// The aggregation task's state.
pub struct Pipeline {
    store: WindowStore,
    coalescer: Coalescer<KeyId>,
    settle: Settle<KeyId>,
    outbox: Outbox,
    orphans: Orphans,
    alarms: Alarms,
    trends: Trends,
    /// The minute buckets, unless `history.enabled` is off.
    history: Option<HistoryAccumulator>,
    metrics: Metrics,
    /// The rejection counters, in the order of [`RejectionReason::ALL`]: no lookup per
    /// rejection in a flood of them.
    rejected: [Counter; RejectionReason::COUNT],
    shard: Shard,
    limits: ParseLimits,
    /// At most one log line per rejection reason per interval, each reason on its own.
    rejection_log: [LogLimit; RejectionReason::COUNT],
    batch_size: usize,
    /// The output connection was up before: the next one is a reconnect.
    connected_before: bool,
    /// The Sparkplug B input, when groups are followed.
    sparkplug: Option<SparkplugInput>,
    /// At most one log line per interval for refused Sparkplug messages.
    sparkplug_log: LogLimit,
    /// The window log, when a data directory is set.
    log: Option<WindowLog>,
    redeliveries: Redeliveries,
    /// The log failed: nothing more is acknowledged and the service stops.
    fatal: Option<LogError>,
    scratch: Scratch,
}

/// Buffers reused on every turn, so the hot path does not allocate.
#[derive(Default)]
struct Scratch {
    changed: Vec<KeyId>,
    forgotten: Vec<Key>,
    ready: Vec<KeyId>,
    buckets: Vec<HistoryBucket>,
}

impl Pipeline {
    /// A pipeline acknowledging and publishing through `clients`; `started_at` is this
    /// process's start, for `status/ingest`.
    pub fn new(
        config: &IngestConfig,
        started_at: Timestamp,
        clients: Clients,
        metrics: Metrics,
    ) -> Self {
        let settings = &config.settings;
        let window = settings.window.config();
        let history = settings.history.config(window.window);
        let publish = &settings.publish;
        let republish_after =
            (publish.again_after_ms > 0).then(|| Duration::from_millis(publish.again_after_ms));
        let rejection_log_interval = Duration::from_secs(settings.rejection_log_interval_secs);
        Pipeline {
            orphans: Orphans::new(window.window, window.key_idle_ttl),
            store: WindowStore::new(window),
            coalescer: Coalescer::new(Duration::from_millis(publish.interval_ms), publish.burst),
            settle: Settle::new(republish_after),
            outbox: Outbox::new(clients, metrics.clone(), started_at, config.shard.clone())
                .with_state(config.sparkplug.as_ref().and_then(|s| s.state_topic())),
            alarms: Alarms::new(config.alarms.clone(), metrics.clone()),
            trends: Trends::new(settings.trend.config(), clock_now(), metrics.clone()),
            rejected: RejectionReason::ALL.map(|reason| metrics.rejected(reason)),
            history: history.map(HistoryAccumulator::new),
            metrics,
            shard: config.shard.clone(),
            limits: config.parse.clone(),
            rejection_log: std::array::from_fn(|_| LogLimit::new(rejection_log_interval)),
            batch_size: settings.limits.batch_size,
            connected_before: false,
            sparkplug: config.sparkplug.clone().map(SparkplugInput::new),
            sparkplug_log: LogLimit::new(rejection_log_interval),
            log: None,
            redeliveries: Redeliveries::default(),
            fatal: None,
            scratch: Scratch::default(),
        }
    }

    /// Aggregates until `shutdown` fires or the event loop task is gone, then returns the
    /// channel so that [`Pipeline::finish`] can take what is still queued.
    pub async fn run(
        &mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        shutdown: &CancellationToken,
    ) -> mpsc::Receiver<Inbound> {
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            let wake = self.next_wake();
            let sleep = tokio::time::sleep_until(instant_for(wake.unwrap_or(Timestamp::EPOCH)));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                n = inbound.recv_many(&mut batch, self.batch_size) => {
                    if n == 0 {
                        break;
                    }
                    self.handle_batch(batch.drain(..), clock_now());
                }
                () = sleep, if wake.is_some() => self.tick(clock_now()),
            }
            if self.fatal.is_some() {
                break;
            }
        }
        inbound
    }

    /// The shutdown sequence after [`Pipeline::run`]: aggregate what was already received,
    /// hand every pending aggregate and clear to the client, publish the offline status,
    /// disconnect, and wait (at most `timeout`) until the DISCONNECT is written.
    ///
    /// The caller closes `inbound` first, so the event loop task no longer waits for room in it
    /// and awaiting the client here cannot deadlock.
    ///
    /// # Errors
    /// The window log error that stopped the pipeline, if one did.
    pub async fn finish(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut link: watch::Receiver<LinkState>,
        timeout: Duration,
    ) -> Result<(), LogError> {
        let queued: Vec<Inbound> = std::iter::from_fn(|| inbound.try_recv().ok()).collect();
        if !queued.is_empty() {
            self.handle_batch(queued.into_iter(), clock_now());
        }
        drop(inbound);
        let deadline = tokio::time::Instant::now() + timeout;
        let handed_over = tokio::time::timeout_at(deadline, self.flush_all()).await;
        if handed_over.is_err() {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "shutdown: the broker did not take the last aggregates in time"
            );
            return self.fatal.map_or(Ok(()), Err);
        }
        // Done when both DISCONNECTs are written; without a connection nothing more can go out
        // on it (the broker publishes our last will instead), so do not wait for one.
        let settled = tokio::time::timeout_at(deadline, link.wait_for(LinkState::settled)).await;
        match settled {
            Ok(Ok(state)) if !state.output_closed => {
                tracing::warn!(
                    "shutdown: the output connection is down, the last aggregates are lost"
                );
            }
            Ok(Ok(state)) if !state.input_closed => tracing::warn!(
                "shutdown: the input connection is down; the broker sends what was not acknowledged again"
            ),
            Ok(_) => {}
            Err(_) => tracing::warn!("shutdown: the DISCONNECTs were not sent in time"),
        }
        self.fatal.map_or(Ok(()), Err)
    }

    /// Final flush: every unpublished change, every pending clear, the offline status, then
    /// DISCONNECT, all queued in order behind what the client already holds.
    async fn flush_all(&mut self) {
        let now = clock_now();
        self.expire(now);
        self.forget_idle(now);
        let mut keys = Vec::new();
        self.coalescer.drain_dirty(&mut keys);
        let aggregates = keys
            .into_iter()
            .filter_map(|id| self.aggregate_message(id, now))
            .collect();
        let buckets = self.flush_history(now);
        let store = &self.store;
        let published = self
            .outbox
            .finish(aggregates, |key| {
                store.lookup(&key.machine, key.scrap_index).is_some()
            })
            .await;
        tracing::info!(
            final_aggregates = published,
            history_buckets = buckets,
            "shutdown: last aggregates, minute buckets and offline status queued"
        );
    }

    /// Handles one batch of messages received at `now`.
    pub fn handle_batch(&mut self, batch: impl Iterator<Item = Inbound>, now: Timestamp) {
        if self.fatal.is_some() {
            // Nothing can be made durable: leave it unacknowledged for the next process.
            return;
        }
        let started = Instant::now();
        // Expire first: a reading must be judged late, and an aggregate computed, as of now.
        self.expire(now);
        let (mut received, mut accepted) = (0_u64, 0_u64);
        for item in batch {
            match item {
                Inbound::Reading(publish) => {
                    received += 1;
                    accepted += self.ingest(&publish, now);
                }
                Inbound::Oversized { publish, size } => {
                    received += 1;
                    self.reject_oversized(&publish, size, now);
                }
                Inbound::InputConnected { session_present } => {
                    self.on_input_connected(session_present);
                }
                Inbound::OutputConnected => self.on_output_connected(now),
                Inbound::Retained(found) => self.on_retained(found, now),
            }
        }
        self.commit();
        self.tick(now);
        // Counted after the tick has set the gauges, so a scrape that sees a reading counted
        // also sees it in `ingest_buffered_readings` and `ingest_keys`.
        self.metrics.readings_received.inc_by(received);
        self.metrics.readings_accepted.inc_by(accepted);
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// One message; returns how many readings it brought into a window.
    fn ingest(&mut self, publish: &Publish, now: Timestamp) -> u64 {
        if self.sparkplug.is_some() && publish.topic.starts_with(SPARKPLUG_PREFIX) {
            self.owe_ack(publish);
            if self.is_redelivery(publish) {
                return 0;
            }
            return self.ingest_sparkplug(publish, now);
        }
        u64::from(self.ingest_json(publish, now))
    }

    /// A JSON reading; true when it was accepted.
    fn ingest_json(&mut self, publish: &Publish, now: Timestamp) -> bool {
        if !self.receive(publish) || self.is_redelivery(publish) {
            return false;
        }
        let delivery = Delivery::of(publish);
        let store = &mut self.store;
        let result = parse_reading_with_id(&publish.topic, &publish.payload, now, &self.limits)
            .and_then(|parsed| {
                let accepted = store.accept_with_id(&parsed.reading, parsed.id.as_ref(), now)?;
                Ok((accepted, parsed))
            });
        let (id, parsed) = match result {
            Ok((Accepted::Counted(id), parsed)) => (id, parsed),
            Ok((Accepted::Duplicate { .. }, parsed)) => {
                // A resent copy (a publisher's retry, a fail-over): already counted.
                self.metrics.readings_duplicate.inc();
                tracing::debug!(topic = %publish.topic, id = ?parsed.id, "duplicate reading dropped");
                return false;
            }
            Err(rejection) => {
                self.reject(&rejection, publish, now);
                return false;
            }
        };
        if let Some(d) = delivery {
            self.redeliveries.logged(d);
        }
        if let Some(log) = &mut self.log {
            log.append_reading(&parsed.reading, delivery, parsed.id.as_ref());
        }
        self.count_in_history(&parsed.reading, now);
        self.changed(id, now);
        true
    }

    /// A message whose payload was over `limits.max_payload_bytes` (`size` bytes, cut to its
    /// head on arrival): acknowledged like any other, so that it is not sent again, and
    /// rejected as `too_large`.
    fn reject_oversized(&mut self, publish: &Publish, size: usize, now: Timestamp) {
        if self.receive(publish) {
            let limit = self.limits.max_payload_bytes;
            self.reject(&Rejection::TooLarge { size, limit }, publish, now);
        }
    }

    /// Owes the acknowledgement of `publish` and tells whether it is this process's to count.
    fn receive(&mut self, publish: &Publish) -> bool {
        self.owe_ack(publish);
        !self.not_ours(publish)
    }

    /// Acknowledged after the batch is durable, whatever becomes of it here.
    fn owe_ack(&mut self, publish: &Publish) {
        if publish.qos != QoS::AtMostOnce {
            self.outbox.owe_ack(publish.qos, publish.pkid);
        }
    }

    /// True (and counted) for a redelivery of a message whose readings are logged already.
    fn is_redelivery(&mut self, publish: &Publish) -> bool {
        let Some(d) = Delivery::of(publish) else {
            return false;
        };
        if !self.redeliveries.is_redelivery(publish.dup, d) {
            return false;
        }
        self.metrics.redeliveries_skipped.inc();
        tracing::debug!(pkid = d.pkid, topic = %publish.topic, "redelivery of a logged reading skipped");
        true
    }

    /// True (and counted) for a message this process must not count: the broker's retained
    /// copy of an old reading, an empty payload, or a reading of a machine another shard owns.
    /// Checked before parsing, so that the other shards' traffic costs only a hash.
    fn not_ours(&self, publish: &Publish) -> bool {
        // Retained: replayed on every (re)subscription; the live reading was counted when sent.
        // Empty: an operator clearing a reading that was published retained by mistake (the
        // broker passes the clear on as an ordinary message); never a reading.
        if publish.retain || publish.payload.is_empty() {
            self.metrics.readings_retained_ignored.inc();
            return true;
        }
        if self.shard.filters_on_arrival()
            && let Some(machine) = machine_from_readings_topic(&publish.topic)
            && !self.shard.owns(machine)
        {
            self.metrics.readings_other_shard.inc();
            return true;
        }
        false
    }

    fn reject(&mut self, rejection: &Rejection, publish: &Publish, now: Timestamp) {
        let reason = rejection.reason();
        self.rejected[reason.index()].inc();
        let limit = &mut self.rejection_log[reason.index()];
        if let Some(suppressed) = limit.admit_at(tokio::time::Instant::now()) {
            tracing::warn!(
                reason = reason.as_str(),
                topic = %publish.topic,
                detail = %rejection,
                suppressed_since_last = suppressed,
                "rejected a payload"
            );
        }
        self.outbox.dead_letter(rejection, publish, now);
    }

    fn on_input_connected(&mut self, session_present: bool) {
        self.outbox.announce_state();
        if !session_present {
            // A new session: packet ids start over and nothing will be redelivered, so old ids
            // and unsent acknowledgements of the lost session mean nothing.
            self.redeliveries.clear();
            self.outbox.session_lost();
            if let Some(log) = &mut self.log {
                log.append(&Record::SessionStart);
            }
        }
    }

    fn on_output_connected(&mut self, now: Timestamp) {
        self.outbox.announce_online(now);
        if self.connected_before {
            // The broker may have lost retained aggregates in a crash, and rumqttc drops its
            // unsent queue when the session is gone: publish every key's current state again.
            tracing::info!(
                keys = self.store.key_count(),
                "reconnected: republishing every aggregate"
            );
            for id in self.store.key_ids() {
                self.coalescer.touch(id);
            }
            // Trends go out again on their next tick; raised alarms would not by themselves.
            self.alarms
                .republish_raised(&self.store, now, &mut self.outbox);
        }
        self.connected_before = true;
    }

    /// The retained state of a previous run; other shards' keys are theirs to clear or restore.
    fn on_retained(&mut self, mut found: Snapshot, now: Timestamp) {
        found.aggregates.retain(|a| self.shard.owns(&a.machine));
        let offline = found.aggregates.iter().filter(|a| a.offline);
        self.restore_offline(offline.map(|a| a.machine.as_str()), now);
        found.alarms.retain(|a| self.shard.owns(&a.machine_id));
        found.trends.retain(|t| self.shard.owns(&t.machine));
        let store = &self.store;
        self.orphans.adopt(found.aggregates, |machine, index| {
            store.lookup(machine, index).is_some()
        });
        self.alarms
            .restore(store, found.alarms, found.read, now, &mut self.outbox);
        self.trends
            .restore(store, found.trends, found.read, now, &mut self.outbox);
    }

    /// Expiry, forgetting, retries and due publishes at `now`.
    pub fn tick(&mut self, now: Timestamp) {
        self.expire(now);
        self.forget_idle(now);
        let store = &self.store;
        let tracked = |machine: &str, index: u32| store.lookup(machine, index).is_some();
        self.orphans.handle_due(now, tracked, &mut self.outbox);
        let offered = self
            .outbox
            .offer(now, |key| tracked(&key.machine, key.scrap_index));
        self.republish_settled(now);
        self.check_sequence_gaps(now);
        self.trends.tick(&self.store, now, &mut self.outbox);
        self.maintain_log(now);
        if offered {
            let mut ready = std::mem::take(&mut self.scratch.ready);
            self.coalescer
                .take_ready(now, PUBLISHES_PER_TICK, &mut ready);
            for id in ready.drain(..) {
                self.publish_aggregate(id, now);
            }
            self.scratch.ready = ready;
        }
        // After the aggregates: the dashboard's values come first in a full queue.
        self.publish_history(now);
        self.metrics.keys.set(gauge(self.store.key_count()));
        self.metrics
            .buffered_readings
            .set(gauge(self.store.buffered_readings()));
    }

    /// Forgets keys idle for `key_idle_ttl`; their retained aggregates, alarms and trends are
    /// cleared.
    fn forget_idle(&mut self, now: Timestamp) {
        self.store.forget_idle(now, &mut self.scratch.forgotten);
        if self.scratch.forgotten.is_empty() {
            return;
        }
        tracing::debug!(count = self.scratch.forgotten.len(), "forgetting idle keys");
        for key in self.scratch.forgotten.drain(..) {
            self.outbox.clear_later(key);
        }
        self.alarms.forget_untracked(&self.store);
        self.trends.forget_untracked(&self.store);
    }

    fn expire(&mut self, now: Timestamp) {
        let mut changed = std::mem::take(&mut self.scratch.changed);
        self.store.expire(now, &mut changed);
        for id in changed.drain(..) {
            self.changed(id, now);
        }
        self.scratch.changed = changed;
    }

    /// `id`'s window changed: its alarm is evaluated, its aggregate published (now, or when
    /// its budget allows).
    fn changed(&mut self, id: KeyId, now: Timestamp) {
        self.alarms.evaluate(&self.store, id, now, &mut self.outbox);
        self.publish_soon(id, now);
    }

    /// Publishes `id`'s aggregate now, or when its budget allows.
    fn publish_soon(&mut self, id: KeyId, now: Timestamp) {
        if self.coalescer.is_immediate() {
            self.publish_aggregate(id, now);
        } else {
            self.coalescer.touch(id);
        }
    }

    /// Makes the batch's readings durable, then releases its acknowledgements.
    fn commit(&mut self) {
        let result = self.log.as_mut().map_or(Ok(()), WindowLog::commit);
        self.outbox.end_batch(result.is_ok());
        if let Err(e) = result {
            tracing::error!(error = %e, "window log: readings cannot be made durable; stopping without acknowledging them");
            self.fatal = Some(e);
        }
    }

    /// Log compaction: rotation and deletion of expired segments.
    fn maintain_log(&mut self, now: Timestamp) {
        let Some(log) = &mut self.log else {
            return;
        };
        match log.maintain(now) {
            Ok(()) => {
                self.metrics.log_segments.set(gauge(log.segment_count()));
            }
            Err(e) => {
                tracing::error!(error = %e, "window log: compaction failed; stopping");
                self.fatal = Some(e);
            }
        }
    }

    fn aggregate_message(&self, id: KeyId, now: Timestamp) -> Option<(String, Vec<u8>)> {
        let mut aggregate = self.store.aggregate(id, now)?;
        if let Some(sparkplug) = &self.sparkplug {
            aggregate.offline = sparkplug.is_offline(&aggregate.machine_id);
        }
        let topic = aggregate_topic(&aggregate.machine_id, aggregate.scrap_index);
        // Plain numbers and strings: serialization cannot fail.
        let payload = serde_json::to_vec(&aggregate).ok()?;
        Some((topic, payload))
    }

    fn publish_aggregate(&mut self, id: KeyId, now: Timestamp) {
        if let Some(until) = self.outbox.paused_at(now) {
            // The request queue was full a moment ago: do not serialize what would be refused.
            self.coalescer.retry(id, until);
            return;
        }
        if self.send_aggregate(id, now) {
            self.settle.published(id, now);
        }
    }

    /// Publishes once more the aggregates of keys that went quiet `republish_after` ago.
    fn republish_settled(&mut self, now: Timestamp) {
        let mut due = Vec::new();
        self.settle.take_due(now, &mut due);
        for id in due {
            if self.outbox.paused_at(now).is_some() {
                // Best effort: a full queue means newer publishes are flowing anyway.
                break;
            }
            if self.send_aggregate(id, now) {
                self.metrics.aggregates_republished.inc();
            }
        }
    }

    /// Hands `id`'s current aggregate to the outbox; `false` when there was nothing to send
    /// or the queue was full (the coalescer then retries it).
    fn send_aggregate(&mut self, id: KeyId, now: Timestamp) -> bool {
        // None: the key was forgotten after it changed; its clear is on the way.
        let Some((topic, payload)) = self.aggregate_message(id, now) else {
            return false;
        };
        match self.outbox.publish_aggregate(topic, payload, now) {
            Ok(()) => true,
            Err(at) => {
                self.coalescer.retry(id, at);
                false
            }
        }
    }

    /// When the task has to wake up next without input.
    pub fn next_wake(&self) -> Option<Timestamp> {
        let now = clock_now();
        // While paused, due aggregates wait for the pause to end.
        let publish = self
            .coalescer
            .next_deadline_at(now)
            .map(|at| self.outbox.not_before_pause_end(at));
        [
            self.store.next_deadline(),
            publish,
            self.outbox.next_deadline(),
            self.settle.next_deadline(),
            self.orphans.next_deadline(),
            self.history_deadline(),
            self.sparkplug
                .as_ref()
                .and_then(SparkplugInput::next_deadline),
            // While paused, trends wait like aggregates.
            Some(
                self.outbox
                    .not_before_pause_end(self.trends.next_deadline(now)),
            ),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The tokio instant at which the ingest clock shows `at` (now, if `at` is past).
fn instant_for(at: Timestamp) -> tokio::time::Instant {
    tokio::time::Instant::now() + at.duration_since(clock_now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::outbox::RETRY_DELAY;
    use rumqttc::{AsyncClient, MqttOptions};

    fn pipeline(queue: usize, interval: Duration) -> (Pipeline, Metrics, [rumqttc::EventLoop; 2]) {
        sharded_pipeline(queue, interval, Shard::new(0, 1, "machines/+/scrap"))
    }

    fn sharded_pipeline(
        queue: usize,
        interval: Duration,
        shard: Shard,
    ) -> (Pipeline, Metrics, [rumqttc::EventLoop; 2]) {
        // The event loops are never polled: requests pile up in their bounded queues.
        let (input, input_loop) = AsyncClient::new(MqttOptions::new("i", "localhost", 1), queue);
        let (output, output_loop) = AsyncClient::new(MqttOptions::new("o", "localhost", 1), queue);
        let metrics = Metrics::new();
        let mut settings = crate::configuration::Settings::default();
        settings.publish.interval_ms = u64::try_from(interval.as_millis()).unwrap();
        settings.publish.burst = 1;
        settings.limits.batch_size = 64;
        settings.shard.count = shard.count;
        settings.shard.index = shard.index;
        let config = settings.validate().unwrap();
        let clients = Clients { input, output };
        let pipeline = Pipeline::new(&config, Timestamp::EPOCH, clients, metrics.clone());
        (pipeline, metrics, [input_loop, output_loop])
    }

    fn readings(n: usize) -> impl Iterator<Item = Inbound> {
        (0..n).map(|i| {
            // QoS 0: no acknowledgements compete for the queue in these tests.
            Inbound::Reading(Publish::new(
                format!("machines/M{i}/scrap"),
                QoS::AtMostOnce,
                br#"{"scrapIndex": 1, "value": 2.5}"#.to_vec(),
            ))
        })
    }

    #[test]
    fn a_full_request_queue_pauses_publishing_instead_of_spinning() {
        let (mut p, metrics, _event_loop) = pipeline(2, Duration::from_millis(100));
        let now = clock_now();
        p.handle_batch(readings(10), now);
        assert_eq!(metrics.readings_accepted.get(), 10);
        assert_eq!(metrics.aggregates_published.get(), 2, "the queue holds two");
        // Nothing is due before the pause ends: the task sleeps instead of retrying at once.
        let wake = p.next_wake().unwrap();
        assert!(wake >= now.saturating_add(RETRY_DELAY), "{wake} vs {now}");
        // A tick during the pause offers nothing.
        p.tick(now.saturating_add(Duration::from_millis(5)));
        assert_eq!(metrics.aggregates_published.get(), 2);
    }

    #[test]
    fn rejections_publish_dead_letters_and_change_nothing() {
        let (mut p, metrics, _event_loop) = pipeline(100, Duration::ZERO);
        let bad = Inbound::Reading(Publish::new(
            "machines/A1/scrap",
            QoS::AtMostOnce,
            b"{\"value\": 1".to_vec(),
        ));
        p.handle_batch([bad].into_iter(), clock_now());
        assert_eq!(
            metrics
                .rejected(aggregator_core::RejectionReason::InvalidJson)
                .get(),
            1
        );
        assert_eq!(p.store.key_count(), 0);
        assert_eq!(metrics.aggregates_published.get(), 0);
        assert_eq!(metrics.dead_letters_dropped.get(), 0, "queued");
    }

    #[test]
    fn one_rejection_line_per_reason_per_interval_with_the_suppressed_count() {
        use aggregator_core::RejectionReason::{BadValue, Late};
        let (mut p, _, _event_loop) = pipeline(100, Duration::ZERO);
        let start = tokio::time::Instant::now();
        let secs = |n| start + Duration::from_secs(n);
        // The default interval: 10 s.
        let mut admit =
            |reason: RejectionReason, t| p.rejection_log[reason.index()].admit_at(secs(t));
        assert_eq!(admit(BadValue, 0), Some(0));
        for t in 1..10 {
            assert_eq!(admit(BadValue, t), None);
        }
        assert_eq!(admit(Late, 5), Some(0), "reasons are limited independently");
        assert_eq!(admit(BadValue, 10), Some(9));
        assert_eq!(admit(BadValue, 11), None);
    }

    /// A QoS 2 message as the broker delivers it.
    fn delivered(pkid: u16, dup: bool, value: f64) -> Inbound {
        let mut publish = Publish::new(
            "machines/D1/scrap",
            QoS::ExactlyOnce,
            format!(r#"{{"scrapIndex": 4, "value": {value}}}"#).into_bytes(),
        );
        publish.pkid = pkid;
        publish.dup = dup;
        Inbound::Reading(publish)
    }

    fn totals(p: &Pipeline) -> (u64, f64) {
        let id = p.store.lookup("D1", 4).unwrap();
        let t = p.store.totals(id).unwrap();
        (t.count, t.sum)
    }

    #[test]
    fn a_shard_drops_other_shards_keys_from_the_replayed_log() {
        let dir = tempfile::tempdir().unwrap();
        let window = Duration::from_secs(60);
        let now = clock_now();
        {
            // Written by a single ingest: every machine.
            let (mut single, _, _event_loop) = pipeline(1000, Duration::ZERO);
            let (log, recovery) = WindowLog::open(dir.path(), window, now).unwrap();
            single.restore(log, recovery.records, now);
            single.handle_batch(readings(30), now);
        }
        let shard = Shard::new(1, 3, "machines/+/scrap");
        let own = (0..30).filter(|i| shard.owns(&format!("M{i}"))).count() as u64;
        assert!(0 < own && own < 30, "{own}");
        let (mut sharded, metrics, _event_loop) = sharded_pipeline(1000, Duration::ZERO, shard);
        let (log, recovery) = WindowLog::open(dir.path(), window, now).unwrap();
        let restored = sharded.restore(log, recovery.records, now);
        assert_eq!(restored.readings, own);
        assert_eq!(restored.other_shard, 30 - own);
        assert_eq!(sharded.store.key_count() as u64, own);
        assert_eq!(metrics.readings_restored.get(), own);
    }

    #[test]
    fn retained_and_other_shards_readings_are_dropped_before_parsing() {
        let shard = Shard::new(0, 3, "machines/+/scrap");
        let (mut p, metrics, _event_loop) = sharded_pipeline(1000, Duration::ZERO, shard.clone());
        let now = clock_now();
        let mut retained = Publish::new("machines/R1/scrap", QoS::AtMostOnce, b"{}".to_vec());
        retained.retain = true;
        p.handle_batch([Inbound::Reading(retained)].into_iter(), now);
        p.handle_batch(readings(30), now);
        let own = (0..30).filter(|i| shard.owns(&format!("M{i}"))).count() as u64;
        assert_eq!(metrics.readings_retained_ignored.get(), 1);
        assert_eq!(metrics.readings_other_shard.get(), 30 - own);
        assert_eq!(metrics.readings_accepted.get(), own);
        // The retained payload `{}` is not even parsed: no rejection.
        for reason in aggregator_core::RejectionReason::ALL {
            assert_eq!(metrics.rejected(reason).get(), 0, "{reason}");
        }
    }

    #[test]
    fn an_empty_payload_clears_a_retained_reading_and_is_no_rejection() {
        let (mut p, metrics, _event_loop) = pipeline(100, Duration::ZERO);
        let clear = Publish::new("machines/A1/scrap", QoS::AtLeastOnce, Vec::new());
        p.handle_batch([Inbound::Reading(clear)].into_iter(), clock_now());
        assert_eq!(metrics.readings_retained_ignored.get(), 1);
        for reason in aggregator_core::RejectionReason::ALL {
            assert_eq!(metrics.rejected(reason).get(), 0, "{reason}");
        }
        assert_eq!(p.store.key_count(), 0);
    }

    #[test]
    fn an_oversized_message_is_rejected_with_its_whole_size() {
        let (mut p, metrics, _event_loop) = pipeline(100, Duration::ZERO);
        let head = Publish::new("machines/A1/scrap", QoS::AtLeastOnce, vec![b'x'; 1024]);
        let oversized = Inbound::Oversized {
            publish: head,
            size: 10_000_000,
        };
        p.handle_batch([oversized].into_iter(), clock_now());
        assert_eq!(metrics.readings_received.get(), 1);
        assert_eq!(metrics.rejected(RejectionReason::TooLarge).get(), 1);
        assert_eq!(metrics.dead_letters_dropped.get(), 0, "queued");
        assert_eq!(p.store.key_count(), 0);
    }

    #[test]
    fn a_trend_round_is_spread_over_half_the_interval_in_parts_between_turns() {
        use crate::signals::trends::TRENDS_PER_TURN;
        let keys = 3 * TRENDS_PER_TURN + 10;
        let (mut p, metrics, _event_loops) = pipeline(100_000, Duration::ZERO);
        let now = clock_now();
        p.handle_batch(readings(keys), now);
        let snapshot = Snapshot {
            read: crate::restart::snapshot::ReadBack::Complete,
            ..Snapshot::default()
        };
        p.handle_batch([Inbound::Retained(snapshot)].into_iter(), now);
        assert_eq!(metrics.trends_published.get(), 0, "no samples yet");
        let published = || usize::try_from(metrics.trends_published.get()).unwrap();

        let round = p.trends.next_deadline(now);
        p.tick(round);
        assert_eq!(published(), 1, "the first at once, the rest paced");
        let next = p.trends.next_deadline(round);
        assert!(next > round, "the next one is not due yet");
        // Half way through the span (half the 10 s interval) half the round is due, handed
        // over at most TRENDS_PER_TURN per turn.
        let half = round.saturating_add(Duration::from_millis(2_500));
        p.tick(half);
        assert_eq!(published(), 1 + TRENDS_PER_TURN);
        p.tick(half);
        assert_eq!(published(), keys / 2 + 1);
        assert!(p.trends.next_deadline(half) > half);
        // At the end of the span the rest goes out, still in parts.
        let end = round.saturating_add(Duration::from_secs(5));
        p.tick(end);
        assert_eq!(published(), keys / 2 + 1 + TRENDS_PER_TURN);
        p.tick(end);
        assert_eq!(published(), keys, "each key once");
        assert!(p.trends.next_deadline(end) > end, "the round is over");
    }

    #[test]
    fn a_redelivery_of_a_logged_reading_is_skipped_and_a_new_message_is_not() {
        let (mut p, metrics, _event_loop) = pipeline(100, Duration::ZERO);
        let now = clock_now();
        p.handle_batch(
            [delivered(1, false, 2.0), delivered(2, false, 3.0)].into_iter(),
            now,
        );
        // The connection dropped before the acknowledgements went out: both come again.
        let connected = Inbound::InputConnected {
            session_present: true,
        };
        let again = [connected, delivered(1, true, 2.0), delivered(2, true, 3.0)];
        p.handle_batch(again.into_iter(), now);
        assert_eq!(totals(&p), (2, 5.0));
        assert_eq!(metrics.redeliveries_skipped.get(), 2);
        // Packet id 1 reused for a new message (no DUP), even with the same content.
        p.handle_batch([delivered(1, false, 2.0)].into_iter(), now);
        assert_eq!(totals(&p), (3, 7.0));
        // After a session loss no id is known any more.
        let lost = Inbound::InputConnected {
            session_present: false,
        };
        p.handle_batch([lost, delivered(2, true, 3.0)].into_iter(), now);
        assert_eq!(totals(&p), (4, 10.0));
    }

    #[test]
    fn a_restarted_pipeline_restores_windows_and_skips_redeliveries_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let now = clock_now();
        let window = aggregator_core::WindowConfig::default().window;
        {
            let (mut first, _, _event_loop) = pipeline(100, Duration::ZERO);
            let (log, recovery) = WindowLog::open(dir.path(), window, now).unwrap();
            assert_eq!(
                first.restore(log, recovery.records, now),
                Restored::default()
            );
            let batch = (1..=5).map(|i| delivered(i, false, f64::from(i)));
            first.handle_batch(batch, now);
            // A reading that is already outside the window when the log is replayed.
            let old = now.saturating_sub(window - Duration::from_millis(1));
            let mut publish = Publish::new(
                "machines/D1/scrap",
                QoS::AtMostOnce,
                format!(
                    r#"{{"scrapIndex": 4, "value": 100, "timestamp": "{}"}}"#,
                    old.to_rfc3339_millis()
                ),
            );
            publish.pkid = 0;
            first.handle_batch([Inbound::Reading(publish)].into_iter(), now);
            assert_eq!(totals(&first), (6, 115.0));
        }
        let later = now.saturating_add(Duration::from_millis(10));
        let (mut second, metrics, _event_loop) = pipeline(100, Duration::ZERO);
        let (log, recovery) = WindowLog::open(dir.path(), window, later).unwrap();
        let restored = second.restore(log, recovery.records, later);
        assert_eq!(
            restored,
            Restored {
                readings: 5,
                expired: 1,
                // Its minute is still open: back in its bucket.
                history_only: 1,
                refused: 0,
                ..Restored::default()
            }
        );
        assert_eq!(totals(&second), (5, 15.0));
        assert_eq!(metrics.readings_restored.get(), 5);
        // The broker resends 4 and 5 (not acknowledged before the crash) and then a new one.
        let batch = [
            Inbound::InputConnected {
                session_present: true,
            },
            delivered(4, true, 4.0),
            delivered(5, true, 5.0),
            delivered(6, false, 6.0),
        ];
        second.handle_batch(batch.into_iter(), later);
        assert_eq!(totals(&second), (6, 21.0));
        assert_eq!(metrics.redeliveries_skipped.get(), 2);
        // The minute buckets also hold the reading that left the window: its minute was not
        // final yet when the log was replayed.
        assert_eq!(final_totals(&mut second, later), (7, 121.0));
    }

    /// Count and sum of the final buckets of every minute open at `now`, all closed.
    fn final_totals(p: &mut Pipeline, now: Timestamp) -> (u64, f64) {
        let mut finals = Vec::new();
        let after_every_close = now.saturating_add(Duration::from_secs(300));
        let history = p.history.as_mut().unwrap();
        history.take_due(after_every_close, usize::MAX, &mut finals);
        assert!(finals.iter().all(|b| b.is_final));
        let count = finals.iter().map(|b| b.count).sum();
        (count, finals.iter().map(|b| b.sum).sum())
    }

    /// A QoS 1 reading of D1/4 with an id.
    fn with_id(pkid: u16, id: &str, value: f64) -> Inbound {
        let mut publish = Publish::new(
            "machines/D1/scrap",
            QoS::AtLeastOnce,
            format!(r#"{{"scrapIndex": 4, "value": {value}, "id": "{id}"}}"#).into_bytes(),
        );
        publish.pkid = pkid;
        Inbound::Reading(publish)
    }

    #[test]
    fn minute_buckets_hold_exactly_the_readings_the_window_counted() {
        let (mut p, metrics, _event_loop) = pipeline(1000, Duration::ZERO);
        let now = clock_now();
        let mut retained = with_id(3, "c", 100.0);
        if let Inbound::Reading(publish) = &mut retained {
            publish.retain = true;
        }
        let late = Publish::new(
            "machines/D1/scrap",
            QoS::AtMostOnce,
            br#"{"scrapIndex": 4, "value": 1000, "timestamp": "2020-01-01T00:00:00Z"}"#.to_vec(),
        );
        let batch = [
            with_id(1, "a", 2.0),
            with_id(2, "a", 2.0),
            retained,
            Inbound::Reading(late),
            with_id(4, "b", 5.0),
        ];
        p.handle_batch(batch.into_iter(), now);
        assert_eq!(totals(&p), (2, 7.0));
        // The first change goes out at the key's offset within the history interval.
        let offset = aggregator_core::history::key_offset("D1", 4, Duration::from_secs(10));
        let sent_at_once = u64::from(offset.is_zero());
        assert_eq!(metrics.history_published.get(), sent_at_once);
        p.publish_history(now.saturating_add(offset));
        assert_eq!(
            metrics.history_published.get(),
            1,
            "the first change, at its offset"
        );
        assert_eq!(metrics.history_open_buckets.get(), 1);
        assert_eq!(final_totals(&mut p, now), (2, 7.0));
    }

    #[test]
    fn without_history_no_bucket_is_kept() {
        let (mut p, metrics, _event_loop) = pipeline(1000, Duration::ZERO);
        p.history = None;
        p.handle_batch(readings(3), clock_now());
        assert_eq!(metrics.history_published.get(), 0);
        assert_eq!(metrics.history_open_buckets.get(), 0);
    }
}
