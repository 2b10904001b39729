//! An MQTT subscriber that records every message it receives, for assertions.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, QoS, SubscribeFilter};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::tools::unique_client_id;

/// Large enough for every payload a test sends (the too_large tests go beyond 64 KiB).
pub(crate) const MAX_PACKET: usize = 16 * 1024 * 1024;
/// How long [`Collector::start`] waits for the first SUBACK.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a connection error before polling again (rumqttc retries at once otherwise).
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// One received MQTT message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic it was published on.
    pub topic: String,
    /// Raw payload.
    pub payload: Bytes,
    /// Retain flag as delivered: true for messages the broker held before the subscription.
    pub retain: bool,
    /// QoS it was delivered with.
    pub qos: QoS,
    /// When the collector's event loop received it.
    pub received: Instant,
}

impl Message {
    /// The payload as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The payload parsed as JSON.
    ///
    /// # Errors
    /// When the payload is not JSON (an empty retained payload included).
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.payload).map_err(|e| {
            format!(
                "payload on {} is not JSON: {e}: {:?}",
                self.topic,
                self.text()
            )
        })
    }
}

#[derive(Debug, Default)]
struct Shared {
    messages: Mutex<Vec<Message>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Message>> {
        // A panic while holding the lock cannot leave the Vec inconsistent, so keep going.
        self.messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A subscriber on a test broker that stores every message it receives, from a background task.
///
/// It reconnects by itself (clean session, subscribing again on every CONNACK) when the broker
/// restarts. Dropping it stops the task.
#[derive(Debug)]
pub struct Collector {
    client: AsyncClient,
    shared: Arc<Shared>,
    arrivals: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Collector {
    /// Connects to `127.0.0.1:port`, subscribes to `filters` with QoS 1, and returns once the
    /// broker has acknowledged the subscription.
    ///
    /// # Panics
    /// When no SUBACK arrives within 10 s.
    pub async fn start(port: u16, filters: &[&str]) -> Self {
        Self::start_with_qos(port, filters, QoS::AtLeastOnce).await
    }

    /// As [`Collector::start`] with the subscription QoS given.
    ///
    /// # Panics
    /// When no SUBACK arrives within 10 s.
    pub async fn start_with_qos(port: u16, filters: &[&str], qos: QoS) -> Self {
        let mut options = MqttOptions::new(unique_client_id("collector"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        options.set_clean_session(true);
        let (client, event_loop) = AsyncClient::new(options, 64);
        let shared = Arc::new(Shared::default());
        let (arrival_tx, arrivals) = watch::channel(0_u64);
        let (suback_tx, mut suback_rx) = watch::channel(false);
        let filters: Vec<SubscribeFilter> = filters
            .iter()
            .map(|f| SubscribeFilter::new((*f).to_owned(), qos))
            .collect();
        let task = tokio::spawn(run_event_loop(
            event_loop,
            client.clone(),
            filters.clone(),
            Arc::clone(&shared),
            arrival_tx,
            suback_tx,
        ));
        let subscribed =
            tokio::time::timeout(SUBSCRIBE_TIMEOUT, suback_rx.wait_for(|acked| *acked)).await;
        if !matches!(subscribed, Ok(Ok(_))) {
            task.abort();
            panic!(
                "collector on port {port} got no SUBACK for {filters:?} within {SUBSCRIBE_TIMEOUT:?}"
            );
        }
        Self {
            client,
            shared,
            arrivals,
            task,
        }
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<Message> {
        self.shared.lock().clone()
    }

    /// The last message received on exactly `topic`.
    pub fn latest(&self, topic: &str) -> Option<Message> {
        self.shared
            .lock()
            .iter()
            .rev()
            .find(|m| m.topic == topic)
            .cloned()
    }

    /// How many messages arrived on topics starting with `topic_prefix` (`""` counts all).
    pub fn count(&self, topic_prefix: &str) -> usize {
        self.shared
            .lock()
            .iter()
            .filter(|m| m.topic.starts_with(topic_prefix))
            .count()
    }

    /// Forgets every message received so far.
    pub fn clear(&self) {
        self.shared.lock().clear();
    }

    /// Waits until `predicate` holds over all messages received so far, re-checking on every
    /// arrival, and returns them.
    ///
    /// # Errors
    /// After `timeout`, with the number of messages and the last few of them.
    pub async fn wait_for<P>(&self, predicate: P, timeout: Duration) -> Result<Vec<Message>, String>
    where
        P: Fn(&[Message]) -> bool,
    {
        let mut arrivals = self.arrivals.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Mark the current state seen before checking, so an arrival after the check wakes us.
            arrivals.borrow_and_update();
            {
                let messages = self.shared.lock();
                if predicate(&messages) {
                    return Ok(messages.clone());
                }
            }
            match tokio::time::timeout_at(deadline, arrivals.changed()).await {
                Ok(Ok(())) => {}
                // The event loop task ended (cannot happen while self lives) or time is up.
                Ok(Err(_)) | Err(_) => {
                    let messages = self.shared.lock();
                    if predicate(&messages) {
                        return Ok(messages.clone());
                    }
                    let tail: Vec<String> = messages
                        .iter()
                        .rev()
                        .take(5)
                        .map(|m| format!("{} {}", m.topic, truncate(&m.text(), 200)))
                        .collect();
                    return Err(format!(
                        "condition not met within {timeout:?}; {} messages received, last ones (newest first): {tail:#?}",
                        messages.len()
                    ));
                }
            }
        }
    }

    /// The underlying client, e.g. to publish from the same connection.
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Owns the event loop: stores publishes, subscribes again after every CONNACK, never blocks.
async fn run_event_loop(
    mut event_loop: EventLoop,
    client: AsyncClient,
    filters: Vec<SubscribeFilter>,
    shared: Arc<Shared>,
    arrivals: watch::Sender<u64>,
    suback: watch::Sender<bool>,
) {
    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                // try_: awaiting the client from the polling task could deadlock.
                let _ = client.try_subscribe_many(filters.clone());
            }
            Ok(Event::Incoming(Incoming::SubAck(_))) => {
                suback.send_replace(true);
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                let message = Message {
                    topic: publish.topic.clone(),
                    payload: publish.payload.clone(),
                    retain: publish.retain,
                    qos: publish.qos,
                    received: Instant::now(),
                };
                shared.lock().push(message);
                arrivals.send_modify(|n| *n += 1);
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(RECONNECT_BACKOFF).await,
        }
    }
}
