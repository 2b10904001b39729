//! How messages reach the broker: a lean QoS 0 writer for load ([`raw`]) and rumqttc for
//! QoS 1 and 2, where acknowledgements must be tracked ([`client`]).

pub mod client;
pub mod raw;

use std::time::Duration;

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
}

/// The connection the runner publishes through.
#[derive(Debug)]
pub enum Transport {
    /// QoS 0 over a plain MQTT writer.
    Raw(Box<raw::RawConnection>),
    /// QoS 1/2 through rumqttc.
    Client(Box<client::ClientConnection>),
}

impl Transport {
    /// Connects as `config` asks (QoS 0 over plain TCP: raw writer; QoS 1/2, or any QoS with
    /// TLS: rumqttc, since the raw writer has no TLS), retrying within the connect timeout.
    ///
    /// # Errors
    /// When the broker cannot be reached in time or refuses the connection.
    pub async fn connect(config: &SimConfig) -> Result<Self, TransportError> {
        if config.qos == rumqttc::QoS::AtMostOnce && !config.security.tls() {
            Ok(Self::Raw(Box::new(
                raw::RawConnection::connect(config).await?,
            )))
        } else {
            Ok(Self::Client(Box::new(
                client::ClientConnection::connect(config).await?,
            )))
        }
    }

    /// Queues one publish.
    ///
    /// # Errors
    /// When the connection is lost and cannot be re-established.
    pub async fn send(&mut self, topic: &str, payload: &[u8]) -> Result<(), TransportError> {
        match self {
            Self::Raw(c) => c.send(topic, payload).await,
            Self::Client(c) => c.send(topic, payload).await,
        }
    }

    /// Writes out whatever is buffered (a batch boundary), and keeps the connection alive.
    ///
    /// # Errors
    /// When the connection is lost and cannot be re-established.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        match self {
            Self::Raw(c) => c.flush().await,
            Self::Client(_) => Ok(()),
        }
    }

    /// Current counters.
    pub fn delivery(&self) -> Delivery {
        match self {
            Self::Raw(c) => c.delivery(),
            Self::Client(c) => c.delivery(),
        }
    }

    /// Waits until the broker has everything sent (up to `timeout`), disconnects cleanly and
    /// returns the final counters.
    pub async fn finish(self, timeout: Duration) -> Delivery {
        match self {
            Self::Raw(c) => (*c).finish(timeout).await,
            Self::Client(c) => (*c).finish(timeout).await,
        }
    }
}
