//! JSON published by the services: aggregates and dead letters.
//!
//! Field names follow the original service's WebSocket message (kept for its users).

use serde::{Deserialize, Serialize};

use crate::rejection::Rejection;
use crate::timestamp::Timestamp;

/// The window state of one (machine, scrap index) key, as published on
/// `aggregates/{machineId}/{scrapIndex}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Machine id (the topic level).
    #[serde(rename = "maschinenId")]
    pub machine_id: String,
    /// Scrap index.
    #[serde(rename = "scrapIndex")]
    pub scrap_index: u32,
    /// Sum of the values in the window; exactly 0 when empty. The name keeps `60s` whatever
    /// the window, for compatibility; `windowSeconds` tells the real length.
    #[serde(rename = "sumLast60s")]
    pub sum: f64,
    /// `sum / count`, `null` for an empty window. Full precision: rounding is the display's job.
    #[serde(rename = "avgLast60s")]
    pub avg: Option<f64>,
    /// Readings in the window.
    pub count: u64,
    /// Window length in seconds.
    #[serde(rename = "windowSeconds")]
    pub window_seconds: u64,
    /// Ingest-clock time of this aggregate, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// The machine's Sparkplug edge node or device has died (its death certificate came):
    /// the window keeps its readings, but the machine sends none. Left out while online.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
}

impl Aggregate {
    /// The aggregate of a key whose window holds no reading at `at`: sum exactly 0, count 0,
    /// no average.
    pub fn empty(machine_id: &str, scrap_index: u32, window_seconds: u64, at: Timestamp) -> Self {
        Aggregate {
            machine_id: machine_id.to_owned(),
            scrap_index,
            sum: 0.0,
            avg: None,
            count: 0,
            window_seconds,
            timestamp: at.to_rfc3339_millis(),
            offline: false,
        }
    }
}

/// One UTC minute of a key's accepted readings, as published on `history/{machineId}/{scrapIndex}`
/// (QoS 1, not retained). The values are absolute, not increments, and every change of them
/// has a higher `revision`: a store that keeps the highest revision per (machine, index,
/// minute) is unchanged by a copy, a replay or a reordering of these messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryBucket {
    /// Machine id (the topic level).
    #[serde(rename = "maschinenId")]
    pub machine_id: String,
    /// Scrap index.
    #[serde(rename = "scrapIndex")]
    pub scrap_index: u32,
    /// The minute's start, RFC 3339 UTC with milliseconds (`2026-12-07T07:23:00.000Z`); the
    /// bucket holds the readings whose event time lies in `[minute, minute + 60 s)`.
    pub minute: String,
    /// Sum of the readings' values.
    pub sum: f64,
    /// Readings counted (at least 1).
    pub count: u64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Grows with every change of the values, also across ingest restarts.
    pub revision: u64,
    /// No reading for this minute can be accepted any more: these values are its total.
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// A key as it appears in WebSocket `remove` frames.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyRef {
    /// Machine id.
    #[serde(rename = "maschinenId")]
    pub machine_id: String,
    /// Scrap index.
    #[serde(rename = "scrapIndex")]
    pub scrap_index: u32,
}

/// The largest aggregate, alarm or trend payload the services read: 1 MiB. The largest that
/// ingest publishes, a trend of the most points `trend.points` allows (10 000), is about
/// 620 KiB; a larger message on those topics is not ingest's and is skipped unparsed.
pub const MAX_SIGNAL_PAYLOAD_BYTES: usize = 1 << 20;

/// How much of a rejected payload a [`DeadLetter`] carries: its first KiB.
pub const DEAD_LETTER_PAYLOAD_BYTES: usize = 1024;

/// A rejected payload as published on `ingest/rejected` (not retained).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Reason code, e.g. `bad_value`.
    pub reason: String,
    /// Human detail of what was wrong (an addition to the contract's fields).
    pub detail: String,
    /// The topic the payload came in on.
    pub topic: String,
    /// The first KiB of the payload, lossy UTF-8.
    pub payload: String,
    /// Ingest-clock time of receipt.
    #[serde(rename = "receivedAt")]
    pub received_at: String,
}

