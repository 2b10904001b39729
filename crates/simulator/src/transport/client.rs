//! QoS 1 and 2 publishing through rumqttc, counting PUBACK / PUBCOMP so the run knows when
//! the broker has every message.
//!
//! After a connection error the next attempt goes to the same broker, then, while attempts
//! fail, to the next ones of the connection's list ([`Failover`]). The session is persistent,
//! so a broker that has it (the same Mosquitto after a restart, any node of a NATS cluster)
//! gets the unacknowledged publishes again from rumqttc. A broker without it is what rumqttc
//! 0.25 gets wrong for us: a CONNACK with `session_present = false` clears its pending list,
//! which holds the unacknowledged publishes *and* the requests still queued when the
//! connection failed. So [`drive`] takes that list out after every error and gives it back at
//! the next CONNACK ([`restore`]). A re-sent reading may arrive twice; its id makes ingest
//! count it once.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Outgoing, QoS, Request};
use service_kit::{Backoff, Failover};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Delivery, TransportError, broker_list, raw, wait_for_acknowledgements};
use crate::configuration::SimConfig;

/// Unacknowledged publishes allowed in flight; high so a round trip does not cap the rate.
const INFLIGHT: u16 = 1000;
/// How long removing the session from one broker may take in `finish`.
const FORGET_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Counters {
    acknowledged: AtomicU64,
    errors: AtomicU64,
    lost: AtomicU64,
    failovers: AtomicU64,
    /// Positions in the broker list of the brokers this connection was connected to, whose
    /// session `finish` removes.
    used: Mutex<BTreeSet<usize>>,
}

/// A rumqttc client whose event loop runs in its own task.
#[derive(Debug)]
pub struct ClientConnection {
    config: SimConfig,
    client: AsyncClient,
    sent: u64,
    counters: Arc<Counters>,
    /// What [`drive`] reports: `None` while connected, else the last connection error.
    error: watch::Receiver<Option<String>>,
    task: JoinHandle<()>,
}

impl ClientConnection {
    /// Starts the client and waits for the first CONNACK within the connect timeout (failing
    /// over along the broker list meanwhile).
    ///
    /// # Errors
    /// [`TransportError::Unreachable`] when no CONNACK arrives in time.
    pub async fn connect(config: &SimConfig) -> Result<Self, TransportError> {
        let mqtt = config.mqtt.clone();
        let failover = config.mqtt.failover(move |broker| {
            let mut options = mqtt.options_at(broker);
            options.set_inflight(INFLIGHT);
            // A persistent session, so that a broker that keeps it (or shares it) gets the
            // unacknowledged publishes again; removed in `finish`.
            options.set_clean_session(false);
            options
        });
        let (client, event_loop) = AsyncClient::new(failover.options(), 10_000);
        let counters = Arc::new(Counters::default());
        let (error_tx, mut error) = watch::channel(Some("no answer".to_owned()));
        let task = tokio::spawn(drive(
            event_loop,
            failover,
            config.mqtt.backoff(),
            Arc::clone(&counters),
            error_tx,
            // QoS 0 has no acknowledgement: a publish counts once written, as in the raw writer.
            config.qos == QoS::AtMostOnce,
        ));
        let connected =
            tokio::time::timeout(config.connect_timeout, error.wait_for(Option::is_none));
        if connected.await.is_ok_and(|r| r.is_ok()) {
            return Ok(Self {
                config: config.clone(),
                client,
                sent: 0,
                counters,
                error,
                task,
            });
        }
        task.abort();
        Err(TransportError::Unreachable {
            addr: broker_list(config),
            timeout: config.connect_timeout,
            // Each failed attempt counted one error in `drive`; the one in progress is the last.
            attempts: counters.errors.load(Ordering::Relaxed).max(1),
            last_error: error.borrow().clone().unwrap_or_default(),
        })
    }

