//! Plant time: the plant's IANA time zone, the local time its day starts at, its shift rules,
//! and the local periods (hour, shift, day, week) totals are reported in.
//!
//! Every period is a pair of instants, so a total over one is exact whatever the clocks do:
//! with DST a local day is 23 or 25 hours long and a night shift 7 or 9. A local time that a
//! DST change skips is taken as the moment the clocks jump; one it repeats, as its first
//! occurrence. That mapping never runs backwards, so local periods that do not overlap give
//! instants that do not overlap either, and periods next to each other leave no gap.

mod periods;
mod shifts;
mod totals;

pub use periods::{Period, Step};
pub use shifts::{Shift, ShiftCalendar, ShiftRule};
pub use totals::{PeriodTotal, StoredTotal, period_totals, span_totals};

pub use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};

use crate::Timestamp;

/// Why a zone, a time of day or a shift rule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlantTimeError {
    /// The zone is not in the time-zone database.
    #[error("unknown time zone {0:?} (an IANA name such as Europe/Berlin, or UTC)")]
    UnknownZone(String),
    /// A time of day that is not `HH:MM`.
    #[error("{0:?} is not a time of day (HH:MM, 00:00 to 23:59)")]
    BadClock(String),
    /// A shift rule that is wrong on its own or overlaps another; `rule` counts from 1.
    #[error("[[shift]] rule {rule} ({name:?}): {message}")]
    BadShift {
        /// The rule's position in the file, from 1.
        rule: usize,
        /// The rule's name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// The plant's clock: its time zone and the local time at which its day (and week, on
/// Mondays) starts.
#[derive(Debug, Clone)]
pub struct PlantClock {
    zone: TimeZone,
    name: String,
    day_start: Time,
}

impl PlantClock {
    /// The clock of `zone` (an IANA name) whose day starts at `day_start` (`HH:MM`).
    ///
    /// # Errors
    /// [`PlantTimeError::UnknownZone`] or [`PlantTimeError::BadClock`].
    pub fn new(zone: &str, day_start: &str) -> Result<Self, PlantTimeError> {
        let tz = TimeZone::get(zone).map_err(|_| PlantTimeError::UnknownZone(zone.to_owned()))?;
        Ok(Self {
            zone: tz,
            name: zone.to_owned(),
            day_start: parse_clock(day_start)?,
        })
    }

    /// UTC, days from midnight.
    pub fn utc() -> Self {
        Self {
            zone: TimeZone::UTC,
            name: "UTC".into(),
            day_start: Time::midnight(),
        }
    }

    /// The zone's name as configured.
    pub fn zone_name(&self) -> &str {
        &self.name
    }

    /// The local time at which a plant day starts.
    pub fn day_start(&self) -> Time {
        self.day_start
    }

    /// The local date and time at `t`.
    pub fn local(&self, t: Timestamp) -> DateTime {
        self.zone.to_datetime(to_jiff(t))
    }

    /// The offset from UTC at `t`, in seconds (east positive).
    pub fn offset_seconds(&self, t: Timestamp) -> i32 {
        self.zone.to_offset(to_jiff(t)).seconds()
    }

    /// The instant of a local date and time: the moment the clocks jump for a time a DST
    /// change skips, the first of two for a repeated one.
    pub fn instant(&self, local: DateTime) -> Timestamp {
        let ambiguous = self.zone.to_ambiguous_timestamp(local);
        let gap = matches!(ambiguous.offset(), AmbiguousOffset::Gap { .. });
        // A plant's dates lie far inside what both types hold; the end is for garbage in.
        let Ok(first) = ambiguous.earlier() else {
            return Timestamp::from_unix_nanos(i64::MAX);
        };
        // In a gap, `earlier` reads the time with the later offset, which lands before the
        // jump; the jump itself is the next transition.
        let jump = gap.then(|| self.zone.following(first).next());
        from_jiff(jump.flatten().map_or(first, |t| t.timestamp()))
    }

    /// The instant `time` on local `date`.
    pub fn at(&self, date: Date, time: Time) -> Timestamp {
        self.instant(date.to_datetime(time))
    }

    /// The plant day `t` belongs to: the local date whose day start is the last at or
    /// before `t` (with a 06:00 start, 05:59 on the 2nd belongs to the 1st).
    pub fn plant_day(&self, t: Timestamp) -> Date {
        let local = self.local(t);
        let date = local.date();
        if self.at(date, self.day_start) <= t {
            date
        } else {
            date.yesterday().unwrap_or(date)
        }
    }

    /// `t` as local RFC 3339 with its offset: `2026-03-29T03:00:00+02:00`.
    pub fn format_local(&self, t: Timestamp) -> String {
        let local = self.local(t);
        let offset = self.offset_seconds(t);
        let sign = if offset < 0 { '-' } else { '+' };
        let minutes = offset.unsigned_abs() / 60;
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
            local.year(),
            local.month(),
            local.day(),
            local.hour(),
            local.minute(),
            local.second(),
            minutes / 60,
            minutes % 60
        )
    }
}

