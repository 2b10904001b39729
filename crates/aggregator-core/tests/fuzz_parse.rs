//! A fuzzer for the payload parser built on proptest, run with every `cargo nextest`.
//!
//! Beside the coverage-guided libFuzzer target (`fuzz/fuzz_targets/parse_reading.rs`, run by
//! `scripts/fuzz.sh`), this one needs no extra tools: arbitrary bytes and topics, and
//! structured mutations of valid payloads (fields dropped, renamed, retyped, truncated, bytes
//! flipped). For every input the parser must return, never panic; a rejection is one of the
//! contract's reasons the parser can decide; an accepted reading has a finite value within the
//! accepted range and a machine id that is the topic level and a legal topic level.
//!
//! Bounded for CI: `PROPTEST_CASES` sets the cases per property (default 4096 here); more, e.g.
//! `PROPTEST_CASES=1000000 cargo nextest run -p aggregator-core --test fuzz_parse`, for a
//! longer hunt.

use aggregator_core::parse::MAX_ABS_VALUE;
use aggregator_core::rejection::RejectionReason;
use aggregator_core::topic::{machine_from_readings_topic, validate_topic_level};
use aggregator_core::{ParseLimits, Reading, Rejection, Timestamp, parse_reading};
use proptest::prelude::*;

/// Cases per property when `PROPTEST_CASES` is not set: a few seconds in a debug build.
const DEFAULT_CASES: u32 = 4096;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        // Inputs that fail are shrunk and printed; no regression file to commit for a fuzzer.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn received() -> Timestamp {
    // unwrap: a constant, valid RFC 3339 time.
    Timestamp::parse_rfc3339("2026-01-01T12:00:30Z").unwrap()
}

/// The invariants every parse result must hold.
fn check(topic: &str, payload: &[u8], limits: &ParseLimits) -> Result<(), TestCaseError> {
    let result: Result<Reading<'_>, Rejection> = parse_reading(topic, payload, received(), limits);
    match result {
        Ok(reading) => {
            prop_assert!(
                reading.value.is_finite() && reading.value.abs() <= MAX_ABS_VALUE,
                "value {} outside the accepted range",
                reading.value
            );
            prop_assert_eq!(Some(reading.machine), machine_from_readings_topic(topic));
            prop_assert!(
                validate_topic_level(reading.machine).is_ok(),
                "illegal machine id {:?}",
                reading.machine
            );
            prop_assert!(payload.len() <= limits.max_payload_bytes);
        }
        Err(rejection) => {
            let reason = rejection.reason();
            prop_assert!(RejectionReason::ALL.contains(&reason));
            // late, future and too_many_keys need window state: the parser never decides them.
            prop_assert!(
                !matches!(
                    reason,
                    RejectionReason::Late | RejectionReason::Future | RejectionReason::TooManyKeys
                ),
                "parser decided {reason}"
            );
            if payload.len() > limits.max_payload_bytes {
                prop_assert_eq!(reason, RejectionReason::TooLarge);
            }
            // The operator-facing text must be producible for any input.
            let _ = rejection.to_string();
        }
    }
    Ok(())
}

/// Topics: mostly well-formed, with odd machine levels, sometimes not a readings topic at all.
fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9_-]{1,8}".prop_map(|id| format!("machines/{id}/scrap")),
        2 => any::<String>().prop_map(|id| format!("machines/{id}/scrap")),
        1 => Just("machines//scrap".to_owned()),
        1 => any::<String>(),
    ]
}

/// JSON values of every kind, including the edge cases the parser must survive.
fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<f64>().prop_map(|f| format!("\"{f}\"")),
        any::<i64>().prop_map(|n| format!("\"{n}\"")),
        Just("1e309".to_owned()),
        Just("-1e309".to_owned()),
        Just("\"NaN\"".to_owned()),
        Just("\"inf\"".to_owned()),
        Just("\"-0\"".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("\"2026-01-01T12:00:00Z\"".to_owned()),
        Just("\"2026-01-01T12:00:00.123456789+02:00\"".to_owned()),
        Just("\"9999-12-31T23:59:59Z\"".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("4294967296".to_owned()),
        any::<String>().prop_map(|s| serde_json::Value::String(s).to_string()),
    ]
}

const FIELD_NAMES: &[&str] = &[
    "machineId",
    "maschinenId",
    "scrapIndex",
    "scrapeIndex",
    "value",
    "timestamp",
    "zeitstempel",
    "other",
];

/// A JSON object built from the accepted field names (and one unknown), each holding any kind
/// of value, fields possibly repeated or missing.
fn structured_payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((prop::sample::select(FIELD_NAMES), json_value()), 0..8).prop_map(
        |fields| {
            let body: Vec<String> = fields
                .iter()
                .map(|(name, value)| format!("\"{name}\":{value}"))
                .collect();
            format!("{{{}}}", body.join(",")).into_bytes()
        },
    )
}

/// A valid payload, then damaged: truncated, a byte replaced, or bytes inserted.
fn mutated_valid_payload() -> impl Strategy<Value = Vec<u8>> {
    let valid = (0u32..10, -1000.0f64..1000.0, any::<bool>()).prop_map(|(index, value, german)| {
        if german {
            format!(
                r#"{{"maschinenId":"A1","scrapeIndex":"{index}","value":"{value}","zeitstempel":"2026-01-01T12:00:00.5Z"}}"#
            )
        } else {
            format!(
                r#"{{"machineId":"A1","scrapIndex":{index},"value":{value},"timestamp":1767268800000}}"#
            )
        }
        .into_bytes()
    });
    (
        valid,
        any::<prop::sample::Index>(),
        any::<u8>(),
        0u8..4,
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(mut bytes, at, byte, how, insert)| {
            let i = at.index(bytes.len());
            match how {
                0 => bytes.truncate(i),
                1 => bytes[i] = byte,
                2 => {
                    bytes.splice(i..i, insert);
                }
                _ => {}
            }
            bytes
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(topic in topic(), payload in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&topic, &payload, &ParseLimits::default())?;
    }

    #[test]
    fn structured_payloads_never_panic(topic in topic(), payload in structured_payload()) {
        check(&topic, &payload, &ParseLimits::default())?;
    }

    #[test]
    fn mutated_valid_payloads_never_panic(payload in mutated_valid_payload(), limit in 1usize..256) {
        check("machines/A1/scrap", &payload, &ParseLimits::default())?;
        // A small limit puts some of the same payloads over max_payload_bytes.
        check("machines/A1/scrap", &payload, &ParseLimits { max_payload_bytes: limit, ..ParseLimits::default() })?;
    }

    #[test]
    fn deep_nesting_never_panics(depth in 0usize..4096, open in "[\\[{]") {
        // serde_json stops at 128 levels; the parser must turn that into a rejection.
        let mut payload = format!("{{\"value\":{}", open.repeat(depth));
        payload.push('1');
        check("machines/A1/scrap", payload.as_bytes(), &ParseLimits::default())?;
    }
}
