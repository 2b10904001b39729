//! The MQTT event-loop task: the only code that polls rumqttc's [`EventLoop`].
//!
//! It never does aggregation or publishing work (rumqttc sends requests only while `poll` runs,
//! and a slow poller misses keep-alives): it forwards incoming publishes and connection events
//! into a bounded channel, subscribes when the broker has no session for us, backs off after
//! errors, and reports the link state for `/health`.
//!
//! Acknowledgements of incoming messages are manual (the pipeline sends them once a batch is
//! durable); see [`expect_pubrel_for_every_id`] for the one rumqttc behaviour worked around.

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, Incoming, MqttState, Outgoing, Publish, QoS,
    SubscribeReasonCode,
};
use service_kit::{Backoff, Failover};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// First pause before asking again for a refused readings subscription; the pauses double up
/// to the reconnect ceiling.
const RESUBSCRIBE_START: std::time::Duration = std::time::Duration::from_secs(1);

/// What the event loop hands to the aggregation task, in arrival order.
#[derive(Debug)]
pub enum Inbound {
    /// A message on `machines/+/scrap`. The whole packet is kept (packet id, QoS, DUP) so that
    /// the pipeline can acknowledge it by hand once durable and recognise a redelivery.
    Reading(Publish),
    /// Retained aggregates, alarms and trends of a previous run, read once at start-up (sent
    /// even when empty: alarms and trends wait for it).
    Retained(crate::restart::snapshot::Snapshot),
    /// A CONNACK: the broker accepted the connection.
    Connected {
        /// False when the broker kept no session for us: we subscribed again, and anything
        /// queued in the client before the disconnect was dropped by rumqttc.
        session_present: bool,
    },
}

/// The connection as seen by `/health` and the shutdown sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkState {
    /// A CONNACK has been received and no error since.
    pub connected: bool,
    /// The readings subscription is acknowledged (in this session or a resumed one).
    pub subscribed: bool,
    /// Our DISCONNECT has been written: the event loop has ended.
    pub closed: bool,
}

impl LinkState {
    /// Ready to serve: connected and subscribed.
    pub fn ready(&self) -> bool {
        self.connected && self.subscribed
    }
}

/// Everything the event-loop task needs.
pub struct LinkTask {
    /// The rumqttc event loop (owned here, polled nowhere else).
    pub event_loop: EventLoop,
    /// Client handle, used only for non-blocking `try_subscribe`.
    pub client: AsyncClient,
    /// The readings subscription (`machines/+/scrap`, or a shard's own filter).
    pub filter: String,
    /// Towards the aggregation task.
    pub inbound: mpsc::Sender<Inbound>,
    /// Link state for `/health` and shutdown.
    pub state: watch::Sender<LinkState>,
    /// Metrics.
    pub metrics: Metrics,
    /// Reconnect pacing.
    pub backoff: Backoff,
    /// The `mqtt.host` list: after a connection error the next attempt goes to the next
    /// broker, round-robin.
    pub failover: Failover,
    /// Shutdown has begun: stop forwarding readings, keep polling so the last publishes and
    /// the DISCONNECT go out.
    pub draining: CancellationToken,
    /// Stop polling at once (the shutdown gave up waiting).
    pub abort: CancellationToken,
}

