//! `GET /api/history` and `GET /api/history.csv`: one row per key and period, from the
//! buckets stored for the range. Keys without any bucket in the range have no rows; a period
//! of a listed key without readings has sum 0 and count 0.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION};
use actix_web::{HttpRequest, HttpResponse, web};
use aggregator_core::plant_time::{Period, Step, period_totals};
use aggregator_core::report::{HistoryQuery, HistoryRow, PeriodLabeller, QueryError, history_csv};

use super::{ApiError, ApiState, now, query_pairs};
use crate::store::BucketQuery;

/// Shifts reach at most this far beyond a range's ends (an overnight shift that started the
/// day before, a 24-hour one).
const SHIFT_MARGIN: Duration = Duration::from_secs(2 * 86_400);

/// `GET /api/history`: the rows as a JSON array.
pub async fn json(req: HttpRequest, state: web::Data<ApiState>) -> HttpResponse {
    match rows(&req, &state).await {
        Ok((rows, _)) => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(rows),
        Err(e) => e.response(),
    }
}

/// `GET /api/history.csv`: the rows as a CSV download; `lang=de` for a German Excel.
pub async fn csv(req: HttpRequest, state: web::Data<ApiState>) -> HttpResponse {
    match rows(&req, &state).await {
        Ok((rows, query)) => {
            let clock = state.calendar.clock();
            let body = history_csv(&rows, clock.zone_name(), query.dialect);
            let name = format!(
                "attachment; filename=\"scrap-{}-{}-{}.csv\"",
                query.step.as_str(),
                clock.plant_day(query.from),
                clock.plant_day(query.to),
            );
            HttpResponse::Ok()
                .insert_header((CACHE_CONTROL, "no-store"))
                .insert_header((CONTENT_DISPOSITION, name))
                .content_type("text/csv; charset=utf-8")
                .body(body)
        }
        Err(e) => e.response(),
    }
}

/// The rows the request asks for, and its checked query.
async fn rows(
    req: &HttpRequest,
    state: &ApiState,
) -> Result<(Vec<HistoryRow>, HistoryQuery), ApiError> {
    let now = now();
    let calendar = &state.calendar;
    let clock = calendar.clock();
    let max_rows = state.settings.max_rows;
    let pairs = query_pairs(req.query_string())?;
    let pairs = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let query = HistoryQuery::parse(
        pairs,
        clock,
        now,
        i64::try_from(max_rows).unwrap_or(i64::MAX),
    )?;
    // One list of periods for every key, but shifts: those may differ by machine.
    let shared =
        (query.step != Step::Shift).then(|| calendar.periods(query.step, "", query.from, query.to));
    let (from, to) = match &shared {
        Some(periods) => (
            periods.first().map_or(query.from, |p| p.start),
            periods.last().map_or(query.to, |p| p.end),
        ),
        None => (
            query.from.saturating_sub(SHIFT_MARGIN),
            query.to.saturating_add(SHIFT_MARGIN),
        ),
    };
    let buckets = BucketQuery {
        machines: &query.machines,
        index: query.index,
        from,
        to,
        unit: state.unit_for(query.step, from, to).await?,
    };
    let closed_before = state.closed_before(now);
    let mut shifts: HashMap<String, Vec<Period>> = HashMap::new();
    let mut rows = Vec::new();
    let mut labeller = PeriodLabeller::new(clock);
    state
        .store
        .for_each_key(&buckets, |machine, index, stored| {
            let periods = match &shared {
                Some(periods) => periods,
                None => shifts.entry(machine.to_owned()).or_insert_with(|| {
                    calendar.periods(Step::Shift, machine, query.from, query.to)
                }),
            };
            if rows.len() + periods.len() > max_rows {
                return Err(too_many_rows(max_rows));
            }
            let totals = period_totals(periods, stored, closed_before);
            rows.extend(
                totals
                    .iter()
                    .map(|t| HistoryRow::new(machine, index, t, labeller.labels(&t.period))),
            );
            Ok(())
        })
        .await?;
    Ok((rows, query))
}

fn too_many_rows(max_rows: usize) -> QueryError {
    QueryError {
        parameter: "from".into(),
        message: format!(
            "the answer would hold more than {max_rows} rows (keys x periods): name fewer \
             machines, narrow the range or choose a longer step"
        ),
    }
}
