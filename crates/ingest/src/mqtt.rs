//! Ingest's broker link: a [`service_kit::Link`] subscribed to the readings, whose handler
//! ([`Forwarder`]) hands incoming publishes and connection events to the aggregation task
//! through a bounded channel and reports the link state for `/health`.
//!
//! The link loop does no aggregation or publishing work (rumqttc sends requests only while
//! `poll` runs, and a slow poller misses keep-alives). Acknowledgements of incoming messages
//! are manual (the pipeline sends them once a batch is durable); see
//! [`expect_pubrel_for_every_id`] for the one rumqttc behaviour worked around.

use std::ops::ControlFlow;

use rumqttc::{
    AsyncClient, ConnectionError, Incoming, MqttState, Outgoing, Publish, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use service_kit::{Backoff, Failover, Link, LinkHandler};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

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

/// The readings link over the brokers of `failover`, not yet connected: it subscribes `filter`
/// with QoS 2 whenever the broker kept no session. Returns the client the pipeline publishes
/// and acknowledges through (`request_capacity` bounds its queue).
pub fn link(
    failover: Failover,
    backoff: Backoff,
    request_capacity: usize,
    filter: &str,
) -> (Link, AsyncClient) {
    let (link, client) = Link::new(failover, backoff, request_capacity);
    let readings = SubscribeFilter::new(filter.to_owned(), QoS::ExactlyOnce);
    (link.with_subscription(vec![readings]), client)
}

/// Runs `link` until our DISCONNECT has been written, `abort` fires, or the aggregation task
/// is gone; then marks the link closed.
pub async fn run(mut link: Link, mut forwarder: Forwarder, abort: CancellationToken) {
    link.run(&mut forwarder, &abort).await;
    forwarder.metrics.broker_connected.set(0);
    forwarder.state.send_modify(|s| {
        s.connected = false;
        s.subscribed = false;
        s.closed = true;
    });
}

/// What ingest adds to its link: the channel to the aggregation task, the link state, the
/// metrics, and the PUBREL workaround of manual acknowledgements.
pub struct Forwarder {
    /// Towards the aggregation task.
    pub inbound: mpsc::Sender<Inbound>,
    /// Link state for `/health` and shutdown.
    pub state: watch::Sender<LinkState>,
    /// Metrics.
    pub metrics: Metrics,
    /// Shutdown has begun: stop forwarding readings, keep polling so the last publishes and
    /// the DISCONNECT go out.
    pub draining: CancellationToken,
}

impl LinkHandler for Forwarder {
    async fn connected(&mut self, session_present: bool, state: &mut MqttState) -> ControlFlow<()> {
        // Before the first read of the new connection: the broker may resend the PUBREL of a
        // QoS 2 message acknowledged in an earlier connection.
        expect_pubrel_for_every_id(state);
        self.metrics.broker_connects.inc();
        self.metrics.broker_connected.set(1);
        // A resumed session still holds the subscription.
        self.state.send_modify(|s| {
            s.connected = true;
            s.subscribed = session_present;
        });
        self.send(Inbound::Connected { session_present }).await
    }

    async fn publish(&mut self, publish: Publish) -> ControlFlow<()> {
        self.send(Inbound::Reading(publish)).await
    }

    fn subscribed(&mut self, granted: &[SubscribeReasonCode]) {
        // We ask for QoS 2; a broker may grant less (NATS 2.9 grants 1). The pipeline works
        // with either, so this is information, not an error.
        if let [SubscribeReasonCode::Success(qos)] = granted {
            self.metrics.subscription_qos.set(i64::from(*qos as u8));
        }
        self.state.send_modify(|s| s.subscribed = true);
    }

    fn subscription_refused(&mut self) {
        // Readings wait in the broker meanwhile; the link asks again.
        self.metrics.subscriptions_refused.inc();
    }

    fn written(&mut self, packet: &Outgoing, state: &mut MqttState) {
        if let Outgoing::PubComp(pkid) = packet {
            // Answered; the broker may still send a late duplicate PUBREL for it.
            expect_pubrel(state, *pkid);
        }
    }

    fn connection_failed(&mut self, _error: &ConnectionError) {
        self.metrics.broker_connected.set(0);
        self.state.send_modify(|s| {
            s.connected = false;
            s.subscribed = false;
        });
    }

    fn broker_changed(&mut self, index: usize) {
        let index = i64::try_from(index).unwrap_or(i64::MAX);
        self.metrics.broker_index.set(index);
    }
}

impl Forwarder {
    /// Hands `item` to the aggregation task; `Break` when that task is gone.
    ///
    /// Once shutdown has begun the aggregation task no longer reads the channel, so nothing
    /// waits on it then: readings are dropped (and counted), connection events are moot.
    async fn send(&mut self, item: Inbound) -> ControlFlow<()> {
        let is_reading = matches!(item, Inbound::Reading(_));
        if !self.draining.is_cancelled() {
            // try_send first: the common case needs no select machinery.
            let item = match self.inbound.try_send(item) {
                Ok(()) => return ControlFlow::Continue(()),
                Err(mpsc::error::TrySendError::Closed(_)) => return ControlFlow::Break(()),
                Err(mpsc::error::TrySendError::Full(item)) => item,
            };
            tokio::select! {
                sent = self.inbound.send(item) => {
                    return if sent.is_ok() { ControlFlow::Continue(()) } else { ControlFlow::Break(()) };
                }
                () = self.draining.cancelled() => {}
            }
        }
        if is_reading {
            self.metrics.readings_dropped_at_shutdown.inc();
        }
        ControlFlow::Continue(())
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
