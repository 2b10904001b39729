//! What one WebSocket client may hold in the gateway's memory: the bytes queued for its socket
//! and not yet taken by the connection's writer are counted ([`Outbox`]), and a client task
//! queues a message only while they are below `ws.client_buffer_bytes`.
//!
//! actix-ws queues messages in a channel counted in messages, not bytes, and encodes all that
//! are queued into one chunk for the connection's writer, which asks for more only when its
//! own buffer is below 32 KiB; a client that does not read would otherwise pin every message
//! queued for it. [`CountingBody`] wraps the response body: it hands the writer a chunk in
//! pieces of [`PIECE_BYTES`] (so the writer's buffer stays small) and counts a piece as gone
//! once the writer asks for the next one, which it does only after writing it out (but for
//! less than its 32 KiB buffer) to the socket.

use std::mem;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::Bytes;
use actix_ws::Message;
use tokio::sync::Notify;

use crate::hub::ClientSlot;

/// The most handed to the connection's writer at once: below its 32 KiB buffer, so that it
/// writes each piece out before asking for the next.
pub const PIECE_BYTES: usize = 16 * 1024;

/// The bytes queued for one client's socket.
#[derive(Debug)]
pub struct Outbox {
    budget: usize,
    queued: AtomicUsize,
    drained: Notify,
}

impl Outbox {
    /// An empty outbox that holds `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            queued: AtomicUsize::new(0),
            drained: Notify::new(),
        }
    }

    /// Waits until `size` more bytes fit (a larger message waits for an empty outbox), then
    /// counts them as queued.
    pub async fn reserve(&self, size: usize) {
        loop {
            let queued = self.queued.load(Ordering::Acquire);
            if queued == 0 || queued.saturating_add(size) <= self.budget {
                self.queued.fetch_add(size, Ordering::AcqRel);
                return;
            }
            // A drain between the load and here leaves a permit: no wake-up is lost.
            self.drained.notified().await;
        }
    }

    /// Bytes queued and not yet taken by the connection's writer.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    fn drain(&self, taken: usize) {
        let _ = (self.queued).fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
            Some(queued.saturating_sub(taken))
        });
        self.drained.notify_one();
    }
}

/// The size of `message` as a server frame on the wire (unmasked): what the response body
/// yields for it.
pub fn wire_size(message: &Message) -> usize {
    let payload = match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) | Message::Ping(bytes) | Message::Pong(bytes) => bytes.len(),
        Message::Close(reason) => reason
            .as_ref()
            .map_or(0, |r| 2 + r.description.as_ref().map_or(0, String::len)),
        Message::Continuation(_) | Message::Nop => 0,
    };
    let header = match payload {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    };
    header + payload
}

/// A WebSocket response body that hands its chunks to the writer in pieces and tells its
/// [`Outbox`] what the writer has written, and that holds the client's slot for as long as the
/// connection lives: a client whose task gave up while its socket still holds bytes still
/// counts against `ws.max_clients`.
pub struct CountingBody {
    inner: BoxBody,
    /// The rest of the chunk being handed over.
    pending: Bytes,
    /// The size of the last piece handed over, written out once the writer asks again.
    handed: usize,
    outbox: std::sync::Arc<Outbox>,
    _slot: ClientSlot,
}

impl CountingBody {
    /// `inner`, counted into `outbox`, holding `slot`.
    pub fn new(inner: BoxBody, outbox: std::sync::Arc<Outbox>, slot: ClientSlot) -> Self {
        Self {
            inner,
            pending: Bytes::new(),
            handed: 0,
            outbox,
            _slot: slot,
        }
    }
}

impl MessageBody for CountingBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = &mut *self;
        // The writer asks only once its buffer has room: the last piece is (nearly) written.
        this.outbox.drain(mem::take(&mut this.handed));
        if this.pending.is_empty() {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.pending = chunk,
                other => return other,
            }
        }
        let piece = this.pending.split_to(this.pending.len().min(PIECE_BYTES));
        this.handed = piece.len();
        Poll::Ready(Some(Ok(piece)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn wire_sizes_follow_the_frame_header_lengths() {
        let text = |n: usize| Message::Text("x".repeat(n).into());
        assert_eq!(wire_size(&text(0)), 2);
        assert_eq!(wire_size(&text(125)), 127);
        assert_eq!(wire_size(&text(126)), 130);
        assert_eq!(wire_size(&text(65_535)), 65_539);
        assert_eq!(wire_size(&text(65_536)), 65_546);
        assert_eq!(wire_size(&Message::Ping(Bytes::new())), 2);
    }

    #[tokio::test]
    async fn a_full_outbox_waits_for_a_drain() {
        let outbox = Arc::new(Outbox::new(100));
        outbox.reserve(60).await;
        outbox.reserve(40).await;
        let waiting = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { outbox.reserve(10).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "100 of 100 bytes queued: no room");
        outbox.drain(50);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("room after a drain")
            .unwrap();
        assert_eq!(outbox.queued(), 60);
    }

    #[test]
    fn the_writer_gets_pieces_and_a_piece_counts_as_gone_when_it_asks_again() {
        let hub = crate::fixtures::hub();
        let outbox = Arc::new(Outbox::new(1 << 20));
        let chunk = Bytes::from(vec![b'x'; 40_000]);
        let body = BoxBody::new(chunk.clone());
        let slot = hub.try_admit(1).unwrap();
        let mut body = CountingBody::new(body, Arc::clone(&outbox), slot);
        outbox.queued.store(40_000, Ordering::Release);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut next = || match Pin::new(&mut body).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(piece))) => Some(piece.len()),
            Poll::Ready(None) => None,
            other => panic!("{other:?}"),
        };
        assert_eq!(next(), Some(PIECE_BYTES));
        assert_eq!(outbox.queued(), 40_000, "handed over, not yet written");
        assert_eq!(next(), Some(PIECE_BYTES));
        assert_eq!(outbox.queued(), 40_000 - PIECE_BYTES);
        assert_eq!(next(), Some(40_000 - 2 * PIECE_BYTES));
        assert_eq!(next(), None);
        assert_eq!(outbox.queued(), 0);
        assert_eq!(hub.client_count(), 1, "the body holds the client's slot");
        drop(body);
        assert_eq!(hub.client_count(), 0);
    }

    #[tokio::test]
    async fn a_message_larger_than_the_budget_goes_alone() {
        let outbox = Outbox::new(100);
        outbox.reserve(500).await;
        assert_eq!(outbox.queued(), 500);
        outbox.drain(1_000);
        assert_eq!(outbox.queued(), 0, "never below zero");
    }
}
