//! Ingest's two broker connections, each a [`service_kit::Link`]:
//!
//! - the **input** connection, under `mqtt.client_id`, subscribes to the readings (QoS 2,
//!   persistent session) and hands them to the aggregation task through a bounded channel; the
//!   pipeline acknowledges each by hand once it is durable
//!   ([`expect_pubrel_for_every_id`] works around what rumqttc gets wrong there). It never
//!   publishes.
//! - the **output** connection, under `{mqtt.client_id}-out`, publishes aggregates, alarms,
//!   trends, dead letters and the status, and carries the offline status as last will.
//!
//! Why two: a broker that keeps Nagle's algorithm on (Mosquitto's default) holds its PUBACK for
//! our QoS 1 publish until our delayed TCP ACK, and the next reading it sends on that
//! connection waits behind it, about 20 ms per reading. On the input connection every segment
//! the broker sends is answered at once (PUBREC, PUBCOMP), so nothing waits there.

use aggregator_core::Timestamp;
use aggregator_core::wire::DEAD_LETTER_PAYLOAD_BYTES;
use bytes::Bytes;
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
    /// A message on `machines/+/scrap` larger than `limits.max_payload_bytes`, to be rejected
    /// as `too_large`: its payload cut to what the dead letter shows, so that a queue of
    /// them holds kilobytes, not the megabytes the broker sent.
    Oversized {
        /// The message with the head of its payload.
        publish: Publish,
        /// The size of its whole payload, in bytes.
        size: usize,
    },
    /// Retained aggregates, alarms and trends of a previous run, read once at start-up (sent
    /// even when empty: alarms and trends wait for it).
    Retained(crate::restart::snapshot::Snapshot),
    /// A CONNACK accepted the input connection.
    InputConnected {
        /// False when the broker kept no session: rumqttc dropped what the client held.
        session_present: bool,
    },
    /// A CONNACK accepted the output connection: what it held may be lost, and the online
    /// status is due.
    OutputConnected,
}

/// Both connections as seen by `/health` and the shutdown sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkState {
    /// The input connection has a CONNACK and no error since.
    pub input: bool,
    /// The readings subscription is acknowledged (in this session or a resumed one).
    pub subscribed: bool,
    /// The output connection has a CONNACK and no error since.
    pub output: bool,
    /// The input connection's DISCONNECT has been written: it has ended.
    pub input_closed: bool,
    /// The output connection's DISCONNECT has been written: it has ended.
    pub output_closed: bool,
}

impl LinkState {
    /// Both connections are up.
    pub fn connected(&self) -> bool {
        self.input && self.output
    }

    /// Ready to serve: both connected, and subscribed.
    pub fn ready(&self) -> bool {
        self.connected() && self.subscribed
    }

    /// Neither connection can write anything more: each has sent its DISCONNECT or is down.
    pub fn settled(&self) -> bool {
        (self.input_closed || !self.input) && (self.output_closed || !self.output)
    }
}

/// The clients the pipeline writes through.
pub struct Clients {
    /// Acknowledgements of readings, and the input connection's DISCONNECT.
    pub input: AsyncClient,
    /// Everything ingest publishes, and the output connection's DISCONNECT.
    pub output: AsyncClient,
}

/// The running connections.
pub struct LinkTask {
    /// Their state.
    pub state: watch::Receiver<LinkState>,
    abort: CancellationToken,
    tasks: [JoinHandle<()>; 2],
}

