//! A lean MQTT 3.1.1 publisher over one TCP connection: QoS 0 or pipelined QoS 1.
//!
//! Load generation needs more messages per second than a general client gives on two cores,
//! so this writes PUBLISH packets straight into a buffered socket and, for QoS 1, counts the
//! PUBACKs in a reader task. A semaphore bounds the unacknowledged messages, so a slow broker
//! slows the publisher instead of growing memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use service_kit::mqtt_wire::{
    CONNACK_LEN, DISCONNECT, PUBACK, RemainingLength, WireError, check_connack, encode_connect,
    encode_publish, packet_type,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Most QoS 1 messages written and not yet acknowledged.
const MAX_INFLIGHT: usize = 20_000;
/// Socket write buffer: many small packets per system call.
const WRITE_BUFFER: usize = 256 * 1024;

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Socket error.
    #[error("broker connection: {0}")]
    Io(#[from] std::io::Error),
    /// The broker refused the connection or did not answer with a CONNACK.
    #[error(transparent)]
    Refused(#[from] WireError),
    /// Not every QoS 1 message was acknowledged in time.
    #[error("{missing} of {sent} messages not acknowledged within {timeout:?}")]
    Unacknowledged {
        /// Messages written.
        sent: u64,
        /// Messages without PUBACK.
        missing: u64,
        /// How long was waited.
        timeout: Duration,
    },
}

/// One publishing connection.
pub struct Publisher {
    writer: BufWriter<OwnedWriteHalf>,
    qos: u8,
    next_id: u16,
    sent: u64,
    acked: Arc<AtomicU64>,
    window: Arc<Semaphore>,
    reader: JoinHandle<()>,
    packet: Vec<u8>,
}

impl Publisher {
    /// Connects to `127.0.0.1:port` with a clean session and no keep-alive (load runs may
    /// pause between phases). `qos` is 0 or 1.
    ///
    /// # Errors
    /// When the broker cannot be reached or refuses the connection.
    pub async fn connect(port: u16, client_id: &str, qos: u8) -> Result<Self, PublishError> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        let mut connect = Vec::new();
        // Keep-alive off: load runs may pause between phases.
        encode_connect(&mut connect, client_id, 0, None);
        stream.write_all(&connect).await?;
        let mut connack = [0_u8; CONNACK_LEN];
        stream.read_exact(&mut connack).await?;
        check_connack(connack)?;
        let (read, write) = stream.into_split();
        let acked = Arc::new(AtomicU64::new(0));
        let window = Arc::new(Semaphore::new(MAX_INFLIGHT));
        let reader = tokio::spawn(count_acks(read, Arc::clone(&acked), Arc::clone(&window)));
        Ok(Self {
            writer: BufWriter::with_capacity(WRITE_BUFFER, write),
            qos: qos.min(1),
            next_id: 0,
            sent: 0,
            acked,
            window,
            reader,
            packet: Vec::with_capacity(256),
        })
    }

    /// Queues one PUBLISH (written when the buffer fills or on [`Publisher::flush`]).
    ///
    /// # Errors
    /// On a socket error.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
    ) -> Result<(), PublishError> {
        let id = if self.qos == 1 {
            if self.window.available_permits() == 0 {
                // Acks only arrive for what the broker has seen.
                self.writer.flush().await?;
            }
            // expect: the semaphore is never closed.
            self.window
                .acquire()
                .await
                .expect("open semaphore")
                .forget();
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            Some(self.next_id)
        } else {
            None
        };
        self.packet.clear();
        encode_publish(&mut self.packet, topic, payload, id, retain);
        self.writer.write_all(&self.packet).await?;
        self.sent += 1;
        Ok(())
    }

    /// Writes everything buffered to the socket.
    ///
    /// # Errors
    /// On a socket error.
    pub async fn flush(&mut self) -> Result<(), PublishError> {
        self.writer.flush().await?;
        Ok(())
    }

    /// Messages queued so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Flushes, waits (QoS 1) until every message is acknowledged, and disconnects.
    ///
    /// # Errors
    /// On a socket error, or when acknowledgements are missing after `timeout`.
    pub async fn finish(mut self, timeout: Duration) -> Result<u64, PublishError> {
        self.writer.flush().await?;
        if self.qos == 1 {
            let deadline = tokio::time::Instant::now() + timeout;
            while self.acked.load(Ordering::Acquire) < self.sent {
                if tokio::time::Instant::now() >= deadline {
                    return Err(PublishError::Unacknowledged {
                        sent: self.sent,
                        missing: self.sent - self.acked.load(Ordering::Acquire),
                        timeout,
                    });
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.writer.write_all(&DISCONNECT).await?;
        self.writer.flush().await?;
        self.reader.abort();
        Ok(self.sent)
    }
}

/// Reads the broker's packets, counting PUBACKs and returning their window permits.
async fn count_acks(
    read: tokio::net::tcp::OwnedReadHalf,
    acked: Arc<AtomicU64>,
    window: Arc<Semaphore>,
) {
    let mut read = tokio::io::BufReader::with_capacity(64 * 1024, read);
    loop {
        let Ok(header) = read.read_u8().await else {
            return;
        };
        let mut length = RemainingLength::default();
        let len = loop {
            let Ok(byte) = read.read_u8().await else {
                return;
            };
            match length.push(byte) {
                Ok(Some(len)) => break len,
                Ok(None) => {}
                // A broken stream: no more acknowledgements can be read from it.
                Err(_) => return,
            }
        };
        let mut body = vec![0_u8; len];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        if packet_type(header) == PUBACK {
            acked.fetch_add(1, Ordering::AcqRel);
            window.add_permits(1);
        }
    }
}
