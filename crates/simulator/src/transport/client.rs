//! QoS 1 and 2 publishing through rumqttc, counting PUBACK / PUBCOMP so the run knows when
//! the broker has every message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, QoS};
use service_kit::Backoff;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Delivery, TransportError};
use crate::configuration::SimConfig;

/// Packets larger than rumqttc's 10 KiB default must pass: `too_large` payloads are 65 KiB.
const MAX_PACKET: usize = 1024 * 1024;
/// Unacknowledged publishes allowed in flight; high so a round trip does not cap the rate.
const INFLIGHT: u16 = 1000;
/// How long `finish` waits without any new acknowledgement before giving up.
const STALL_LIMIT: Duration = Duration::from_secs(10);
/// First and longest pause between reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

#[derive(Debug, Default)]
struct Counters {
    acknowledged: AtomicU64,
    errors: AtomicU64,
}

/// A rumqttc client whose event loop runs in its own task.
#[derive(Debug)]
pub struct ClientConnection {
    config: SimConfig,
    client: AsyncClient,
    qos: QoS,
    sent: u64,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl ClientConnection {
    /// Starts the client and waits for the first CONNACK within the connect timeout.
    ///
    /// # Errors
    /// [`TransportError::Unreachable`] when no CONNACK arrives in time.
    pub async fn connect(config: &SimConfig) -> Result<Self, TransportError> {
        let mut options =
            MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
        options.set_keep_alive(config.keep_alive);
        options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        options.set_inflight(INFLIGHT);
        // A persistent session: rumqttc drops its unacknowledged publishes when it reconnects
        // to a session the broker does not have, so only a kept session lets it retransmit
        // them after a broker restart. The session is removed again in `finish`.
        options.set_clean_session(false);
        config.security.apply_to(&mut options);
        let (client, event_loop) = AsyncClient::new(options, 10_000);
        let counters = Arc::new(Counters::default());
        let (connected_tx, mut connected) = watch::channel(None::<String>);
        // QoS 0 has no acknowledgement: a publish counts once written, as in the raw writer.
        let count_written = config.qos == QoS::AtMostOnce;
        let addr = format!("{}:{}", config.host, config.port);
        let task = tokio::spawn(drive(
            event_loop,
            Arc::clone(&counters),
            connected_tx,
            count_written,
            addr.clone(),
        ));
        let ready = tokio::time::timeout(
            config.connect_timeout,
            connected.wait_for(|c| c.as_deref() == Some("")),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if ready {
            return Ok(Self {
                config: config.clone(),
                client,
                qos: config.qos,
                sent: 0,
                counters,
                task,
            });
        }
        task.abort();
        let last_error = connected
            .borrow()
            .clone()
            .unwrap_or_else(|| "no answer".into());
        // Each failed attempt counted one error in `drive`; the one in progress is the last.
        let attempts = u32::try_from(counters.errors.load(Ordering::Relaxed))
            .unwrap_or(u32::MAX)
            .max(1);
        Err(TransportError::Unreachable {
            addr,
            timeout: config.connect_timeout,
            attempts,
            last_error,
        })
    }

    /// Queues one publish; waits only when rumqttc's request channel is full.
    ///
    /// # Errors
    /// [`TransportError::ClientGone`] when the event loop task has stopped.
    pub async fn send(&mut self, topic: &str, payload: &[u8]) -> Result<(), TransportError> {
        self.client
            .publish(topic, self.qos, false, payload.to_vec())
            .await
            .map_err(|e| TransportError::ClientGone(e.to_string()))?;
        self.sent += 1;
        Ok(())
    }

    /// Current counters.
    pub fn delivery(&self) -> Delivery {
        Delivery {
            sent: self.sent,
            acknowledged: self
                .counters
                .acknowledged
                .load(Ordering::Relaxed)
                .min(self.sent),
            lost: 0,
            errors: self.counters.errors.load(Ordering::Relaxed),
        }
    }

    /// Waits up to `timeout` until every publish is acknowledged, then disconnects.
    /// Unacknowledged messages count as lost.
    pub async fn finish(self, timeout: Duration) -> Delivery {
        // Give up early when nothing moves for a while: the broker lost those messages.
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = (self.delivery().acknowledged, tokio::time::Instant::now());
        while self.delivery().acknowledged < self.sent {
            let now = tokio::time::Instant::now();
            let acknowledged = self.delivery().acknowledged;
            if acknowledged != last.0 {
                last = (acknowledged, now);
            }
            if now >= deadline || now - last.1 >= STALL_LIMIT {
                tracing::warn!(
                    unacknowledged = self.sent - acknowledged,
                    "giving up waiting for acknowledgements"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while !self.task.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        self.task.abort();
        if let Err(e) = super::raw::forget_session(&self.config).await {
            tracing::debug!(error = %e, "could not remove the MQTT session");
        }
        let mut delivery = self.delivery();
        delivery.lost = delivery.sent - delivery.acknowledged;
        delivery
    }
}

/// Owns the event loop: counts acknowledgements, reports connection state, backs off on
/// errors (rumqttc would retry at once), and never awaits the client.
async fn drive(
    mut event_loop: EventLoop,
    counters: Arc<Counters>,
    connected: watch::Sender<Option<String>>,
    count_written: bool,
    addr: String,
) {
    let mut backoff = Backoff::new(BACKOFF.0, BACKOFF.1);
    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                backoff.reset();
                if ack.code == rumqttc::ConnectReturnCode::Success {
                    connected.send_replace(Some(String::new()));
                } else {
                    connected.send_replace(Some(format!("{:?}", ack.code)));
                }
            }
            Ok(Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_))) => {
                counters.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_))) if count_written => {
                counters.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                let delay = backoff.next_delay();
                let connecting = connected.borrow().as_deref() != Some("");
                if connecting {
                    tracing::warn!(broker = %addr, error = %e, retry_in = ?delay, "cannot connect to the MQTT broker");
                } else {
                    tracing::warn!(broker = %addr, error = %e, retry_in = ?delay, "MQTT connection error");
                }
                connected.send_if_modified(|state| {
                    if state.as_deref() == Some("") {
                        false
                    } else {
                        *state = Some(e.to_string());
                        true
                    }
                });
                tokio::time::sleep(delay).await;
            }
        }
    }
}
