//! Plant time over DST: local days, hours, weeks and shifts as instants, checked by property
//! tests in a zone with DST (Europe/Berlin, America/New_York), one without (Asia/Tokyo) and a
//! half-hour zone (Asia/Kolkata), and by the DST weekends of 2026 in Berlin.

use aggregator_core::Timestamp;
use aggregator_core::plant_time::{PlantClock, ShiftCalendar, ShiftRule, Step};
use proptest::prelude::*;

const HOUR: i64 = 3_600_000_000_000;
const ZONES: [&str; 4] = [
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Asia/Kolkata",
];

fn ts(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).unwrap()
}

fn hours(from: Timestamp, to: Timestamp) -> f64 {
    (to.unix_nanos() - from.unix_nanos()) as f64 / HOUR as f64
}

fn rule(name: &str, start: &str, end: &str) -> ShiftRule {
    ShiftRule {
        name: name.into(),
        start: start.into(),
        end: end.into(),
        ..ShiftRule::default()
    }
}

fn three_shifts(zone: &str, day_start: &str) -> ShiftCalendar {
    let clock = PlantClock::new(zone, day_start).unwrap();
    let rules = [
        rule("Early", "06:00", "14:00"),
        rule("Late", "14:00", "22:00"),
        rule("Night", "22:00", "06:00"),
    ];
    ShiftCalendar::new(clock, &rules).unwrap()
}

/// An instant between 2020 and 2032, to the second.
fn instant() -> impl Strategy<Value = Timestamp> {
    (1_577_836_800i64..1_956_528_000).prop_map(|s| Timestamp::from_unix_nanos(s * 1_000_000_000))
}

/// Half the time `t` as it is, half the time moved to within two days of one of the DST
/// changes of `zone` in 2020 to 2031 (`pick` chooses which), where the rules are tested
/// hardest. Zones without DST keep `t`.
fn near_dst_change(zone: &str, t: Timestamp, pick: (bool, usize, i64)) -> Timestamp {
    let (near, which, seconds) = pick;
    if !near {
        return t;
    }
    let tz = jiff::tz::TimeZone::get(zone).unwrap();
    let from = jiff::Timestamp::from_second(1_577_836_800).unwrap();
    let Some(change) = tz.following(from).nth(which) else {
        return t;
    };
    Timestamp::from_unix_nanos((change.timestamp().as_second() + seconds) * 1_000_000_000)
}

fn dst_pick() -> impl Strategy<Value = (bool, usize, i64)> {
    (any::<bool>(), 0usize..24, -172_800i64..172_800)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn periods_tile_time_without_gaps_or_overlaps(
        zone in 0..ZONES.len(),
        day_start in prop::sample::select(vec!["00:00", "06:00", "02:30"]),
        step in prop::sample::select(vec![Step::Minute, Step::Hour, Step::Shift, Step::Day, Step::Week]),
        from in instant(),
        pick in dst_pick(),
        span_hours in 1i64..400,
    ) {
        let calendar = three_shifts(ZONES[zone], day_start);
        let from = near_dst_change(ZONES[zone], from, pick);
        let to = Timestamp::from_unix_nanos(from.unix_nanos() + span_hours * HOUR / 8);
        let periods = calendar.periods(step, "A1", from, to);
        prop_assert!(!periods.is_empty());
        prop_assert!(periods[0].start <= from && to <= periods.last().unwrap().end);
        for pair in periods.windows(2) {
            prop_assert_eq!(pair[0].end, pair[1].start, "{:?}", pair);
        }
        for p in &periods {
            prop_assert!(p.start < p.end);
            let length = hours(p.start, p.end);
            // Lengths a DST change can give; a day start in the skipped hour (02:30 in
            // Berlin) makes the days beside the change 23.5 hours long.
            let no_dst = matches!(ZONES[zone], "Asia/Tokyo" | "Asia/Kolkata");
            let (nominal, change) = match step {
                Step::Minute => (1.0 / 60.0, 0.0),
                Step::Hour => (1.0, 0.0),
                Step::Shift => (8.0, 1.0),
                Step::Day => (24.0, 1.0),
                Step::Week => (168.0, 1.0),
            };
            let change = if no_dst { 0.0 } else { change };
            prop_assert!(
                (length - nominal).abs() <= change + 1e-9,
                "{step:?} {length} h: {p:?}"
            );
        }
    }

    #[test]
    fn every_instant_is_in_one_day_and_one_shift(
        zone in 0..ZONES.len(),
        t in instant(),
        pick in dst_pick(),
    ) {
        let calendar = three_shifts(ZONES[zone], "06:00");
        let t = near_dst_change(ZONES[zone], t, pick);
        let clock = calendar.clock();
        let shift = calendar.shift_at("A1", t).expect("three shifts cover the day");
        prop_assert!(shift.start <= t && t < shift.end);
        // The shift belongs to the plant day it starts on, and that day holds its start.
        prop_assert_eq!(clock.plant_day(shift.start), shift.day);
        let day = &calendar.periods(Step::Day, "A1", t, Timestamp::from_unix_nanos(t.unix_nanos() + 1))[0];
        prop_assert!(day.start <= t && t < day.end);
        prop_assert_eq!(day.day, clock.plant_day(t));
        // Three shifts a day starting at the day start tile the plant day exactly.
        let shifts = calendar.shifts_between("A1", day.start, day.end);
        prop_assert_eq!(shifts.len(), 3);
        prop_assert_eq!((shifts[0].start, shifts[2].end), (day.start, day.end));
        let previous = calendar.previous_shift("A1", t).unwrap();
        prop_assert_eq!(previous.end, shift.start);
    }
}

