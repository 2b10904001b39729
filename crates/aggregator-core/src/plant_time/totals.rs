//! Totals over periods from stored buckets (minutes, or hours where every period boundary is
//! a whole UTC hour): the sum, count and average of every period, and whether it is final
//! (over, and every bucket in it closed). Exact: a period's total is the sum of whole buckets,
//! which the caller chooses so that none straddles a period boundary.

use super::Period;
use crate::Timestamp;
use crate::sum::CompensatedSum;

/// One stored bucket (a minute or an hour) of one key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredTotal {
    /// The bucket's start.
    pub start: Timestamp,
    /// Sum of its readings.
    pub sum: f64,
    /// How many readings.
    pub count: u64,
    /// No reading for this bucket can be accepted any more.
    pub is_final: bool,
}

/// A period with its total.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodTotal {
    /// The period.
    pub period: Period,
    /// Sum of the readings in it; 0 without any.
    pub sum: f64,
    /// How many readings.
    pub count: u64,
    /// Whether the period is over and every minute in it closed: the total will not change.
    pub is_final: bool,
}

impl PeriodTotal {
    /// `sum / count`, `None` without readings.
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// The total of each period from `buckets` (one key, ordered by start, none straddling a
/// period boundary). A period is final once it ended at or before `closed_before` (the instant
/// before which every minute has closed, whether or not it had readings) and each of its
/// buckets is final.
pub fn period_totals(
    periods: &[Period],
    buckets: &[StoredTotal],
    closed_before: Timestamp,
) -> Vec<PeriodTotal> {
    let mut rest = buckets;
    periods
        .iter()
        .map(|period| {
            let folded = fold(period, take_inside(&mut rest, period));
            PeriodTotal {
                period: period.clone(),
                sum: folded.sum,
                count: folded.count,
                is_final: period.end <= closed_before && folded.is_final,
            }
        })
        .collect()
}

/// Each period's buckets folded into one bucket starting at the period's start, final when
/// all of them are, for the periods that have any (`buckets` as for [`period_totals`]).
/// [`period_totals`] over these answers as over the buckets themselves: a store keeps them
/// so that totals over long ranges read one row per period.
pub fn span_totals(periods: &[Period], buckets: &[StoredTotal]) -> Vec<StoredTotal> {
    let mut rest = buckets;
    periods
        .iter()
        .filter_map(|period| {
            let mine = take_inside(&mut rest, period);
            (!mine.is_empty()).then(|| fold(period, mine))
        })
        .collect()
}

/// The buckets of `rest` that start inside `period`; `rest` moves past them.
fn take_inside<'b>(rest: &mut &'b [StoredTotal], period: &Period) -> &'b [StoredTotal] {
    let skip = rest.partition_point(|m| m.start < period.start);
    let inside = rest[skip..].partition_point(|m| m.start < period.end);
    let (mine, after) = rest[skip..].split_at(inside);
    *rest = after;
    mine
}

/// `buckets` as one bucket at the period's start.
fn fold(period: &Period, buckets: &[StoredTotal]) -> StoredTotal {
    let mut sum = CompensatedSum::default();
    buckets.iter().for_each(|m| sum.add(m.sum));
    StoredTotal {
        start: period.start,
        sum: sum.value(),
        count: buckets.iter().map(|m| m.count).sum(),
        is_final: buckets.iter().all(|m| m.is_final),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plant_time::{PlantClock, ShiftCalendar, ShiftRule, Step};

    const MINUTE: i64 = 60_000_000_000;

    fn at(minutes: i64) -> Timestamp {
        // 2026-12-07T00:00:00Z plus whole minutes.
        Timestamp::from_unix_nanos(1_796_601_600_000_000_000 + minutes * MINUTE)
    }

    fn minute(n: i64, sum: f64, count: u64, is_final: bool) -> StoredTotal {
        StoredTotal {
            start: at(n),
            sum,
            count,
            is_final,
        }
    }

    #[test]
    fn hours_sum_their_minutes_and_are_final_when_closed() {
        let calendar = ShiftCalendar::new(PlantClock::utc(), &[]).unwrap();
        let hours = calendar.periods(Step::Hour, "A1", at(0), at(180));
        let minutes = [
            minute(0, 1.5, 1, true),
            minute(59, 2.0, 2, true),
            minute(60, 0.25, 1, true),
            minute(179, 4.0, 1, false),
        ];
        let totals = period_totals(&hours, &minutes, at(170));
        let sums: Vec<(f64, u64, bool)> = totals
            .iter()
            .map(|t| (t.sum, t.count, t.is_final))
            .collect();
        // The third hour has not ended before `closed_before` and holds an open minute.
        assert_eq!(sums, [(3.5, 3, true), (0.25, 1, true), (4.0, 1, false)]);
        assert_eq!(totals[0].avg(), Some(3.5 / 3.0));
        // A period without readings is final once over, with no average.
        let empty = period_totals(&hours[..1], &[], at(60));
        assert_eq!(
            (empty[0].sum, empty[0].count, empty[0].is_final),
            (0.0, 0, true)
        );
        assert_eq!(empty[0].avg(), None);
    }

    #[test]
    fn shifts_leave_out_the_minutes_between_them() {
        let rule = ShiftRule {
            name: "Early".into(),
            start: "06:00".into(),
            end: "14:00".into(),
            ..ShiftRule::default()
        };
        let calendar = ShiftCalendar::new(PlantClock::utc(), &[rule]).unwrap();
        let shifts = calendar.periods(Step::Shift, "A1", at(0), at(24 * 60));
        let minutes = [minute(5 * 60, 9.0, 1, true), minute(6 * 60, 1.0, 1, true)];
        let totals = period_totals(&shifts, &minutes, at(24 * 60));
        assert_eq!(totals.len(), 1);
        assert_eq!((totals[0].sum, totals[0].count), (1.0, 1));
    }

    #[test]
    fn folded_spans_answer_as_the_buckets_they_fold() {
        let rules =
            [("Early", "06:00", "14:00"), ("Night", "22:00", "06:00")].map(|(name, start, end)| {
                ShiftRule {
                    name: name.into(),
                    start: start.into(),
                    end: end.into(),
                    ..ShiftRule::default()
                }
            });
        let calendar = ShiftCalendar::new(PlantClock::utc(), &rules).unwrap();
        let shifts = calendar.periods(Step::Shift, "A1", at(0), at(3 * 24 * 60));
        // Minutes every 7 minutes over three days, some open, some between shifts.
        let minutes: Vec<StoredTotal> = (0..3 * 24 * 60 / 7)
            .map(|n| {
                minute(
                    n * 7,
                    0.25 * (n % 9) as f64,
                    1 + (n % 3) as u64,
                    n % 150 != 0,
                )
            })
            .collect();
        let spans = span_totals(&shifts, &minutes);
        // One span per shift with minutes: no span for the hours no shift covers.
        assert!(spans.len() <= shifts.len());
        assert!(
            spans
                .iter()
                .all(|s| shifts.iter().any(|p| p.start == s.start))
        );
        for closed_before in [at(0), at(24 * 60), at(3 * 24 * 60)] {
            assert_eq!(
                period_totals(&shifts, &spans, closed_before),
                period_totals(&shifts, &minutes, closed_before)
            );
        }
        // A shift with an open minute folds into an open span.
        assert!(spans.iter().any(|s| !s.is_final));
        assert!(spans.iter().any(|s| s.is_final));
    }
}
