//! A Sparkplug B edge node's connection, through rumqttc: the will, the NCMD subscription,
//! the births on every connection and rebirth request, one DDATA per reading, and NDEATH
//! before a clean disconnect. What the messages say is [`crate::sparkplug`]'s.
//!
//! One task owns the event loop, as for [`super::client`]. It gives every CONNECT a `bdSeq`
//! one higher than the last, in the will it sets before the attempt, and reports connections
//! and rebirth requests through a watch channel; the publishing side sends the births that
//! are due before its next reading, so that births always precede the data of a connection.
//! The session is clean, as Sparkplug asks: readings a lost connection had not delivered
//! carry that connection's sequence numbers, which a host that saw its NDEATH would not take,
//! so they are dropped and counted lost rather than sent again.
//!
//! What a QoS 0 reading queued just before a connection loss becomes is unknown: it may go out
//! on the next connection ahead of its births, and a host ignores it. Exact sums hold for runs
//! without connection loss.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, LastWill, Outgoing, QoS, Request, Subscribe,
};
use service_kit::{Backoff, Failover};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Delivery, TransportError, broker_list, wait_for_acknowledgements};
use crate::configuration::SimConfig;
use crate::sparkplug::{BirthTracker, Births, EdgeNode, asks_for_rebirth};

/// Unacknowledged QoS 1/2 readings allowed in flight; high so a round trip does not cap the rate.
const INFLIGHT: u16 = 1000;
/// How long the DISCONNECT may take to go out at the end.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the event loop task reports to the publishing side.
#[derive(Debug, Clone, Default)]
struct LinkState {
    /// CONNACKs so far.
    connections: u64,
    /// The `bdSeq` of the current connection.
    bd_seq: u8,
    /// Rebirth requests received so far.
    rebirths: u64,
    /// `None` while connected, else the last connection error.
    error: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    /// PUBLISH packets written, births and deaths included.
    written: AtomicU64,
    /// Births and deaths dropped with a failed connection, never to be written.
    dropped_control: AtomicU64,
    /// PUBACK / PUBCOMP received (births and deaths go at QoS 0 and get none).
    acknowledged: AtomicU64,
    errors: AtomicU64,
    lost: AtomicU64,
    failovers: AtomicU64,
}

/// An edge node over one rumqttc client whose event loop runs in its own task.
#[derive(Debug)]
pub struct NodeConnection {
    node: EdgeNode,
    client: AsyncClient,
    qos: QoS,
    /// Readings queued.
    sent: u64,
    /// Births and deaths queued: QoS 0 messages that are not readings.
    control: u64,
    counters: Arc<Counters>,
    state: watch::Receiver<LinkState>,
    births: BirthTracker,
    task: JoinHandle<()>,
    payload: Vec<u8>,
}

impl NodeConnection {
    /// Connects `node` with its will, waits for the first CONNACK within the connect timeout
    /// (failing over along the broker list meanwhile) and sends the births.
    ///
    /// # Errors
    /// [`TransportError::Unreachable`] when no CONNACK arrives in time.
    pub async fn connect(config: &SimConfig, node: EdgeNode) -> Result<Self, TransportError> {
        let bd_seq = Arc::new(AtomicU8::new(0));
        let failover = failover(config, &node, Arc::clone(&bd_seq));
        let (client, event_loop) = AsyncClient::new(failover.options(), 10_000);
        let counters = Arc::new(Counters::default());
        let (state_tx, mut state) = watch::channel(LinkState {
            error: Some("no answer".to_owned()),
            ..LinkState::default()
        });
        let task = tokio::spawn(drive(
            event_loop,
            failover,
            config.mqtt.backoff(),
            Arc::clone(&counters),
            state_tx,
            Will {
                node: node.clone(),
                bd_seq,
            },
        ));
        let first = state.wait_for(|s| s.connections > 0);
        if !tokio::time::timeout(config.connect_timeout, first)
            .await
            .is_ok_and(|r| r.is_ok())
        {
            task.abort();
            return Err(TransportError::Unreachable {
                addr: broker_list(config),
                timeout: config.connect_timeout,
                attempts: counters.errors.load(Ordering::Relaxed).max(1),
                last_error: state.borrow().error.clone().unwrap_or_default(),
            });
        }
        // Marked unseen again, so that the first births go out below.
        state.mark_changed();
        let mut connection = Self {
            node,
            client,
            qos: config.qos,
            sent: 0,
            control: 0,
            counters,
            state,
            births: BirthTracker::default(),
            task,
            payload: Vec::with_capacity(64),
        };
        connection.births_if_due().await?;
        Ok(connection)
    }