#[test]
fn night_shifts_over_the_dst_changes_last_seven_and_nine_hours() {
    let calendar = three_shifts("Europe/Berlin", "06:00");
    // The night of 28 to 29 March 2026 loses 02:00-03:00.
    let spring = calendar.shift_at("A1", ts("2026-03-29T00:00:00Z")).unwrap();
    assert_eq!(spring.shift.as_deref(), Some("Night"));
    assert_eq!(spring.day.to_string(), "2026-03-28");
    assert_eq!(
        (spring.start, spring.end),
        (ts("2026-03-28T21:00:00Z"), ts("2026-03-29T04:00:00Z"))
    );
    // The night of 24 to 25 October 2026 has 02:00-03:00 twice.
    let autumn = calendar.shift_at("A1", ts("2026-10-25T01:30:00Z")).unwrap();
    assert_eq!(autumn.day.to_string(), "2026-10-24");
    assert_eq!(hours(autumn.start, autumn.end), 9.0);
    let day = calendar.periods(Step::Day, "A1", autumn.start, autumn.start);
    assert!(day.is_empty(), "an empty range has no periods");
    let hours_of_day = calendar.periods(
        Step::Hour,
        "A1",
        ts("2026-10-24T22:00:00Z"),
        ts("2026-10-25T23:00:00Z"),
    );
    assert_eq!(
        hours_of_day.len(),
        25,
        "the local day of 25 October has 25 hours"
    );
    let clock = calendar.clock();
    let labels: Vec<String> = hours_of_day[..4]
        .iter()
        .map(|p| clock.format_local(p.start))
        .collect();
    assert_eq!(
        labels,
        [
            "2026-10-25T00:00:00+02:00",
            "2026-10-25T01:00:00+02:00",
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:00:00+01:00"
        ]
    );
}

#[test]
fn half_hour_zones_have_local_hours_and_days() {
    let calendar = three_shifts("Asia/Kolkata", "00:00");
    let hour = &calendar.periods(
        Step::Hour,
        "A1",
        ts("2026-12-01T10:00:00Z"),
        ts("2026-12-01T10:00:01Z"),
    )[0];
    assert_eq!(hour.start, ts("2026-12-01T09:30:00Z"));
    let early = calendar.shift_at("A1", ts("2026-12-01T01:00:00Z")).unwrap();
    assert_eq!(early.start, ts("2026-12-01T00:30:00Z"));
    let week = &calendar.periods(
        Step::Week,
        "A1",
        ts("2026-12-03T12:00:00Z"),
        ts("2026-12-03T12:00:01Z"),
    )[0];
    // Monday 30 November 2026, 00:00 IST.
    assert_eq!(week.start, ts("2026-11-29T18:30:00Z"));
    assert_eq!(week.day.to_string(), "2026-11-30");
}