impl DeadLetter {
    /// Builds the dead letter for `rejection` of `payload` received on `topic` at `received_at`.
    pub fn new(rejection: &Rejection, topic: &str, payload: &[u8], received_at: Timestamp) -> Self {
        let head = &payload[..payload.len().min(DEAD_LETTER_PAYLOAD_BYTES)];
        DeadLetter {
            reason: rejection.reason().as_str().to_owned(),
            detail: rejection.to_string(),
            topic: topic.to_owned(),
            payload: String::from_utf8_lossy(head).into_owned(),
            received_at: received_at.to_rfc3339_millis(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_trend_ingest_publishes_fits_the_signal_payload_bound() {
        use crate::trend::{TrendMessage, TrendPointMessage};
        let point = TrendPointMessage {
            t: "2026-01-01T12:00:10.000Z".into(),
            // The longest a window sum prints: negative, 17 digits and an exponent.
            sum: -1.2345678901234567e-300,
        };
        let trend = TrendMessage {
            machine_id: "m".repeat(256),
            scrap_index: u32::MAX,
            interval_seconds: 86_400,
            points: vec![point; 10_000],
        };
        let size = serde_json::to_vec(&trend).unwrap().len();
        assert!(size < MAX_SIGNAL_PAYLOAD_BYTES * 3 / 4, "{size}");
    }

    #[test]
    fn aggregate_json_has_the_contract_field_names() {
        let a = Aggregate {
            machine_id: "A1".into(),
            scrap_index: 2,
            sum: 25.0,
            avg: Some(25.0 / 7.0),
            count: 7,
            window_seconds: 60,
            timestamp: "2026-01-01T12:00:30.123Z".into(),
            offline: false,
        };
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(
            json,
            r#"{"maschinenId":"A1","scrapIndex":2,"sumLast60s":25.0,"avgLast60s":3.5714285714285716,"count":7,"windowSeconds":60,"timestamp":"2026-01-01T12:00:30.123Z"}"#
        );
        let empty = Aggregate {
            sum: 0.0,
            avg: None,
            count: 0,
            ..a
        };
        let json = serde_json::to_string(&empty).unwrap();
        assert!(
            json.contains(r#""sumLast60s":0.0,"avgLast60s":null,"count":0"#),
            "{json}"
        );
    }

    #[test]
    fn an_offline_aggregate_says_so_and_an_online_one_reads_as_before() {
        let mut a = Aggregate::empty("A1", 1, 60, Timestamp::from_unix_nanos(0));
        assert!(!serde_json::to_string(&a).unwrap().contains("offline"));
        a.offline = true;
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.ends_with(r#","offline":true}"#), "{json}");
        let back: Aggregate = serde_json::from_str(&json).unwrap();
        assert!(back.offline);
    }

    #[test]
    fn dead_letter_truncates_to_one_kib_lossily() {
        let mut payload = vec![b'a'; 1023];
        payload.extend_from_slice("ü".as_bytes()); // split across the 1 KiB boundary
        payload.extend_from_slice(&[b'b'; 10]);
        let rejection = Rejection::TooLarge {
            size: payload.len(),
            limit: 10,
        };
        let letter = DeadLetter::new(&rejection, "machines/A1/scrap", &payload, Timestamp::EPOCH);
        assert_eq!(letter.reason, "too_large");
        assert!(letter.payload.starts_with(&"a".repeat(1023)));
        assert!(letter.payload.ends_with('\u{FFFD}'));
        assert!(!letter.payload.contains('b'));
        let json = serde_json::to_value(&letter).unwrap();
        for field in ["reason", "topic", "payload", "receivedAt"] {
            assert!(json.get(field).is_some(), "{field}");
        }
    }
}
