//! The parameters of a history query, checked: every bad one is named, and a range that would
//! give more rows than one answer holds is refused before anything is read.
//!
//! `machines` (comma-separated ids; none: every machine), `index` (one scrap index), `from`
//! and `to` (RFC 3339 with an offset, a local date and time without one, or a local date for
//! the start of that plant day), `step` (minute, hour, shift, day, week) and `lang` (`de` for
//! the German CSV).

use std::collections::BTreeSet;

use super::CsvDialect;
use crate::Timestamp;
use crate::plant_time::{DateTime, PlantClock, Step};
use crate::topic::validate_topic_level;

/// Most machines one query may name.
pub const MAX_MACHINES: usize = 1_000;

const DAY_NANOS: i64 = 86_400 * 1_000_000_000;

/// A history query, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    /// The machines asked for; empty: every machine.
    pub machines: Vec<String>,
    /// The scrap index asked for; `None`: every index.
    pub index: Option<u32>,
    /// Start of the range.
    pub from: Timestamp,
    /// End of the range (exclusive).
    pub to: Timestamp,
    /// The period of a row.
    pub step: Step,
    /// The CSV dialect.
    pub dialect: CsvDialect,
}

/// A parameter that cannot be used: a 400 naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter `{parameter}`: {message}")]
pub struct QueryError {
    /// The parameter's name.
    pub parameter: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(parameter: &str, message: impl Into<String>) -> QueryError {
    QueryError {
        parameter: parameter.to_owned(),
        message: message.into(),
    }
}

impl HistoryQuery {
    /// Checks the query's `pairs` (decoded). Without `to` the range ends `now`; without `from`
    /// it starts at the plant day six days before the one `to` falls in (a week of days). The
    /// step defaults to an hour. A range whose rows per key could exceed `max_rows` is refused.
    ///
    /// # Errors
    /// The first unknown, repeated or bad parameter.
    pub fn parse<'p>(
        pairs: impl IntoIterator<Item = (&'p str, &'p str)>,
        clock: &PlantClock,
        now: Timestamp,
        max_rows: i64,
    ) -> Result<Self, QueryError> {
        let mut seen = BTreeSet::new();
        let mut query = HistoryQuery {
            machines: Vec::new(),
            index: None,
            from: now,
            to: now,
            step: Step::Hour,
            dialect: CsvDialect::English,
        };
        let (mut from, mut to) = (None, None);
        for (name, value) in pairs {
            if !seen.insert(name) {
                return Err(bad(name, "is given more than once"));
            }
            match name {
                "machines" => query.machines = machines(value)?,
                "index" => {
                    let index = value
                        .trim()
                        .parse()
                        .map_err(|_| bad(name, format!("{value:?} is not a scrap index")))?;
                    query.index = Some(index);
                }
                "from" => from = Some(time(name, value, clock)?),
                "to" => to = Some(time(name, value, clock)?),
                "step" => query.step = value.parse().map_err(|e: String| bad(name, e))?,
                "lang" => query.dialect = CsvDialect::for_language(value),
                other => {
                    let known = "machines, index, from, to, step, lang";
                    return Err(bad(
                        other,
                        format!("is not a parameter of this query ({known})"),
                    ));
                }
            }
        }
        query.to = to.unwrap_or(now);
        query.from = match from {
            Some(from) => from,
            None => {
                let day = clock.plant_day(query.to);
                let week_start = Timestamp::from_unix_nanos(query.to.unix_nanos() - 6 * DAY_NANOS);
                clock.at(clock.plant_day(week_start).min(day), clock.day_start())
            }
        };
        if query.from >= query.to {
            return Err(bad("to", "must be after from"));
        }
        let seconds = (query.to.unix_nanos() - query.from.unix_nanos()) / 1_000_000_000;
        let rows = seconds / query.step.shortest_seconds() + 2;
        if rows > max_rows {
            let message = format!(
                "from {} to {} in {}s gives up to {rows} rows per key, more than the {max_rows} \
                 one answer holds: narrow the range or choose a longer step",
                query.from,
                query.to,
                query.step.as_str()
            );
            return Err(bad("from", message));
        }
        Ok(query)
    }
}

