//! Event and clock time as integer nanoseconds since the Unix epoch.
//!
//! An `i64` of nanoseconds covers 1677 to 2262, keeps the window comparisons exact (no float
//! time), and makes a buffered reading 16 bytes (time + value).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const NANOS_PER_MILLI: i64 = 1_000_000;

/// An instant as nanoseconds since 1970-01-01T00:00:00Z.
///
/// Used both for a reading's event time and for the ingest clock; the caller supplies "now".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// Why a timestamp could not be built from its source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The text is not RFC 3339 (`2026-01-01T12:00:00Z`, `...+02:00`, any fraction).
    #[error("not an RFC 3339 time: {0}")]
    NotRfc3339(String),
    /// The instant lies outside 1677..2262, which nanoseconds in an `i64` can hold.
    #[error("time out of range")]
    OutOfRange,
    /// An epoch-milliseconds number that is not finite.
    #[error("epoch milliseconds must be a finite number")]
    NotFinite,
}

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From nanoseconds since the epoch.
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// From whole milliseconds since the epoch; `None` outside the representable range.
    pub fn from_unix_millis(millis: i64) -> Option<Self> {
        millis.checked_mul(NANOS_PER_MILLI).map(Timestamp)
    }

    /// From (possibly fractional) milliseconds since the epoch, as sent by machines that use
    /// JavaScript's `Date.now()` style numbers.
    pub fn from_unix_millis_f64(millis: f64) -> Result<Self, TimestampError> {
        if !millis.is_finite() {
            return Err(TimestampError::NotFinite);
        }
        // Whole and fractional milliseconds apart: multiplying the whole number by 1e6 in
        // floating point would lose the last digits of a current epoch time.
        let whole = millis.trunc();
        // i64::MAX as f64 rounds up to 2^63, so the bound must be strict.
        if whole >= i64::MAX as f64 || whole < i64::MIN as f64 {
            return Err(TimestampError::OutOfRange);
        }
        let sub_milli = ((millis - whole) * NANOS_PER_MILLI as f64).round() as i64;
        (whole as i64)
            .checked_mul(NANOS_PER_MILLI)
            .and_then(|n| n.checked_add(sub_milli))
            .map(Timestamp)
            .ok_or(TimestampError::OutOfRange)
    }

    /// Whole milliseconds since the epoch (floored).
    pub fn unix_millis(self) -> i64 {
        self.0.div_euclid(NANOS_PER_MILLI)
    }

    /// Parses RFC 3339 with `Z` or a numeric offset and any number of fraction digits.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|e| TimestampError::NotRfc3339(e.to_string()))?;
        i64::try_from(parsed.unix_timestamp_nanos())
            .map(Timestamp)
            .map_err(|_| TimestampError::OutOfRange)
    }

    /// Converts a wall-clock reading taken by the caller (the core never reads the clock).
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(duration_nanos(d)),
            Err(e) => Timestamp(i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n)),
        }
    }

    /// This instant plus a duration, clamped at the end of the representable range.
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(duration_nanos(d)))
    }

    /// This instant minus a duration, clamped at the start of the representable range.
    pub fn saturating_sub(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_sub(duration_nanos(d)))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        let diff = self.0.saturating_sub(earlier.0);
        Duration::from_nanos(u64::try_from(diff).unwrap_or(0))
    }

    /// RFC 3339 in UTC with millisecond precision, as on the wire: `2026-01-01T12:00:30.123Z`.
    pub fn to_rfc3339_millis(self) -> String {
        let millis = self.unix_millis();
        let secs = millis.div_euclid(1000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let (h, min, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
        format!(
            "{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{:03}Z",
            millis.rem_euclid(1000)
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339_millis())
    }
}

/// `d` in nanoseconds, `i64::MAX` for durations beyond 292 years.
pub(crate) fn duration_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// well-known algorithm, chosen because it is branch-light and exact over the whole range.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_millis_in_utc() {
        let t = Timestamp::parse_rfc3339("2026-01-01T12:00:30.123456Z").unwrap();
        assert_eq!(t.to_rfc3339_millis(), "2026-01-01T12:00:30.123Z");
        assert_eq!(
            Timestamp::EPOCH.to_rfc3339_millis(),
            "1970-01-01T00:00:00.000Z"
        );
        let before = Timestamp::from_unix_millis(-1).unwrap();
        assert_eq!(before.to_rfc3339_millis(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn formatting_agrees_with_the_time_crate_across_years() {
        for millis in [
            0_i64,
            951_782_400_000,
            1_709_164_800_123,
            4_102_444_799_999,
            -86_400_000,
        ] {
            let ours = Timestamp::from_unix_millis(millis)
                .unwrap()
                .to_rfc3339_millis();
            let theirs = Timestamp::parse_rfc3339(&ours).unwrap();
            assert_eq!(theirs.unix_millis(), millis, "{ours}");
        }
    }

    #[test]
    fn offsets_and_fractions_parse_to_the_same_instant() {
        let z = Timestamp::parse_rfc3339("2026-01-01T12:00:00Z").unwrap();
        let off = Timestamp::parse_rfc3339("2026-01-01T14:00:00+02:00").unwrap();
        let frac = Timestamp::parse_rfc3339("2026-01-01T12:00:00.000000000Z").unwrap();
        let lower = Timestamp::parse_rfc3339("2026-01-01t12:00:00z");
        assert_eq!(z, off);
        assert_eq!(z, frac);
        assert_eq!(lower.ok(), Some(z));
    }

    #[test]
    fn fractional_millis_keep_sub_millisecond_precision() {
        let t = Timestamp::from_unix_millis_f64(1.5).unwrap();
        assert_eq!(t.unix_nanos(), 1_500_000);
        assert!(Timestamp::from_unix_millis_f64(f64::NAN).is_err());
        assert!(Timestamp::from_unix_millis_f64(1e300).is_err());
    }
}
