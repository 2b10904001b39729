//! Every accepted payload form and every rejection reason of `docs/contract.md`.

use std::time::Duration;

use aggregator_core::plant_time::PlantClock;
use aggregator_core::rejection::RejectionReason;
use aggregator_core::{
    ParseLimits, Rejection, Timestamp, WindowConfig, WindowStore, parse_reading,
};

const TOPIC: &str = "machines/A1/scrap";

fn received() -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-01T12:00:30Z").unwrap()
}

fn parse<'t>(topic: &'t str, payload: &str) -> Result<aggregator_core::Reading<'t>, Rejection> {
    parse_reading(
        topic,
        payload.as_bytes(),
        received(),
        &ParseLimits::default(),
    )
}

fn reason(topic: &str, payload: &str) -> RejectionReason {
    match parse(topic, payload) {
        Ok(r) => panic!("accepted {payload}: {r:?}"),
        Err(e) => e.reason(),
    }
}

#[test]
fn original_german_payload_is_accepted() {
    let r = parse(
        TOPIC,
        r#"{"maschinenId":"A1","scrapeIndex":2,"value":4,"zeitstempel":"2026-01-01T12:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!((r.machine, r.scrap_index, r.value), ("A1", 2, 4.0));
    assert_eq!(
        r.event_time,
        Timestamp::parse_rfc3339("2026-01-01T12:00:00Z").unwrap()
    );
    assert!(r.time_from_payload);
}

#[test]
fn english_field_names_are_accepted() {
    let r = parse(
        TOPIC,
        r#"{"machineId":"A1","scrapIndex":3,"value":1.5,"timestamp":"2026-01-01T12:00:00.250Z"}"#,
    )
    .unwrap();
    assert_eq!((r.scrap_index, r.value), (3, 1.5));
    assert_eq!(r.event_time.unix_millis() % 1000, 250);
}

#[test]
fn scrap_index_zero_is_valid() {
    assert_eq!(
        parse(TOPIC, r#"{"scrapIndex":0,"value":1}"#)
            .unwrap()
            .scrap_index,
        0
    );
    assert_eq!(
        parse(TOPIC, r#"{"scrapIndex":"0","value":1}"#)
            .unwrap()
            .scrap_index,
        0
    );
}

#[test]
fn numbers_inside_strings_are_accepted() {
    let r = parse(TOPIC, r#"{"scrapeIndex":"7","value":"2.75"}"#).unwrap();
    assert_eq!((r.scrap_index, r.value), (7, 2.75));
    let r = parse(TOPIC, r#"{"scrapIndex":" 4 ","value":" -3e2 "}"#).unwrap();
    assert_eq!((r.scrap_index, r.value), (4, -300.0));
}

#[test]
fn integral_float_index_is_accepted() {
    assert_eq!(
        parse(TOPIC, r#"{"scrapIndex":2.0,"value":1}"#)
            .unwrap()
            .scrap_index,
        2
    );
}

#[test]
fn offsets_and_any_fraction_give_the_same_instant() {
    let expected = Timestamp::parse_rfc3339("2026-01-01T12:00:00.123456789Z").unwrap();
    for ts in [
        "2026-01-01T12:00:00.123456789Z",
        "2026-01-01T13:00:00.123456789+01:00",
        "2026-01-01T06:30:00.123456789-05:30",
    ] {
        let payload = format!(r#"{{"scrapIndex":1,"value":1,"timestamp":"{ts}"}}"#);
        assert_eq!(parse(TOPIC, &payload).unwrap().event_time, expected, "{ts}");
    }
    for (ts, nanos) in [
        ("2026-01-01T12:00:00.1Z", 100_000_000),
        ("2026-01-01T12:00:00.12345Z", 123_450_000),
    ] {
        let payload = format!(r#"{{"scrapIndex":1,"value":1,"zeitstempel":"{ts}"}}"#);
        let t = parse(TOPIC, &payload).unwrap().event_time;
        assert_eq!(t.unix_nanos() % 1_000_000_000, nanos, "{ts}");
    }
}

#[test]
fn times_without_an_offset_are_read_in_the_plant_zone_or_rejected() {
    let berlin = ParseLimits {
        naive_times: Some(PlantClock::new("Europe/Berlin", "06:00").unwrap()),
        ..ParseLimits::default()
    };
    let at = |ts: &str, limits: &ParseLimits| {
        let payload = format!(r#"{{"scrapIndex":1,"value":1,"zeitstempel":"{ts}"}}"#);
        parse_reading(TOPIC, payload.as_bytes(), received(), limits).map(|r| r.event_time)
    };
    let utc = |ts: &str| Timestamp::parse_rfc3339(ts).unwrap();
    // Winter (CET), summer (CEST), a fraction, a space for the T.
    assert_eq!(
        at("2026-12-01T14:14:54", &berlin),
        Ok(utc("2026-12-01T13:14:54Z"))
    );
    assert_eq!(
        at("2026-07-01 14:14:54.250", &berlin),
        Ok(utc("2026-07-01T12:14:54.250Z"))
    );
    // In the hour the clocks skip: the moment they jump. In the repeated hour: the first.
    assert_eq!(
        at("2026-03-29T02:30:00", &berlin),
        Ok(utc("2026-03-29T01:00:00Z"))
    );
    assert_eq!(
        at("2026-10-25T02:30:00", &berlin),
        Ok(utc("2026-10-25T00:30:00Z"))
    );
    // An offset still wins; a date alone or a zone name is no device time.
    assert_eq!(
        at("2026-12-01T14:14:54+00:00", &berlin),
        Ok(utc("2026-12-01T14:14:54Z"))
    );
    for text in [
        "2026-12-01",
        "2026-12-01T14:14:54[Europe/Paris]",
        "2026-12-01T25:00:00",
    ] {
        let err = at(text, &berlin).unwrap_err();
        assert_eq!(err.reason(), RejectionReason::BadValue, "{text}");
    }
    // Without a plant clock they are rejected, naming the field.
    let err = at("2026-12-01T14:14:54", &ParseLimits::default()).unwrap_err();
    assert_eq!(err.reason(), RejectionReason::BadValue);
    assert!(err.to_string().contains("zeitstempel"), "{err}");
}

#[test]
fn epoch_milliseconds_are_accepted_as_number_and_string() {
    let expected = Timestamp::from_unix_millis(1_767_268_800_123).unwrap();
    for payload in [
        r#"{"scrapIndex":1,"value":1,"timestamp":1767268800123}"#,
        r#"{"scrapIndex":1,"value":1,"zeitstempel":1767268800123.0}"#,
        r#"{"scrapIndex":1,"value":1,"timestamp":"1767268800123"}"#,
    ] {
        assert_eq!(
            parse(TOPIC, payload).unwrap().event_time,
            expected,
            "{payload}"
        );
    }
}

#[test]
fn missing_or_null_time_means_time_of_receipt() {
    for payload in [
        r#"{"scrapIndex":1,"value":1}"#,
        r#"{"scrapIndex":1,"value":1,"timestamp":null}"#,
    ] {
        let r = parse(TOPIC, payload).unwrap();
        assert_eq!(r.event_time, received());
        assert!(!r.time_from_payload);
    }
}

#[test]
fn unknown_fields_are_ignored_whatever_their_type() {
    let r = parse(
        TOPIC,
        r#"{"extra":{"nested":[1,2,{"x":null}]},"scrapIndex":1,"note":"ok","value":2,"flag":true}"#,
    )
    .unwrap();
    assert_eq!(r.value, 2.0);
}

#[test]
fn escaped_strings_are_understood() {
    let r = parse(
        r"machines/A\1/scrap",
        r#"{"machineId":"A\\1","scrapIndex":"\u0031","value":1}"#,
    )
    .unwrap();
    assert_eq!((r.machine, r.scrap_index), (r"A\1", 1));
}

#[test]
fn machine_id_in_payload_must_equal_the_topic_level() {
    assert_eq!(
        reason(TOPIC, r#"{"machineId":"B1","scrapIndex":1,"value":1}"#),
        RejectionReason::MachineMismatch
    );
    assert_eq!(
        reason(TOPIC, r#"{"maschinenId":"a1","scrapIndex":1,"value":1}"#),
        RejectionReason::MachineMismatch
    );
    match parse(TOPIC, r#"{"maschinenId":"B1","scrapIndex":1,"value":1}"#) {
        Err(Rejection::MachineMismatch {
            topic_machine,
            payload_machine,
        }) => {
            assert_eq!(
                (topic_machine.as_str(), payload_machine.as_str()),
                ("A1", "B1")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        parse(
            "machines/7/scrap",
            r#"{"machineId":7,"scrapIndex":1,"value":1}"#
        )
        .is_ok()
    );
}

#[test]
fn empty_topic_level_is_a_missing_field() {
    assert_eq!(
        reason(
            "machines//scrap",
            r#"{"machineId":"A1","scrapIndex":1,"value":1}"#
        ),
        RejectionReason::MissingField
    );
}

#[test]
fn machine_ids_that_cannot_be_a_topic_level_are_refused() {
    let long = format!("machines/{}/scrap", "x".repeat(300));
    assert_eq!(
        reason(&long, r#"{"scrapIndex":1,"value":1}"#),
        RejectionReason::BadValue
    );
    assert_eq!(
        reason("machines/a\0b/scrap", r#"{"scrapIndex":1,"value":1}"#),
        RejectionReason::BadValue
    );
}

#[test]
fn missing_fields_are_named() {
    assert_eq!(
        parse(TOPIC, r#"{"value":1}"#).unwrap_err(),
        Rejection::MissingField {
            field: "scrapIndex"
        }
    );
    assert_eq!(
        parse(TOPIC, r#"{"scrapIndex":1}"#).unwrap_err(),
        Rejection::MissingField { field: "value" }
    );
    assert_eq!(
        parse(TOPIC, r#"{"scrapIndex":1,"value":null}"#).unwrap_err(),
        Rejection::MissingField { field: "value" }
    );
    assert_eq!(reason(TOPIC, "{}"), RejectionReason::MissingField);
}

#[test]
fn unusable_values_are_bad_values() {
    for payload in [
        r#"{"scrapIndex":-1,"value":1}"#,
        r#"{"scrapIndex":1.5,"value":1}"#,
        r#"{"scrapIndex":"two","value":1}"#,
        r#"{"scrapIndex":4294967296,"value":1}"#,
        r#"{"scrapIndex":true,"value":1}"#,
        r#"{"scrapIndex":1,"value":"abc"}"#,
        r#"{"scrapIndex":1,"value":"NaN"}"#,
        r#"{"scrapIndex":1,"value":"inf"}"#,
        r#"{"scrapIndex":1,"value":[1]}"#,
        r#"{"scrapIndex":1,"value":1,"timestamp":"yesterday"}"#,
        r#"{"scrapIndex":1,"value":1,"timestamp":"2026-13-01T00:00:00Z"}"#,
        r#"{"scrapIndex":1,"value":1,"timestamp":"2026-01-01 12:00:00"}"#,
        r#"{"scrapIndex":1,"value":1,"timestamp":1e300}"#,
        r#"{"scrapIndex":1,"value":1,"timestamp":{}}"#,
        r#"{"scrapIndex":1,"scrapeIndex":2,"value":1}"#,
        r#"{"machineId":["A1"],"scrapIndex":1,"value":1}"#,
    ] {
        assert_eq!(
            reason(TOPIC, payload),
            RejectionReason::BadValue,
            "{payload}"
        );
    }
    let detail = parse(TOPIC, r#"{"scrapIndex":"two","value":1}"#)
        .unwrap_err()
        .to_string();
    assert!(
        detail.contains("scrapIndex") && detail.contains("two"),
        "{detail}"
    );
}

#[test]
fn huge_numbers_in_json_are_not_finite_and_refused() {
    assert_eq!(
        reason(TOPIC, r#"{"scrapIndex":1,"value":1e400}"#),
        RejectionReason::InvalidJson
    );
}

#[test]
fn non_objects_and_broken_json_are_invalid_json() {
    for payload in [
        "",
        "not json",
        "[1,2]",
        "42",
        "null",
        r#"{"scrapIndex":1,"value":1"#,
        r#"{"scrapIndex":1,"value":1} trailing"#,
        r#"{"value":1,"value":2,"scrapIndex":1}"#,
    ] {
        assert_eq!(
            reason(TOPIC, payload),
            RejectionReason::InvalidJson,
            "{payload:?}"
        );
    }
    let invalid_utf8 = [b'{', b'"', 0xff, b'"', b':', b'1', b'}'];
    let err = parse_reading(TOPIC, &invalid_utf8, received(), &ParseLimits::default()).unwrap_err();
    assert_eq!(err.reason(), RejectionReason::InvalidJson);
}

#[test]
fn oversized_payloads_are_too_large_before_parsing() {
    let limits = ParseLimits {
        max_payload_bytes: 64,
        ..ParseLimits::default()
    };
    let payload = format!(r#"{{"scrapIndex":1,"value":1,"pad":"{}"}}"#, "x".repeat(64));
    let err = parse_reading(TOPIC, payload.as_bytes(), received(), &limits).unwrap_err();
    assert_eq!(
        err,
        Rejection::TooLarge {
            size: payload.len(),
            limit: 64
        }
    );
    let default_limit = ParseLimits::default().max_payload_bytes;
    assert_eq!(default_limit, 65_536);
    let exactly = vec![b' '; default_limit];
    assert_eq!(
        parse_reading(TOPIC, &exactly, received(), &ParseLimits::default())
            .unwrap_err()
            .reason(),
        RejectionReason::InvalidJson,
        "a payload of exactly the limit is parsed"
    );
}

fn store(max_keys: usize) -> WindowStore {
    WindowStore::new(WindowConfig {
        window: Duration::from_secs(60),
        max_future_skew: Duration::from_secs(5),
        max_keys,
        key_idle_ttl: Duration::from_secs(600),
    })
}

#[test]
fn late_future_and_too_many_keys_are_decided_by_the_window() {
    let mut s = store(1);
    let now = received();
    let late = parse(
        TOPIC,
        r#"{"scrapIndex":1,"value":1,"timestamp":"2026-01-01T11:59:30Z"}"#,
    )
    .unwrap();
    assert_eq!(
        s.accept(&late, now).unwrap_err().reason(),
        RejectionReason::Late
    );
    let edge = parse(
        TOPIC,
        r#"{"scrapIndex":1,"value":1,"timestamp":"2026-01-01T11:59:30.001Z"}"#,
    )
    .unwrap();
    assert!(s.accept(&edge, now).is_ok());
    let future = parse(
        TOPIC,
        r#"{"scrapIndex":1,"value":1,"timestamp":"2026-01-01T12:00:35.001Z"}"#,
    )
    .unwrap();
    assert_eq!(
        s.accept(&future, now).unwrap_err().reason(),
        RejectionReason::Future
    );
    let skew_edge = parse(
        TOPIC,
        r#"{"scrapIndex":1,"value":1,"timestamp":"2026-01-01T12:00:35Z"}"#,
    )
    .unwrap();
    assert!(s.accept(&skew_edge, now).is_ok());
    let other_key = parse(TOPIC, r#"{"scrapIndex":2,"value":1}"#).unwrap();
    assert_eq!(
        s.accept(&other_key, now).unwrap_err(),
        Rejection::TooManyKeys { limit: 1 }
    );
    let id = s.lookup("A1", 1).unwrap();
    assert_eq!(s.totals(id).unwrap().count, 2, "rejections changed nothing");
    assert_eq!(s.lookup("A1", 2), None);
}
