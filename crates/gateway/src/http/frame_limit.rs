//! The size limit on what a WebSocket client sends, enforced from the frame headers.
//!
//! actix-ws checks a frame's size only once the whole frame is buffered, and reads all the
//! bytes the connection has before it decodes any: a header declaring 2^40 bytes followed by a
//! stream of data makes the gateway buffer it all. [`FrameLimit`] sits between the connection's
//! payload and actix-ws's decoder. It reads every frame header as the bytes pass (without
//! copying them) and fails the stream as soon as a header declares a frame, or a fragmented
//! message so far, longer than the limit; the client task then closes with 1009. So a client
//! costs at most the limit plus one read of the socket, whatever it declares.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// Where the reader stands in the client's frames.
#[derive(Debug)]
enum Position {
    /// In a header, with `len` of its bytes so far.
    Header { bytes: [u8; MAX_HEADER], len: usize },
    /// In a payload, with this many bytes to go.
    Payload(u64),
    /// The limit was exceeded: the stream has ended.
    Refused,
}

/// What one complete frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: u8,
    payload: u64,
}

/// A payload stream that fails with [`PayloadError::Overflow`] at the first frame header
/// declaring more than `max_bytes`, alone or together with the earlier fragments of its
/// message. Malformed headers pass: the decoder behind refuses them.
pub struct FrameLimit<S> {
    inner: S,
    max_bytes: u64,
    position: Position,
    /// Payload bytes of the fragmented message under way; `None` between messages.
    message: Option<u64>,
}

impl<S> FrameLimit<S> {
    /// Limits the frames read from `inner` to `max_bytes` each, and messages likewise.
    pub fn new(inner: S, max_bytes: usize) -> Self {
        Self {
            inner,
            max_bytes: max_bytes as u64,
            position: Position::Header {
                bytes: [0; MAX_HEADER],
                len: 0,
            },
            message: None,
        }
    }