    /// Queues one publish; waits only when rumqttc's request channel is full.
    ///
    /// # Errors
    /// [`TransportError::ClientGone`] when the event loop task has stopped.
    pub async fn send(&mut self, topic: &str, payload: &[u8]) -> Result<(), TransportError> {
        self.client
            .publish(topic, self.config.qos, false, payload.to_vec())
            .await
            .map_err(|e| TransportError::ClientGone(e.to_string()))?;
        self.sent += 1;
        Ok(())
    }

    /// Current counters.
    pub fn delivery(&self) -> Delivery {
        let counter = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Delivery {
            sent: self.sent,
            acknowledged: counter(&self.counters.acknowledged).min(self.sent),
            lost: counter(&self.counters.lost),
            errors: counter(&self.counters.errors),
            failovers: counter(&self.counters.failovers),
        }
    }

    /// Waits up to `timeout` until every publish is acknowledged, then disconnects and
    /// removes the session from every broker it used. Unacknowledged messages count as lost.
    pub async fn finish(mut self, timeout: Duration) -> Delivery {
        let (sent, delivery) = (self.sent, || self.delivery());
        wait_for_acknowledgements(sent, timeout, delivery, || self.error.borrow().is_some()).await;
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.task).await;
        self.task.abort();
        let used = self.counters.used.lock().map(|u| u.clone());
        for broker in used.unwrap_or_default() {
            let broker = &self.config.mqtt.brokers[broker];
            // Bounded: a broker that died during the run must not hold up the summary.
            let forget = raw::forget_session(&self.config, broker);
            let outcome = tokio::time::timeout(FORGET_TIMEOUT, forget).await;
            if !matches!(outcome, Ok(Ok(()))) {
                tracing::debug!(%broker, ?outcome, "could not remove the MQTT session");
            }
        }
        let mut delivery = self.delivery();
        delivery.lost = delivery.sent - delivery.acknowledged;
        delivery
    }
}

/// Owns the event loop: counts acknowledgements, reports the connection state, backs off on
/// errors (rumqttc would retry at once), fails over along the broker list while connecting
/// fails, keeps what was not acknowledged across a connection that loses the session (see the
/// module doc), and never awaits the client.
async fn drive(
    mut event_loop: EventLoop,
    mut failover: Failover,
    mut backoff: Backoff,
    counters: Arc<Counters>,
    error_tx: watch::Sender<Option<String>>,
    count_written: bool,
) {
    // Requests of the failed connection, taken out of rumqttc until the next CONNACK.
    let mut unsent: VecDeque<Request> = VecDeque::new();
    loop {
        let error = match event_loop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                backoff.reset();
                if let Ok(mut used) = counters.used.lock() {
                    // The runner announces the first connection.
                    if !used.is_empty() {
                        let (broker, session_present) = (failover.current(), ack.session_present);
                        tracing::info!(%broker, session_present, "reconnected to the MQTT broker");
                    }
                    used.insert(failover.index());
                }
                restore(&mut event_loop, &mut unsent, ack.session_present, &counters);
                error_tx.send_replace(None);
                continue;
            }
            Ok(Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_))) => {
                counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) if count_written => {
                counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => e,
        };
        // rumqttc has moved the unacknowledged publishes and the queued requests into
        // `pending`; keep them before a CONNACK without session can clear it.
        unsent.extend(event_loop.pending.drain(..));
        counters.errors.fetch_add(1, Ordering::Relaxed);
        let retry_in = backoff.next_delay();
        let broker = failover.current();
        if error_tx.borrow().is_none() {
            let unacknowledged = unsent.len();
            tracing::warn!(%broker, %error, ?retry_in, unacknowledged, "MQTT connection error");
        } else {
            tracing::warn!(%broker, %error, ?retry_in, "cannot connect to the MQTT broker");
            // The broker stays down: try the next one of the list.
            if let Some(next) = failover.advance(&mut event_loop) {
                counters.failovers.fetch_add(1, Ordering::Relaxed);
                tracing::info!(broker = %next, "failing over to the next broker");
            }
        }
        error_tx.send_replace(Some(error.to_string()));
        tokio::time::sleep(retry_in).await;
    }
}

