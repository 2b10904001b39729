//! Tolerant parsing of `machines/{id}/scrap` payloads into a [`Reading`].
//!
//! Accepts both field-name families of the original service (`machineId`/`maschinenId`,
//! `scrapIndex`/`scrapeIndex`, `timestamp`/`zeitstempel`), numbers inside strings, RFC 3339
//! with any offset and fraction, and epoch milliseconds. The payload is walked once by a map
//! visitor that borrows strings, so a reading costs no allocation; every problem becomes a
//! typed [`Rejection`] naming the field.
//!
//! The optional `id` (string or integer, at most 64 bytes) comes back beside the reading from
//! [`parse_reading_with_id`]; [`parse_reading`] checks it the same way but leaves it out.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::plant_time::{DateTime, PlantClock};
use crate::reading_id::ReadingId;
use crate::rejection::Rejection;
use crate::timestamp::Timestamp;
use crate::topic::{machine_from_readings_topic, validate_topic_level};

/// The largest magnitude a reading's value may have: 10^12.
///
/// A scrap reading is a count or a mass; no machine sends a trillion of anything in one
/// reading (a tonne in milligrams is 10^9). The bound keeps every window sum far inside `f64`:
/// a full window at the design load (10 000 readings/s for 60 s, 600 000 readings, all on one
/// key) sums to at most 6 x 10^17, so neither the sum nor its compensation term can overflow,
/// and the compensated sum stays within an ulp of the exact one. A window of whole numbers is
/// exact as long as its total stays below 2^53 (about 9 x 10^15). Larger values, like
/// `1e308`, would overflow the sum of two readings; they are `bad_value`.
pub const MAX_ABS_VALUE: f64 = 1e12;

/// Checks that `value` is a number a machine can send: finite and within
/// [`MAX_ABS_VALUE`] either way.
///
/// # Errors
/// A `bad_value` naming `value` and the range.
pub fn check_value(value: f64) -> Result<f64, Rejection> {
    if value.is_finite() && value.abs() <= MAX_ABS_VALUE {
        return Ok(value);
    }
    Err(Rejection::bad_value(
        "value",
        format!("{value} is outside the accepted range -1e12 to 1e12"),
    ))
}

/// What parsing allows.
#[derive(Clone, Debug)]
pub struct ParseLimits {
    /// Larger payloads are rejected as `too_large` before any parsing (default 64 KiB).
    pub max_payload_bytes: usize,
    /// The plant clock a device time without an offset (`2026-12-01T14:14:54`) is read in;
    /// `None` rejects such a time as `bad_value` (the default).
    pub naive_times: Option<PlantClock>,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_payload_bytes: 64 * 1024,
            naive_times: None,
        }
    }
}

/// One accepted scrap reading. The machine id borrows from the topic, which is authoritative.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading<'t> {
    /// Machine id: the topic level.
    pub machine: &'t str,
    /// Scrap index.
    pub scrap_index: u32,
    /// The value, within [`MAX_ABS_VALUE`] either way.
    pub value: f64,
    /// Event time: the payload's time, else the time of receipt.
    pub event_time: Timestamp,
    /// Whether `event_time` came from the payload (false: time of receipt).
    pub time_from_payload: bool,
}

/// A reading with the sender's optional `id`, kept beside it so `Reading` stays small and `Copy`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedReading<'t> {
    /// The reading.
    pub reading: Reading<'t>,
    /// The payload's `id`, if it had one (`null` counts as none).
    pub id: Option<ReadingId>,
}

/// Parses one payload received on `topic` at `received_at`.
///
/// Checks everything that needs no window state: size, JSON shape, fields and values, and the
/// machine id against the topic. `late`, `future` and `too_many_keys` are decided by the
/// [`WindowStore`](crate::window::WindowStore). A bad `id` is rejected here too.
pub fn parse_reading<'t>(
    topic: &'t str,
    payload: &[u8],
    received_at: Timestamp,
    limits: &ParseLimits,
) -> Result<Reading<'t>, Rejection> {
    parse_reading_with_id(topic, payload, received_at, limits).map(|parsed| parsed.reading)
}