impl LinkTask {
    /// Polls until our DISCONNECT has been written, `abort` fires, or the aggregation task is
    /// gone.
    pub async fn run(mut self) {
        let mut need_subscribe = false;
        // After a refused subscription: when to ask again, and how the pauses grow.
        let mut resubscribe_at: Option<tokio::time::Instant> = None;
        let mut resubscribe_backoff = Backoff::new(RESUBSCRIBE_START, self.backoff.max());
        loop {
            let resubscribe_when = resubscribe_at;
            let resubscribe_timer = async move {
                match resubscribe_when {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                biased;
                () = self.abort.cancelled() => break,
                () = resubscribe_timer => {
                    resubscribe_at = None;
                    need_subscribe = !self.try_subscribe();
                    continue;
                }
                event = self.event_loop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    if !self.send(Inbound::Reading(publish)).await {
                        break;
                    }
                }
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    if ack.code != ConnectReturnCode::Success {
                        continue;
                    }
                    // Before the first read of the new connection: the broker may resend the
                    // PUBREL of a QoS 2 message acknowledged in an earlier connection.
                    expect_pubrel_for_every_id(&mut self.event_loop.state);
                    self.backoff.reset();
                    self.metrics.broker_connects.inc();
                    self.metrics.broker_connected.set(1);
                    // A resumed session still holds our subscription; subscribing again would
                    // make the broker resend retained readings, counting them twice.
                    need_subscribe = !ack.session_present;
                    resubscribe_at = None;
                    resubscribe_backoff.reset();
                    self.state.send_modify(|s| {
                        s.connected = true;
                        s.subscribed = ack.session_present;
                    });
                    tracing::info!(
                        session_present = ack.session_present,
                        broker = %self.failover.current(),
                        "connected to the MQTT broker"
                    );
                    let connected = Inbound::Connected {
                        session_present: ack.session_present,
                    };
                    if !self.send(connected).await {
                        break;
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    if let [SubscribeReasonCode::Success(granted)] = ack.return_codes[..] {
                        // We ask for QoS 2; a broker may grant less (NATS 2.9 grants 1). The
                        // pipeline works with either, so this is information, not an error.
                        let granted = granted as u8;
                        let previous = self.metrics.subscription_qos.set(i64::from(granted));
                        if previous != i64::from(granted) {
                            tracing::info!(filter = %self.filter, granted_qos = granted, "subscription acknowledged");
                        }
                        self.state.send_modify(|s| s.subscribed = true);
                        resubscribe_backoff.reset();
                    } else {
                        // NATS 2.9 refuses while it cannot create the JetStream consumer in
                        // time (a node was just lost); an ACL refuses for good. Ask again,
                        // backing off to the reconnect ceiling: readings wait in the broker.
                        self.metrics.subscriptions_refused.inc();
                        let delay = resubscribe_backoff.next_delay();
                        tracing::error!(
                            filter = %self.filter,
                            codes = ?ack.return_codes,
                            retry_in_ms = delay.as_millis() as u64,
                            "the broker refused the subscription (check its ACL); asking again"
                        );
                        resubscribe_at = Some(tokio::time::Instant::now() + delay);
                    }
                }
                Ok(Event::Outgoing(Outgoing::PubComp(pkid))) => {
                    // Answered; the broker may still send a late duplicate PUBREL for it.
                    expect_pubrel(&mut self.event_loop.state, pkid);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    tracing::info!("disconnected from the MQTT broker");
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    self.metrics.broker_connected.set(0);
                    let was_connected = self.state.borrow().connected;
                    self.state.send_modify(|s| {
                        s.connected = false;
                        s.subscribed = false;
                    });
                    let delay = self.backoff.next_delay();
                    let broker = self.failover.current().to_string();
                    if was_connected {
                        tracing::warn!(error = %e, %broker, "lost the MQTT broker connection; reconnecting");
                    } else {
                        tracing::warn!(error = %e, %broker, retry_in_ms = delay.as_millis() as u64, "cannot reach the MQTT broker");
                    }
                    if let Some(next) = self.failover.advance(&mut self.event_loop) {
                        tracing::info!(broker = %next, "failing over to the next broker");
                        let index = i64::try_from(self.failover.index()).unwrap_or(i64::MAX);
                        self.metrics.broker_index.set(index);
                    }
                    // rumqttc retries at once on the next poll: pace it ourselves.
                    tokio::select! {
                        () = self.abort.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            }
            // Subscribe after handling the event, and keep trying while the request queue
            // is full (every poll drains it a little).
            if need_subscribe {
                need_subscribe = !self.try_subscribe();
            }
        }
        self.metrics.broker_connected.set(0);
        self.state.send_modify(|s| {
            s.connected = false;
            s.subscribed = false;
            s.closed = true;
        });
    }

    /// Queues the readings subscription; `false` while the request queue is full.
    fn try_subscribe(&self) -> bool {
        match self.client.try_subscribe(&self.filter, QoS::ExactlyOnce) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "subscribe queued later");
                false
            }
        }
    }

    /// Hands `item` to the aggregation task; false when that task is gone.
    ///
    /// Once shutdown has begun the aggregation task no longer reads the channel, so nothing
    /// waits on it then: readings are dropped (and counted), connection events are moot.
    async fn send(&mut self, item: Inbound) -> bool {
        let is_reading = matches!(item, Inbound::Reading(_));
        if !self.draining.is_cancelled() {
            // try_send first: the common case needs no select machinery.
            let item = match self.inbound.try_send(item) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(item)) => item,
            };
            tokio::select! {
                sent = self.inbound.send(item) => return sent.is_ok(),
                () = self.draining.cancelled() => {}
            }
        }
        if is_reading {
            self.metrics.readings_dropped_at_shutdown.inc();
        }
        true
    }
}

