//! The aggregation task: owns the window store (no locks on the hot path), turns incoming
//! messages into readings or rejections, and hands aggregates, retained clears, dead letters
//! and the liveness status to the MQTT client.
//!
//! It sleeps on one timer, set to the earliest of the next expiry or forgetting
//! ([`WindowStore::next_deadline`]), the next coalescing cool-down end and the next retry:
//! no periodic scans. Publishes use the client's non-blocking `try_publish` while the event
//! loop task may be waiting on this task's channel; a refused publish is retried shortly after.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use aggregator_core::topic::{INGEST_STATUS_TOPIC, REJECTED_TOPIC, aggregate_topic};
use aggregator_core::{
    DeadLetter, IngestStatus, Key, KeyId, ParseLimits, Rejection, Timestamp, WindowConfig,
    WindowStore, parse_reading,
};
use rumqttc::{AsyncClient, Publish, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::coalesce::Coalescer;
use crate::metrics::Metrics;
use crate::mqtt::{Inbound, LinkState};
use crate::rejections::RejectionLog;
use crate::snapshot::{OrphanAction, Orphans};

/// Pause before handing a refused publish to the client again.
const RETRY_DELAY: Duration = Duration::from_millis(20);
/// Most aggregates handed to the client per tick, so that a burst (every key after a
/// reconnect) is spread over several loop turns and input keeps flowing.
const PUBLISHES_PER_TICK: usize = 4096;

/// The ingest clock: wall-clock time, as the contract's window is defined on it.
pub fn clock_now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// The JSON of `status/ingest`.
pub fn status_payload(online: bool, started_at: Timestamp) -> Vec<u8> {
    let status = IngestStatus {
        online,
        started_at: started_at.to_rfc3339_millis(),
    };
    // A struct of a bool and a String always serializes.
    serde_json::to_vec(&status).unwrap_or_default()
}

/// Settings of the aggregation task.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Window store settings.
    pub window: WindowConfig,
    /// Parser limits.
    pub limits: ParseLimits,
    /// Coalescing interval per key.
    pub publish_interval: Duration,
    /// Most messages handled per batch.
    pub batch_size: usize,
    /// At most one log line per rejection reason per this long.
    pub rejection_log_interval: Duration,
    /// When this process started (for `status/ingest`).
    pub started_at: Timestamp,
}

/// The aggregation task's state.
pub struct Pipeline {
    store: WindowStore,
    coalescer: Coalescer<KeyId>,
    client: AsyncClient,
    metrics: Metrics,
    limits: ParseLimits,
    rejection_log: RejectionLog,
    batch_size: usize,
    started_at: Timestamp,
    /// Forgotten keys whose retained aggregate still has to be cleared.
    pending_clears: VecDeque<Key>,
    /// The online status could not be handed to the client yet.
    status_pending: bool,
    /// When to retry clears or the status.
    retry_at: Option<Timestamp>,
    /// The client's request queue was full: no aggregate is offered before this instant.
    publish_paused_until: Option<Timestamp>,
    /// Connections seen, to tell a reconnect from the first connect.
    connects: u64,
    /// Retained aggregates of a previous run for keys this process does not track.
    orphans: Orphans,
    orphans_due: Vec<(String, u32, OrphanAction)>,
    changed: Vec<KeyId>,
    forgotten: Vec<Key>,
    ready: Vec<KeyId>,
}

impl Pipeline {
    /// A pipeline publishing through `client`.
    pub fn new(settings: PipelineSettings, client: AsyncClient, metrics: Metrics) -> Self {
        Pipeline {
            store: WindowStore::new(settings.window.clone()),
            coalescer: Coalescer::new(settings.publish_interval),
            client,
            metrics,
            limits: settings.limits,
            rejection_log: RejectionLog::new(settings.rejection_log_interval),
            batch_size: settings.batch_size,
            started_at: settings.started_at,
            pending_clears: VecDeque::new(),
            status_pending: false,
            retry_at: None,
            publish_paused_until: None,
            connects: 0,
            orphans: Orphans::new(settings.window.window, settings.window.key_idle_ttl),
            orphans_due: Vec::new(),
            changed: Vec::new(),
            forgotten: Vec::new(),
            ready: Vec::new(),
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
        }
        inbound
    }