    /// Follows the frames through `chunk`; `Err` at the first one over the limit.
    fn check(&mut self, mut chunk: &[u8]) -> Result<(), PayloadError> {
        while !chunk.is_empty() {
            match &mut self.position {
                Position::Refused => return Err(PayloadError::Overflow),
                Position::Payload(left) => {
                    let n = usize::try_from(*left).map_or(chunk.len(), |l| l.min(chunk.len()));
                    *left -= n as u64;
                    chunk = &chunk[n..];
                    if *left == 0 {
                        self.position = Position::Header {
                            bytes: [0; MAX_HEADER],
                            len: 0,
                        };
                    }
                }
                Position::Header { bytes, len } => {
                    let n = (header_len(&bytes[..*len]) - *len).min(chunk.len());
                    bytes[*len..*len + n].copy_from_slice(&chunk[..n]);
                    *len += n;
                    chunk = &chunk[n..];
                    if let Some(header) = parse_header(&bytes[..*len]) {
                        self.admit(header)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves past a complete header, or refuses it.
    fn admit(&mut self, header: Header) -> Result<(), PayloadError> {
        let is_data = header.opcode & 0x8 == 0;
        let total = if is_data {
            // A new message starts with a text or binary frame; continuations add to it.
            let before = if header.opcode == 0 {
                self.message.unwrap_or(0)
            } else {
                0
            };
            before.saturating_add(header.payload)
        } else {
            header.payload
        };
        if header.payload > self.max_bytes || total > self.max_bytes {
            self.position = Position::Refused;
            return Err(PayloadError::Overflow);
        }
        if is_data {
            self.message = (!header.fin).then_some(total);
        }
        self.position = if header.payload == 0 {
            Position::Header {
                bytes: [0; MAX_HEADER],
                len: 0,
            }
        } else {
            Position::Payload(header.payload)
        };
        Ok(())
    }
}

/// How long the header starting with `bytes` is: 2 until the length byte is known.
fn header_len(bytes: &[u8]) -> usize {
    let Some(&second) = bytes.get(1) else {
        return 2;
    };
    let extended = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 == 0 { 0 } else { 4 };
    2 + extended + mask
}

/// The header held in `bytes`, once all of it is there.
fn parse_header(bytes: &[u8]) -> Option<Header> {
    if bytes.len() < 2 || bytes.len() < header_len(bytes) {
        return None;
    }
    let payload = match bytes[1] & 0x7F {
        126 => u64::from(u16::from_be_bytes([bytes[2], bytes[3]])),
        127 => u64::from_be_bytes(bytes[2..10].try_into().ok()?),
        n => u64::from(n),
    };
    Some(Header {
        fin: bytes[0] & 0x80 != 0,
        opcode: bytes[0] & 0x0F,
        payload,
    })
}

impl<S> Stream for FrameLimit<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if matches!(self.position, Position::Refused) {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx));
        Poll::Ready(match item {
            Some(Ok(chunk)) => Some(self.check(&chunk).map(|()| chunk)),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    /// A masked client frame header.
    fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut h = vec![(u8::from(fin) << 7) | opcode];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=65_535 => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut f = header(fin, opcode, len as u64);
        f.resize(f.len() + len, b'x');
        f
    }

    /// Feeds `bytes` in chunks of `chunk` bytes; how many chunks passed before a refusal.
    async fn feed(bytes: &[u8], chunk: usize, max: usize) -> Result<usize, usize> {
        let chunks: Vec<_> = bytes
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut limit = FrameLimit::new(futures_util::stream::iter(chunks), max);
        let mut passed = 0;
        while let Some(item) = limit.next().await {
            match item {
                Ok(_) => passed += 1,
                Err(PayloadError::Overflow) => {
                    assert!(limit.next().await.is_none(), "the stream ends at a refusal");
                    return Err(passed);
                }
                Err(e) => panic!("{e}"),
            }
        }
        Ok(passed)
    }

    #[tokio::test]
    async fn frames_within_the_limit_pass_however_they_are_cut() {
        let mut bytes = frame(true, 0x1, 100);
        bytes.extend(frame(true, 0x9, 0));
        bytes.extend(frame(false, 0x2, 1_000));
        bytes.extend(frame(true, 0xA, 125));
        bytes.extend(frame(true, 0x0, 3_096));
        bytes.extend(frame(true, 0x1, 4_096));
        bytes.extend(frame(true, 0x8, 2));
        for chunk in [1, 2, 3, 13, 14, 1_000, bytes.len()] {
            assert!(
                feed(&bytes, chunk, 4_096).await.is_ok(),
                "chunks of {chunk}"
            );
        }
    }

    #[tokio::test]
    async fn a_header_over_the_limit_is_refused_before_its_payload() {
        let huge = header(true, 0x1, 1 << 40);
        assert_eq!(feed(&huge, huge.len(), 4_096).await, Err(0));
        // Cut anywhere, the header alone is enough.
        assert_eq!(feed(&huge, 1, 4_096).await, Err(huge.len() - 1));
        let mut bytes = frame(true, 0x1, 10);
        bytes.extend(header(true, 0x2, 4_097));
        assert_eq!(feed(&bytes, bytes.len(), 4_096).await, Err(0));
    }

    #[tokio::test]
    async fn a_fragmented_message_over_the_limit_is_refused() {
        let mut bytes = frame(false, 0x1, 3_000);
        // A control frame between fragments counts for nothing.
        bytes.extend(frame(true, 0x9, 100));
        bytes.extend(frame(false, 0x0, 1_000));
        let fits = bytes.clone();
        bytes.extend(header(true, 0x0, 97));
        assert_eq!(feed(&bytes, bytes.len(), 4_096).await, Err(0));
        // The same fragments end the message at 4 096 bytes: the next message starts afresh.
        let mut bytes = fits;
        bytes.extend(frame(true, 0x0, 96));
        bytes.extend(frame(true, 0x1, 4_096));
        assert!(feed(&bytes, 7, 4_096).await.is_ok());
    }
}