fn machines(value: &str) -> Result<Vec<String>, QueryError> {
    let ids: BTreeSet<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    if ids.len() > MAX_MACHINES {
        return Err(bad(
            "machines",
            format!("names {} machines, more than {MAX_MACHINES}", ids.len()),
        ));
    }
    for id in &ids {
        validate_topic_level(id).map_err(|e| bad("machines", format!("{id:?}: {e}")))?;
    }
    Ok(ids.into_iter().map(str::to_owned).collect())
}

/// RFC 3339 with an offset; a local date and time without one; or a local date, meaning the
/// start of that plant day.
fn time(name: &str, value: &str, clock: &PlantClock) -> Result<Timestamp, QueryError> {
    let text = value.trim();
    if let Ok(t) = Timestamp::parse_rfc3339(text) {
        return Ok(t);
    }
    if let Ok(local) = text.parse::<DateTime>() {
        if text.len() > 10 {
            return Ok(clock.instant(local));
        }
        return Ok(clock.at(local.date(), clock.day_start()));
    }
    Err(bad(
        name,
        format!(
            "{value:?} is not a time (2026-12-07T06:00:00+01:00, 2026-12-07T06:00 in plant time, or a plant day 2026-12-07)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<HistoryQuery, QueryError> {
        let clock = PlantClock::new("Europe/Berlin", "06:00").unwrap();
        let pairs = pairs.iter().copied();
        HistoryQuery::parse(pairs, &clock, ts("2026-12-07T12:00:00Z"), 10_000)
    }

    #[test]
    fn times_are_offsets_local_times_or_plant_days() {
        let query = parse(&[
            ("from", "2026-12-01"),
            ("to", "2026-12-07T08:30"),
            ("step", "shift"),
        ])
        .unwrap();
        // The plant day 1 December starts at 06:00 CET.
        assert_eq!(query.from, ts("2026-12-01T05:00:00Z"));
        assert_eq!(query.to, ts("2026-12-07T07:30:00Z"));
        assert_eq!(query.step, Step::Shift);
        let query = parse(&[
            ("from", "2026-12-07T05:00:00Z"),
            ("machines", "A1, B7,A1"),
            ("lang", "de"),
        ])
        .unwrap();
        assert_eq!(
            (query.from, query.to),
            (ts("2026-12-07T05:00:00Z"), ts("2026-12-07T12:00:00Z"))
        );
        assert_eq!(query.machines, ["A1", "B7"]);
        assert_eq!(query.dialect, CsvDialect::German);
    }

    #[test]
    fn without_from_a_week_of_plant_days() {
        let query = parse(&[]).unwrap();
        // 7 December 12:00 is in the plant day of 7 December; six days before: 1 December.
        assert_eq!(query.from, ts("2026-12-01T05:00:00Z"));
        assert_eq!(query.step, Step::Hour);
    }

    #[test]
    fn bad_parameters_are_named() {
        let error = |pairs: &[(&str, &str)]| parse(pairs).unwrap_err();
        assert_eq!(error(&[("step", "month")]).parameter, "step");
        assert_eq!(error(&[("from", "yesterday")]).parameter, "from");
        assert_eq!(
            error(&[("from", "2026-12-05"), ("to", "2026-12-01")]).to_string(),
            "query parameter `to`: must be after from"
        );
        assert_eq!(error(&[("machine", "A1")]).parameter, "machine");
        assert_eq!(error(&[("index", "-1")]).parameter, "index");
        assert_eq!(error(&[("machines", "A/1")]).parameter, "machines");
        assert_eq!(
            error(&[("step", "day"), ("step", "hour")]).message,
            "is given more than once"
        );
        // A year of minutes is far more than one answer holds.
        let too_much = error(&[("from", "2025-12-07"), ("step", "minute")]);
        assert_eq!(too_much.parameter, "from");
        assert!(too_much.message.contains("narrow the range"), "{too_much}");
        assert!(parse(&[("from", "2025-12-07"), ("step", "day")]).is_ok());
    }
}
