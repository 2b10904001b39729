//! History as the API answers it: the query ([`HistoryQuery`]), one row per key and period
//! ([`HistoryRow`]), and the rows as CSV ([`history_csv`]).

mod csv;
mod query;

pub use csv::{CsvDialect, history_csv};
pub use query::{HistoryQuery, QueryError};

use serde::Serialize;

use crate::plant_time::{PeriodTotal, PlantClock};

/// One period's total of one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    /// Machine id.
    #[serde(rename = "maschinenId")]
    pub machine_id: String,
    /// Scrap index.
    #[serde(rename = "scrapIndex")]
    pub scrap_index: u32,
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
    /// The row of `total` for one key, its times in `clock`'s zone.
    pub fn new(
        machine_id: &str,
        scrap_index: u32,
        total: &PeriodTotal,
        clock: &PlantClock,
    ) -> Self {
        let period = &total.period;
        HistoryRow {
            machine_id: machine_id.to_owned(),
            scrap_index,
            shift: period.shift.as_deref().map(str::to_owned),
            day: period.day.to_string(),
            start: clock.format_local(period.start),
            end: clock.format_local(period.end),
            start_utc: period.start.to_rfc3339_millis(),
            end_utc: period.end.to_rfc3339_millis(),
            sum: total.sum,
            count: total.count,
            avg: total.avg(),
            is_final: total.is_final,
        }
    }
}
