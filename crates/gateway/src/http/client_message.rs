//! What a WebSocket client's messages mean to its task, decided without any I/O.
//!
//! A browser has nothing to tell the gateway: whatever it sends proves it alive and is
//! otherwise ignored, a ping is answered, Close ends the connection, and a frame that is too
//! large or malformed closes it with the matching code. [`classify`] is that decision as a pure
//! function of one item of the client's message stream, so it can be unit tested and fuzzed
//! (`fuzz/fuzz_targets/ws_client_message.rs`) apart from the socket.

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_ws::{CloseCode, Message, ProtocolError};

/// What one item of a client's message stream asks of its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message other than Close or Ping: the client is alive; what it says is ignored.
    Alive,
    /// A ping: the client is alive and gets a pong carrying the same bytes.
    Ping(Bytes),
    /// Close, or the end of the stream: the client is gone.
    Gone,
    /// An oversized frame or message ([`CloseCode::Size`]) or a malformed one
    /// ([`CloseCode::Protocol`]): the connection is closed with this code.
    Refused(CloseCode),
}

/// Decides what the client task does with `item`, the next item of the client's stream
/// (`None` when the stream has ended).
pub fn classify(item: Option<Result<Message, ProtocolError>>) -> Incoming {
    match item {
        Some(Ok(Message::Close(_))) | None => Incoming::Gone,
        Some(Ok(Message::Ping(bytes))) => Incoming::Ping(bytes),
        Some(Ok(_)) => Incoming::Alive,
        Some(Err(ProtocolError::Overflow)) => Incoming::Refused(CloseCode::Size),
        Some(Err(ProtocolError::Io(e))) if is_overflow(&e) => Incoming::Refused(CloseCode::Size),
        Some(Err(e)) => {
            tracing::debug!(error = %e, "protocol error");
            Incoming::Refused(CloseCode::Protocol)
        }
    }
}

/// Whether the payload error under `e` is [`FrameLimit`](super::frame_limit::FrameLimit)'s
/// refusal (actix-ws wraps payload errors in an I/O error).
fn is_overflow(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<PayloadError>())
        .is_some_and(|inner| matches!(inner, PayloadError::Overflow))
}

#[cfg(test)]
mod tests {
    use actix_ws::{CloseReason, Item};

    use super::*;

    fn ok(message: Message) -> Incoming {
        classify(Some(Ok(message)))
    }

    fn err(error: ProtocolError) -> Incoming {
        classify(Some(Err(error)))
    }

    #[test]
    fn content_proves_the_client_alive_and_is_ignored() {
        assert_eq!(
            ok(Message::Text("{\"type\":\"hello\"}".into())),
            Incoming::Alive
        );
        assert_eq!(
            ok(Message::Binary(Bytes::from_static(b"\0\xff"))),
            Incoming::Alive
        );
        assert_eq!(ok(Message::Pong(Bytes::new())), Incoming::Alive);
        let fragment = Item::FirstText(Bytes::from_static(b"par"));
        assert_eq!(ok(Message::Continuation(fragment)), Incoming::Alive);
        assert_eq!(ok(Message::Nop), Incoming::Alive);
    }

    #[test]
    fn a_ping_is_answered_with_its_bytes() {
        let bytes = Bytes::from_static(b"are you there");
        assert_eq!(ok(Message::Ping(bytes.clone())), Incoming::Ping(bytes));
    }

    #[test]
    fn close_or_the_end_of_the_stream_means_gone() {
        assert_eq!(ok(Message::Close(None)), Incoming::Gone);
        let reason = CloseReason::from(CloseCode::Away);
        assert_eq!(ok(Message::Close(Some(reason))), Incoming::Gone);
        assert_eq!(classify(None), Incoming::Gone);
    }

    #[test]
    fn oversized_input_closes_with_1009_and_malformed_input_with_1002() {
        assert_eq!(
            err(ProtocolError::Overflow),
            Incoming::Refused(CloseCode::Size)
        );
        // How actix-ws passes on FrameLimit's refusal.
        let refused = std::io::Error::other(PayloadError::Overflow);
        assert_eq!(
            err(ProtocolError::Io(refused)),
            Incoming::Refused(CloseCode::Size)
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            err(ProtocolError::Io(reset)),
            Incoming::Refused(CloseCode::Protocol)
        );
        let incomplete = std::io::Error::other(PayloadError::Incomplete(None));
        assert_eq!(
            err(ProtocolError::Io(incomplete)),
            Incoming::Refused(CloseCode::Protocol)
        );
        assert_eq!(
            err(ProtocolError::UnmaskedFrame),
            Incoming::Refused(CloseCode::Protocol)
        );
        assert_eq!(
            err(ProtocolError::BadOpCode),
            Incoming::Refused(CloseCode::Protocol)
        );
    }
}
