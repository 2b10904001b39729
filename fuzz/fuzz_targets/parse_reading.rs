//! The reading parser on any bytes: it must return, never panic, and what it accepts must
//! satisfy the contract.
//!
//! The input is the payload of a reading on `machines/A1/scrap`. An input with a NUL byte is
//! split there instead: the bytes before it are the topic's machine level (NUL never occurs in
//! a JSON payload, so nothing the parser could see is lost), which reaches the topic rules:
//! odd, empty, multi-level and over-long machine ids.
//!
//! For an accepted reading: the value is finite and within `MAX_ABS_VALUE`, the machine is the
//! topic's level and a legal one, the id fits the contract, the time is the receipt time when
//! the payload had none, `parse_reading` agrees with `parse_reading_with_id`, and the same
//! reading written out in the canonical form is accepted again with the same fields. For a
//! rejection: it is one of the reasons the parser may decide, and its text can be produced.
#![no_main]

use std::sync::LazyLock;

use aggregator_core::parse::MAX_ABS_VALUE;
use aggregator_core::plant_time::PlantClock;
use aggregator_core::reading_id::MAX_READING_ID_BYTES;
use aggregator_core::topic::{machine_from_readings_topic, validate_topic_level};
use aggregator_core::{
    ParseLimits, Reading, RejectionReason, Timestamp, parse_reading, parse_reading_with_id,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|&b| b == 0) {
        Some(nul) => {
            let machine = String::from_utf8_lossy(&data[..nul]);
            (format!("machines/{machine}/scrap"), &data[nul + 1..])
        }
        None => ("machines/A1/scrap".to_owned(), data),
    };
    check(&topic, payload, &ParseLimits::default());
    // A limit the payload may exceed: too_large is decided before anything is parsed.
    let small = ParseLimits {
        max_payload_bytes: payload.len() / 2,
        ..ParseLimits::default()
    };
    check(&topic, payload, &small);
    // Device times without an offset read in a zone with DST.
    static BERLIN: LazyLock<ParseLimits> = LazyLock::new(|| ParseLimits {
        naive_times: PlantClock::new("Europe/Berlin", "06:00").ok(),
        ..ParseLimits::default()
    });
    check(&topic, payload, &BERLIN);
});

/// The time of receipt every parse is given.
fn received() -> Timestamp {
    Timestamp::from_unix_millis(1_767_268_830_000).expect("a time in 2026")
}

fn check(topic: &str, payload: &[u8], limits: &ParseLimits) {
    let with_id = parse_reading_with_id(topic, payload, received(), limits);
    let plain = parse_reading(topic, payload, received(), limits);
    match with_id {
        Ok(parsed) => {
            let reading = parsed.reading;
            assert_eq!(plain.ok(), Some(reading), "parse_reading disagrees");
            assert!(
                reading.value.is_finite() && reading.value.abs() <= MAX_ABS_VALUE,
                "value {} outside the accepted range",
                reading.value
            );
            assert_eq!(Some(reading.machine), machine_from_readings_topic(topic));
            assert!(
                validate_topic_level(reading.machine).is_ok(),
                "illegal machine id {:?}",
                reading.machine
            );
            assert!(payload.len() <= limits.max_payload_bytes);
            if let Some(id) = &parsed.id {
                let len = id.as_str().len();
                assert!(len > 0 && len <= MAX_READING_ID_BYTES, "id of {len} bytes");
            }
            if !reading.time_from_payload {
                assert_eq!(reading.event_time, received());
            }
            round_trip(topic, &reading);
        }
        Err(rejection) => {
            let reason = rejection.reason();
            assert!(
                plain.is_err(),
                "parse_reading accepts what parse_reading_with_id rejects"
            );
            assert!(RejectionReason::ALL.contains(&reason));
            // late, future and too_many_keys need window state: the parser never decides them.
            assert!(
                !matches!(
                    reason,
                    RejectionReason::Late | RejectionReason::Future | RejectionReason::TooManyKeys
                ),
                "parser decided {reason}"
            );
            if payload.len() > limits.max_payload_bytes {
                assert_eq!(reason, RejectionReason::TooLarge);
            }
            let _ = rejection.to_string();
        }
    }
}

/// An accepted reading, written as a sender following the contract would write it, parses
/// back to the same machine, index and value.
fn round_trip(topic: &str, reading: &Reading<'_>) {
    let canonical = serde_json::json!({
        "machineId": reading.machine,
        "scrapIndex": reading.scrap_index,
        "value": reading.value,
    })
    .to_string();
    let again = parse_reading(
        topic,
        canonical.as_bytes(),
        received(),
        &ParseLimits::default(),
    )
    .unwrap_or_else(|e| panic!("{canonical} rejected: {e}"));
    assert_eq!(again.machine, reading.machine);
    assert_eq!(again.scrap_index, reading.scrap_index);
    assert_eq!(again.value, reading.value, "{canonical}");
}
