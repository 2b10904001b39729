//! `GET /api/shifts/current`: for each key with buckets in the last eight days, the running
//! total of the shift it is in now and the total of its last shift before that (either
//! `null` where the machine has none). `?machines=A1,B7` keeps only those machines.

use std::time::Duration;

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpRequest, HttpResponse, web};
use aggregator_core::plant_time::{Period, Step, period_totals};
use aggregator_core::report::{HistoryQuery, HistoryRow, PeriodLabeller, QueryError};
use serde::Serialize;

use super::{ApiError, ApiState, now, query_pairs};
use crate::store::{BucketQuery, ReadError, StoreError};

/// How far back the last shift is looked for: a long weekend and then some.
const LOOK_BACK: Duration = Duration::from_secs(8 * 86_400);

/// One key's shifts, as the API answers them and as `shifts/{machineId}/{scrapIndex}` carries
/// them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyShifts {
    /// Machine id.
    #[serde(rename = "maschinenId")]
    pub machine_id: String,
    /// Scrap index.
    #[serde(rename = "scrapIndex")]
    pub scrap_index: u32,
    /// The shift running now, its total so far.
    pub current: Option<HistoryRow>,
    /// The last shift that ended before now.
    pub previous: Option<HistoryRow>,
}

/// The handler.
pub async fn current(req: HttpRequest, state: web::Data<ApiState>) -> HttpResponse {
    match shifts(&req, &state).await {
        Ok(keys) => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(keys),
        Err(e) => e.response(),
    }
}

async fn shifts(req: &HttpRequest, state: &ApiState) -> Result<Vec<KeyShifts>, ApiError> {
    let calendar = &state.calendar;
    if !calendar.has_shifts() {
        return Err(ApiError::NoShifts);
    }
    let now = now();
    let clock = calendar.clock();
    let pairs = query_pairs(req.query_string())?;
    if let Some((name, _)) = pairs.iter().find(|(k, _)| k != "machines" && k != "index") {
        let message = "is not a parameter of this query (machines, index)";
        return Err(QueryError {
            parameter: name.clone(),
            message: message.into(),
        }
        .into());
    }
    let pairs = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    // The same checks of machines and index as a history query.
    let query = HistoryQuery::parse(pairs, clock, now, i64::MAX)?;
    Ok(current_shifts(state, &query.machines, query.index, now).await?)
}

/// Every key's current and last shift at `now`, of `machines` (empty: all) and `index`.
///
/// # Errors
/// When the store fails.
pub async fn current_shifts(
    state: &ApiState,
    machines: &[String],
    index: Option<u32>,
    now: aggregator_core::Timestamp,
) -> Result<Vec<KeyShifts>, StoreError> {
    let calendar = &state.calendar;
    let clock = calendar.clock();
    let from = now.saturating_sub(LOOK_BACK);
    let to = now.saturating_add(Duration::from_secs(60));
    let buckets = BucketQuery {
        machines,
        index,
        from,
        to,
        unit: state.unit_for(Step::Shift, from, to).await?,
    };
    let closed_before = state.closed_before(now);
    let mut keys = Vec::new();
    let mut labeller = PeriodLabeller::new(clock);
    state
        .store
        .for_each_key(&buckets, |machine, index, stored| {
            let current = calendar.shift_at(machine, now);
            let previous = calendar.previous_shift(machine, now);
            let periods: Vec<Period> = previous.iter().chain(current.iter()).cloned().collect();
            let mut totals = period_totals(&periods, stored, closed_before).into_iter();
            let mut row = || {
                totals
                    .next()
                    .map(|t| HistoryRow::new(machine, index, &t, labeller.labels(&t.period)))
            };
            let previous = previous.and_then(|_| row());
            let current = current.and_then(|_| row());
            if current.is_some() || previous.is_some() {
                keys.push(KeyShifts {
                    machine_id: machine.to_owned(),
                    scrap_index: index,
                    current,
                    previous,
                });
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .await
        .map_err(|e| match e {
            ReadError::Store(e) => e,
            ReadError::Stopped(never) => match never {},
        })?;
    Ok(keys)
}
