//! A minimal MQTT 3.1.1 QoS 0 publisher for load generation.
//!
//! For QoS 0, rumqttc's channel, owned `Publish` and state machine buy nothing, so this writer
//! encodes PUBLISH packets straight into one reused buffer and writes it in large chunks. A
//! small task reads the broker's answers (PINGRESP) until it closes the connection; that close
//! confirms a clean finish, as Mosquitto closes only after our DISCONNECT, having handled every
//! packet before it.
//!
//! A lost connection is re-established, first to the same broker and, while that fails, to
//! the next brokers of the connection's list in turn (fail-over). QoS 0 promises nothing for
//! what was written into the dying connection: those messages count as lost.

use std::time::Duration;

use service_kit::mqtt_wire::{
    CONNACK_LEN, DISCONNECT, PINGREQ, WireError, check_connack, encode_connect, encode_publish,
};
use service_kit::{BrokerAddr, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;
use tokio::time::Instant;

use super::{Delivery, TransportError, broker_list};
use crate::configuration::SimConfig;

/// Write the buffer out once it holds this much, even inside a batch.
const FLUSH_AT: usize = 256 * 1024;
/// How long the broker has to answer CONNECT.
const CONNACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The write half of a connection, and the signal that the broker closed it.
type Link = (OwnedWriteHalf, oneshot::Receiver<()>);

/// A connected QoS 0 writer.
#[derive(Debug)]
pub struct RawConnection {
    config: SimConfig,
    /// Position in `config.mqtt.brokers` of the broker in use.
    current: usize,
    writer: OwnedWriteHalf,
    closed: oneshot::Receiver<()>,
    buf: Vec<u8>,
    last_write: Instant,
    delivery: Delivery,
}

impl RawConnection {
    /// Connects and waits for a successful CONNACK, retrying within the connect timeout.
    ///
    /// # Errors
    /// [`TransportError::Unreachable`] or [`TransportError::Refused`].
    pub async fn connect(config: &SimConfig) -> Result<Self, TransportError> {
        let (mut current, mut delivery) = (0, Delivery::default());
        let failovers = &mut delivery.failovers;
        let (writer, closed) = connect_with_retry(config, &mut current, failovers).await?;
        Ok(Self {
            config: config.clone(),
            current,
            writer,
            closed,
            buf: Vec::with_capacity(FLUSH_AT + 70 * 1024),
            last_write: Instant::now(),
            delivery,
        })
    }

    fn broker(&self) -> &BrokerAddr {
        &self.config.mqtt.brokers[self.current]
    }

    /// Encodes one PUBLISH into the buffer; writes the buffer when it is full.
    ///
    /// # Errors
    /// When the connection fails and cannot be re-established.
    pub async fn send(&mut self, topic: &str, payload: &[u8]) -> Result<(), TransportError> {
        encode_publish(&mut self.buf, topic, payload, None, false);
        self.delivery.sent += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the buffer out (adding a PINGREQ when the line has been quiet for half the
    /// keep-alive). A failed write counts its messages lost and reconnects.
    ///
    /// # Errors
    /// When the connection fails and cannot be re-established.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        // The reader saw the broker close the connection: reconnect before writing, so this
        // batch goes to the new connection instead of into a dead socket.
        if self.closed.try_recv() != Err(TryRecvError::Empty) {
            tracing::warn!(broker = %self.broker(), "broker closed the connection; reconnecting");
            self.delivery.errors += 1;
            self.reconnect().await?;
        }
        if self.buf.is_empty() {
            let keep_alive = Duration::from_secs(self.config.mqtt.settings.keep_alive_secs);
            if self.last_write.elapsed() < keep_alive / 2 {
                return Ok(());
            }
            self.buf.extend_from_slice(&PINGREQ);
        }
        let written = self.writer.write_all(&self.buf).await;
        self.buf.clear();
        // Every message sent is acknowledged (written), lost, or was in this buffer.
        let buffered = self.delivery.sent - self.delivery.acknowledged - self.delivery.lost;
        if let Err(e) = written {
            tracing::warn!(broker = %self.broker(), error = %e, lost = buffered, "connection lost; reconnecting");
            self.delivery.lost += buffered;
            self.delivery.errors += 1;
            return self.reconnect().await;
        }
        self.delivery.acknowledged += buffered;
        self.last_write = Instant::now();
        Ok(())
    }

    async fn reconnect(&mut self) -> Result<(), TransportError> {
        let failovers = &mut self.delivery.failovers;
        (self.writer, self.closed) =
            connect_with_retry(&self.config, &mut self.current, failovers).await?;
        self.last_write = Instant::now();
        Ok(())
    }

    /// Current counters.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// Flushes, sends DISCONNECT and waits up to `timeout` for the broker to close the
    /// connection, which confirms it processed everything. Unconfirmed messages count as lost.
    pub async fn finish(mut self, timeout: Duration) -> Delivery {
        if self.flush().await.is_err() {
            return self.delivery;
        }
        let closed = disconnect(&mut self.writer, &mut self.closed);
        let outcome = tokio::time::timeout(timeout, closed).await;
        if !matches!(outcome, Ok(Ok(()))) {
            tracing::warn!(broker = %self.broker(), ?outcome, "broker did not confirm the end of the stream");
            self.delivery.errors += 1;
            self.delivery.lost = self.delivery.sent;
            self.delivery.acknowledged = 0;
        }
        self.delivery
    }
}

/// Sends DISCONNECT and waits for the broker to close the connection, which Mosquitto does
/// only after it has processed every packet before.
async fn disconnect(
    writer: &mut OwnedWriteHalf,
    closed: &mut oneshot::Receiver<()>,
) -> std::io::Result<()> {
    writer.write_all(&DISCONNECT).await?;
    writer.shutdown().await?;
    // Err means the reader task saw an error rather than a clean close; both end it.
    let _ = closed.await;
    Ok(())
}

/// Connects once to `broker` with a clean session under the configured client id and
/// disconnects, which makes the broker drop any session stored for that id.
///
/// # Errors
/// When the broker cannot be reached or refuses the connection.
pub async fn forget_session(config: &SimConfig, broker: &BrokerAddr) -> Result<(), TransportError> {
    if config.mqtt.security.tls() {
        // This plain writer cannot speak TLS; the broker expires the session on its own
        // (Mosquitto: persistent_client_expiration).
        return Ok(());
    }
    let (mut writer, mut closed) = connect_once(config, broker).await?;
    Ok(disconnect(&mut writer, &mut closed).await?)
}

/// Connects and completes the MQTT handshake, retrying with a growing pause until the
/// connect timeout, which also bounds each attempt (a silent host, a slow DNS lookup). The
/// first attempt goes to the broker at `current`, each next one to the next broker of the list
/// (counted in `failovers`). Every failed attempt is a warning, so that an operator who pointed
/// the simulator at the wrong place sees it at once.
async fn connect_with_retry(
    config: &SimConfig,
    current: &mut usize,
    failovers: &mut u64,
) -> Result<Link, TransportError> {
    let brokers = &config.mqtt.brokers;
    let deadline = Instant::now() + config.connect_timeout;
    let mut backoff = config.mqtt.backoff();
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        let broker = &brokers[*current];
        let error = match tokio::time::timeout_at(deadline, connect_once(config, broker)).await {
            Ok(Ok(link)) => return Ok(link),
            // A refusal is final with one broker (a login problem); with a list, another
            // broker may take us (a NATS node that is still recovering refuses for a while).
            Ok(Err(e @ TransportError::Refused { .. })) if brokers.len() == 1 => return Err(e),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer".to_owned(),
        };
        let pause = backoff.next_delay();
        let give_up = Instant::now() + pause >= deadline;
        let retry_in = (!give_up).then_some(pause);
        tracing::warn!(%broker, attempt, %error, ?retry_in, "cannot connect to the MQTT broker");
        if give_up {
            return Err(TransportError::Unreachable {
                addr: broker_list(config),
                timeout: config.connect_timeout,
                attempts: attempt,
                last_error: error,
            });
        }
        if brokers.len() > 1 {
            *current = (*current + 1) % brokers.len();
            *failovers += 1;
            tracing::info!(broker = %brokers[*current], "failing over to the next broker");
        }
        tokio::time::sleep(pause).await;
    }
}

async fn connect_once(config: &SimConfig, broker: &BrokerAddr) -> Result<Link, TransportError> {
    let mut stream = TcpStream::connect((broker.host.as_str(), broker.port)).await?;
    stream.set_nodelay(true)?;
    let keep_alive = u16::try_from(config.mqtt.settings.keep_alive_secs).unwrap_or(u16::MAX);
    let security = &config.mqtt.security;
    let login = security
        .username()
        .map(|user| (user, security.password().map(Secret::expose)));
    let mut connect = Vec::new();
    encode_connect(&mut connect, &config.mqtt.client_id, keep_alive, login);
    stream.write_all(&connect).await?;
    let mut connack = [0_u8; CONNACK_LEN];
    tokio::time::timeout(CONNACK_TIMEOUT, stream.read_exact(&mut connack))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no CONNACK"))??;
    check_connack(connack).map_err(|e| TransportError::Refused {
        addr: broker.to_string(),
        reason: match e {
            WireError::Refused(code) => format!("CONNACK return code {code}"),
            other => other.to_string(),
        },
    })?;
    let (mut reader, writer) = stream.into_split();
    let (closed_tx, closed) = oneshot::channel();
    // The broker only sends PINGRESP from here on; drain until it closes the connection.
    tokio::spawn(async move {
        let mut sink = [0_u8; 512];
        while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
        let _ = closed_tx.send(());
    });
    Ok((writer, closed))
}
