//! Shift rules (`[[shift]]`: a name, local start and end, weekdays, optionally machines) and
//! the calendar built from them. A shift whose end is not after its start runs overnight and
//! belongs to the plant day it starts on. Rules are checked once: unique names, valid times
//! and weekdays, and no two rules that share a machine covering the same local time.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Span;
use jiff::civil::{Date, Time};
use serde::{Deserialize, Serialize};

use super::{Period, PlantClock, PlantTimeError, parse_clock};
use crate::Timestamp;

const MINUTES_PER_DAY: u32 = 24 * 60;
const MINUTES_PER_WEEK: u32 = 7 * MINUTES_PER_DAY;
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// One `[[shift]]` rule as written in a settings file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShiftRule {
    /// The shift's name, unique: `"Early"`.
    pub name: String,
    /// Local start, `HH:MM`.
    pub start: String,
    /// Local end, `HH:MM`; not after the start: the shift ends on the next day.
    pub end: String,
    /// The days it starts on (`mon` .. `sun`, or full names); empty: every day.
    pub weekdays: Vec<String>,
    /// The machines it applies to; empty: every machine.
    pub machines: Vec<String>,
}

/// A shift as it happens: a rule on one plant day, as instants.
pub type Shift = Period;

/// A rule, checked.
#[derive(Debug, Clone)]
struct Rule {
    name: Arc<str>,
    start: Time,
    end: Time,
    /// Monday first.
    days: [bool; 7],
    /// `None`: every machine.
    machines: Option<BTreeSet<String>>,
}

/// The plant's clock and its checked shift rules.
#[derive(Debug, Clone)]
pub struct ShiftCalendar {
    clock: PlantClock,
    rules: Vec<Rule>,
}

impl ShiftCalendar {
    /// Checks `rules` and builds the calendar.
    ///
    /// # Errors
    /// [`PlantTimeError::BadShift`] naming the first bad rule (and for an overlap, the other).
    pub fn new(clock: PlantClock, rules: &[ShiftRule]) -> Result<Self, PlantTimeError> {
        let mut checked: Vec<Rule> = Vec::with_capacity(rules.len());
        for (n, given) in rules.iter().enumerate() {
            let bad = |message: String| PlantTimeError::BadShift {
                rule: n + 1,
                name: given.name.clone(),
                message,
            };
            let rule = Rule::check(given).map_err(bad)?;
            if let Some(m) = checked.iter().position(|r| r.name == rule.name) {
                return Err(bad(format!("the name is already that of rule {}", m + 1)));
            }
            for (m, other) in checked.iter().enumerate() {
                if let Some(day) = rule.overlap(other) {
                    let message = format!(
                        "overlaps rule {} ({:?}) on {} for a machine both apply to",
                        m + 1,
                        &*other.name,
                        WEEKDAYS[day]
                    );
                    return Err(bad(message));
                }
            }
            checked.push(rule);
        }
        Ok(Self {
            clock,
            rules: checked,
        })
    }

    /// The plant's clock.
    pub fn clock(&self) -> &PlantClock {
        &self.clock
    }

    /// Whether every boundary this calendar makes lies on a whole local hour (the day start
    /// and every rule's start and end): then, in a zone whose offset is whole hours, hour
    /// buckets serve its periods as exactly as minutes.
    pub fn on_whole_hours(&self) -> bool {
        let whole = |t: Time| t.minute() == 0 && t.second() == 0;
        let rules = self.rules.iter().all(|r| whole(r.start) && whole(r.end));
        whole(self.clock.day_start()) && rules
    }