impl LinkTask {
    /// Starts both connections over the `mqtt.host` list (each with the same options for every
    /// broker, so that a session resumes on one that shares it). Once `inbound` is closed,
    /// readings are dropped (and counted) while the links poll on for the last publishes and
    /// the DISCONNECTs.
    pub fn spawn(
        config: &IngestConfig,
        started_at: Timestamp,
        inbound: mpsc::Sender<Inbound>,
        metrics: Metrics,
    ) -> (Self, Clients) {
        let (state, state_rx) = watch::channel(LinkState::default());
        let abort = CancellationToken::new();
        let capacity = config.settings.limits.request_capacity;
        let handler = |role| Handler {
            role,
            max_payload_bytes: config.settings.limits.max_payload_bytes,
            inbound: inbound.clone(),
            state: state.clone(),
            metrics: metrics.clone(),
        };

        let input_config = config.clone();
        let failover = config
            .mqtt
            .failover(move |b| input_options(&input_config, b, started_at));
        let mut filters = vec![SubscribeFilter::new(
            config.shard.filter.clone(),
            QoS::ExactlyOnce,
        )];
        // Sparkplug deaths come at QoS 1, everything else of a node mostly at QoS 0.
        let sparkplug = config.sparkplug.iter().flat_map(|s| s.filters());
        filters.extend(sparkplug.map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce)));
        let (link, input) = Link::new(failover, config.mqtt.backoff(), capacity, filters);
        let input_task = handler(Role::Input).spawn(link, &abort);

        let offline = config.shard.status_payload(false, started_at);
        let output_config = config.clone();
        let failover = config
            .mqtt
            .failover(move |b| output_options(&output_config, b, offline.clone()));
        let (link, output) = Link::new(failover, config.mqtt.backoff(), capacity, Vec::new());
        let output_task = handler(Role::Output).spawn(link, &abort);

        let links = Self {
            state: state_rx,
            abort,
            tasks: [input_task, output_task],
        };
        (links, Clients { input, output })
    }

    /// Stops polling (our DISCONNECTs are written by now, or the shutdown gave up on them).
    pub async fn stop(self) {
        self.abort.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Which of the two connections a [`Handler`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Input,
    Output,
}

/// Ingest's [`LinkHandler`], one per connection.
struct Handler {
    role: Role,
    /// `limits.max_payload_bytes`: larger payloads are cut before they are queued.
    max_payload_bytes: usize,
    inbound: mpsc::Sender<Inbound>,
    state: watch::Sender<LinkState>,
    metrics: Metrics,
}

impl Handler {
    /// Runs `link` until `stop` fires or its DISCONNECT is written, then marks it closed.
    fn spawn(mut self, mut link: Link, stop: &CancellationToken) -> JoinHandle<()> {
        let stop = stop.clone();
        tokio::spawn(async move {
            link.run(&mut self, &stop).await;
            let role = self.role;
            self.update(|s| match role {
                Role::Input => (s.input, s.subscribed, s.input_closed) = (false, false, true),
                Role::Output => (s.output, s.output_closed) = (false, true),
            });
        })
    }

    /// Changes the shared state, and the `broker_connected` gauge with it.
    fn update(&self, change: impl FnOnce(&mut LinkState)) {
        self.state.send_modify(change);
        let connected = self.state.borrow().connected();
        self.metrics.broker_connected.set(i64::from(connected));
    }
}

impl LinkHandler for Handler {
    async fn connected(&mut self, session_present: bool, state: &mut MqttState) {
        self.metrics.broker_connects.inc();
        let connected = match self.role {
            Role::Input => {
                // Before the first read: the broker may resend the PUBREL of a QoS 2 message
                // acknowledged in an earlier connection.
                expect_pubrel_for_every_id(state);
                // A resumed session still holds the subscription.
                self.update(|s| (s.input, s.subscribed) = (true, session_present));
                Inbound::InputConnected { session_present }
            }
            Role::Output => {
                self.update(|s| s.output = true);
                Inbound::OutputConnected
            }
        };
        // Refused once shutdown has begun, when it no longer matters.
        let _ = self.inbound.send(connected).await;
    }

    async fn publish(&mut self, mut publish: Publish) {
        // Only the input connection subscribes.
        let size = publish.payload.len();
        let inbound = if size > self.max_payload_bytes {
            // A copy, not a slice: a slice would keep the whole packet's buffer alive.
            let head = &publish.payload[..size.min(DEAD_LETTER_PAYLOAD_BYTES)];
            publish.payload = Bytes::copy_from_slice(head);
            Inbound::Oversized { publish, size }
        } else {
            Inbound::Reading(publish)
        };
        if self.inbound.send(inbound).await.is_err() {
            self.metrics.readings_dropped_at_shutdown.inc();
        }
    }

    fn subscribed(&mut self, granted: &[SubscribeReasonCode]) {
        // We ask for QoS 2; a broker may grant less (NATS 2.9 grants 1), which the pipeline
        // handles as well. The readings' filter comes first; Sparkplug's follow.
        if let [SubscribeReasonCode::Success(qos), ..] = granted {
            self.metrics.subscription_qos.set(i64::from(*qos as u8));
        }
        self.update(|s| s.subscribed = true);
    }

    fn subscription_refused(&mut self) {
        self.metrics.subscriptions_refused.inc();
    }

    fn disconnected(&mut self, next_broker: usize) {
        match self.role {
            Role::Input => {
                self.metrics.broker_index.set(next_broker as i64);
                self.update(|s| (s.input, s.subscribed) = (false, false));
            }
            Role::Output => self.update(|s| s.output = false),
        }
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

/// The input connection's options for one broker of the `mqtt.host` list: persistent session
/// under the stable client id, manual acknowledgements (the pipeline acknowledges once a batch
/// is durable), and the offline Sparkplug STATE as will when ingest publishes one.
fn input_options(config: &IngestConfig, broker: &BrokerAddr, started_at: Timestamp) -> MqttOptions {
    let mut options = config.mqtt.options_at(broker);
    let limits = &config.settings.limits;
    options
        // clean_session off: the broker queues readings while ingest is away.
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_inflight(limits.inflight)
        .set_request_channel_capacity(limits.request_capacity);
    if let Some(topic) = config.sparkplug.as_ref().and_then(|s| s.state_topic()) {
        let offline = crate::pipeline::sparkplug::state_payload(false, started_at);
        options.set_last_will(LastWill::new(topic, offline, QoS::AtLeastOnce, true));
    }
    options
}

/// The output connection's options: `{client_id}-out`, a persistent session (QoS 1 messages
/// in flight at a connection loss are sent again), the offline status as retained last will.
fn output_options(config: &IngestConfig, broker: &BrokerAddr, offline: Vec<u8>) -> MqttOptions {
    let mut options = config.mqtt.options_at(broker);
    let limits = &config.settings.limits;
    options
        .set_client_id(output_client_id(&config.mqtt.client_id))
        .set_clean_session(false)
        .set_inflight(limits.inflight)
        .set_request_channel_capacity(limits.request_capacity)
        .set_last_will(LastWill::new(
            config.shard.status_topic(),
            offline,
            QoS::AtLeastOnce,
            true,
        ));
    options
}

/// The output connection's client id.
pub fn output_client_id(client_id: &str) -> String {
    format!("{client_id}-out")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_oversized_reading_is_queued_as_the_head_of_its_payload() {
        let (inbound, mut queued) = mpsc::channel(4);
        let mut handler = Handler {
            role: Role::Input,
            max_payload_bytes: 65_536,
            inbound,
            state: watch::channel(LinkState::default()).0,
            metrics: Metrics::new(),
        };
        let topic = "machines/A1/scrap";
        let big = Publish::new(topic, QoS::AtLeastOnce, vec![b'x'; 10_000_000]);
        handler.publish(big).await;
        let at_limit = Publish::new(topic, QoS::AtLeastOnce, vec![b' '; 65_536]);
        handler.publish(at_limit).await;
        match queued.recv().await {
            Some(Inbound::Oversized { publish, size }) => {
                assert_eq!((publish.payload.len(), size), (1024, 10_000_000));
                assert_eq!(publish.topic, topic);
            }
            other => panic!("{other:?}"),
        }
        match queued.recv().await {
            Some(Inbound::Reading(publish)) => assert_eq!(publish.payload.len(), 65_536),
            other => panic!("{other:?}"),
        }
    }

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