/// Makes rumqttc answer a PUBREL for any packet id with PUBCOMP.
///
/// rumqttc 0.25 remembers which QoS 2 packet ids await a PUBREL only within one connection and
/// treats any other PUBREL as a protocol error that drops the connection
/// (bytebeamio/rumqtt#664). After a restart or reconnect the broker resends the PUBREL of a
/// message ingest had acknowledged (PUBREC) but not completed, so every reconnect would fail
/// the same way, forever. Answering an unknown PUBREL with PUBCOMP is what MQTT 5 prescribes
/// and harmless in 3.1.1: the message was already acknowledged, so it was already durable.
///
/// The ids are marked through the state machine's public entry point with a stand-in QoS 2
/// PUBLISH; with manual acknowledgements that sends nothing, and the event it queues is
/// removed again.
pub fn expect_pubrel_for_every_id(state: &mut MqttState) {
    for pkid in 1..=u16::MAX {
        expect_pubrel(state, pkid);
    }
}

/// Marks one packet id as awaiting a PUBREL (see [`expect_pubrel_for_every_id`]).
pub fn expect_pubrel(state: &mut MqttState, pkid: u16) {
    if !state.manual_acks {
        // The stand-in would be acknowledged automatically: never mark then.
        return;
    }
    let mut stand_in = Publish::new("", QoS::ExactlyOnce, Vec::new());
    stand_in.pkid = pkid;
    let queued = state.events.len();
    // Marking a QoS 2 id with manual acks cannot fail and produces no packet.
    let _ = state.handle_incoming_packet(Incoming::Publish(stand_in));
    state.events.truncate(queued);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pubrel_of_an_earlier_connection_is_completed_not_fatal() {
        use rumqttc::{Packet, PubRel};
        let mut state = MqttState::new(10, true);
        // Without the marks rumqttc refuses the PUBREL (the bug worked around).
        assert!(
            state
                .handle_incoming_packet(Incoming::PubRel(PubRel::new(7)))
                .is_err()
        );
        state.events.clear();
        expect_pubrel_for_every_id(&mut state);
        assert!(state.events.is_empty(), "no stand-in leaks out as an event");
        let reply = state
            .handle_incoming_packet(Incoming::PubRel(PubRel::new(7)))
            .unwrap();
        assert!(
            matches!(&reply, Some(Packet::PubComp(c)) if c.pkid == 7),
            "{reply:?}"
        );
        // Marked again after the PUBCOMP, a duplicate PUBREL is answered too.
        expect_pubrel(&mut state, 7);
        assert!(
            state
                .handle_incoming_packet(Incoming::PubRel(PubRel::new(7)))
                .is_ok()
        );
    }
}