    /// The shutdown sequence after [`Pipeline::run`]: aggregate what was already received,
    /// hand every pending aggregate and clear to the client, publish the offline status,
    /// disconnect, and wait (at most `timeout`) until the DISCONNECT is written.
    ///
    /// The event loop task must no longer wait on `inbound` (its drain token is cancelled),
    /// so awaiting the client here cannot deadlock.
    pub async fn finish(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut link: watch::Receiver<LinkState>,
        timeout: Duration,
    ) {
        let mut batch = Vec::new();
        while let Ok(item) = inbound.try_recv() {
            batch.push(item);
        }
        if !batch.is_empty() {
            self.handle_batch(batch.into_iter(), clock_now());
        }
        drop(inbound);
        let deadline = tokio::time::Instant::now() + timeout;
        let handed_over = tokio::time::timeout_at(deadline, self.flush_all()).await;
        if handed_over.is_err() {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "shutdown: the broker did not take the last aggregates in time"
            );
            return;
        }
        // Done when the DISCONNECT is written; without a connection nothing more can go out
        // (the broker publishes our last will instead), so do not wait for one.
        let closed =
            tokio::time::timeout_at(deadline, link.wait_for(|s| s.closed || !s.connected)).await;
        match closed {
            Ok(Ok(state)) if state.closed => {}
            Ok(_) => tracing::warn!("shutdown: not connected, the last aggregates are lost"),
            Err(_) => tracing::warn!("shutdown: the DISCONNECT was not sent in time"),
        }
    }

    /// Final flush: every unpublished change, every pending clear, the offline status, then
    /// DISCONNECT, all queued in order behind what the client already holds.
    async fn flush_all(&mut self) {
        let now = clock_now();
        self.expire(now);
        self.store.forget_idle(now, &mut self.forgotten);
        self.pending_clears.extend(self.forgotten.drain(..));
        let mut keys = Vec::new();
        self.coalescer.drain_dirty(&mut keys);
        let mut published = 0_usize;
        for id in keys {
            let Some((topic, payload)) = self.aggregate_message(id, now) else {
                continue;
            };
            if self
                .client
                .publish(topic, QoS::AtLeastOnce, true, payload)
                .await
                .is_ok()
            {
                self.metrics.aggregates_published.inc();
                published += 1;
            }
        }
        while let Some(key) = self.pending_clears.pop_front() {
            if self.store.lookup(&key.machine, key.scrap_index).is_some() {
                continue;
            }
            let topic = aggregate_topic(&key.machine, key.scrap_index);
            if self
                .client
                .publish(topic, QoS::AtLeastOnce, true, Vec::new())
                .await
                .is_ok()
            {
                self.metrics.aggregates_published.inc();
            }
        }
        let offline = status_payload(false, self.started_at);
        let _ = self
            .client
            .publish(INGEST_STATUS_TOPIC, QoS::AtLeastOnce, true, offline)
            .await;
        let _ = self.client.disconnect().await;
        tracing::info!(
            final_aggregates = published,
            "shutdown: last aggregates and offline status queued"
        );
    }

    /// Handles one batch of messages received at `now`.
    pub fn handle_batch(&mut self, batch: impl Iterator<Item = Inbound>, now: Timestamp) {
        let started = Instant::now();
        // Expire first: a reading must be judged late, and an aggregate computed, as of now.
        self.expire(now);
        let (mut received, mut accepted) = (0_u64, 0_u64);
        for item in batch {
            match item {
                Inbound::Reading(publish) => {
                    received += 1;
                    accepted += u64::from(self.ingest(&publish, now));
                }
                Inbound::Connected { session_present } => self.on_connected(session_present),
                Inbound::Retained(found) => self.adopt_orphans(found),
            }
        }
        self.metrics.readings_received.inc_by(received);
        self.metrics.readings_accepted.inc_by(accepted);
        self.tick(now);
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// One message; true when it was accepted.
    fn ingest(&mut self, publish: &Publish, now: Timestamp) -> bool {
        let store = &mut self.store;
        let result = parse_reading(&publish.topic, &publish.payload, now, &self.limits)
            .and_then(|reading| store.accept(&reading, now));
        match result {
            Ok(id) => {
                if self.coalescer.is_immediate() {
                    self.publish_aggregate(id, now);
                } else {
                    self.coalescer.touch(id);
                }
                true
            }
            Err(rejection) => {
                self.reject(&rejection, publish, now);
                false
            }
        }
    }

    fn reject(&mut self, rejection: &Rejection, publish: &Publish, now: Timestamp) {
        let reason = rejection.reason();
        self.metrics.rejected(reason).inc();
        if let Some(admitted) = self.rejection_log.admit(reason, now) {
            tracing::warn!(
                reason = reason.as_str(),
                topic = %publish.topic,
                detail = %rejection,
                suppressed_since_last = admitted.suppressed,
                "rejected a payload"
            );
        }
        // Dead letters are best effort (QoS 0) and yield to aggregates: while the request
        // queue is full they are dropped (and counted), so freed room goes to aggregates.
        if self.publish_paused_until.is_some_and(|until| until > now) {
            self.metrics.dead_letters_dropped.inc();
            return;
        }
        let letter = DeadLetter::new(rejection, &publish.topic, &publish.payload, now);
        let payload = serde_json::to_vec(&letter).unwrap_or_default();
        if self
            .client
            .try_publish(REJECTED_TOPIC, QoS::AtMostOnce, false, payload)
            .is_err()
        {
            self.metrics.dead_letters_dropped.inc();
            self.publish_paused_until = Some(now.saturating_add(RETRY_DELAY));
        }
    }

    fn on_connected(&mut self, session_present: bool) {
        self.connects += 1;
        self.status_pending = true;
        if self.connects > 1 {
            // The broker may have lost retained aggregates in a crash, and rumqttc drops its
            // unsent queue when the session is gone: publish every key's current state again.
            tracing::info!(
                session_present,
                keys = self.store.key_count(),
                "reconnected: republishing every aggregate"
            );
            let ids: Vec<KeyId> = self.store.key_ids().collect();
            for id in ids {
                self.coalescer.touch(id);
            }
        }
    }

    fn adopt_orphans(&mut self, found: Vec<crate::snapshot::RetainedAggregate>) {
        let before = self.orphans.len();
        for one in found {
            if self.store.lookup(&one.machine, one.scrap_index).is_none() {
                self.orphans.add(one);
            }
        }
        tracing::info!(
            keys = self.orphans.len() - before,
            "retained aggregates of a previous run will be emptied and cleared on schedule"
        );
    }

    /// Empties, then clears, the retained aggregates of a previous run for untracked keys.
    fn handle_orphans(&mut self, now: Timestamp) {
        self.orphans.take_due(now, &mut self.orphans_due);
        for (machine, index, action) in std::mem::take(&mut self.orphans_due) {
            if self.store.lookup(&machine, index).is_some() {
                continue;
            }
            match action {
                OrphanAction::Clear => self.pending_clears.push_back(Key {
                    machine: machine.into(),
                    scrap_index: index,
                }),
                OrphanAction::Empty => {
                    let empty = aggregator_core::Aggregate {
                        machine_id: machine.clone(),
                        scrap_index: index,
                        sum: 0.0,
                        avg: None,
                        count: 0,
                        window_seconds: self.store.config().window.as_secs(),
                        timestamp: now.to_rfc3339_millis(),
                    };
                    let topic = aggregate_topic(&machine, index);
                    let payload = serde_json::to_vec(&empty).unwrap_or_default();
                    let (at, action) =
                        match self
                            .client
                            .try_publish(topic, QoS::AtLeastOnce, true, payload)
                        {
                            Ok(()) => {
                                self.metrics.aggregates_published.inc();
                                (
                                    now.saturating_add(self.orphans.idle_ttl()),
                                    OrphanAction::Clear,
                                )
                            }
                            Err(_) => (now.saturating_add(RETRY_DELAY), OrphanAction::Empty),
                        };
                    self.orphans.schedule(at, machine, index, action);
                }
            }
        }
    }

    /// Expiry, forgetting, retries and due publishes at `now`.
    pub fn tick(&mut self, now: Timestamp) {
        self.expire(now);
        self.store.forget_idle(now, &mut self.forgotten);
        if !self.forgotten.is_empty() {
            tracing::debug!(count = self.forgotten.len(), "forgetting idle keys");
            self.pending_clears.extend(self.forgotten.drain(..));
        }
        if self.orphans.next_deadline().is_some_and(|at| at <= now) {
            self.handle_orphans(now);
        }
        if self.retry_at.is_none_or(|at| at <= now) {
            self.retry_at = None;
            self.send_status(now);
            self.send_clears(now);
        }
        if self.publish_paused_until.is_none_or(|until| until <= now) {
            self.publish_paused_until = None;
            self.coalescer
                .take_ready(now, PUBLISHES_PER_TICK, &mut self.ready);
            let mut ready = std::mem::take(&mut self.ready);
            for id in ready.drain(..) {
                self.publish_aggregate(id, now);
            }
            self.ready = ready;
        }
        self.metrics.keys.set(gauge(self.store.key_count()));
        self.metrics
            .buffered_readings
            .set(gauge(self.store.buffered_readings()));
    }

    fn expire(&mut self, now: Timestamp) {
        self.store.expire(now, &mut self.changed);
        let mut changed = std::mem::take(&mut self.changed);
        for id in changed.drain(..) {
            if self.coalescer.is_immediate() {
                self.publish_aggregate(id, now);
            } else {
                self.coalescer.touch(id);
            }
        }
        self.changed = changed;
    }

    fn send_status(&mut self, now: Timestamp) {
        if !self.status_pending {
            return;
        }
        let online = status_payload(true, self.started_at);
        match self
            .client
            .try_publish(INGEST_STATUS_TOPIC, QoS::AtLeastOnce, true, online)
        {
            Ok(()) => self.status_pending = false,
            Err(_) => self.schedule_retry(now),
        }
    }

    fn send_clears(&mut self, now: Timestamp) {
        while let Some(key) = self.pending_clears.front() {
            // The key came back meanwhile: its fresh aggregate supersedes the clear.
            if self.store.lookup(&key.machine, key.scrap_index).is_none() {
                let topic = aggregate_topic(&key.machine, key.scrap_index);
                if self
                    .client
                    .try_publish(topic, QoS::AtLeastOnce, true, Vec::new())
                    .is_err()
                {
                    self.schedule_retry(now);
                    return;
                }
                self.metrics.aggregates_published.inc();
            }
            self.pending_clears.pop_front();
        }
    }

    fn schedule_retry(&mut self, now: Timestamp) {
        let at = now.saturating_add(RETRY_DELAY);
        self.retry_at = Some(self.retry_at.map_or(at, |r| r.min(at)));
    }

    fn aggregate_message(&self, id: KeyId, now: Timestamp) -> Option<(String, Vec<u8>)> {
        let aggregate = self.store.aggregate(id, now)?;
        let topic = aggregate_topic(&aggregate.machine_id, aggregate.scrap_index);
        // Plain numbers and strings: serialization cannot fail.
        let payload = serde_json::to_vec(&aggregate).ok()?;
        Some((topic, payload))
    }

    fn publish_aggregate(&mut self, id: KeyId, now: Timestamp) {
        if let Some(until) = self.publish_paused_until.filter(|until| *until > now) {
            // The request queue was full a moment ago: do not serialize what would be refused.
            self.coalescer.retry(id, until);
            return;
        }
        // None: the key was forgotten after it changed; its clear is on the way.
        let Some((topic, payload)) = self.aggregate_message(id, now) else {
            return;
        };
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, payload)
        {
            Ok(()) => {
                self.metrics.aggregates_published.inc();
            }
            Err(_) => {
                let at = now.saturating_add(RETRY_DELAY);
                self.coalescer.retry(id, at);
                self.publish_paused_until = Some(at);
            }
        }
    }

    /// When the task has to wake up next without input.
    pub fn next_wake(&self) -> Option<Timestamp> {
        let now = clock_now();
        let publish = self.coalescer.next_deadline_at(now).map(|at| {
            // While paused, due aggregates wait for the pause to end.
            self.publish_paused_until.map_or(at, |until| at.max(until))
        });
        [
            self.store.next_deadline(),
            publish,
            self.retry_at,
            self.orphans.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The window store (for inspection in tests).
    pub fn store(&self) -> &WindowStore {
        &self.store
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
    use prometheus_client::registry::Registry;
    use rumqttc::MqttOptions;

    fn pipeline(queue: usize, interval: Duration) -> (Pipeline, Metrics, rumqttc::EventLoop) {
        // The event loop is never polled: requests pile up in its bounded queue.
        let (client, event_loop) = AsyncClient::new(MqttOptions::new("t", "localhost", 1), queue);
        let metrics = Metrics::register(&mut Registry::default());
        let settings = PipelineSettings {
            window: WindowConfig::default(),
            limits: ParseLimits::default(),
            publish_interval: interval,
            batch_size: 64,
            rejection_log_interval: Duration::from_secs(10),
            started_at: Timestamp::EPOCH,
        };
        (
            Pipeline::new(settings, client, metrics.clone()),
            metrics,
            event_loop,
        )
    }

    fn readings(n: usize) -> impl Iterator<Item = Inbound> {
        (0..n).map(|i| {
            Inbound::Reading(Publish::new(
                format!("machines/M{i}/scrap"),
                QoS::AtLeastOnce,
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
        assert_eq!(p.store().key_count(), 0);
        assert_eq!(metrics.aggregates_published.get(), 0);
        assert_eq!(metrics.dead_letters_dropped.get(), 0, "queued");
    }
}