    /// Queues the DDATA of one reading of `device` (position in the node's devices) at
    /// `index_slot`, after the births when some are due.
    ///
    /// # Errors
    /// [`TransportError::ClientGone`] when the event loop task has stopped.
    pub async fn send_reading(
        &mut self,
        device: usize,
        index_slot: usize,
        value: f64,
        now_ms: u64,
    ) -> Result<(), TransportError> {
        self.births_if_due().await?;
        let topic = self
            .node
            .data(device, index_slot, value, now_ms, &mut self.payload);
        self.client
            .publish(topic, self.qos, false, self.payload.clone())
            .await
            .map_err(|e| TransportError::ClientGone(e.to_string()))?;
        self.sent += 1;
        Ok(())
    }

    /// Answers a new connection or a rebirth request with births, also while no reading is due.
    ///
    /// # Errors
    /// [`TransportError::ClientGone`] when the event loop task has stopped.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        self.births_if_due().await
    }

    /// Sends NBIRTH and the DBIRTHs when the connection is new or a host asked for them.
    async fn births_if_due(&mut self) -> Result<(), TransportError> {
        // A closed channel (the task ended) has nothing new to say.
        if !self.state.has_changed().unwrap_or(false) {
            return Ok(());
        }
        let (connections, rebirths, bd_seq) = {
            let state = self.state.borrow_and_update();
            (state.connections, state.rebirths, state.bd_seq)
        };
        let Some(why) = self.births.check(connections, rebirths) else {
            return Ok(());
        };
        if why == Births::Rebirth {
            let node = self.node.id();
            tracing::info!(
                node,
                bd_seq,
                "a host asked for a rebirth: sending the births again"
            );
        }
        for birth in self.node.births(bd_seq, now_ms()) {
            self.publish_control(birth.topic, birth.payload).await?;
        }
        Ok(())
    }

    async fn publish_control(
        &mut self,
        topic: String,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        self.client
            .publish(topic, QoS::AtMostOnce, false, payload)
            .await
            .map_err(|e| TransportError::ClientGone(e.to_string()))?;
        self.control += 1;
        Ok(())
    }

    /// Current counters, readings only.
    pub fn delivery(&self) -> Delivery {
        let counter = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let acknowledged = if self.qos == QoS::AtMostOnce {
            // Written counts births and deaths too; they were queued ahead of what follows.
            let done = counter(&self.counters.written) + counter(&self.counters.dropped_control);
            done.saturating_sub(self.control)
        } else {
            counter(&self.counters.acknowledged)
        };
        Delivery {
            sent: self.sent,
            acknowledged: acknowledged.min(self.sent),
            lost: counter(&self.counters.lost),
            errors: counter(&self.counters.errors),
            failovers: counter(&self.counters.failovers),
        }
    }

    /// Waits up to `timeout` until every reading is acknowledged (written, at QoS 0), sends
    /// NDEATH, since a clean disconnect does not fire the will, and disconnects.
    /// Unacknowledged readings count as lost.
    pub async fn finish(mut self, timeout: Duration) -> Delivery {
        let (sent, delivery) = (self.sent, || self.delivery());
        wait_for_acknowledgements(sent, timeout, delivery, || {
            self.state.borrow().error.is_some()
        })
        .await;
        if self.state.borrow().error.is_none() {
            let bd_seq = self.state.borrow().bd_seq;
            let death = self.node.death(bd_seq);
            let _ = self.publish_control(death.topic, death.payload).await;
        }
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, &mut self.task).await;
        self.task.abort();
        let mut delivery = self.delivery();
        delivery.lost = delivery.sent - delivery.acknowledged;
        delivery
    }
}

/// Milliseconds since the epoch: the time of births and readings.
pub fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The node's will and the `bdSeq` of the next CONNECT, shared with the broker options.
struct Will {
    node: EdgeNode,
    bd_seq: Arc<AtomicU8>,
}