/// `HH:MM` as a time of day.
///
/// # Errors
/// [`PlantTimeError::BadClock`] for anything else.
pub fn parse_clock(text: &str) -> Result<Time, PlantTimeError> {
    let bad = || PlantTimeError::BadClock(text.to_owned());
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return Err(bad());
    }
    let (h, m) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

/// Our instant as jiff's: every `i64` of nanoseconds (1677 to 2262) is inside jiff's range.
fn to_jiff(t: Timestamp) -> jiff::Timestamp {
    let nanos = i128::from(t.unix_nanos());
    // unwrap: jiff holds the years -9999 to 9999, far beyond what an i64 of nanoseconds spans.
    jiff::Timestamp::from_nanosecond(nanos).unwrap()
}

/// jiff's instant as ours, clamped to the years an `i64` of nanoseconds holds.
fn from_jiff(t: jiff::Timestamp) -> Timestamp {
    let nanos = t
        .as_nanosecond()
        .clamp(i128::from(i64::MIN), i128::from(i64::MAX));
    // unwrap: clamped into range just above.
    Timestamp::from_unix_nanos(i64::try_from(nanos).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(rfc3339: &str) -> Timestamp {
        Timestamp::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn clock_times_are_strict() {
        assert_eq!(
            parse_clock("06:00").unwrap(),
            Time::new(6, 0, 0, 0).unwrap()
        );
        assert_eq!(parse_clock("23:59").unwrap().minute(), 59);
        for bad in ["6:00", "24:00", "06:60", "0600", "06:00:00", "", "ab:cd"] {
            assert_eq!(parse_clock(bad), Err(PlantTimeError::BadClock(bad.into())));
        }
    }

    #[test]
    fn unknown_zones_are_named() {
        let err = PlantClock::new("Europe/Berln", "00:00").unwrap_err();
        assert!(err.to_string().contains("\"Europe/Berln\""), "{err}");
        assert!(PlantClock::new("Asia/Kolkata", "00:00").is_ok());
    }

    #[test]
    fn a_plant_day_starts_at_its_local_day_start() {
        let berlin = PlantClock::new("Europe/Berlin", "06:00").unwrap();
        let date = |y, m, d| Date::new(y, m, d).unwrap();
        // 05:59 local (CET, +01:00) is still the previous plant day.
        assert_eq!(
            berlin.plant_day(ts("2026-12-02T04:59:00Z")),
            date(2026, 12, 1)
        );
        assert_eq!(
            berlin.plant_day(ts("2026-12-02T05:00:00Z")),
            date(2026, 12, 2)
        );
        assert_eq!(
            berlin.format_local(ts("2026-07-01T04:00:00Z")),
            "2026-07-01T06:00:00+02:00"
        );
        let kolkata = PlantClock::new("Asia/Kolkata", "00:00").unwrap();
        assert_eq!(
            kolkata.at(date(2026, 12, 2), Time::midnight()),
            ts("2026-12-01T18:30:00Z")
        );
    }

    #[test]
    fn skipped_and_repeated_local_times_follow_the_compatible_rule() {
        let berlin = PlantClock::new("Europe/Berlin", "00:00").unwrap();
        let date = Date::new(2026, 3, 29).unwrap();
        // 02:30 does not exist on 29 March: the moment the clocks jump, 03:00 CEST.
        let skipped = berlin.at(date, Time::new(2, 30, 0, 0).unwrap());
        assert_eq!(skipped, ts("2026-03-29T01:00:00Z"));
        assert_eq!(berlin.at(date, Time::new(3, 0, 0, 0).unwrap()), skipped);
        // 02:30 happens twice on 25 October: the first, still CEST.
        let date = Date::new(2026, 10, 25).unwrap();
        let repeated = berlin.at(date, Time::new(2, 30, 0, 0).unwrap());
        assert_eq!(repeated, ts("2026-10-25T00:30:00Z"));
    }
}
