//! What a hostile client may cost: a WebSocket frame, a fragmented message or a request body
//! declaring far more than the limits is refused from its header, and the gateway's memory
//! stays put while the client keeps streaming.
//!
//! The clients here speak raw TCP, because a WebSocket library would refuse to send such
//! frames at all.

use std::time::Duration;

use test_support::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use crate::helpers::TestGateway;

/// What the client streams after a header that declares far more.
const STREAM_BYTES: usize = 64 << 20;
/// How much the gateway's resident memory may grow meanwhile.
const RSS_BOUND_KIB: u64 = 32 << 10;
/// The RFC 6455 close code for "message too big".
const CLOSE_TOO_BIG: u16 = 1009;

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// A Close frame with this code.
    Close(u16),
    /// The socket closed (or reset) without a Close frame.
    Socket,
    /// Neither within the timeout.
    Open,
}

/// A WebSocket handshake on a raw socket; panics unless the answer is 101.
async fn upgrade(gw: &TestGateway) -> TcpStream {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        gw.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// A masked client frame header: `fin`, `opcode`, the declared payload length.
fn frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 } else { 0 } | opcode];
    if len < 126 {
        header.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        header.push(0x80 | 126);
        header.extend_from_slice(&len.to_be_bytes());
    } else {
        header.push(0x80 | 127);
        header.extend_from_slice(&len.to_be_bytes());
    }
    // Mask key 0: the payload goes as it is.
    header.extend_from_slice(&[0; 4]);
    header
}

/// Reads server frames until a Close frame or the end of the socket.
async fn read_until_closed(mut reader: OwnedReadHalf) -> Ended {
    let mut buf = Vec::new();
    loop {
        // Every complete server frame in `buf` (server frames are not masked).
        while buf.len() >= 2 {
            let (len, start) = match buf[1] & 0x7F {
                126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10),
                126 | 127 => break,
                n => (u64::from(n), 2),
            };
            let end = start + usize::try_from(len).unwrap();
            if buf.len() < end {
                break;
            }
            if buf[0] & 0x0F == 0x8 {
                let code = buf
                    .get(start..start + 2)
                    .map_or(1005, |c| u16::from_be_bytes(c.try_into().unwrap()));
                return Ended::Close(code);
            }
            buf.drain(..end);
        }
        let mut chunk = [0; 8192];
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ended::Socket,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Writes `head`, then up to [`STREAM_BYTES`] of zeros while the server reads them; returns how
/// the connection ended and the gateway's peak memory growth over the run, in KiB.
async fn stream_after(gw: &TestGateway, stream: TcpStream, head: &[u8]) -> (Ended, u64) {
    let before = gw.process.rss().unwrap().current_kib();
    let (reader, mut writer) = stream.into_split();
    let mut ended = tokio::spawn(read_until_closed(reader));
    let chunk = vec![0u8; 64 << 10];
    let mut sent = 0;
    let write = async {
        writer.write_all(head).await?;
        while sent < STREAM_BYTES {
            writer.write_all(&chunk).await?;
            sent += chunk.len();
        }
        std::io::Result::Ok(())
    };
    // Streaming ends when it is all sent, the socket fails, or the server has closed.
    let mut closed = None;
    tokio::select! {
        _ = write => {}
        result = &mut ended => closed = Some(result.unwrap()),
    }
    let closed = match closed {
        Some(closed) => closed,
        None => tokio::time::timeout(Duration::from_secs(5), ended)
            .await
            .map_or(Ended::Open, Result::unwrap),
    };
    let peak = gw.process.rss().unwrap().peak_kib();
    (closed, peak.saturating_sub(before))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_declaring_two_to_the_forty_bytes_is_refused_from_its_header() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &[]).await;
    let stream = upgrade(&gw).await;
    let (ended, grown) = stream_after(&gw, stream, &frame_header(true, 0x1, 1 << 40)).await;
    assert!(
        grown < RSS_BOUND_KIB,
        "the gateway grew by {grown} KiB ({ended:?})"
    );
    assert_eq!(ended, Ended::Close(CLOSE_TOO_BIG), "{}", gw.process.logs());
    // The gateway goes on serving.
    gw.wait_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_message_over_the_limit_is_refused_with_1009() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &[]).await;
    let stream = upgrade(&gw).await;
    let (reader, mut writer) = stream.into_split();
    let ended = tokio::spawn(read_until_closed(reader));
    // Each fragment is within ws.max_frame_bytes (4 KiB), the message is not.
    let fragment = vec![b'x'; 3_000];
    let mut message = frame_header(false, 0x1, 3_000);
    message.extend_from_slice(&fragment);
    for _ in 0..3 {
        message.extend_from_slice(&frame_header(false, 0x0, 3_000));
        message.extend_from_slice(&fragment);
    }
    writer.write_all(&message).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .map_or(Ended::Open, Result::unwrap);
    assert_eq!(ended, Ended::Close(CLOSE_TOO_BIG), "{}", gw.process.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_fragmented_message_is_accepted() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &[]).await;
    let stream = upgrade(&gw).await;
    let (reader, mut writer) = stream.into_split();
    let ended = tokio::spawn(read_until_closed(reader));
    // Two fragments and a ping between them, 2 000 bytes in all: within the limit.
    let mut message = frame_header(false, 0x1, 1_000);
    message.extend_from_slice(&[b'x'; 1_000]);
    message.extend_from_slice(&frame_header(true, 0x9, 0));
    message.extend_from_slice(&frame_header(true, 0x0, 1_000));
    message.extend_from_slice(&[b'x'; 1_000]);
    // And a second message of the same size.
    message.extend_from_slice(&frame_header(true, 0x1, 2_000));
    message.extend_from_slice(&[b'x'; 2_000]);
    writer.write_all(&message).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!ended.is_finished(), "{}", gw.process.logs());
    ended.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_declaring_two_to_the_forty_bytes_costs_nothing() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &[]).await;
    for head in [
        "POST /api/health HTTP/1.1\r\nHost: gw\r\nContent-Length: 1099511627776\r\n\r\n",
        "POST /api/health HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n\
         10000000000\r\n",
    ] {
        let stream = TcpStream::connect(gw.addr).await.unwrap();
        let (_, grown) = stream_after(&gw, stream, head.as_bytes()).await;
        assert!(
            grown < RSS_BOUND_KIB,
            "{head:?}: the gateway grew by {grown} KiB"
        );
    }
    gw.wait_healthy().await;
}
