//! Ingest's broker link: a [`service_kit::Link`] subscribed to the readings, handing them to the
//! aggregation task through a bounded channel. The pipeline acknowledges each by hand once it is
//! durable; [`expect_pubrel_for_every_id`] works around what rumqttc gets wrong there.

use aggregator_core::Timestamp;
use rumqttc::{
    AsyncClient, Incoming, LastWill, MqttOptions, MqttState, Outgoing, Publish, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use service_kit::{BrokerAddr, Link, LinkHandler};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::configuration::IngestConfig;
use crate::metrics::Metrics;

/// What the aggregation task receives, in arrival order.
#[derive(Debug)]
pub enum Inbound {
    /// A message on `machines/+/scrap`, whole (packet id, QoS, DUP) so that the pipeline can
    /// acknowledge it once durable and recognise a redelivery.
    Reading(Publish),
    /// Retained aggregates, alarms and trends of a previous run, read once at start-up (sent
    /// even when empty: alarms and trends wait for it).
    Retained(crate::restart::snapshot::Snapshot),
    /// A CONNACK accepted the connection.
    Connected {
        /// False when the broker kept no session: rumqttc dropped what the client held.
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
    /// Our DISCONNECT has been written: the link has ended.
    pub closed: bool,
}

impl LinkState {
    /// Ready to serve: connected and subscribed.
    pub fn ready(&self) -> bool {
        self.connected && self.subscribed
    }
}

/// The running link.
pub struct LinkTask {
    /// Its state.
    pub state: watch::Receiver<LinkState>,
    abort: CancellationToken,
    task: JoinHandle<()>,
}

impl LinkTask {
    /// Starts the readings link over the `mqtt.host` list (the same options for every broker, so
    /// that the session resumes on one that shares it); returns the client the pipeline
    /// publishes and acknowledges through. Once `inbound` is closed, readings are dropped (and
    /// counted) while the link polls on for the last publishes and the DISCONNECT.
    pub fn spawn(
        config: &IngestConfig,
        started_at: Timestamp,
        inbound: mpsc::Sender<Inbound>,
        metrics: Metrics,
    ) -> (Self, AsyncClient) {
        let offline = config.shard.status_payload(false, started_at);
        let options_config = config.clone();
        let failover = config
            .mqtt
            .failover(move |b| options(&options_config, b, offline.clone()));
        let readings = SubscribeFilter::new(config.shard.filter.clone(), QoS::ExactlyOnce);
        let capacity = config.settings.limits.request_capacity;
        let (mut link, client) =
            Link::new(failover, config.mqtt.backoff(), capacity, vec![readings]);
        let (state_tx, state) = watch::channel(LinkState::default());
        let mut forwarder = Forwarder {
            inbound,
            state: state_tx,
            metrics,
        };
        let abort = CancellationToken::new();
        let stop = abort.clone();
        let task = tokio::spawn(async move {
            link.run(&mut forwarder, &stop).await;
            forwarder.metrics.broker_connected.set(0);
            forwarder.state.send_modify(|s| {
                *s = LinkState::default();
                s.closed = true;
            });
        });
        (Self { state, abort, task }, client)
    }

    /// Stops polling (our DISCONNECT is written by now, or the shutdown gave up on it).
    pub async fn stop(self) {
        self.abort.cancel();
        let _ = self.task.await;
    }
}

/// Ingest's [`LinkHandler`].
struct Forwarder {
    inbound: mpsc::Sender<Inbound>,
    state: watch::Sender<LinkState>,
    metrics: Metrics,
}

impl LinkHandler for Forwarder {
    async fn connected(&mut self, session_present: bool, state: &mut MqttState) {
        // Before the first read: the broker may resend the PUBREL of a QoS 2 message
        // acknowledged in an earlier connection.
        expect_pubrel_for_every_id(state);
        self.metrics.broker_connects.inc();
        self.metrics.broker_connected.set(1);
        // A resumed session still holds the subscription.
        self.state.send_modify(|s| {
            s.connected = true;
            s.subscribed = session_present;
        });
        let connected = Inbound::Connected { session_present };
        // Refused once shutdown has begun, when it no longer matters.
        let _ = self.inbound.send(connected).await;
    }

    async fn publish(&mut self, publish: Publish) {
        if self.inbound.send(Inbound::Reading(publish)).await.is_err() {
            self.metrics.readings_dropped_at_shutdown.inc();
        }
    }

    fn subscribed(&mut self, granted: &[SubscribeReasonCode]) {
        // We ask for QoS 2; a broker may grant less (NATS 2.9 grants 1), which the pipeline
        // handles as well.
        if let [SubscribeReasonCode::Success(qos)] = granted {
            self.metrics.subscription_qos.set(i64::from(*qos as u8));
        }
        self.state.send_modify(|s| s.subscribed = true);
    }

    fn subscription_refused(&mut self) {
        self.metrics.subscriptions_refused.inc();
    }

    fn disconnected(&mut self, next_broker: usize) {
        self.metrics.broker_connected.set(0);
        self.metrics.broker_index.set(next_broker as i64);
        self.state.send_replace(LinkState::default());
    }

    fn written(&mut self, packet: &Outgoing, state: &mut MqttState) {
        if let Outgoing::PubComp(pkid) = packet {
            // The broker may still send a late duplicate PUBREL for it.
            expect_pubrel(state, *pkid);
        }
    }
}

/// Makes rumqttc answer a PUBREL for any packet id with PUBCOMP.
///
/// rumqttc 0.25 knows the QoS 2 ids that await a PUBREL only within one connection and takes
/// any other PUBREL for a protocol error that drops the connection (bytebeamio/rumqtt#664). The
/// broker resends the PUBREL of a message acknowledged (PUBREC) in an earlier connection, so
/// every reconnect would fail the same way. Answering it is what MQTT 5 prescribes and harmless
/// in 3.1.1: the message was acknowledged, so it was already durable.
fn expect_pubrel_for_every_id(state: &mut MqttState) {
    for pkid in 1..=u16::MAX {
        expect_pubrel(state, pkid);
    }
}

/// Marks one packet id as awaiting a PUBREL through the state machine's public entry point: a
/// stand-in QoS 2 PUBLISH, which with manual acknowledgements sends nothing.
fn expect_pubrel(state: &mut MqttState, pkid: u16) {
    if !state.manual_acks {
        return;
    }
    let mut stand_in = Publish::new("", QoS::ExactlyOnce, Vec::new());
    stand_in.pkid = pkid;
    let queued = state.events.len();
    // Marking a QoS 2 id with manual acks cannot fail; the event it queues is not news.
    let _ = state.handle_incoming_packet(Incoming::Publish(stand_in));
    state.events.truncate(queued);
}

/// The readings link's options for one broker of the `mqtt.host` list: persistent session
/// under the stable client id, the offline status as retained last will, manual
/// acknowledgements (the pipeline acknowledges once a batch is durable).
fn options(config: &IngestConfig, broker: &BrokerAddr, offline_status: Vec<u8>) -> MqttOptions {
    let mut options = config.mqtt.options_at(broker);
    let limits = &config.settings.limits;
    options
        // clean_session off: the broker queues readings while ingest is away.
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_inflight(limits.inflight)
        .set_request_channel_capacity(limits.request_capacity)
        .set_last_will(LastWill::new(
            config.shard.status_topic(),
            offline_status,
            QoS::AtLeastOnce,
            true,
        ));
    options
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