/// Like [`parse_reading`], and also returns the payload's optional `id` (a string or an
/// integer of at most 64 bytes; anything else is a `bad_value` naming `id`).
pub fn parse_reading_with_id<'t>(
    topic: &'t str,
    payload: &[u8],
    received_at: Timestamp,
    limits: &ParseLimits,
) -> Result<ParsedReading<'t>, Rejection> {
    if payload.len() > limits.max_payload_bytes {
        return Err(Rejection::TooLarge {
            size: payload.len(),
            limit: limits.max_payload_bytes,
        });
    }
    let machine = machine_of(topic)?;
    let fields = read_fields(payload)?;
    for (name, given) in [
        ("machineId", &fields.machine_id),
        ("maschinenId", &fields.maschinen_id),
    ] {
        if let Some(given) = given {
            check_machine(name, given, machine)?;
        }
    }
    let scrap_index = scrap_index_of(&fields)?;
    let value = match &fields.value {
        Some(value) => value_from(value)?,
        None => return Err(Rejection::MissingField { field: "value" }),
    };
    let time = event_time_of(&fields, limits.naive_times.as_ref())?;
    let id = id_from(fields.id.as_ref())?;
    Ok(ParsedReading {
        reading: Reading {
            machine,
            scrap_index,
            value,
            event_time: time.unwrap_or(received_at),
            time_from_payload: time.is_some(),
        },
        id,
    })
}

/// The machine id of a readings topic: its level before `/scrap`, a usable topic level.
fn machine_of(topic: &str) -> Result<&str, Rejection> {
    let machine = machine_from_readings_topic(topic).ok_or_else(|| {
        Rejection::bad_value(
            "topic",
            "expected a topic ending in machines/{machineId}/scrap",
        )
    })?;
    if machine.is_empty() {
        return Err(Rejection::MissingField { field: "machineId" });
    }
    validate_topic_level(machine)
        .map_err(|e| Rejection::bad_value("topic", format!("machine id {e}")))?;
    Ok(machine)
}

/// The fields of a payload that must be one JSON object and nothing after it.
fn read_fields(payload: &[u8]) -> Result<Fields<'_>, Rejection> {
    let invalid = |e: serde_json::Error| Rejection::InvalidJson {
        detail: e.to_string(),
    };
    let mut de = serde_json::Deserializer::from_slice(payload);
    let fields = de.deserialize_map(FieldsVisitor).map_err(invalid)?;
    de.end().map_err(invalid)?;
    Ok(fields)
}

/// The scrap index from either spelling; both given must agree.
fn scrap_index_of(fields: &Fields<'_>) -> Result<u32, Rejection> {
    match (&fields.scrap_index, &fields.scrape_index) {
        (None, None) => Err(Rejection::MissingField {
            field: "scrapIndex",
        }),
        (Some(a), None) => scrap_index_from("scrapIndex", a),
        (None, Some(b)) => scrap_index_from("scrapeIndex", b),
        (Some(a), Some(b)) => {
            let (a, b) = (
                scrap_index_from("scrapIndex", a)?,
                scrap_index_from("scrapeIndex", b)?,
            );
            if a != b {
                return Err(Rejection::bad_value(
                    "scrapIndex",
                    format!("scrapIndex {a} and scrapeIndex {b} disagree"),
                ));
            }
            Ok(a)
        }
    }
}

/// The payload's time from either spelling (`None`: none given, or `null`); both given with a
/// time must agree.
fn event_time_of(
    fields: &Fields<'_>,
    naive: Option<&PlantClock>,
) -> Result<Option<Timestamp>, Rejection> {
    match (&fields.timestamp, &fields.zeitstempel) {
        (a, None) => time_from("timestamp", a.as_ref(), naive),
        (None, b) => time_from("zeitstempel", b.as_ref(), naive),
        (a, b) => match (
            time_from("timestamp", a.as_ref(), naive)?,
            time_from("zeitstempel", b.as_ref(), naive)?,
        ) {
            (Some(a), Some(b)) if a != b => Err(Rejection::bad_value(
                "timestamp",
                "timestamp and zeitstempel disagree",
            )),
            (a, b) => Ok(a.or(b)),
        },
    }
}

