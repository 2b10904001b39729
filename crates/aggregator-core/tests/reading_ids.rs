//! Reading ids end to end through the public API: parsed from payloads (string or integer, at
//! most 64 bytes, else `bad_value` naming `id`), duplicates dropped per machine within the
//! window, ids leaving with their readings, and readings on prefixed (sharded) topics.

use std::time::Duration;

use aggregator_core::rejection::RejectionReason;
use aggregator_core::{
    Accepted, ParseLimits, ParsedReading, Rejection, Timestamp, WindowConfig, WindowStore,
    parse_reading, parse_reading_with_id,
};

fn received() -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-01T12:00:30Z").unwrap()
}

fn parse<'t>(topic: &'t str, payload: &str) -> Result<ParsedReading<'t>, Rejection> {
    parse_reading_with_id(
        topic,
        payload.as_bytes(),
        received(),
        &ParseLimits::default(),
    )
}

fn id_of(payload: &str) -> Option<String> {
    parse("machines/A1/scrap", payload)
        .unwrap()
        .id
        .map(|id| id.as_str().to_owned())
}

#[test]
fn ids_are_strings_or_integers() {
    assert_eq!(id_of(r#"{"scrapIndex":1,"value":2}"#), None);
    assert_eq!(id_of(r#"{"scrapIndex":1,"value":2,"id":null}"#), None);
    assert_eq!(
        id_of(r#"{"scrapIndex":1,"value":2,"id":"r-17"}"#).as_deref(),
        Some("r-17")
    );
    assert_eq!(
        id_of(r#"{"scrapIndex":1,"value":2,"id":17}"#).as_deref(),
        Some("17")
    );
    assert_eq!(
        id_of(r#"{"scrapIndex":1,"value":2,"id":-3}"#).as_deref(),
        Some("-3")
    );
    assert_eq!(
        id_of(r#"{"scrapIndex":1,"value":2,"id":18446744073709551615}"#).as_deref(),
        Some("18446744073709551615")
    );
    // Escapes are decoded before the length check; spaces are kept.
    assert_eq!(
        id_of(r#"{"scrapIndex":1,"value":2,"id":" a\u00e4 "}"#).as_deref(),
        Some(" aä ")
    );
    let max = "x".repeat(64);
    assert_eq!(
        id_of(&format!(r#"{{"scrapIndex":1,"value":2,"id":"{max}"}}"#)),
        Some(max)
    );
}

#[test]
fn bad_ids_are_bad_values_naming_id() {
    for bad in [
        r#""""#.to_owned(),
        format!(r#""{}""#, "x".repeat(65)),
        "1.5".to_owned(),
        "1e3".to_owned(),
        "true".to_owned(),
        "[1]".to_owned(),
        r#"{"a":1}"#.to_owned(),
        "1e30".to_owned(),
    ] {
        let payload = format!(r#"{{"scrapIndex":1,"value":2,"id":{bad}}}"#);
        for result in [
            parse("machines/A1/scrap", &payload).map(|p| p.reading),
            parse_reading(
                "machines/A1/scrap",
                payload.as_bytes(),
                received(),
                &ParseLimits::default(),
            ),
        ] {
            match result {
                Err(Rejection::BadValue { field, .. }) => assert_eq!(field, "id", "{payload}"),
                other => panic!("{payload}: {other:?}"),
            }
        }
    }
    let twice = r#"{"scrapIndex":1,"value":2,"id":1,"id":2}"#;
    assert_eq!(
        parse("machines/A1/scrap", twice).unwrap_err().reason(),
        RejectionReason::InvalidJson
    );
}

#[test]
fn prefixed_topics_are_readings_topics() {
    let p = parse("shard/2/machines/A1/scrap", r#"{"scrapIndex":1,"value":2}"#).unwrap();
    assert_eq!(p.reading.machine, "A1");
    assert_eq!(
        parse("shard/2/machines//scrap", r#"{"scrapIndex":1,"value":2}"#),
        Err(Rejection::MissingField { field: "machineId" })
    );
    let mismatch = parse(
        "shard/2/machines/A1/scrap",
        r#"{"machineId":"B1","scrapIndex":1,"value":2}"#,
    );
    assert_eq!(
        mismatch.unwrap_err().reason(),
        RejectionReason::MachineMismatch
    );
    assert_eq!(
        parse("shard/2/other/A1/scrap", r#"{"scrapIndex":1,"value":2}"#)
            .unwrap_err()
            .reason(),
        RejectionReason::BadValue
    );
}

fn store() -> WindowStore {
    WindowStore::new(WindowConfig {
        window: Duration::from_secs(60),
        max_keys: 2,
        ..WindowConfig::default()
    })
}

fn offer(store: &mut WindowStore, topic: &str, payload: &str, now: Timestamp) -> Accepted {
    let parsed =
        parse_reading_with_id(topic, payload.as_bytes(), now, &ParseLimits::default()).unwrap();
    store
        .accept_with_id(&parsed.reading, parsed.id.as_ref(), now)
        .unwrap()
}

#[test]
fn a_resent_reading_counts_once_per_machine_within_the_window() {
    let mut s = store();
    let t0 = received();
    let first = offer(
        &mut s,
        "machines/A1/scrap",
        r#"{"scrapIndex":1,"value":2,"id":7}"#,
        t0,
    );
    let Accepted::Counted(key) = first else {
        panic!("{first:?}")
    };
    // Same id as a string, on another index, a second later: the same reading of A1.
    let again = offer(
        &mut s,
        "machines/A1/scrap",
        r#"{"scrapIndex":2,"value":5,"id":"7"}"#,
        t0.saturating_add(Duration::from_secs(1)),
    );
    assert_eq!(
        again,
        Accepted::Duplicate {
            first_counted_at: t0
        }
    );
    assert_eq!(s.lookup("A1", 2), None, "a duplicate creates no key");
    // The same id on another machine is another reading.
    let other = offer(
        &mut s,
        "machines/B1/scrap",
        r#"{"scrapIndex":1,"value":2,"id":7}"#,
        t0,
    );
    assert!(matches!(other, Accepted::Counted(_)), "{other:?}");
    // Without id every reading counts.
    for _ in 0..3 {
        let plain = offer(
            &mut s,
            "machines/A1/scrap",
            r#"{"scrapIndex":1,"value":1}"#,
            t0,
        );
        assert_eq!(plain, Accepted::Counted(key));
    }
    assert_eq!(s.totals(key).unwrap().sum, 5.0);
    assert_eq!(s.tracked_ids(), 2);

    // Once the counted reading has left the window, its id goes with it and may count again.
    let later = t0.saturating_add(Duration::from_secs(60));
    let mut changed = Vec::new();
    s.expire(later, &mut changed);
    assert_eq!(s.tracked_ids(), 0);
    let fresh = offer(
        &mut s,
        "machines/A1/scrap",
        r#"{"scrapIndex":1,"value":4,"id":7}"#,
        later,
    );
    assert_eq!(fresh, Accepted::Counted(key));
    assert_eq!(s.totals(key).unwrap().sum, 4.0);
}

#[test]
fn an_id_outside_the_window_does_not_count_as_duplicate_before_expiry_runs() {
    let mut s = store();
    let t0 = received();
    offer(
        &mut s,
        "machines/A1/scrap",
        r#"{"scrapIndex":1,"value":2,"id":"a"}"#,
        t0,
    );
    // No expire call: the first reading is outside the window at t0 + 60 s all the same.
    let later = t0.saturating_add(Duration::from_secs(60));
    let again = offer(
        &mut s,
        "machines/A1/scrap",
        r#"{"scrapIndex":1,"value":3,"id":"a"}"#,
        later,
    );
    assert!(matches!(again, Accepted::Counted(_)), "{again:?}");
    let mut changed = Vec::new();
    s.expire(later, &mut changed);
    assert_eq!(s.tracked_ids(), 1, "the new reading's id is still held");
    let key = s.lookup("A1", 1).unwrap();
    assert_eq!(s.totals(key).unwrap().sum, 3.0);
}

#[test]
fn rejections_come_before_duplicates_and_record_no_id() {
    let mut s = store();
    let t0 = received();
    for m in ["A", "B"] {
        offer(
            &mut s,
            &format!("machines/{m}/scrap"),
            r#"{"scrapIndex":1,"value":1}"#,
            t0,
        );
    }
    let parsed = parse_reading_with_id(
        "machines/C/scrap",
        br#"{"scrapIndex":1,"value":1,"id":1}"#,
        t0,
        &ParseLimits::default(),
    )
    .unwrap();
    for _ in 0..2 {
        let err = s
            .accept_with_id(&parsed.reading, parsed.id.as_ref(), t0)
            .unwrap_err();
        assert_eq!(err.reason(), RejectionReason::TooManyKeys);
    }
    assert_eq!(s.tracked_ids(), 0);
}

#[test]
fn id_memory_per_reading_stays_small() {
    let mut s = WindowStore::new(WindowConfig::default());
    let t0 = received();
    let machines: Vec<String> = (0..20).map(|m| format!("M{m}")).collect();
    let mut changed = Vec::new();
    // 100 000 readings over 100 keys within one window, integer ids (inline).
    for n in 0..100_000_i64 {
        let now = t0.saturating_add(Duration::from_micros(500 * n as u64));
        let reading = aggregator_core::Reading {
            machine: &machines[(n % 20) as usize],
            scrap_index: (n % 5) as u32,
            value: 1.0,
            event_time: now,
            time_from_payload: false,
        };
        let id = aggregator_core::ReadingId::from_i64(n);
        s.accept_with_id(&reading, Some(&id), now).unwrap();
        if n % 1000 == 0 {
            s.expire(now, &mut changed);
        }
    }
    assert_eq!(s.tracked_ids(), 100_000);
    let per_reading = s.id_bytes() as f64 / s.tracked_ids() as f64;
    // A 40-byte record at hashbrown's load factor (at worst half full right after growing)
    // plus a 16-byte mark in a doubling queue.
    assert!(
        per_reading <= 120.0,
        "{per_reading} bytes of id state per reading"
    );
}
