//! The optional `id` of a reading: the sender's name for it, used to drop a resent copy.
//!
//! The contract allows a string or an integer of at most 64 bytes. An integer is kept as its
//! decimal text, so `{"id":7}` and `{"id":"7"}` name the same reading whatever JSON type a
//! re-encoding proxy emits. Ids up to 22 bytes (every integer, most counters and names) are
//! stored inline in the 24-byte value; longer ones (a UUID is 36) take one heap allocation.

use std::fmt;

/// Longest id accepted, in bytes (of the UTF-8 text).
pub const MAX_READING_ID_BYTES: usize = 64;

const INLINE: usize = 22;

/// Why a text cannot be a reading id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadingIdError {
    /// The empty string: a sender that sends `""` for every reading would see all but one
    /// dropped as duplicates, so it is refused loudly instead.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_READING_ID_BYTES`].
    #[error("is {0} bytes, over the limit of {MAX_READING_ID_BYTES}")]
    TooLong(usize),
}

/// A reading's id: non-empty text of at most [`MAX_READING_ID_BYTES`] bytes, 24 bytes in size.
///
/// Equal texts have equal representations (inline up to 22 bytes, zero-padded), so the
/// derived comparisons compare the text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReadingId(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl ReadingId {
    /// The id `text`, checked against the contract's limits.
    pub fn new(text: &str) -> Result<Self, ReadingIdError> {
        match text.len() {
            0 => Err(ReadingIdError::Empty),
            len if len > MAX_READING_ID_BYTES => Err(ReadingIdError::TooLong(len)),
            len if len <= INLINE => Ok(ReadingId::inline(text.as_bytes())),
            _ => Ok(ReadingId(Repr::Heap(text.into()))),
        }
    }

    /// The id of an integer `n`: its decimal text, without allocating.
    pub fn from_i64(n: i64) -> Self {
        ReadingId::from_digits(n < 0, n.unsigned_abs())
    }

    /// The id of an unsigned integer `n` (JSON integers above `i64::MAX` arrive as `u64`).
    pub fn from_u64(n: u64) -> Self {
        ReadingId::from_digits(false, n)
    }

    /// Decimal text of `magnitude` with an optional minus sign: at most 21 bytes, so inline.
    fn from_digits(negative: bool, mut magnitude: u64) -> Self {
        // Filled with '-', so the byte before the digits is the sign when there is one.
        let mut text = [b'-'; 21];
        let mut at = text.len();
        loop {
            at -= 1;
            text[at] = b'0' + (magnitude % 10) as u8;
            magnitude /= 10;
            if magnitude == 0 {
                break;
            }
        }
        ReadingId::inline(&text[at - usize::from(negative)..])
    }

    /// `text` (at most 22 bytes) stored inline.
    fn inline(text: &[u8]) -> Self {
        let mut bytes = [0; INLINE];
        bytes[..text.len()].copy_from_slice(text);
        ReadingId(Repr::Inline {
            len: text.len() as u8,
            bytes,
        })
    }

    /// The id's text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(text) => text.as_bytes(),
        }
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        // Inline bytes are a copy of a whole `str` or ASCII digits: the fallback never runs.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// Heap bytes this id owns beyond its own 24 bytes (0 for inline ids).
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Inline { .. } => 0,
            Repr::Heap(text) => text.len(),
        }
    }
}

impl fmt::Debug for ReadingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ReadingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_id_is_24_bytes() {
        assert_eq!(std::mem::size_of::<ReadingId>(), 24);
    }

    #[test]
    fn limits_of_the_contract() {
        assert_eq!(ReadingId::new(""), Err(ReadingIdError::Empty));
        assert!(ReadingId::new(&"x".repeat(64)).is_ok());
        assert_eq!(
            ReadingId::new(&"x".repeat(65)),
            Err(ReadingIdError::TooLong(65))
        );
        // Bytes, not chars: 22 two-byte chars are 44 bytes, 33 are 66.
        assert!(ReadingId::new(&"ä".repeat(32)).is_ok());
        assert_eq!(
            ReadingId::new(&"ä".repeat(33)),
            Err(ReadingIdError::TooLong(66))
        );
    }

    #[test]
    fn integers_are_their_decimal_text() {
        for n in [0, 7, -7, 10, i64::MAX, i64::MIN] {
            assert_eq!(ReadingId::from_i64(n).as_str(), n.to_string());
            assert_eq!(
                ReadingId::from_i64(n),
                ReadingId::new(&n.to_string()).unwrap()
            );
        }
        assert_eq!(ReadingId::from_u64(u64::MAX).as_str(), u64::MAX.to_string());
        assert_eq!(ReadingId::from_u64(u64::MAX).heap_bytes(), 0);
    }

    #[test]
    fn long_ids_live_on_the_heap() {
        let uuid = "3f2b8c1e-9d4a-4e57-b0c2-7a1d5e6f8a90";
        let id = ReadingId::new(uuid).unwrap();
        assert_eq!(id.as_str(), uuid);
        assert_eq!(id.heap_bytes(), 36);
        assert_eq!(ReadingId::new("short").unwrap().heap_bytes(), 0);
    }

    proptest! {
        #[test]
        fn text_round_trips_and_equality_is_textual(a in "\\PC{1,30}", b in "\\PC{1,30}") {
            prop_assume!(a.len() <= MAX_READING_ID_BYTES && b.len() <= MAX_READING_ID_BYTES);
            let (ia, ib) = (ReadingId::new(&a).unwrap(), ReadingId::new(&b).unwrap());
            prop_assert_eq!(ia.as_str(), a.as_str());
            prop_assert_eq!(ia == ib, a == b);
        }

        #[test]
        fn any_integer_matches_its_to_string(n in any::<i64>()) {
            let id = ReadingId::from_i64(n);
            prop_assert_eq!(id.as_str(), n.to_string());
        }
    }
}