    /// Whether any shift rule is set.
    pub fn has_shifts(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The shift of `machine` that `t` falls in, if any.
    pub fn shift_at(&self, machine: &str, t: Timestamp) -> Option<Shift> {
        let next = Timestamp::from_unix_nanos(t.unix_nanos().saturating_add(1));
        let shifts = self.shifts_between(machine, t, next);
        shifts.into_iter().find(|s| s.start <= t && t < s.end)
    }

    /// The last shift of `machine` that ended at or before `t`, within the week before.
    pub fn previous_shift(&self, machine: &str, t: Timestamp) -> Option<Shift> {
        let week = Span::new().days(8);
        let from = self.clock.plant_day(t).checked_sub(week).ok()?;
        let from = self.clock.at(from, self.clock.day_start);
        let shifts = self.shifts_between(machine, from, t);
        shifts.into_iter().rev().find(|s| s.end <= t)
    }

    /// The shifts of `machine` that overlap `[from, to)`, in order. A shift that DST makes
    /// empty (all of it in the skipped hour) is left out.
    pub fn shifts_between(&self, machine: &str, from: Timestamp, to: Timestamp) -> Vec<Shift> {
        let mut out = Vec::new();
        if from >= to {
            return out;
        }
        let first = self.clock.local(from).date();
        let mut day = first.yesterday().unwrap_or(first);
        let last = self.clock.local(to).date();
        while day <= last {
            let weekday = usize::try_from(day.weekday().to_monday_zero_offset()).unwrap_or(0);
            let rules = self
                .rules
                .iter()
                .filter(|r| r.days[weekday] && r.applies_to(machine));
            for rule in rules {
                let shift = rule.on(&self.clock, day);
                if shift.start < shift.end && shift.start < to && from < shift.end {
                    out.push(shift);
                }
            }
            let Ok(next) = day.tomorrow() else { break };
            day = next;
        }
        out.sort_by_key(|s| s.start);
        out
    }
}

impl Rule {
    fn check(given: &ShiftRule) -> Result<Self, String> {
        let name = given.name.trim();
        if name.is_empty() {
            return Err("needs a name".into());
        }
        let start = parse_clock(&given.start).map_err(|e| format!("start: {e}"))?;
        let end = parse_clock(&given.end).map_err(|e| format!("end: {e}"))?;
        if start == end {
            return Err("start and end are the same time; a shift needs a length".into());
        }
        let mut days = [given.weekdays.is_empty(); 7];
        for text in &given.weekdays {
            let lower = text.trim().to_ascii_lowercase();
            let day = WEEKDAYS
                .iter()
                .position(|d| lower.len() >= 3 && d.starts_with(&lower));
            let day = day.ok_or_else(|| format!("weekdays: {text:?} is not a day (mon .. sun)"))?;
            days[day] = true;
        }
        let machines: BTreeSet<String> =
            given.machines.iter().map(|m| m.trim().to_owned()).collect();
        if machines.iter().any(String::is_empty) {
            return Err("machines: an empty machine id".into());
        }
        Ok(Rule {
            name: name.into(),
            start,
            end,
            days,
            machines: (!machines.is_empty()).then_some(machines),
        })
    }

    fn applies_to(&self, machine: &str) -> bool {
        self.machines.as_ref().is_none_or(|m| m.contains(machine))
    }

    /// The rule on plant day `day`.
    fn on(&self, clock: &PlantClock, day: Date) -> Shift {
        let end_day = if self.end > self.start {
            day
        } else {
            day.tomorrow().unwrap_or(day)
        };
        Shift {
            start: clock.at(day, self.start),
            end: clock.at(end_day, self.end),
            day,
            shift: Some(self.name.clone()),
        }
    }

    /// The first weekday (Monday 0) on which this rule and `other` cover the same local
    /// minute for a machine both apply to.
    fn overlap(&self, other: &Rule) -> Option<usize> {
        let shared = match (&self.machines, &other.machines) {
            (Some(a), Some(b)) => !a.is_disjoint(b),
            _ => true,
        };
        if !shared {
            return None;
        }
        let theirs: Vec<(u32, u32)> = other.week_minutes().collect();
        let mine = self.week_minutes();
        mine.flat_map(|(a0, a1)| {
            theirs
                .iter()
                .filter_map(move |&(b0, b1)| (a0 < b1 && b0 < a1).then_some(a0.max(b0)))
        })
        .min()
        .map(|minute| (minute / MINUTES_PER_DAY) as usize)
    }

    /// The minutes of the week (from Monday 00:00 local) this rule covers, as half-open
    /// ranges; an overnight shift on Sunday wraps to Monday.
    fn week_minutes(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let minute = |t: Time| {
            u32::try_from(t.hour()).unwrap_or(0) * 60 + u32::try_from(t.minute()).unwrap_or(0)
        };
        let (start, mut end) = (minute(self.start), minute(self.end));
        if end <= start {
            end += MINUTES_PER_DAY;
        }
        (0..7u32)
            .filter(|d| self.days[*d as usize])
            .flat_map(move |d| {
                let (a, b) = (d * MINUTES_PER_DAY + start, d * MINUTES_PER_DAY + end);
                let wrapped = (b > MINUTES_PER_WEEK).then(|| (0, b - MINUTES_PER_WEEK));
                std::iter::once((a, b.min(MINUTES_PER_WEEK))).chain(wrapped)
            })
    }
}
