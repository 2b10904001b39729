//! An MQTT publisher that knows when the broker has what it sent.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::collector::MAX_PACKET;
use crate::tools::unique_client_id;

/// Pause after a connection error before polling again (rumqttc retries at once otherwise).
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// How long the first CONNACK may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes many messages quickly and waits until all are acknowledged: PUBACK for QoS 1,
/// PUBCOMP for QoS 2, written to the socket for QoS 0.
///
/// Dropping it stops the background event loop task.
#[derive(Debug)]
pub struct Publisher {
    client: AsyncClient,
    done: watch::Receiver<u64>,
    queued: u64,
    task: JoinHandle<()>,
}

impl Publisher {
    /// Connects to `127.0.0.1:port` with a clean session and returns after the CONNACK.
    ///
    /// # Panics
    /// When no CONNACK arrives within 10 s.
    pub async fn connect(port: u16) -> Self {
        Self::try_connect(port, CONNECT_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Publisher::connect`] for brokers that may refuse for a while (a cluster node that is
    /// down or recovering): the caller decides what a refusal means.
    ///
    /// The session is clean, so after a lost connection rumqttc drops what was not yet
    /// acknowledged: a [`Publisher::flush`] that fails then stays failed, and the caller
    /// re-sends those messages through a new publisher.
    ///
    /// # Errors
    /// When no CONNACK arrives within `timeout`.
    pub async fn try_connect(port: u16, timeout: Duration) -> Result<Self, String> {
        let mut options = MqttOptions::new(unique_client_id("publisher"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        options.set_inflight(1000);
        let (client, event_loop) = AsyncClient::new(options, 10_000);
        let (done_tx, done) = watch::channel(0_u64);
        let (connected_tx, mut connected) = watch::channel(false);
        let task = tokio::spawn(run_event_loop(event_loop, done_tx, connected_tx));
        let ok = tokio::time::timeout(timeout, connected.wait_for(|c| *c)).await;
        if !matches!(ok, Ok(Ok(_))) {
            task.abort();
            return Err(format!(
                "publisher got no CONNACK from 127.0.0.1:{port} within {timeout:?}"
            ));
        }
        Ok(Self {
            client,
            done,
            queued: 0,
            task,
        })
    }

    /// Queues one publish; use [`Publisher::flush`] to wait for its acknowledgement.
    ///
    /// # Errors
    /// When the client's request channel is closed.
    pub async fn publish(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
    ) -> Result<(), String> {
        self.client
            .publish_bytes(topic, qos, retain, payload.into())
            .await
            .map_err(|e| format!("publish to {topic}: {e}"))?;
        self.queued += 1;
        Ok(())
    }

    /// Waits until every message queued so far has been acknowledged.
    ///
    /// # Errors
    /// After `timeout`, saying how many are still unacknowledged.
    pub async fn flush(&mut self, timeout: Duration) -> Result<(), String> {
        let target = self.queued;
        let reached = matches!(
            tokio::time::timeout(timeout, self.done.wait_for(|done| *done >= target)).await,
            Ok(Ok(_))
        );
        if reached {
            Ok(())
        } else {
            Err(format!(
                "only {} of {target} publishes acknowledged within {timeout:?}",
                *self.done.borrow()
            ))
        }
    }

    /// Publishes every `(topic, payload)` with `qos` (not retained) and waits until all are
    /// acknowledged: afterwards they are at the broker.
    ///
    /// # Errors
    /// As [`Publisher::publish`] and [`Publisher::flush`].
    pub async fn publish_all<I, T, P>(
        &mut self,
        qos: QoS,
        messages: I,
        timeout: Duration,
    ) -> Result<(), String>
    where
        I: IntoIterator<Item = (T, P)>,
        T: AsRef<str>,
        P: Into<Bytes>,
    {
        for (topic, payload) in messages {
            self.publish(topic.as_ref(), qos, false, payload).await?;
        }
        self.flush(timeout).await
    }

    /// Number of publishes acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        *self.done.borrow()
    }

    /// The underlying client.
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// Sends DISCONNECT (after everything queued before it) and stops the event loop.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        // The task ends once the DISCONNECT is written; do not wait forever for it.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while !self.task.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects, publishes one retained QoS 1 message, waits for its PUBACK and disconnects.
/// An empty `payload` clears the retained message on `topic`.
///
/// # Errors
/// When the PUBACK does not arrive within 10 s.
pub async fn publish_retained(
    port: u16,
    topic: &str,
    payload: impl Into<Bytes>,
) -> Result<(), String> {
    let mut publisher = Publisher::connect(port).await;
    publisher
        .publish(topic, QoS::AtLeastOnce, true, payload)
        .await?;
    publisher.flush(Duration::from_secs(10)).await?;
    publisher.disconnect().await;
    Ok(())
}

/// Owns the event loop: counts completed publishes, reports the CONNACK, never blocks.
async fn run_event_loop(
    mut event_loop: EventLoop,
    done: watch::Sender<u64>,
    connected: watch::Sender<bool>,
) {
    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                connected.send_replace(true);
            }
            // QoS 0 publishes carry packet id 0 and are complete once written.
            Ok(Event::Outgoing(Outgoing::Publish(0)))
            | Ok(Event::Incoming(Incoming::PubAck(_)))
            | Ok(Event::Incoming(Incoming::PubComp(_))) => {
                done.send_modify(|n| *n += 1);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(_) => tokio::time::sleep(RECONNECT_BACKOFF).await,
        }
    }
}
