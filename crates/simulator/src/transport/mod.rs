//! How messages reach the brokers: a lean QoS 0 writer for load ([`raw`]) and rumqttc for
//! QoS 1 and 2, where acknowledgements must be tracked ([`client`]); with several brokers in
//! `mqtt.host`, one connection per broker that carries machines ([`spread`]), each failing
//! over along the list on its own. With `protocol = "sparkplug"` each of those connections is
//! an edge node whose devices are its machines ([`sparkplug`]).

pub mod client;
pub mod raw;
pub mod sparkplug;
pub mod spread;

use std::time::Duration;

use rumqttc::QoS;
use serde::Serialize;

use crate::configuration::{Protocol, SimConfig};
use crate::sparkplug::EdgeNode;

/// Why the broker could not be reached or did not take the messages.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TCP connect or I/O failed (only ever reported with its broker by the caller).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The broker refused the MQTT connection or answered something unexpected.
    #[error("broker {addr} refused the connection: {reason}")]
    Refused {
        /// `host:port`.
        addr: String,
        /// What it answered.
        reason: String,
    },
    /// No (re)connection within the connect timeout (or `--duration`, when shorter).
    #[error("broker {addr} not reachable within {timeout:?} ({attempts} attempts): {last_error}")]
    Unreachable {
        /// The broker list.
        addr: String,
        /// How long it was tried.
        timeout: Duration,
        /// Connection attempts made.
        attempts: u64,
        /// The last error seen.
        last_error: String,
    },
    /// SIGINT or SIGTERM arrived before the broker was reached.
    #[error("stopped by a signal before the broker {addr} was reached")]
    Interrupted {
        /// The broker list.
        addr: String,
    },
    /// The MQTT client stopped (its request channel closed).
    #[error("MQTT client stopped: {0}")]
    ClientGone(String),
    /// A message of one protocol handed to a connection of the other: a bug of the caller.
    #[error("a {0} message cannot go over a connection of the other protocol")]
    WrongProtocol(&'static str),
}

/// The brokers a connection tries, for messages (`host:port` with a single broker).
pub(crate) fn broker_list(config: &SimConfig) -> String {
    let brokers = &config.mqtt.brokers;
    let list: Vec<String> = brokers.iter().map(ToString::to_string).collect();
    list.join(",")
}

/// How long `finish` waits, while connected, without any new acknowledgement before giving up.
const STALL_LIMIT: Duration = Duration::from_secs(10);

/// Returns when each of `sent` publishes is acknowledged or lost, at `timeout`, or when nothing
/// has moved for [`STALL_LIMIT`] while connected: the broker lost those messages. While
/// `failing` (a reconnection: a fail-over to a NATS node can take many seconds) nothing stalls.
pub(crate) async fn wait_for_acknowledgements(
    sent: u64,
    timeout: Duration,
    delivery: impl Fn() -> Delivery,
    failing: impl Fn() -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = (delivery().acknowledged, tokio::time::Instant::now());
    loop {
        let Delivery {
            acknowledged, lost, ..
        } = delivery();
        if acknowledged + lost >= sent {
            return;
        }
        let now = tokio::time::Instant::now();
        if acknowledged != last.0 || failing() {
            last = (acknowledged, now);
        }
        if now >= deadline || now - last.1 >= STALL_LIMIT {
            let unacknowledged = sent - acknowledged;
            tracing::warn!(unacknowledged, "giving up waiting for acknowledgements");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Delivery counters of a connection, or of all together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Messages handed to the transport.
    pub sent: u64,
    /// Messages the broker has: acknowledged (QoS 1/2) or written to the socket (QoS 0;
    /// confirmed for all at once by [`Transport::finish`]).
    pub acknowledged: u64,
    /// Messages known lost (written into a connection that failed).
    pub lost: u64,
    /// Connection errors seen.
    pub errors: u64,
    /// Times a connection moved on to the next broker of the list.
    pub failovers: u64,
}

impl std::iter::Sum for Delivery {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |total, d| Self {
            sent: total.sent + d.sent,
            acknowledged: total.acknowledged + d.acknowledged,
            lost: total.lost + d.lost,
            errors: total.errors + d.errors,
            failovers: total.failovers + d.failovers,
        })
    }
}

/// What one connection delivered, for the summary when machines are spread over brokers.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerDelivery {
    /// The broker the connection started on (`host:port`).
    pub broker: String,
    /// Machines it carried.
    pub machines: usize,
    /// Its counters.
    #[serde(flatten)]
    pub delivery: Delivery,
}

/// One broker connection.
#[derive(Debug)]
pub enum Connection {
    /// QoS 0 over a plain MQTT writer.
    Raw(raw::RawConnection),
    /// QoS 1/2 through rumqttc.
    Client(client::ClientConnection),
    /// A Sparkplug B edge node through rumqttc.
    Sparkplug(sparkplug::NodeConnection),
}