#[test]
fn shifts_can_be_limited_to_days_and_machines() {
    let clock = PlantClock::new("Europe/Berlin", "06:00").unwrap();
    let rules = [
        ShiftRule {
            weekdays: vec![
                "Mon".into(),
                "tue".into(),
                "wednesday".into(),
                "thu".into(),
                "fri".into(),
            ],
            ..rule("Early", "06:00", "14:00")
        },
        ShiftRule {
            weekdays: vec!["sat".into(), "sun".into()],
            ..rule("Weekend", "06:00", "18:00")
        },
        ShiftRule {
            machines: vec!["B7".into()],
            ..rule("Press night", "22:00", "06:00")
        },
        ShiftRule {
            machines: vec!["C1".into()],
            ..rule("Oven night", "20:00", "06:00")
        },
    ];
    let calendar = ShiftCalendar::new(clock, &rules).unwrap();
    // Saturday 5 December 2026, 10:00 CET.
    let saturday = ts("2026-12-05T09:00:00Z");
    assert_eq!(
        calendar.shift_at("A1", saturday).unwrap().shift.as_deref(),
        Some("Weekend")
    );
    // Friday 4 December, 23:00: a night only for B7.
    let night = ts("2026-12-04T22:00:00Z");
    assert_eq!(
        calendar.shift_at("B7", night).unwrap().shift.as_deref(),
        Some("Press night")
    );
    assert_eq!(calendar.shift_at("A1", night), None);
    // A1's last shift before Saturday was Friday's early shift.
    let previous = calendar.previous_shift("A1", saturday).unwrap();
    assert_eq!(
        (previous.shift.as_deref(), previous.day.to_string().as_str()),
        (Some("Early"), "2026-12-04")
    );
}

#[test]
fn bad_rules_are_named_in_one_line() {
    let clock = || PlantClock::new("Europe/Berlin", "06:00").unwrap();
    let error = |rules: &[ShiftRule]| ShiftCalendar::new(clock(), rules).unwrap_err().to_string();
    assert_eq!(
        error(&[
            rule("Early", "06:00", "14:00"),
            rule("Late", "13:00", "22:00")
        ]),
        "[[shift]] rule 2 (\"Late\"): overlaps rule 1 (\"Early\") on monday for a machine both apply to"
    );
    // A Sunday night runs into Monday morning.
    let sunday_night = ShiftRule {
        weekdays: vec!["sun".into()],
        ..rule("Night", "22:00", "06:00")
    };
    let monday = ShiftRule {
        weekdays: vec!["mon".into()],
        ..rule("Early", "05:00", "13:00")
    };
    assert!(
        error(&[monday, sunday_night])
            .ends_with("overlaps rule 1 (\"Early\") on monday for a machine both apply to")
    );
    assert_eq!(
        error(&[
            rule("Early", "06:00", "14:00"),
            rule("Early", "14:00", "22:00")
        ]),
        "[[shift]] rule 2 (\"Early\"): the name is already that of rule 1"
    );
    assert_eq!(
        error(&[rule("Late", "14:00", "24:00")]),
        "[[shift]] rule 1 (\"Late\"): end: \"24:00\" is not a time of day (HH:MM, 00:00 to 23:59)"
    );
    let typo = ShiftRule {
        weekdays: vec!["mnday".into()],
        ..rule("Early", "06:00", "14:00")
    };
    assert!(error(&[typo]).ends_with("weekdays: \"mnday\" is not a day (mon .. sun)"));
    assert!(
        error(&[rule("All day", "06:00", "06:00")]).contains("start and end are the same time")
    );
    assert!(error(&[rule(" ", "06:00", "07:00")]).ends_with("needs a name"));
    let a = ShiftRule {
        machines: vec!["A1".into()],
        ..rule("A", "06:00", "14:00")
    };
    let b = ShiftRule {
        machines: vec!["B1".into()],
        ..rule("B", "07:00", "15:00")
    };
    assert!(
        ShiftCalendar::new(clock(), &[a, b]).is_ok(),
        "rules for other machines may overlap"
    );
}

#[test]
fn steps_are_named_as_in_queries() {
    for step in Step::ALL {
        assert_eq!(step.as_str().parse::<Step>(), Ok(step));
    }
    assert_eq!(
        "month".parse::<Step>().unwrap_err(),
        "\"month\" is not one of minute, hour, shift, day, week"
    );
}