/// After a successful CONNACK: hands the requests kept from the failed connection back to the
/// event loop. With the session kept they go as they are (retransmissions under their packet
/// ids, then the queued ones); without it the publishes go again as new ones, and QoS 2
/// releases, whose publish the lost session held, are counted lost.
fn restore(
    event_loop: &mut EventLoop,
    unsent: &mut VecDeque<Request>,
    session_present: bool,
    counters: &Counters,
) {
    if session_present {
        // Ahead of anything rumqttc still has, which came later.
        let later = std::mem::take(&mut event_loop.pending);
        event_loop.pending.extend(unsent.drain(..));
        event_loop.pending.extend(later);
        return;
    }
    let mut renewed = VecDeque::with_capacity(unsent.len() + 1);
    // A publish that waited for a packet id still in use would wait forever: that id's
    // acknowledgement died with the session.
    let collided = event_loop.state.collision.take().map(Request::Publish);
    let mut released = 0_u64;
    for request in unsent.drain(..).chain(collided) {
        match request {
            Request::Publish(mut publish) => {
                publish.pkid = 0;
                publish.dup = false;
                renewed.push_back(Request::Publish(publish));
            }
            Request::PubRel(_) => released += 1,
            other => renewed.push_back(other),
        }
    }
    let resent = renewed.len();
    renewed.extend(event_loop.pending.drain(..));
    event_loop.pending = renewed;
    if resent > 0 {
        tracing::info!(
            resent,
            "the broker has no session for us: sending again what it did not acknowledge"
        );
    }
    if released > 0 {
        counters.lost.fetch_add(released, Ordering::Relaxed);
        tracing::warn!(
            lost = released,
            "QoS 2 publishes received but not completed by the previous broker cannot be sent again"
        );
    }
}

#[cfg(test)]
mod tests {
    use rumqttc::{MqttOptions, PubRel, Publish};

    use super::*;

    fn publish(pkid: u16, payload: &str) -> Request {
        let mut p = Publish::new("machines/M1/scrap", QoS::AtLeastOnce, payload.as_bytes());
        p.pkid = pkid;
        p.dup = pkid != 0;
        Request::Publish(p)
    }

    fn kept() -> (EventLoop, VecDeque<Request>) {
        let (_client, mut event_loop) =
            AsyncClient::new(MqttOptions::new("restore-test", "localhost", 1883), 4);
        // Queued after the failure: must stay behind what the failed connection had.
        event_loop.pending.push_back(publish(0, "later"));
        let unsent = VecDeque::from([
            publish(7, "in flight"),
            Request::PubRel(PubRel::new(8)),
            publish(0, "queued"),
        ]);
        (event_loop, unsent)
    }

    #[test]
    fn a_kept_session_gets_everything_back_as_it_was_and_first() {
        let (mut event_loop, mut unsent) = kept();
        let counters = Counters::default();
        restore(&mut event_loop, &mut unsent, true, &counters);
        assert!(unsent.is_empty());
        let mut want = kept().1;
        want.push_back(publish(0, "later"));
        assert_eq!(event_loop.pending, want);
        assert_eq!(counters.lost.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_lost_session_gets_the_publishes_again_as_new_ones() {
        let (mut event_loop, mut unsent) = kept();
        let counters = Counters::default();
        restore(&mut event_loop, &mut unsent, false, &counters);
        let want = VecDeque::from([
            publish(0, "in flight"),
            publish(0, "queued"),
            publish(0, "later"),
        ]);
        assert_eq!(event_loop.pending, want);
        // The QoS 2 release had no publish left to send again.
        assert_eq!(counters.lost.load(Ordering::Relaxed), 1);
    }
}
