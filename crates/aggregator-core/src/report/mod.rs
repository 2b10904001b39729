//! History as the API answers it: the query ([`HistoryQuery`]), one row per key and period
//! ([`HistoryRow`]), and the rows as CSV ([`history_csv`]).

mod csv;
mod query;

pub use csv::{CsvDialect, history_csv};
pub use query::{HistoryQuery, QueryError};

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::Timestamp;
use crate::plant_time::{Period, PeriodTotal, PlantClock};

/// One period's total of one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    /// Machine id.
    #[serde(rename = "maschinenId")]
    pub machine_id: String,
    /// Scrap index.
    #[serde(rename = "scrapIndex")]
    pub scrap_index: u32,
    /// When the period is, shared by every key's row of it.
    #[serde(flatten)]
    pub period: Arc<PeriodLabels>,
    /// Sum of the readings; 0 without any.
    pub sum: f64,
    /// How many readings.
    pub count: u64,
    /// `sum / count`, `null` without readings.
    pub avg: Option<f64>,
    /// The period is over and every minute in it closed: the total will not change.
    #[serde(rename = "final")]
    pub is_final: bool,
}

impl HistoryRow {
    /// The row of `total` for one key, with its period's labels.
    pub fn new(
        machine_id: &str,
        scrap_index: u32,
        total: &PeriodTotal,
        period: Arc<PeriodLabels>,
    ) -> Self {
        HistoryRow {
            machine_id: machine_id.to_owned(),
            scrap_index,
            period,
            sum: total.sum,
            count: total.count,
            avg: total.avg(),
            is_final: total.is_final,
        }
    }
}

/// A period as the rows show it: its shift, plant day, and start and end in local time and
/// UTC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodLabels {
    /// The shift's name, for a shift.
    pub shift: Option<String>,
    /// The plant day the period starts on (`2026-12-07`).
    pub day: String,
    /// Local start with its offset (`2026-12-07T06:00:00+01:00`).
    pub start: String,
    /// Local end with its offset.
    pub end: String,
    /// Start in UTC (`2026-12-07T05:00:00.000Z`).
    #[serde(rename = "startUtc")]
    pub start_utc: String,
    /// End in UTC.
    #[serde(rename = "endUtc")]
    pub end_utc: String,
}

impl PeriodLabels {
    /// The labels of `period`, its times in `clock`'s zone.
    pub fn new(period: &Period, clock: &PlantClock) -> Self {
        PeriodLabels {
            shift: period.shift.as_deref().map(str::to_owned),
            day: period.day.to_string(),
            start: clock.format_local(period.start),
            end: clock.format_local(period.end),
            start_utc: period.start.to_rfc3339_millis(),
            end_utc: period.end.to_rfc3339_millis(),
        }
    }
}

/// The labels of the periods of one answer, each formatted once however many keys have a row
/// in it: formatting times in a zone costs more than the rest of a row.
pub struct PeriodLabeller<'c> {
    clock: &'c PlantClock,
    seen: HashMap<PeriodKey, Arc<PeriodLabels>>,
}

/// What tells periods apart: start, end and shift.
type PeriodKey = (Timestamp, Timestamp, Option<Arc<str>>);

impl<'c> PeriodLabeller<'c> {
    /// Labels in `clock`'s zone.
    pub fn new(clock: &'c PlantClock) -> Self {
        PeriodLabeller {
            clock,
            seen: HashMap::new(),
        }
    }

    /// The labels of `period`.
    pub fn labels(&mut self, period: &Period) -> Arc<PeriodLabels> {
        let key = (period.start, period.end, period.shift.clone());
        let clock = self.clock;
        Arc::clone(
            self.seen
                .entry(key)
                .or_insert_with(|| Arc::new(PeriodLabels::new(period, clock))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plant_time::{ShiftCalendar, ShiftRule, Step};

    fn calendar() -> ShiftCalendar {
        let clock = PlantClock::new("Europe/Berlin", "06:00").unwrap();
        let early = ShiftRule {
            name: "Früh".into(),
            start: "06:00".into(),
            end: "14:00".into(),
            ..ShiftRule::default()
        };
        ShiftCalendar::new(clock, &[early]).unwrap()
    }

    #[test]
    fn a_row_is_one_flat_object_with_its_period_in_local_time_and_utc() {
        let calendar = calendar();
        let from = Timestamp::parse_rfc3339("2026-12-07T00:00:00Z").unwrap();
        let to = Timestamp::parse_rfc3339("2026-12-08T00:00:00Z").unwrap();
        let periods = calendar.periods(Step::Shift, "A1", from, to);
        let total = PeriodTotal {
            period: periods[0].clone(),
            sum: 3.0,
            count: 2,
            is_final: true,
        };
        let labels = Arc::new(PeriodLabels::new(&total.period, calendar.clock()));
        let row = HistoryRow::new("A1", 4, &total, labels);
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"maschinenId":"A1","scrapIndex":4,"shift":"Früh","day":"2026-12-07","start":"2026-12-07T06:00:00+01:00","end":"2026-12-07T14:00:00+01:00","startUtc":"2026-12-07T05:00:00.000Z","endUtc":"2026-12-07T13:00:00.000Z","sum":3.0,"count":2,"avg":1.5,"final":true}"#
        );
    }

    #[test]
    fn each_period_is_labelled_once_for_every_key() {
        let calendar = calendar();
        let from = Timestamp::parse_rfc3339("2026-12-07T00:00:00Z").unwrap();
        let to = Timestamp::parse_rfc3339("2026-12-09T00:00:00Z").unwrap();
        let periods = calendar.periods(Step::Shift, "A1", from, to);
        let mut labeller = PeriodLabeller::new(calendar.clock());
        let first = labeller.labels(&periods[0]);
        let second = labeller.labels(&periods[1]);
        assert!(Arc::ptr_eq(&first, &labeller.labels(&periods[0].clone())));
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.day, "2026-12-08");
        assert_eq!(*first, PeriodLabels::new(&periods[0], calendar.clock()));
    }
}
