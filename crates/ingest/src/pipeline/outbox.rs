//! Everything the aggregation task hands to the MQTT client: aggregates, retained clears,
//! dead letters, the liveness status and the manual acknowledgements, with the retries and
//! the back-pressure pause that a full request queue calls for.
//!
//! The client is used without blocking (`try_publish`, `try_ack`) while the task runs, since
//! the event loop task may be waiting on the task's own channel; what the queue refuses is
//! kept here and offered again [`RETRY_DELAY`] later. Only at shutdown ([`Outbox::finish`])
//! does the task await the client.

use std::collections::VecDeque;
use std::time::Duration;

use aggregator_core::topic::{REJECTED_TOPIC, aggregate_topic, alarm_topic, trend_topic};
use aggregator_core::{DeadLetter, Key, Rejection, Timestamp};
use rumqttc::{AsyncClient, Publish, QoS};

use crate::metrics::Metrics;
use crate::shard::Shard;

/// Pause before handing a refused publish to the client again.
pub const RETRY_DELAY: Duration = Duration::from_millis(20);

/// How often the online status is published again while connected. A broker may lose a
/// retained message it acknowledged (NATS 2.9 under load timed out storing one and the
/// gateways showed the shard offline while it worked); republishing heals that within this
/// time, and costs one small message.
pub const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// The aggregation task's side of the MQTT client.
pub struct Outbox {
    client: AsyncClient,
    metrics: Metrics,
    /// When this process started (for `status/ingest`).
    started_at: Timestamp,
    /// The status topic and its payload's shard fields.
    shard: Shard,
    /// Forgotten keys whose retained aggregate still has to be cleared.
    pending_clears: VecDeque<Key>,
    /// The online status could not be handed to the client yet.
    status_pending: bool,
    /// When the online status goes out again ([`STATUS_REFRESH`] after the last time).
    status_refresh_at: Option<Timestamp>,
    /// When to retry acknowledgements, clears or the status.
    retry_at: Option<Timestamp>,
    /// The client's request queue was full: no aggregate is offered before this instant.
    paused_until: Option<Timestamp>,
    /// Acknowledgements owed for the batch being handled, sent once it is durable.
    batch_acks: Vec<(QoS, u16)>,
    /// Durable but not yet acknowledged: the client's request queue was full.
    pending_acks: VecDeque<(QoS, u16)>,
    /// Alarm and trend messages (and their clears) the queue refused, kept in order: a key's
    /// alarm changes must reach the broker in the order they happened.
    in_order: VecDeque<(String, Vec<u8>)>,
}

impl Outbox {
    /// An outbox publishing through `client`.
    pub fn new(client: AsyncClient, metrics: Metrics, started_at: Timestamp, shard: Shard) -> Self {
        Outbox {
            client,
            metrics,
            started_at,
            shard,
            pending_clears: VecDeque::new(),
            status_pending: false,
            status_refresh_at: None,
            retry_at: None,
            paused_until: None,
            batch_acks: Vec::new(),
            pending_acks: VecDeque::new(),
            in_order: VecDeque::new(),
        }
    }

    /// Owes the broker an acknowledgement for a message of the batch being handled.
    pub fn owe_ack(&mut self, qos: QoS, pkid: u16) {
        self.batch_acks.push((qos, pkid));
    }

    /// The batch is durable: its acknowledgements may go out.
    pub fn release_acks(&mut self, now: Timestamp) {
        self.pending_acks.extend(self.batch_acks.drain(..));
        self.send_acks(now);
    }

    /// The batch could not be made durable: its messages stay unacknowledged, for the broker
    /// to deliver again to the next process.
    pub fn withhold_batch_acks(&mut self) {
        self.batch_acks.clear();
    }

    /// The broker started a new session: packet ids start over and nothing will be
    /// redelivered, so unsent acknowledgements of the lost session mean nothing.
    pub fn session_lost(&mut self) {
        self.pending_acks.clear();
        self.batch_acks.clear();
    }

    /// Publishes the online status on the next chance (after every ConnAck).
    pub fn announce_online(&mut self) {
        self.status_pending = true;
    }

    /// Clears the retained aggregate of `key` unless it is tracked again by then, and its
    /// retained alarm and trend in any case (behind its earlier alarm and trend messages, and
    /// ahead of any later ones, so a key that comes back is not wiped).
    pub fn clear_later(&mut self, key: Key) {
        self.in_order
            .push_back((alarm_topic(&key.machine, key.scrap_index), Vec::new()));
        self.in_order
            .push_back((trend_topic(&key.machine, key.scrap_index), Vec::new()));
        self.pending_clears.push_back(key);
    }

    /// Hands a retained QoS 1 alarm or trend message to the client after those it refused
    /// before; what it refuses now waits for the next retry, in order.
    pub fn publish_in_order(&mut self, topic: String, payload: Vec<u8>, now: Timestamp) {
        self.in_order.push_back((topic, payload));
        self.send_in_order(now);
    }

    /// Alarm and trend messages waiting for room in the client's queue.
    pub fn in_order_backlog(&self) -> usize {
        self.in_order.len()
    }

    /// Offers the queued alarm and trend messages; returns true when none is left.
    pub fn send_in_order(&mut self, now: Timestamp) -> bool {
        while let Some((topic, payload)) = self.in_order.front() {
            if self
                .client
                .try_publish(topic.clone(), QoS::AtLeastOnce, true, payload.clone())
                .is_err()
            {
                self.schedule_retry(now);
                return false;
            }
            self.in_order.pop_front();
        }
        true
    }

