//! What a WebSocket client sends the gateway after the upgrade, as any bytes: the gateway must
//! never panic, and no message it takes in may exceed its frame limit.
//!
//! The bytes take the path of `/ws` (`gateway::http::ws`) without a socket: cut into chunks as
//! a connection might deliver them, through the gateway's `FrameLimit`, into actix-ws's
//! decoder with the same `max_frame_size`, and every item the client task would receive is
//! decided by `gateway::http::client_message::classify` until it ends the connection.
//!
//! Input layout: byte 0 sets the chunk size (0: all at once, else 1 to 255 bytes), byte 1
//! picks the limit (`ws.max_frame_bytes`: 125, 126, 1 000 or the default 4 096); the rest is
//! what the client sends: masked frames.
#![no_main]

use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpRequest};
use actix_ws::{Item, Message};
use futures_util::{FutureExt, Stream, StreamExt};
use gateway::http::client_message::{Incoming, classify};
use gateway::http::frame_limit::FrameLimit;
use libfuzzer_sys::fuzz_target;

/// The limits a gateway may be configured with: the smallest allowed, the control-frame
/// boundary, a round one and the default.
const LIMITS: [usize; 4] = [125, 126, 1_000, 4_096];

/// The largest payload of a control frame (RFC 6455, 5.5): a pong echoes at most this.
const MAX_CONTROL_BYTES: usize = 125;

fuzz_target!(|data: &[u8]| {
    let [cut, limit, sent @ ..] = data else {
        return;
    };
    let limit = LIMITS[usize::from(*limit) % LIMITS.len()];
    let chunk = if *cut == 0 {
        sent.len().max(1)
    } else {
        usize::from(*cut)
    };
    let chunks: Vec<Result<Bytes, PayloadError>> = sent
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(FrameLimit::new(futures_util::stream::iter(chunks), limit));

    let req = upgrade_request();
    let body = web::Payload::from_request(&req, &mut Payload::from(stream))
        .now_or_never()
        .expect("a payload is ready at once")
        .expect("a payload is always extracted");
    // The response holds the sending half: dropped, actix-ws would stop reading.
    let (_response, _session, messages) =
        actix_ws::handle(&req, body).expect("the request is a valid upgrade");
    let mut messages = messages.max_frame_size(limit);

    let mut fragmented: Option<usize> = None;
    // Every frame takes at least two bytes: more items than that means the stream loops.
    for _ in 0..=sent.len() / 2 + 1 {
        let item = messages
            .next()
            .now_or_never()
            .expect("the stream never waits: all input is there");
        if let Some(Ok(message)) = &item {
            check_size(message, limit, &mut fragmented);
        }
        match classify(item) {
            Incoming::Alive => {}
            Incoming::Ping(bytes) => assert!(bytes.len() <= MAX_CONTROL_BYTES),
            Incoming::Gone | Incoming::Refused(_) => return,
        }
    }
    panic!("the message stream did not end");
});

/// Asserts that `message` keeps within `limit`, alone and with the earlier fragments of its
/// message (`fragmented`: their size so far).
fn check_size(message: &Message, limit: usize, fragmented: &mut Option<usize>) {
    match message {
        Message::Text(text) => assert!(text.len() <= limit, "text of {}", text.len()),
        Message::Binary(bytes) => assert!(bytes.len() <= limit, "binary of {}", bytes.len()),
        Message::Ping(bytes) | Message::Pong(bytes) => {
            assert!(
                bytes.len() <= MAX_CONTROL_BYTES,
                "control frame of {}",
                bytes.len()
            );
        }
        Message::Continuation(item) => {
            let (total, done) = match item {
                Item::FirstText(b) | Item::FirstBinary(b) => (b.len(), false),
                Item::Continue(b) => (fragmented.unwrap_or(0) + b.len(), false),
                Item::Last(b) => (fragmented.unwrap_or(0) + b.len(), true),
            };
            assert!(total <= limit, "fragmented message of {total} bytes so far");
            *fragmented = (!done).then_some(total);
        }
        Message::Close(_) | Message::Nop => {}
    }
}

/// A browser's upgrade request to `/ws`.
fn upgrade_request() -> HttpRequest {
    actix_web::test::TestRequest::get()
        .uri("/ws")
        .insert_header(("upgrade", "websocket"))
        .insert_header(("connection", "Upgrade"))
        .insert_header(("sec-websocket-version", "13"))
        .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="))
        .to_http_request()
}