fn id_from(given: Option<&Scalar<'_>>) -> Result<Option<ReadingId>, Rejection> {
    match given {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::U64(n)) => Ok(Some(ReadingId::from_u64(*n))),
        Some(Scalar::I64(n)) => Ok(Some(ReadingId::from_i64(*n))),
        // Not trimmed: an id is compared byte for byte, as the sender wrote it.
        Some(Scalar::Str(s)) => ReadingId::new(s)
            .map(Some)
            .map_err(|e| Rejection::bad_value("id", e.to_string())),
        Some(other) => Err(Rejection::bad_value(
            "id",
            format!("expected a string or an integer, got {other}"),
        )),
    }
}

fn check_machine(name: &str, given: &Scalar<'_>, topic_machine: &str) -> Result<(), Rejection> {
    let number = match given {
        Scalar::Null => return Ok(()),
        Scalar::Str(text) if text == topic_machine => return Ok(()),
        Scalar::Str(text) => {
            return Err(Rejection::MachineMismatch {
                topic_machine: topic_machine.to_owned(),
                payload_machine: text.as_ref().to_owned(),
            });
        }
        Scalar::U64(n) => n.to_string(),
        Scalar::I64(n) => n.to_string(),
        other => {
            return Err(Rejection::bad_value(
                name,
                format!("expected a string, got {other}"),
            ));
        }
    };
    // A number is tolerated when it spells the topic level (`7` on machines/7/scrap); any other
    // number is a sender filling the field wrongly, not naming another machine.
    if number == topic_machine {
        return Ok(());
    }
    Err(Rejection::bad_value(
        name,
        format!("expected a string, got the number {number}"),
    ))
}

fn scrap_index_from(name: &str, given: &Scalar<'_>) -> Result<u32, Rejection> {
    let out_of_range =
        || Rejection::bad_value(name, format!("must be an integer from 0 to {}", u32::MAX));
    match given {
        Scalar::U64(n) => u32::try_from(*n).map_err(|_| out_of_range()),
        Scalar::F64(f) if f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX) => {
            Ok(*f as u32)
        }
        Scalar::I64(_) | Scalar::F64(_) => Err(out_of_range()),
        Scalar::Str(s) => {
            let trimmed = s.trim();
            trimmed.parse::<u32>().map_err(|_| {
                Rejection::bad_value(
                    name,
                    format!("{trimmed:?} is not an integer from 0 to {}", u32::MAX),
                )
            })
        }
        Scalar::Null => Err(Rejection::MissingField {
            field: "scrapIndex",
        }),
        other => Err(Rejection::bad_value(
            name,
            format!("expected an integer, got {other}"),
        )),
    }
}

fn value_from(given: &Scalar<'_>) -> Result<f64, Rejection> {
    let v = match given {
        Scalar::U64(n) => *n as f64,
        Scalar::I64(n) => *n as f64,
        Scalar::F64(f) => *f,
        Scalar::Str(s) => {
            let trimmed = s.trim();
            trimmed.parse::<f64>().map_err(|_| {
                Rejection::bad_value("value", format!("{trimmed:?} is not a number"))
            })?
        }
        Scalar::Null => return Err(Rejection::MissingField { field: "value" }),
        other => {
            return Err(Rejection::bad_value(
                "value",
                format!("expected a number, got {other}"),
            ));
        }
    };
    check_value(v)
}

/// The time in `given`; a text without an offset is read in `naive`'s zone when there is one.
fn time_from(
    name: &str,
    given: Option<&Scalar<'_>>,
    naive: Option<&PlantClock>,
) -> Result<Option<Timestamp>, Rejection> {
    let bad = |detail: String| Rejection::bad_value(name, detail);
    let millis = |n: Option<i64>| {
        (n.and_then(Timestamp::from_unix_millis).map(Some))
            .ok_or_else(|| bad("epoch milliseconds out of range".into()))
    };
    match given {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::U64(n)) => millis(i64::try_from(*n).ok()),
        Some(Scalar::I64(n)) => millis(Some(*n)),
        Some(Scalar::F64(f)) => Timestamp::from_unix_millis_f64(*f)
            .map(Some)
            .map_err(|e| bad(e.to_string())),
        Some(Scalar::Str(s)) => {
            let text = s.trim();
            match Timestamp::parse_rfc3339(text) {
                Ok(t) => Ok(Some(t)),
                // Some senders put epoch milliseconds in a string; accept that too.
                Err(e) => match text.parse::<f64>() {
                    Ok(ms)
                        if !text.is_empty()
                            && text
                                .bytes()
                                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') =>
                    {
                        Timestamp::from_unix_millis_f64(ms)
                            .map(Some)
                            .map_err(|e| bad(e.to_string()))
                    }
                    _ => match naive.zip(naive_date_time(text)) {
                        Some((clock, local)) => Ok(Some(clock.instant(local))),
                        None => Err(bad(format!("{text:?}: {e}"))),
                    },
                },
            }
        }
        Some(other) => Err(bad(format!(
            "expected an RFC 3339 string or epoch milliseconds, got {other}"
        ))),
    }
}