    /// Whether the request queue was full a moment ago (aggregates and dead letters wait).
    pub fn paused_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.paused_until.filter(|until| *until > now)
    }

    /// Ends a pause that is over; `false` while it lasts.
    pub fn resume(&mut self, now: Timestamp) -> bool {
        if self.paused_until.is_some_and(|until| until > now) {
            return false;
        }
        self.paused_until = None;
        true
    }

    /// When the outbox has to be offered something again without input: the end of a pause
    /// (for aggregates due meanwhile) is the caller's business, this is the retry time.
    pub fn retry_at(&self) -> Option<Timestamp> {
        self.retry_at
    }

    /// When the online status is due to be published again.
    pub fn status_refresh_at(&self) -> Option<Timestamp> {
        self.status_refresh_at
    }

    /// Publishes the online status again when its refresh time has come.
    pub fn refresh_status_due(&mut self, now: Timestamp) {
        if self.status_refresh_at.is_some_and(|at| at <= now) {
            self.status_refresh_at = None;
            self.status_pending = true;
            self.send_status(now);
        }
    }

    /// Moves `at` to the end of a pause in force.
    pub fn not_before_pause_end(&self, at: Timestamp) -> Timestamp {
        self.paused_until.map_or(at, |until| at.max(until))
    }

    /// Offers again what the queue refused before, when its retry time has come:
    /// acknowledgements first, then the status, then clears of keys `tracked` does not know.
    pub fn retry_due(&mut self, now: Timestamp, tracked: impl Fn(&Key) -> bool) {
        if self.retry_at.is_some_and(|at| at > now) {
            return;
        }
        self.retry_at = None;
        self.send_acks(now);
        self.send_status(now);
        self.send_clears(now, tracked);
        self.send_in_order(now);
    }

    /// Hands a retained QoS 1 message to the client; `false` when the queue is full.
    pub fn try_publish_retained(&mut self, topic: String, payload: Vec<u8>) -> bool {
        let queued = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, payload)
            .is_ok();
        if queued {
            self.metrics.aggregates_published.inc();
        }
        queued
    }

    /// Hands an aggregate to the client. `Err(at)`: the queue is full; the aggregate is to be
    /// offered again at `at`, and nothing else before.
    pub fn publish_aggregate(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), Timestamp> {
        if self.try_publish_retained(topic, payload) {
            return Ok(());
        }
        let at = now.saturating_add(RETRY_DELAY);
        self.paused_until = Some(at);
        Err(at)
    }

    /// Publishes `rejection` of `publish` on the dead-letter topic. Dead letters are best
    /// effort (QoS 0) and yield to aggregates: while the request queue is full they are
    /// dropped (and counted), so freed room goes to aggregates.
    pub fn dead_letter(&mut self, rejection: &Rejection, publish: &Publish, now: Timestamp) {
        if self.paused_at(now).is_some() {
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
            self.paused_until = Some(now.saturating_add(RETRY_DELAY));
        }
    }

    fn send_status(&mut self, now: Timestamp) {
        if !self.status_pending {
            return;
        }
        let online = self.shard.status_payload(true, self.started_at);
        match self
            .client
            .try_publish(self.shard.status_topic(), QoS::AtLeastOnce, true, online)
        {
            Ok(()) => {
                self.status_pending = false;
                self.status_refresh_at = Some(now.saturating_add(STATUS_REFRESH));
            }
            Err(_) => self.schedule_retry(now),
        }
    }

    fn send_clears(&mut self, now: Timestamp, tracked: impl Fn(&Key) -> bool) {
        while let Some(key) = self.pending_clears.front() {
            // The key came back meanwhile: its fresh aggregate supersedes the clear.
            if !tracked(key) {
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

    fn send_acks(&mut self, now: Timestamp) {
        while let Some(&(qos, pkid)) = self.pending_acks.front() {
            if self.client.try_ack(&ack_for(qos, pkid)).is_err() {
                self.schedule_retry(now);
                return;
            }
            self.pending_acks.pop_front();
        }
    }

    fn schedule_retry(&mut self, now: Timestamp) {
        let at = now.saturating_add(RETRY_DELAY);
        self.retry_at = Some(self.retry_at.map_or(at, |r| r.min(at)));
    }

    /// Final flush: the owed acknowledgements (they let the broker forget what is durable),
    /// `aggregates`, every pending clear of a key `tracked` does not know, the offline status,
    /// then DISCONNECT, all queued in order behind what the client already holds. Returns how
    /// many aggregates were queued.
    pub async fn finish(
        &mut self,
        aggregates: Vec<(String, Vec<u8>)>,
        tracked: impl Fn(&Key) -> bool,
    ) -> usize {
        while let Some((qos, pkid)) = self.pending_acks.pop_front() {
            let _ = self.client.ack(&ack_for(qos, pkid)).await;
        }
        let mut published = 0_usize;
        for (topic, payload) in aggregates {
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
        while let Some((topic, payload)) = self.in_order.pop_front() {
            let _ = self
                .client
                .publish(topic, QoS::AtLeastOnce, true, payload)
                .await;
        }
        while let Some(key) = self.pending_clears.pop_front() {
            if tracked(&key) {
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
        let offline = self.shard.status_payload(false, self.started_at);
        let _ = self
            .client
            .publish(self.shard.status_topic(), QoS::AtLeastOnce, true, offline)
            .await;
        let _ = self.client.disconnect().await;
        published
    }
}

/// The acknowledgement rumqttc sends for a message: PUBACK (QoS 1) or PUBREC (QoS 2). Only the
/// QoS and packet id matter to it.
fn ack_for(qos: QoS, pkid: u16) -> Publish {
    let mut publish = Publish::new("", qos, Vec::new());
    publish.pkid = pkid;
    publish
}