impl Connection {
    /// Opens the connection of one leg: the raw writer for QoS 0 without TLS (it cannot speak
    /// TLS), rumqttc for the rest; an edge node carrying `machines` with Sparkplug.
    async fn open(
        config: &SimConfig,
        leg: &SimConfig,
        home: usize,
        machines: &[usize],
    ) -> Result<Self, TransportError> {
        if let Protocol::Sparkplug { group } = &config.protocol {
            let devices = machines
                .iter()
                .map(|&m| config.machines[m].clone())
                .collect();
            let node = format!("sim-node-{home}");
            let node = EdgeNode::new(group, &node, devices, config.indices.clone());
            return Ok(Self::Sparkplug(
                sparkplug::NodeConnection::connect(leg, node).await?,
            ));
        }
        Ok(
            if config.qos == QoS::AtMostOnce && !config.mqtt.security.tls() {
                Self::Raw(raw::RawConnection::connect(leg).await?)
            } else {
                Self::Client(client::ClientConnection::connect(leg).await?)
            },
        )
    }
}

/// The connections the runner publishes through, one per broker that carries machines.
#[derive(Debug)]
pub struct Transport {
    connections: Vec<Connection>,
    /// Per connection: home broker and number of machines.
    legs: Vec<(String, usize)>,
    /// Per machine: its position among its connection's machines (its Sparkplug device).
    slots: Vec<usize>,
}

impl Transport {
    /// Opens the connections of [`spread::spread`], one after the other, each retrying within
    /// the connect timeout and failing over along its broker list.
    ///
    /// # Errors
    /// When a connection cannot reach any broker of its list in time, or is refused.
    pub async fn connect(config: &SimConfig) -> Result<Self, TransportError> {
        let plan = spread::spread(config.machines.len(), config.mqtt.brokers.len());
        let mut connections = Vec::with_capacity(plan.len());
        let mut legs = Vec::with_capacity(plan.len());
        let mut slots = vec![0; config.machines.len()];
        for (home, machines) in plan.iter().enumerate() {
            let leg_config = spread::leg_config(config, home);
            let broker = config.mqtt.brokers[home].to_string();
            if config.mqtt.brokers.len() > 1 {
                tracing::info!(
                    %broker,
                    machines = machines.len(),
                    client_id = %leg_config.mqtt.client_id,
                    "connection for this broker's machines"
                );
            }
            connections.push(Connection::open(config, &leg_config, home, machines).await?);
            legs.push((broker, machines.len()));
            for (slot, &machine) in machines.iter().enumerate() {
                slots[machine] = slot;
            }
        }
        Ok(Self {
            connections,
            legs,
            slots,
        })
    }

    /// Queues one publish of machine `machine` (position in the machine list) on its
    /// connection.
    ///
    /// # Errors
    /// When the connection is lost and no broker can be reached again.
    pub async fn send(
        &mut self,
        machine: usize,
        topic: &str,
        payload: &[u8],
    ) -> Result<(), TransportError> {
        let leg = spread::connection_of(machine, self.connections.len());
        match &mut self.connections[leg] {
            Connection::Raw(c) => c.send(topic, payload).await,
            Connection::Client(c) => c.send(topic, payload).await,
            Connection::Sparkplug(_) => Err(TransportError::WrongProtocol("JSON")),
        }
    }

    /// Queues the Sparkplug DDATA of one reading of machine `machine` (position in the machine
    /// list) at `index_slot` (position in the indices), taken at `now_ms`.
    ///
    /// # Errors
    /// When the edge node's client has stopped.
    pub async fn send_reading(
        &mut self,
        machine: usize,
        index_slot: usize,
        value: f64,
        now_ms: u64,
    ) -> Result<(), TransportError> {
        let leg = spread::connection_of(machine, self.connections.len());
        let device = self.slots[machine];
        match &mut self.connections[leg] {
            Connection::Sparkplug(c) => c.send_reading(device, index_slot, value, now_ms).await,
            _ => Err(TransportError::WrongProtocol("Sparkplug")),
        }
    }

    /// Writes out whatever the raw writers buffered (a batch boundary), and keeps their
    /// connections alive (rumqttc does both on its own); edge nodes send the births a new
    /// connection or a rebirth request calls for.
    ///
    /// # Errors
    /// When a connection is lost and no broker can be reached again.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        for connection in &mut self.connections {
            match connection {
                Connection::Raw(c) => c.flush().await?,
                Connection::Sparkplug(c) => c.flush().await?,
                Connection::Client(_) => {}
            }
        }
        Ok(())
    }

    /// Current counters, all connections together.
    pub fn delivery(&self) -> Delivery {
        let delivery = |connection: &Connection| match connection {
            Connection::Raw(c) => c.delivery(),
            Connection::Client(c) => c.delivery(),
            Connection::Sparkplug(c) => c.delivery(),
        };
        self.connections.iter().map(delivery).sum()
    }

    /// Waits until the brokers have everything sent (up to `timeout` per connection),
    /// disconnects cleanly and returns the final counters of each connection.
    pub async fn finish(self, timeout: Duration) -> Vec<BrokerDelivery> {
        let mut per_broker = Vec::with_capacity(self.connections.len());
        for (connection, (broker, machines)) in self.connections.into_iter().zip(self.legs) {
            let delivery = match connection {
                Connection::Raw(c) => c.finish(timeout).await,
                Connection::Client(c) => c.finish(timeout).await,
                Connection::Sparkplug(c) => c.finish(timeout).await,
            };
            per_broker.push(BrokerDelivery {
                broker,
                machines,
                delivery,
            });
        }
        per_broker
    }
}