impl Will {
    /// The will of a CONNECT with the current `bdSeq`: NDEATH, QoS 1, not retained.
    fn current(&self) -> LastWill {
        will(&self.node, self.bd_seq.load(Ordering::Relaxed))
    }
}

fn will(node: &EdgeNode, bd_seq: u8) -> LastWill {
    let death = node.death(bd_seq);
    LastWill::new(death.topic, death.payload, QoS::AtLeastOnce, false)
}

/// The broker options of every broker of the list: a clean session, as Sparkplug asks, and
/// the will of the `bdSeq` current when the options are made (at start and at a fail-over).
fn failover(config: &SimConfig, node: &EdgeNode, bd_seq: Arc<AtomicU8>) -> Failover {
    let mqtt = config.mqtt.clone();
    let node = node.clone();
    config.mqtt.failover(move |broker| {
        let mut options = mqtt.options_at(broker);
        options.set_inflight(INFLIGHT);
        options.set_clean_session(true);
        options.set_last_will(will(&node, bd_seq.load(Ordering::Relaxed)));
        options
    })
}

/// Owns the event loop: counts what was written and acknowledged, subscribes to the node's
/// NCMD on every CONNACK, reports connections and rebirth requests, gives the next CONNECT a
/// new `bdSeq`, backs off and fails over on errors, and never awaits the client.
async fn drive(
    mut event_loop: EventLoop,
    mut failover: Failover,
    mut backoff: Backoff,
    counters: Arc<Counters>,
    state_tx: watch::Sender<LinkState>,
    will: Will,
) {
    let command_topic = will.node.command_topic();
    loop {
        let error = match event_loop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                backoff.reset();
                // Ahead of the queued readings; rumqttc has just emptied this list.
                let subscribe = Subscribe::new(&command_topic, QoS::AtLeastOnce);
                event_loop.pending.push_front(Request::Subscribe(subscribe));
                let bd_seq = will.bd_seq.load(Ordering::Relaxed);
                state_tx.send_modify(|s| {
                    s.connections += 1;
                    s.bd_seq = bd_seq;
                    s.error = None;
                });
                let broker = failover.current();
                tracing::info!(%broker, node = will.node.id(), bd_seq, "edge node connected");
                continue;
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                if publish.topic == command_topic && asks_for_rebirth(&publish.payload) {
                    state_tx.send_modify(|s| s.rebirths += 1);
                }
                continue;
            }
            Ok(Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_))) => {
                counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                counters.written.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => e,
        };
        let (dropped, control) = drop_stale(&mut event_loop);
        counters.lost.fetch_add(dropped, Ordering::Relaxed);
        counters
            .dropped_control
            .fetch_add(control, Ordering::Relaxed);
        counters.errors.fetch_add(1, Ordering::Relaxed);
        // Every CONNECT has a bdSeq of its own, in the will it registers.
        let next = will.bd_seq.load(Ordering::Relaxed).wrapping_add(1);
        will.bd_seq.store(next, Ordering::Relaxed);
        event_loop.mqtt_options.set_last_will(will.current());
        let retry_in = backoff.next_delay();
        let broker = failover.current().clone();
        if state_tx.borrow().error.is_none() {
            tracing::warn!(%broker, %error, ?retry_in, dropped, "MQTT connection error");
        } else {
            tracing::warn!(%broker, %error, ?retry_in, "cannot connect to the MQTT broker");
            if let Some(next) = failover.advance(&mut event_loop) {
                counters.failovers.fetch_add(1, Ordering::Relaxed);
                tracing::info!(broker = %next, "failing over to the next broker");
            }
        }
        state_tx.send_modify(|s| s.error = Some(error.to_string()));
        tokio::time::sleep(retry_in).await;
    }
}

/// Empties rumqttc's list of what the failed connection had not completed and returns how
/// many readings (DDATA) and how many other publishes (births, deaths) it held.
fn drop_stale(event_loop: &mut EventLoop) -> (u64, u64) {
    let (mut readings, mut control) = (0, 0);
    for request in event_loop.pending.drain(..) {
        if let Request::Publish(publish) = request {
            if is_data(&publish.topic) {
                readings += 1;
            } else {
                control += 1;
            }
        }
    }
    (readings, control)
}

/// Whether a topic is a DDATA one (`spBv1.0/{group}/DDATA/...`).
fn is_data(topic: &str) -> bool {
    topic.split('/').nth(2) == Some("DDATA")
}
