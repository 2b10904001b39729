//! The history API, served beside `/health` and reached by browsers through the gateway:
//! `GET /api/history` (JSON rows), `GET /api/history.csv` (the same rows as CSV) and
//! `GET /api/shifts/current` (each key's running shift and its last one). The rows are
//! computed from the stored buckets in the plant's time ([`aggregator_core::plant_time`]).

mod history;
mod shifts;

pub use shifts::{KeyShifts, current_shifts};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, web};
use aggregator_core::Timestamp;
use aggregator_core::plant_time::{ShiftCalendar, Step};
use aggregator_core::report::QueryError;

use crate::configuration::ApiSettings;
use crate::store::{ReadError, Store, StoreError, Unit};

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The buckets.
    pub store: Store,
    /// The plant's clock and shift rules.
    pub calendar: Arc<ShiftCalendar>,
    /// Row limit and when a period is final.
    pub settings: ApiSettings,
}

impl ApiState {
    /// The instant before which every period has closed: the end of a period counts as final
    /// `final_after_secs` after it.
    fn closed_before(&self, now: Timestamp) -> Timestamp {
        now.saturating_sub(Duration::from_secs(self.settings.final_after_secs))
    }
}

/// Adds the API's routes.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/api/history", web::get().to(history::json))
        .route("/api/history.csv", web::get().to(history::csv))
        .route("/api/shifts/current", web::get().to(shifts::current));
}

/// Why a request got no rows.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    /// A bad parameter or a range too large: 400.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// No shift rules for a shift question: 404.
    #[error("no [[shift]] rules are configured")]
    NoShifts,
    /// The store failed: 503.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ReadError<QueryError>> for ApiError {
    fn from(error: ReadError<QueryError>) -> Self {
        match error {
            ReadError::Store(e) => ApiError::Store(e),
            ReadError::Stopped(e) => ApiError::Query(e),
        }
    }
}

impl ApiError {
    fn response(&self) -> HttpResponse {
        let status = match self {
            ApiError::Query(_) => StatusCode::BAD_REQUEST,
            ApiError::NoShifts => StatusCode::NOT_FOUND,
            ApiError::Store(e) => {
                tracing::warn!(error = %e, "history query failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let message = match self {
            ApiError::Store(_) => "the store is not available".to_owned(),
            other => other.to_string(),
        };
        HttpResponse::build(status)
            .insert_header((CACHE_CONTROL, "no-store"))
            .content_type("text/plain; charset=utf-8")
            .body(format!("{message}\n"))
    }
}

/// The request's query as decoded pairs, in order.
fn query_pairs(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    web::Query::<Vec<(String, String)>>::from_query(query)
        .map(web::Query::into_inner)
        .map_err(|e| QueryError {
            parameter: "query".into(),
            message: e.to_string(),
        })
}

impl ApiState {
    /// The table that answers `step` over `[from, to)`: the shift totals for shifts when the
    /// store keeps them by these rules; hours for a step of an hour or longer, a calendar on
    /// whole local hours, and a zone offset of whole hours at both ends; else minutes.
    async fn unit_for(
        &self,
        step: Step,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Unit, StoreError> {
        if step == Step::Shift && self.store.shift_totals_kept().await? {
            return Ok(Unit::Shift);
        }
        let calendar = &self.calendar;
        let clock = calendar.clock();
        let whole = |t| clock.offset_seconds(t) % 3_600 == 0;
        let hours = step != Step::Minute && calendar.on_whole_hours() && whole(from) && whole(to);
        Ok(if hours { Unit::Hour } else { Unit::Minute })
    }
}

/// The wall clock as a timestamp.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}
