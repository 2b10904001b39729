//! How messages reach the brokers: a lean QoS 0 writer for load ([`raw`]) and rumqttc for
//! QoS 1 and 2, where acknowledgements must be tracked ([`client`]); with several brokers in
//! `mqtt.host`, one connection per broker that carries machines ([`spread`]), each failing
//! over along the list on its own.

pub mod client;
pub mod raw;
pub mod spread;

use std::time::Duration;

use serde::Serialize;

use crate::configuration::SimConfig;

/// Why the broker could not be reached or did not take the messages.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TCP connect or I/O failed.
    #[error("broker {addr}: {source}")]
    Io {
        /// `host:port`.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
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
        /// `host:port`.
        addr: String,
        /// How long it was tried.
        timeout: Duration,
        /// Connection attempts made.
        attempts: u32,
        /// The last error seen.
        last_error: String,
    },
    /// SIGINT or SIGTERM arrived before the broker was reached.
    #[error("stopped by a signal before the broker {addr} was reached")]
    Interrupted {
        /// `host:port`.
        addr: String,
    },
    /// The MQTT client stopped (its request channel closed).
    #[error("MQTT client stopped: {0}")]
    ClientGone(String),
}

/// Delivery counters of a transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

impl Delivery {
    fn add(&mut self, other: Self) {
        self.sent += other.sent;
        self.acknowledged += other.acknowledged;
        self.lost += other.lost;
        self.errors += other.errors;
        self.failovers += other.failovers;
    }
}

/// What one connection delivered, for the summary when machines are spread over brokers.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerDelivery {
    /// The broker the connection started on (`host:port`).
    pub broker: String,
    /// Machines it carried.
    pub machines: usize,
    /// Messages handed to it.
    pub sent: u64,
    /// Messages acknowledged through it.
    pub acknowledged: u64,
    /// Messages known lost on it.
    pub lost: u64,
    /// Its connection errors.
    pub errors: u64,
    /// Times it moved on to the next broker.
    pub failovers: u64,
}

/// One broker connection.
#[derive(Debug)]
pub enum Connection {
    /// QoS 0 over a plain MQTT writer.
    Raw(Box<raw::RawConnection>),
    /// QoS 1/2 through rumqttc.
    Client(Box<client::ClientConnection>),
}

impl Connection {
    /// Connects as `config` asks (QoS 0 over plain TCP: raw writer; QoS 1/2, or any QoS with
    /// TLS: rumqttc, since the raw writer has no TLS), retrying within the connect timeout and
    /// failing over along `config.mqtt.brokers`.
    ///
    /// # Errors
    /// When no broker can be reached in time or one refuses the connection.
    pub async fn connect(config: &SimConfig) -> Result<Self, TransportError> {
        if config.qos == rumqttc::QoS::AtMostOnce && !config.mqtt.security.tls() {
            Ok(Self::Raw(Box::new(
                raw::RawConnection::connect(config).await?,
            )))
        } else {
            Ok(Self::Client(Box::new(
                client::ClientConnection::connect(config).await?,
            )))
        }
    }

    async fn send(&mut self, topic: &str, payload: &[u8]) -> Result<(), TransportError> {
        match self {
            Self::Raw(c) => c.send(topic, payload).await,
            Self::Client(c) => c.send(topic, payload).await,
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        match self {
            Self::Raw(c) => c.flush().await,
            Self::Client(_) => Ok(()),
        }
    }

    fn delivery(&self) -> Delivery {
        match self {
            Self::Raw(c) => c.delivery(),
            Self::Client(c) => c.delivery(),
        }
    }

    async fn finish(self, timeout: Duration) -> Delivery {
        match self {
            Self::Raw(c) => (*c).finish(timeout).await,
            Self::Client(c) => (*c).finish(timeout).await,
        }
    }
}

/// The connections the runner publishes through, and which machine goes where.
#[derive(Debug)]
pub struct Transport {
    connections: Vec<Connection>,
    /// Per machine (by position), its connection.
    route: Vec<usize>,
    /// Per connection: home broker and machines carried.
    legs: Vec<(String, usize)>,
}

impl Transport {
    /// Opens one connection per broker that carries machines (one in all with a single
    /// broker), one after the other.
    ///
    /// # Errors
    /// When a connection cannot reach any broker of its list in time, or is refused.
    pub async fn connect(config: &SimConfig) -> Result<Self, TransportError> {
        let plan = spread::spread(config.machines.len(), config.mqtt.brokers.len());
        let mut connections = Vec::with_capacity(plan.legs.len());
        let mut legs = Vec::with_capacity(plan.legs.len());
        for leg in &plan.legs {
            let leg_config = spread::leg_config(config, leg.broker);
            let home = config.mqtt.brokers[leg.broker].to_string();
            if config.mqtt.brokers.len() > 1 {
                tracing::info!(
                    broker = %home,
                    machines = leg.machines.len(),
                    client_id = %leg_config.mqtt.client_id,
                    "connection for this broker's machines"
                );
            }
            connections.push(Connection::connect(&leg_config).await?);
            legs.push((home, leg.machines.len()));
        }
        Ok(Self {
            connections,
            route: plan.route,
            legs,
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
        let leg = self.route.get(machine).copied().unwrap_or(0);
        self.connections[leg].send(topic, payload).await
    }

    /// Writes out whatever is buffered (a batch boundary), and keeps the connections alive.
    ///
    /// # Errors
    /// When a connection is lost and no broker can be reached again.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        for connection in &mut self.connections {
            connection.flush().await?;
        }
        Ok(())
    }

    /// Current counters, all connections together.
    pub fn delivery(&self) -> Delivery {
        let mut total = Delivery::default();
        for connection in &self.connections {
            total.add(connection.delivery());
        }
        total
    }

    /// Waits until the brokers have everything sent (up to `timeout` per connection),
    /// disconnects cleanly and returns the final counters: the total and per connection.
    pub async fn finish(self, timeout: Duration) -> (Delivery, Vec<BrokerDelivery>) {
        let mut total = Delivery::default();
        let mut per_broker = Vec::with_capacity(self.connections.len());
        for (connection, (broker, machines)) in self.connections.into_iter().zip(self.legs) {
            let d = connection.finish(timeout).await;
            total.add(d);
            per_broker.push(BrokerDelivery {
                broker,
                machines,
                sent: d.sent,
                acknowledged: d.acknowledged,
                lost: d.lost,
                errors: d.errors,
                failovers: d.failovers,
            });
        }
        (total, per_broker)
    }
}
