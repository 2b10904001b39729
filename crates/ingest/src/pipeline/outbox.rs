//! Everything the aggregation task hands to the MQTT clients: the manual acknowledgements to
//! the input connection's; aggregates, retained clears, dead letters, minute buckets and the
//! liveness status to the output connection's.
//!
//! The clients are used without blocking (`try_publish`, `try_ack`) while the task runs, since
//! the event loop tasks may be waiting on the task's own channel. When a client's request
//! queue refuses something, the outbox pauses for [`RETRY_DELAY`]: nothing is offered
//! meanwhile (dead letters are dropped), then what waits goes out again in order. Only at
//! shutdown ([`Outbox::finish`]) does the task await the clients.

use std::collections::VecDeque;
use std::time::Duration;

use aggregator_core::topic::{
    REJECTED_TOPIC, aggregate_topic, alarm_topic, history_topic, trend_topic,
};
use aggregator_core::{DeadLetter, HistoryBucket, Key, Rejection, Timestamp};
use rumqttc::{AsyncClient, Publish, QoS};

use crate::metrics::Metrics;
use crate::mqtt::Clients;
use crate::shard::Shard;

/// Pause before offering anything to the client again after it refused something.
pub const RETRY_DELAY: Duration = Duration::from_millis(20);

/// How often the online status is published again while connected. A broker may lose a
/// retained message it acknowledged (NATS 2.9 under load timed out storing one and the
/// gateways showed the shard offline while it worked); republishing heals that within this
/// time, and costs one small message.
pub const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// The aggregation task's side of the MQTT clients.
pub struct Outbox {
    /// The input connection's client: acknowledgements only.
    input: AsyncClient,
    /// The output connection's client: everything published.
    client: AsyncClient,
    /// The Sparkplug STATE topic this host publishes on, on the input connection.
    state_topic: Option<String>,
    metrics: Metrics,
    /// When this process started (for `status/ingest`).
    started_at: Timestamp,
    /// The status topic and its payload's shard fields.
    shard: Shard,
    /// The client's request queue was full: nothing is offered before this instant.
    paused_until: Option<Timestamp>,
    /// When the online status goes out (again); `None` before the first connection.
    status_at: Option<Timestamp>,
    /// Acknowledgements owed for the batch being handled, sent once it is durable.
    batch_acks: Vec<(QoS, u16)>,
    /// Durable, not yet handed to the client.
    acks: VecDeque<(QoS, u16)>,
    /// Forgotten keys whose retained aggregate still has to be cleared.
    clears: VecDeque<Key>,
    /// Alarm and trend messages (and their clears) not yet handed to the client, in order: a
    /// key's alarm changes must reach the broker in the order they happened.
    in_order: VecDeque<(String, Vec<u8>)>,
    /// Minute buckets (QoS 1, not retained) refused by the client's full queue, waiting for
    /// room; the pipeline takes no more from the accumulator while any wait, which bounds it.
    history: VecDeque<(String, Vec<u8>)>,
}

impl Outbox {
    /// An outbox acknowledging and publishing through `clients`.
    pub fn new(clients: Clients, metrics: Metrics, started_at: Timestamp, shard: Shard) -> Self {
        Outbox {
            input: clients.input,
            client: clients.output,
            state_topic: None,
            metrics,
            started_at,
            shard,
            paused_until: None,
            status_at: None,
            batch_acks: Vec::new(),
            acks: VecDeque::new(),
            clears: VecDeque::new(),
            in_order: VecDeque::new(),
            history: VecDeque::new(),
        }
    }

    /// Publishes this host's Sparkplug STATE on `topic`: online after every ConnAck of the
    /// input connection, which carries the offline one as will, and offline at a clean stop.
    pub fn with_state(mut self, topic: Option<String>) -> Self {
        self.state_topic = topic;
        self
    }

    /// The online STATE, retained, if this host publishes one (best effort: the input
    /// connection's queue holds only acknowledgements besides).
    pub fn announce_state(&mut self) {
        if let Some(topic) = &self.state_topic {
            let online = crate::pipeline::sparkplug::state_payload(true, self.started_at);
            let _ = self
                .input
                .try_publish(topic.clone(), QoS::AtLeastOnce, true, online);
        }
    }

    /// Hands a Sparkplug command (QoS 0, not retained) to the client; `false` when its queue
    /// is full: the node is asked again when the need comes up again.
    pub fn publish_command(&mut self, topic: String, payload: Vec<u8>) -> bool {
        let sent = self
            .client
            .try_publish(topic, QoS::AtMostOnce, false, payload);
        sent.is_ok()
    }

