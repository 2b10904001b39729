//! The historian's broker connection, a [`service_kit::Link`] under `mqtt.client_id`: a
//! persistent session (clean_session off) subscribed to `history/+/+` at QoS 1 with manual
//! acknowledgements. It hands every message to the writer through a bounded channel; the
//! writer acknowledges a message once the transaction holding it has committed, so what is not
//! acknowledged when the historian or its store stops is delivered again.
//!
//! Every CONNACK starts a new connection generation: a message is acknowledged only in the
//! generation it arrived in, because a packet id of an earlier connection may name another
//! message now (the broker resends the unacknowledged ones of a resumed session itself).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aggregator_core::topic::HISTORY_FILTER;
use bytes::Bytes;
use rumqttc::{
    AsyncClient, MqttOptions, MqttState, Publish, QoS, SubscribeFilter, SubscribeReasonCode,
};
use service_kit::{BrokerAddr, Link, LinkHandler};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bucket::MAX_PAYLOAD_BYTES;
use crate::configuration::HistorianConfig;
use crate::metrics::Metrics;

/// One message on `history/+/+` as the writer receives it.
#[derive(Debug)]
pub struct Inbound {
    /// The message; an oversized payload is dropped here (see `size`).
    pub publish: Publish,
    /// The size of its payload as received, in bytes.
    pub size: usize,
    /// The connection generation it arrived in.
    pub generation: u64,
}

/// The connection as seen by `/health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkState {
    /// A CONNACK came and no error since.
    pub connected: bool,
    /// The subscription is acknowledged (in this session or a resumed one).
    pub subscribed: bool,
}

/// The running connection.
pub struct LinkTask {
    /// Its state.
    pub state: watch::Receiver<LinkState>,
    /// The current connection generation.
    pub generation: Arc<AtomicU64>,
    /// Acknowledgements and the DISCONNECT.
    pub client: AsyncClient,
    abort: CancellationToken,
    task: JoinHandle<()>,
}

impl LinkTask {
    /// Connects over the `mqtt.host` list and hands messages to `inbound`.
    pub fn spawn(
        config: &HistorianConfig,
        inbound: mpsc::Sender<Inbound>,
        metrics: Metrics,
    ) -> Self {
        let (state_tx, state) = watch::channel(LinkState::default());
        let generation = Arc::new(AtomicU64::new(0));
        let capacity = request_capacity(config);
        let options_config = config.clone();
        let failover = config
            .mqtt
            .failover(move |broker| options(&options_config, broker));
        let filter = SubscribeFilter::new(HISTORY_FILTER.into(), QoS::AtLeastOnce);
        let (mut link, client) = Link::new(failover, config.mqtt.backoff(), capacity, vec![filter]);
        let mut handler = Handler {
            inbound,
            state: state_tx,
            generation: generation.clone(),
            metrics,
        };
        let abort = CancellationToken::new();
        let stop = abort.clone();
        let task = tokio::spawn(async move {
            link.run(&mut handler, &stop).await;
            handler.update(|s| *s = LinkState::default());
        });
        Self {
            state,
            generation,
            client,
            abort,
            task,
        }
    }

    /// Sends DISCONNECT after the acknowledgements queued before it and waits up to `timeout`
    /// for it to be written, then stops polling.
    pub async fn stop(self, timeout: std::time::Duration) {
        if self.client.try_disconnect().is_ok() {
            let written = async {
                while !self.task.is_finished() {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            };
            if tokio::time::timeout(timeout, written).await.is_err() {
                tracing::warn!("the DISCONNECT was not written in time");
            }
        }
        self.abort.cancel();
        let _ = self.task.await;
    }
}

/// The client's request queue: a batch's acknowledgements at once, with room to spare.
fn request_capacity(config: &HistorianConfig) -> usize {
    config
        .settings
        .store
        .batch_size
        .saturating_mul(2)
        .max(1_024)
}

/// Options for one broker of the `mqtt.host` list: persistent session under the stable client
/// id, manual acknowledgements.
fn options(config: &HistorianConfig, broker: &BrokerAddr) -> MqttOptions {
    let mut options = config.mqtt.options_at(broker);
    options
        // clean_session off: the broker keeps the backlog while the historian is away.
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_request_channel_capacity(request_capacity(config));
    options
}

/// The historian's [`LinkHandler`].
struct Handler {
    inbound: mpsc::Sender<Inbound>,
    state: watch::Sender<LinkState>,
    generation: Arc<AtomicU64>,
    metrics: Metrics,
}

impl Handler {
    /// Changes the shared state, and the `broker_connected` gauge with it.
    fn update(&self, change: impl FnOnce(&mut LinkState)) {
        self.state.send_modify(change);
        let connected = self.state.borrow().connected;
        self.metrics.broker_connected.set(i64::from(connected));
    }
}

impl LinkHandler for Handler {
    async fn connected(&mut self, session_present: bool, _state: &mut MqttState) {
        self.metrics.broker_connects.inc();
        self.generation.fetch_add(1, Ordering::SeqCst);
        // A resumed session still holds the subscription.
        self.update(|s| {
            *s = LinkState {
                connected: true,
                subscribed: session_present,
            }
        });
    }

    async fn publish(&mut self, mut publish: Publish) {
        self.metrics.messages_received.inc();
        let size = publish.payload.len();
        if size > MAX_PAYLOAD_BYTES {
            // Skipped unread: no need to queue its bytes.
            publish.payload = Bytes::new();
        }
        let generation = self.generation.load(Ordering::SeqCst);
        // Refused once the writer has stopped: the message stays unacknowledged.
        let _ = self
            .inbound
            .send(Inbound {
                publish,
                size,
                generation,
            })
            .await;
    }

    fn subscribed(&mut self, _granted: &[SubscribeReasonCode]) {
        self.update(|s| s.subscribed = true);
    }

    fn subscription_refused(&mut self) {}

    fn disconnected(&mut self, _next_broker: usize) {
        self.update(|s| *s = LinkState::default());
    }
}
