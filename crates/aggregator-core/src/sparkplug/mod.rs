//! Sparkplug B, the industrial MQTT convention, as a host application reads it: topics
//! ([`topic`]), protobuf payloads ([`payload`]), what is remembered of each edge node
//! ([`session`]: births, deaths, aliases, sequence numbers, rebirth requests) and which metric
//! is which scrap reading ([`mapping`]). Pure: the caller passes the time in.

pub mod mapping;
pub mod payload;
pub mod session;
pub mod topic;

use prost::Message;

pub use mapping::{MachineFrom, MetricPattern, PatternError, TimeFrom};
pub use payload::{DataType, Metric, Payload, Value, rebirth_request};
pub use session::{Applied, NodeKey, Presence, ResolvedMetric, SessionConfig, Sessions, Skipped};
pub use topic::{MessageType, Topic};

/// Why a payload was not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than the limit; not decoded at all.
    #[error("payload of {len} bytes, over the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a Sparkplug B payload.
    #[error("not a Sparkplug B payload: {0}")]
    Malformed(String),
}

/// Decodes `bytes` as a Sparkplug B payload of at most `max_bytes`.
///
/// # Errors
/// [`DecodeError::TooLarge`] before decoding; [`DecodeError::Malformed`] for what protobuf
/// refuses.
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Payload, DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_bytes,
        });
    }
    Payload::decode(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_payload_is_refused_before_decoding_and_garbage_is_malformed() {
        let bytes = rebirth_request(1);
        assert!(decode(&bytes, bytes.len()).is_ok());
        assert_eq!(
            decode(&bytes, bytes.len() - 1),
            Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: bytes.len() - 1
            })
        );
        // A length-delimited field (metrics, tag 2) that claims more bytes than follow.
        assert!(matches!(
            decode(&[0x12, 0x05, 0x01], 100),
            Err(DecodeError::Malformed(_))
        ));
        // A JSON reading is not a payload either.
        assert!(matches!(
            decode(br#"{"machineId":"A1"}"#, 100),
            Err(DecodeError::Malformed(_))
        ));
    }
}
