//! One `history/{machine}/{index}` message read into a [`Bucket`] the store can write, or the
//! reason it cannot be: everything a message must satisfy is checked here, before any I/O.

use aggregator_core::Timestamp;
use aggregator_core::topic::key_from_history_topic;
use aggregator_core::wire::HistoryBucket;

/// The largest history payload read: a bucket is about 200 bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Seconds in a minute and an hour, the store's units.
pub const MINUTE_SECS: i64 = 60;
/// Seconds in an hour.
pub const HOUR_SECS: i64 = 3_600;

/// A minute bucket as stored: the key, the minute's start in unix seconds, absolute values.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Machine id.
    pub machine: String,
    /// Scrap index.
    pub index: u32,
    /// The minute's start, unix seconds (a multiple of 60).
    pub minute: i64,
    /// Sum of the readings' values.
    pub sum: f64,
    /// Readings counted (at least 1).
    pub count: i64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Higher supersedes lower.
    pub revision: i64,
    /// No further change will come for this minute.
    pub is_final: bool,
}

impl Bucket {
    /// The key the store keeps one row for.
    pub fn key(&self) -> (&str, u32, i64) {
        (&self.machine, self.index, self.minute)
    }

    /// The start of the UTC hour the minute lies in, unix seconds.
    pub fn hour(&self) -> i64 {
        self.minute.div_euclid(HOUR_SECS) * HOUR_SECS
    }
}

/// Why a message is skipped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// The topic is not `history/{machine}/{index}`.
    #[error("topic is not history/{{machine}}/{{index}}")]
    Topic,
    /// The payload is larger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload of {0} bytes is larger than 64 KiB")]
    TooLarge(usize),
    /// The payload is not a history bucket.
    #[error("not a history bucket: {0}")]
    Json(String),
    /// The payload's key is not the topic's.
    #[error("payload key ({0}, {1}) is not the topic's")]
    KeyMismatch(String, u32),
    /// `minute` is not an RFC 3339 time at a whole minute.
    #[error("minute {0:?} is not the start of a minute in RFC 3339")]
    Minute(String),
    /// A value is NaN or infinite, or `min` is above `max`.
    #[error("values are not finite or min is above max")]
    Values,
    /// `count` is 0.
    #[error("count is 0")]
    EmptyCount,
    /// `count` or `revision` do not fit the store's 64-bit signed integers.
    #[error("count or revision is too large")]
    Overflow,
}

/// Reads one message: `topic` and `payload` as received.
///
/// # Errors
/// The first thing that makes it unusable.
pub fn decode(topic: &str, payload: &[u8]) -> Result<Bucket, Invalid> {
    let (machine, index) = key_from_history_topic(topic).ok_or(Invalid::Topic)?;
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Invalid::TooLarge(payload.len()));
    }
    let wire: HistoryBucket =
        serde_json::from_slice(payload).map_err(|e| Invalid::Json(e.to_string()))?;
    if wire.machine_id != machine || wire.scrap_index != index {
        return Err(Invalid::KeyMismatch(wire.machine_id, wire.scrap_index));
    }
    let minute = parse_minute(&wire.minute).ok_or_else(|| Invalid::Minute(wire.minute.clone()))?;
    let finite = [wire.sum, wire.min, wire.max].iter().all(|v| v.is_finite());
    if !finite || wire.min > wire.max {
        return Err(Invalid::Values);
    }
    if wire.count == 0 {
        return Err(Invalid::EmptyCount);
    }
    let count = i64::try_from(wire.count).map_err(|_| Invalid::Overflow)?;
    let revision = i64::try_from(wire.revision).map_err(|_| Invalid::Overflow)?;
    Ok(Bucket {
        machine: wire.machine_id,
        index,
        minute,
        sum: wire.sum,
        count,
        min: wire.min,
        max: wire.max,
        revision,
        is_final: wire.is_final,
    })
}

/// Unix seconds of an RFC 3339 time that is a whole minute, or `None`.
fn parse_minute(text: &str) -> Option<i64> {
    let millis = Timestamp::parse_rfc3339(text).ok()?.unix_millis();
    (millis.rem_euclid(MINUTE_SECS * 1_000) == 0).then_some(millis / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(machine: &str, index: u32) -> serde_json::Value {
        serde_json::json!({
            "maschinenId": machine, "scrapIndex": index, "minute": "2026-12-07T07:23:00.000Z",
            "sum": 7.5, "count": 3, "min": 1.0, "max": 4.0, "revision": 9, "final": false,
        })
    }

    fn decode_json(topic: &str, json: &serde_json::Value) -> Result<Bucket, Invalid> {
        decode(topic, json.to_string().as_bytes())
    }

    #[test]
    fn a_bucket_is_read_with_its_minute_in_unix_seconds() {
        let bucket = decode_json("history/A1/2", &payload("A1", 2)).unwrap();
        assert_eq!(bucket.key(), ("A1", 2, 1_796_628_180));
        assert_eq!((bucket.sum, bucket.count, bucket.revision), (7.5, 3, 9));
        assert_eq!(bucket.hour(), 1_796_626_800);
        assert!(!bucket.is_final);
    }

    #[test]
    fn every_kind_of_bad_message_is_named() {
        let good = payload("A1", 2);
        let with = |field: &str, value: serde_json::Value| {
            let mut json = good.clone();
            json[field] = value;
            decode_json("history/A1/2", &json)
        };
        assert_eq!(decode_json("history/A1", &good), Err(Invalid::Topic));
        assert_eq!(decode_json("machines/A1/scrap", &good), Err(Invalid::Topic));
        assert!(matches!(
            decode("history/A1/2", b"{not json"),
            Err(Invalid::Json(_))
        ));
        assert_eq!(
            decode_json("history/B1/2", &good),
            Err(Invalid::KeyMismatch("A1".into(), 2))
        );
        assert!(matches!(
            decode_json("history/A1/3", &good),
            Err(Invalid::KeyMismatch(..))
        ));
        assert!(matches!(
            with("minute", "yesterday".into()),
            Err(Invalid::Minute(_))
        ));
        let off_minute = with("minute", "2026-12-07T07:23:00.001Z".into());
        assert!(matches!(off_minute, Err(Invalid::Minute(_))));
        assert_eq!(with("count", 0.into()), Err(Invalid::EmptyCount));
        assert_eq!(with("min", 5.0.into()), Err(Invalid::Values));
        assert_eq!(with("revision", u64::MAX.into()), Err(Invalid::Overflow));
        // JSON has no NaN or infinity; a number too large for an f64 is refused by serde.
        let huge = br#"{"maschinenId":"A1","scrapIndex":2,"minute":"2026-12-07T07:23:00.000Z","sum":1e999,"count":1,"min":0,"max":0,"revision":1,"final":true}"#;
        assert!(decode("history/A1/2", huge).is_err());
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            decode("history/A1/2", &big),
            Err(Invalid::TooLarge(MAX_PAYLOAD_BYTES + 1))
        );
    }

    #[test]
    fn an_offset_time_at_a_whole_minute_is_the_same_minute() {
        let mut json = payload("A1", 2);
        json["minute"] = "2026-12-07T08:23:00+01:00".into();
        assert_eq!(
            decode_json("history/A1/2", &json).unwrap().minute,
            1_796_628_180
        );
    }
}