    /// Owes the broker an acknowledgement for a message of the batch being handled.
    pub fn owe_ack(&mut self, qos: QoS, pkid: u16) {
        self.batch_acks.push((qos, pkid));
    }

    /// The batch is durable, and its acknowledgements go out with the next
    /// [`Outbox::offer`]; or it is not, and its messages stay unacknowledged, for the broker
    /// to deliver again to the next process.
    pub fn end_batch(&mut self, durable: bool) {
        if durable {
            self.acks.extend(self.batch_acks.drain(..));
        } else {
            self.batch_acks.clear();
        }
    }

    /// The broker started a new session: packet ids start over and nothing will be
    /// redelivered, so unsent acknowledgements of the lost session mean nothing.
    pub fn session_lost(&mut self) {
        self.acks.clear();
        self.batch_acks.clear();
    }

    /// Publishes the online status with the next [`Outbox::offer`] (after every ConnAck).
    pub fn announce_online(&mut self, now: Timestamp) {
        self.status_at = Some(now);
    }

    /// Clears the retained aggregate of `key` unless it is tracked again by then, and its
    /// retained alarm and trend in any case (behind its earlier alarm and trend messages, and
    /// ahead of any later ones, so a key that comes back is not wiped).
    pub fn clear_later(&mut self, key: Key) {
        self.in_order
            .push_back((alarm_topic(&key.machine, key.scrap_index), Vec::new()));
        self.in_order
            .push_back((trend_topic(&key.machine, key.scrap_index), Vec::new()));
        self.clears.push_back(key);
    }

    /// Hands a retained QoS 1 alarm or trend message to the client after those waiting
    /// before it; during a pause it waits too.
    pub fn publish_in_order(&mut self, topic: String, payload: Vec<u8>, now: Timestamp) {
        self.in_order.push_back((topic, payload));
        if self.paused_at(now).is_none() && !self.send_in_order() {
            self.pause(now);
        }
    }

    /// Alarm and trend messages waiting for room in the client's queue.
    pub fn in_order_backlog(&self) -> usize {
        self.in_order.len()
    }

    /// Hands a minute bucket (QoS 1, not retained) to the client after those waiting before
    /// it; during a pause, or when the queue is full, it waits.
    pub fn publish_history(&mut self, bucket: &HistoryBucket, now: Timestamp) {
        let topic = history_topic(&bucket.machine_id, bucket.scrap_index);
        // Plain numbers and strings: serialization cannot fail.
        let payload = serde_json::to_vec(bucket).unwrap_or_default();
        self.history.push_back((topic, payload));
        if self.paused_at(now).is_none() && !self.send_history() {
            self.pause(now);
        }
    }

    /// Minute buckets waiting for room in the client's queue.
    pub fn history_backlog(&self) -> usize {
        self.history.len()
    }

