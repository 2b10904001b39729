//! The periods totals are reported in: UTC minutes (the unit history is kept in), and local
//! hours, shifts, plant days and weeks (Monday to Monday), each starting at the plant's day
//! start.

use std::str::FromStr;
use std::sync::Arc;

use jiff::Span;
use jiff::civil::Date;

use super::{PlantClock, ShiftCalendar};
use crate::Timestamp;

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// How long one row of a history answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// A UTC minute (local minutes are the same in every zone in use today).
    Minute,
    /// A local hour.
    Hour,
    /// A shift of the calendar.
    Shift,
    /// A plant day, from its day start to the next.
    Day,
    /// A plant week, from Monday's day start to the next Monday's.
    Week,
}

impl Step {
    /// Every step, in the order of their length.
    pub const ALL: [Step; 5] = [Step::Minute, Step::Hour, Step::Shift, Step::Day, Step::Week];

    /// The name in queries and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Minute => "minute",
            Step::Hour => "hour",
            Step::Shift => "shift",
            Step::Day => "day",
            Step::Week => "week",
        }
    }

    /// The shortest this step can be, in seconds, to bound how many rows a range gives:
    /// a shift may be a single minute, a DST day 23 hours.
    pub fn shortest_seconds(self) -> i64 {
        match self {
            Step::Minute | Step::Shift => 60,
            Step::Hour => 1_800,
            Step::Day => 23 * 3_600,
            Step::Week => 7 * 23 * 3_600,
        }
    }
}

impl FromStr for Step {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let step = Step::ALL.into_iter().find(|s| s.as_str() == text);
        step.ok_or_else(|| format!("{text:?} is not one of minute, hour, shift, day, week"))
    }
}

/// One period: `[start, end)`, the plant day it starts on, and for a shift its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// The first instant in the period.
    pub start: Timestamp,
    /// The first instant after it.
    pub end: Timestamp,
    /// The plant day the period starts on (a night shift belongs to the day it starts).
    pub day: Date,
    /// The shift's name, for a shift.
    pub shift: Option<Arc<str>>,
}

impl ShiftCalendar {
    /// The periods of `step` that overlap `[from, to)`, in order, each whole (the first may
    /// start before `from`, the last end after `to`; an empty range has none). Shifts are those of `machine`; between
    /// shifts there may be time no shift covers.
    pub fn periods(
        &self,
        step: Step,
        machine: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Vec<Period> {
        if from >= to {
            return Vec::new();
        }
        if step == Step::Shift {
            return self.shifts_between(machine, from, to);
        }
        let clock = self.clock();
        let mut out = Vec::new();
        let mut start = clock.period_start(step, from);
        while start < to {
            let end = clock.next_period_start(step, start);
            let day = clock.plant_day(start);
            out.push(Period {
                start,
                end,
                day,
                shift: None,
            });
            start = end;
        }
        out
    }
}

impl PlantClock {
    /// The start of the period of `step` (not a shift) that holds `t`.
    fn period_start(&self, step: Step, t: Timestamp) -> Timestamp {
        match step {
            Step::Minute | Step::Shift => floor_to(t, 60, 0),
            Step::Hour => floor_to(t, 3_600, self.offset_seconds(t)),
            Step::Day => self.at(self.plant_day(t), self.day_start),
            Step::Week => {
                let day = self.plant_day(t);
                let back = i64::from(day.weekday().to_monday_zero_offset());
                let monday = day.checked_sub(Span::new().days(back)).unwrap_or(day);
                self.at(monday, self.day_start)
            }
        }
    }

    /// The start of the period of `step` after the one starting at `start`.
    fn next_period_start(&self, step: Step, start: Timestamp) -> Timestamp {
        let later = |seconds: i64| {
            Timestamp::from_unix_nanos(start.unix_nanos() + seconds * NANOS_PER_SECOND)
        };
        let next = match step {
            Step::Minute | Step::Shift => later(60),
            // Re-aligned, for the zone whose DST shifts the clock by half an hour.
            Step::Hour => self.period_start(step, later(3_600)),
            Step::Day => self.period_start(step, later(26 * 3_600)),
            Step::Week => self.period_start(step, later(8 * 24 * 3_600)),
        };
        if next > start { next } else { later(3_600) }
    }
}

/// `t` floored to a multiple of `unit` seconds in a clock `offset` seconds ahead of UTC.
fn floor_to(t: Timestamp, unit: i64, offset: i32) -> Timestamp {
    let offset = i64::from(offset) * NANOS_PER_SECOND;
    let local = t.unix_nanos().saturating_add(offset);
    let floored = local - local.rem_euclid(unit * NANOS_PER_SECOND);
    Timestamp::from_unix_nanos(floored.saturating_sub(offset))
}