/// A date and time of day without an offset or zone, `2026-12-01T14:14:54` with any fraction
/// (or a space for the `T`); a date alone is not a device time.
fn naive_date_time(text: &str) -> Option<DateTime> {
    let shaped = text.len() >= 19 && matches!(text.as_bytes()[10], b'T' | b't' | b' ');
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_digit() || b"-:. Tt".contains(&b));
    (shaped && plain).then(|| text.parse().ok()).flatten()
}

/// The fields we care about, each as the raw JSON scalar the sender wrote.
#[derive(Default)]
struct Fields<'de> {
    machine_id: Option<Scalar<'de>>,
    maschinen_id: Option<Scalar<'de>>,
    scrap_index: Option<Scalar<'de>>,
    scrape_index: Option<Scalar<'de>>,
    value: Option<Scalar<'de>>,
    timestamp: Option<Scalar<'de>>,
    zeitstempel: Option<Scalar<'de>>,
    id: Option<Scalar<'de>>,
}

/// A JSON value reduced to what validation needs; containers are skipped, not stored.
enum Scalar<'de> {
    Null,
    Bool,
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'de, str>),
    Array,
    Object,
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scalar::Null => "null",
            Scalar::Bool => "a boolean",
            Scalar::U64(_) | Scalar::I64(_) | Scalar::F64(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        })
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    // A string with escapes, which serde_json cannot lend.
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// Field names we recognise; everything else is ignored.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum FieldName {
    MachineId,
    MaschinenId,
    ScrapIndex,
    ScrapeIndex,
    Value,
    Timestamp,
    Zeitstempel,
    Id,
    #[serde(other)]
    Unknown,
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        while let Some(name) = map.next_key::<FieldName>()? {
            let slot = match name {
                FieldName::MachineId => &mut fields.machine_id,
                FieldName::MaschinenId => &mut fields.maschinen_id,
                FieldName::ScrapIndex => &mut fields.scrap_index,
                FieldName::ScrapeIndex => &mut fields.scrape_index,
                FieldName::Value => &mut fields.value,
                FieldName::Timestamp => &mut fields.timestamp,
                FieldName::Zeitstempel => &mut fields.zeitstempel,
                FieldName::Id => &mut fields.id,
                FieldName::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            // A repeated key is ambiguous: which one did the sender mean?
            if slot.is_some() {
                return Err(de::Error::custom("duplicate field"));
            }
            *slot = Some(map.next_value::<Scalar<'de>>()?);
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Fields<'_> {
        read_fields(json.as_bytes()).unwrap()
    }

    fn value_of(json: &str) -> Result<f64, Rejection> {
        let limits = ParseLimits::default();
        parse_reading(
            "machines/A1/scrap",
            json.as_bytes(),
            Timestamp::EPOCH,
            &limits,
        )
        .map(|r| r.value)
    }

    #[test]
    fn values_up_to_a_trillion_either_way_are_accepted_and_beyond_are_bad_values() {
        for (json, value) in [
            (r#"{"scrapIndex":1,"value":1e12}"#, 1e12),
            (r#"{"scrapIndex":1,"value":-1e12}"#, -1e12),
            (r#"{"scrapIndex":1,"value":"1000000000000"}"#, 1e12),
            (r#"{"scrapIndex":1,"value":5e-324}"#, 5e-324),
            (r#"{"scrapIndex":1,"value":-0.0}"#, 0.0),
        ] {
            assert_eq!(value_of(json), Ok(value), "{json}");
        }
        for json in [
            r#"{"scrapIndex":1,"value":1e308}"#,
            r#"{"scrapIndex":1,"value":-1e308}"#,
            r#"{"scrapIndex":1,"value":1000000000001}"#,
            r#"{"scrapIndex":1,"value":18446744073709551615}"#,
            r#"{"scrapIndex":1,"value":-9223372036854775808}"#,
            r#"{"scrapIndex":1,"value":"1e13"}"#,
            r#"{"scrapIndex":1,"value":"inf"}"#,
            r#"{"scrapIndex":1,"value":"NaN"}"#,
        ] {
            let err = value_of(json).unwrap_err();
            assert_eq!(err.reason(), crate::RejectionReason::BadValue, "{json}");
            let detail = err.to_string();
            assert!(
                detail.contains("`value`") && detail.contains("-1e12 to 1e12"),
                "{json}: {detail}"
            );
        }
    }

    #[test]
    fn a_number_as_machine_id_is_a_bad_value_unless_it_spells_the_topic_level() {
        let limits = ParseLimits::default();
        let parse = |topic: &'static str, json: &str| {
            parse_reading(topic, json.as_bytes(), Timestamp::EPOCH, &limits)
        };
        for json in [
            r#"{"machineId":5,"scrapIndex":1,"value":1}"#,
            r#"{"maschinenId":-5,"scrapIndex":1,"value":1}"#,
        ] {
            let err = parse("machines/A1/scrap", json).unwrap_err();
            assert_eq!(err.reason(), crate::RejectionReason::BadValue, "{json}");
            assert!(err.to_string().contains("expected a string"), "{err}");
        }
        assert!(
            parse(
                "machines/5/scrap",
                r#"{"machineId":5,"scrapIndex":1,"value":1}"#
            )
            .is_ok()
        );
        let other = parse(
            "machines/A1/scrap",
            r#"{"machineId":"B1","scrapIndex":1,"value":1}"#,
        );
        assert_eq!(
            other.unwrap_err().reason(),
            crate::RejectionReason::MachineMismatch
        );
    }

    #[test]
    fn either_spelling_of_the_index_counts_and_both_must_agree() {
        assert_eq!(scrap_index_of(&fields(r#"{"scrapIndex":3}"#)), Ok(3));
        assert_eq!(scrap_index_of(&fields(r#"{"scrapeIndex":"3"}"#)), Ok(3));
        assert_eq!(
            scrap_index_of(&fields(r#"{"scrapIndex":3,"scrapeIndex":"3"}"#)),
            Ok(3)
        );
        let err = scrap_index_of(&fields(r#"{"scrapIndex":3,"scrapeIndex":4}"#)).unwrap_err();
        assert_eq!(
            err,
            Rejection::bad_value("scrapIndex", "scrapIndex 3 and scrapeIndex 4 disagree")
        );
        assert_eq!(
            scrap_index_of(&fields("{}")),
            Err(Rejection::MissingField {
                field: "scrapIndex"
            })
        );
    }

    #[test]
    fn either_spelling_of_the_time_counts_null_is_none_and_two_times_must_agree() {
        let noon = Timestamp::parse_rfc3339("2026-01-01T12:00:00Z").unwrap();
        for json in [
            r#"{"timestamp":"2026-01-01T12:00:00Z"}"#,
            r#"{"zeitstempel":1767268800000}"#,
            r#"{"timestamp":"2026-01-01T14:00:00+02:00","zeitstempel":"1767268800000"}"#,
            r#"{"timestamp":null,"zeitstempel":"2026-01-01T12:00:00Z"}"#,
            r#"{"timestamp":"2026-01-01T12:00:00Z","zeitstempel":null}"#,
        ] {
            assert_eq!(event_time_of(&fields(json), None), Ok(Some(noon)), "{json}");
        }
        assert_eq!(event_time_of(&fields("{}"), None), Ok(None));
        assert_eq!(
            event_time_of(&fields(r#"{"timestamp":null,"zeitstempel":null}"#), None),
            Ok(None)
        );
        let err = event_time_of(
            &fields(r#"{"timestamp":"2026-01-01T12:00:00Z","zeitstempel":"2026-01-01T12:00:01Z"}"#),
            None,
        )
        .unwrap_err();
        assert_eq!(err.reason(), crate::RejectionReason::BadValue);
    }
}