    /// The end of the pause in force at `now`, if one is.
    pub fn paused_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.paused_until.filter(|until| *until > now)
    }

    /// Moves `at` to the end of a pause in force.
    pub fn not_before_pause_end(&self, at: Timestamp) -> Timestamp {
        self.paused_until.map_or(at, |until| at.max(until))
    }

    /// When [`Outbox::offer`] has something to do without input: the end of a pause, else the
    /// next status.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.paused_until.or(self.status_at)
    }

    /// Unless paused, offers what waits, in order: acknowledgements, the status when due,
    /// clears of keys `tracked` does not know, alarm and trend messages. `false` while
    /// paused, then or from before: aggregates wait as well.
    pub fn offer(&mut self, now: Timestamp, tracked: impl Fn(&Key) -> bool) -> bool {
        if self.paused_at(now).is_some() {
            return false;
        }
        self.paused_until = None;
        let offered = self.send_acks()
            && self.send_status(now)
            && self.send_clears(tracked)
            && self.send_in_order()
            && self.send_history();
        if !offered {
            self.pause(now);
        }
        offered
    }

    /// Hands a retained QoS 1 aggregate (or clear) to the client; `false` when the queue is
    /// full.
    pub fn try_publish_retained(&self, topic: String, payload: Vec<u8>) -> bool {
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
        Err(self.pause(now))
    }

    /// Publishes `rejection` of `publish` on the dead-letter topic. Dead letters are best
    /// effort (QoS 0) and yield to aggregates: while paused they are dropped (and counted), so
    /// freed room goes to aggregates.
    pub fn dead_letter(&mut self, rejection: &Rejection, publish: &Publish, now: Timestamp) {
        if self.paused_at(now).is_none() {
            let letter = DeadLetter::new(rejection, &publish.topic, &publish.payload, now);
            let payload = serde_json::to_vec(&letter).unwrap_or_default();
            let sent = self
                .client
                .try_publish(REJECTED_TOPIC, QoS::AtMostOnce, false, payload);
            if sent.is_ok() {
                return;
            }
            self.pause(now);
        }
        self.metrics.dead_letters_dropped.inc();
    }

    /// Pauses for [`RETRY_DELAY`]; returns the end of the pause.
    fn pause(&mut self, now: Timestamp) -> Timestamp {
        let until = now.saturating_add(RETRY_DELAY);
        self.paused_until = Some(until);
        until
    }

    // The senders below offer a queue's items in order and return false at the first the
    // client refuses; the caller pauses.

    fn send_acks(&mut self) -> bool {
        while let Some(&(qos, pkid)) = self.acks.front() {
            if self.input.try_ack(&ack_for(qos, pkid)).is_err() {
                return false;
            }
            self.acks.pop_front();
        }
        true
    }

    fn send_status(&mut self, now: Timestamp) -> bool {
        if self.status_at.is_none_or(|at| at > now) {
            return true;
        }
        let online = self.shard.status_payload(true, self.started_at);
        let topic = self.shard.status_topic();
        if self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, online)
            .is_err()
        {
            return false;
        }
        self.status_at = Some(now.saturating_add(STATUS_REFRESH));
        true
    }

    fn send_clears(&mut self, tracked: impl Fn(&Key) -> bool) -> bool {
        while let Some(key) = self.clears.front() {
            // The key came back meanwhile: its fresh aggregate supersedes the clear.
            let topic = aggregate_topic(&key.machine, key.scrap_index);
            if !tracked(key) && !self.try_publish_retained(topic, Vec::new()) {
                return false;
            }
            self.clears.pop_front();
        }
        true
    }

    fn send_in_order(&mut self) -> bool {
        while let Some((topic, payload)) = self.in_order.front() {
            if self
                .client
                .try_publish(topic.clone(), QoS::AtLeastOnce, true, payload.clone())
                .is_err()
            {
                return false;
            }
            self.in_order.pop_front();
        }
        true
    }

    fn send_history(&mut self) -> bool {
        while let Some((topic, payload)) = self.history.front() {
            if self
                .client
                .try_publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                .is_err()
            {
                return false;
            }
            self.metrics.history_published.inc();
            self.history.pop_front();
        }
        true
    }

    /// Final flush: the owed acknowledgements (they let the broker forget what is durable) and
    /// the input connection's DISCONNECT; then `aggregates`, alarm and trend messages, every
    /// pending clear of a key `tracked` does not know, the minute buckets handed over with
    /// [`Outbox::publish_history`], the offline status and the output
    /// connection's DISCONNECT, all queued in order behind what the clients already hold.
    /// Returns how many aggregates were queued.
    pub async fn finish(
        &mut self,
        aggregates: Vec<(String, Vec<u8>)>,
        tracked: impl Fn(&Key) -> bool,
    ) -> usize {
        while let Some((qos, pkid)) = self.acks.pop_front() {
            let _ = self.input.ack(&ack_for(qos, pkid)).await;
        }
        if let Some(topic) = self.state_topic.take() {
            // A clean DISCONNECT does not send the will.
            let offline = crate::pipeline::sparkplug::state_payload(false, self.started_at);
            let _ = self
                .input
                .publish(topic, QoS::AtLeastOnce, true, offline)
                .await;
        }
        let _ = self.input.disconnect().await;
        let mut published = 0;
        for (topic, payload) in aggregates {
            published += usize::from(self.publish_retained(topic, payload).await);
        }
        while let Some((topic, payload)) = self.in_order.pop_front() {
            let _ = self
                .client
                .publish(topic, QoS::AtLeastOnce, true, payload)
                .await;
        }
        while let Some(key) = self.clears.pop_front() {
            if !tracked(&key) {
                let topic = aggregate_topic(&key.machine, key.scrap_index);
                self.publish_retained(topic, Vec::new()).await;
            }
        }
        while let Some((topic, payload)) = self.history.pop_front() {
            let queued = self.client.publish(topic, QoS::AtLeastOnce, false, payload);
            if queued.await.is_ok() {
                self.metrics.history_published.inc();
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

    /// As [`Outbox::try_publish_retained`], waiting for room in the queue.
    async fn publish_retained(&self, topic: String, payload: Vec<u8>) -> bool {
        let queued = self
            .client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .is_ok();
        if queued {
            self.metrics.aggregates_published.inc();
        }
        queued
    }
}

/// The acknowledgement rumqttc sends for a message: PUBACK (QoS 1) or PUBREC (QoS 2). Only the
/// QoS and packet id matter to it.
fn ack_for(qos: QoS, pkid: u16) -> Publish {
    let mut publish = Publish::new("", qos, Vec::new());
    publish.pkid = pkid;
    publish
}
