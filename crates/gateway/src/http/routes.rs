//! The plain HTTP endpoints: health, aggregates, alarms, metrics (the dashboard files: [`crate::http::assets`]).

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::http::history::HistoryClient;
use crate::http::state::AppState;
use crate::hub::MachineFilter;

/// Answers that must always be fresh.
const NO_STORE: (actix_web::http::header::HeaderName, &str) = (CACHE_CONTROL, "no-store");

/// `/api/health` body: the hub's health and whether a historian is configured.
#[derive(serde::Serialize)]
struct HealthAnswer {
    #[serde(flatten)]
    hub: crate::hub::Health,
    /// The dashboard asks for shift totals only when this is true: a request answered 404
    /// would put an error line in the browser's console on every page.
    history: bool,
}

/// `GET /api/health`: 200 while connected to the broker, 503 (`degraded`) otherwise.
pub async fn health(state: web::Data<AppState>, history: web::Data<HistoryClient>) -> HttpResponse {
    let health = state.hub.health();
    let mut response = if health.is_ok() {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response.insert_header(NO_STORE).json(HealthAnswer {
        hub: health,
        history: history.configured(),
    })
}

/// `GET /api/aggregates`: every current aggregate, sorted by machine, then index; 401 without
/// the bearer token when one is set.
pub async fn aggregates(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !crate::http::auth::authorized(&req, state.auth_token.as_ref(), None) {
        state.hub.metrics().refused_token.inc();
        return crate::http::auth::unauthorized();
    }
    HttpResponse::Ok()
        .insert_header(NO_STORE)
        .content_type("application/json")
        .body(state.hub.aggregates_json())
}

/// Query of `/api/alarms`.
#[derive(Debug, serde::Deserialize)]
pub struct AlarmsQuery {
    /// `?machines=A1,B2`: only these machines' alarms.
    machines: Option<String>,
}

/// `GET /api/alarms`: every raised alarm (the latest retained alarm message of each key whose
/// state is `raised`), sorted by machine, then index; `?machines=` keeps only those machines.
/// Same bearer-token rule as `/api/aggregates`.
pub async fn alarms(
    req: HttpRequest,
    query: web::Query<AlarmsQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !crate::http::auth::authorized(&req, state.auth_token.as_ref(), None) {
        state.hub.metrics().refused_token.inc();
        return crate::http::auth::unauthorized();
    }
    let filter = query.machines.as_deref().and_then(MachineFilter::parse);
    HttpResponse::Ok()
        .insert_header(NO_STORE)
        .content_type("application/json")
        .body(state.hub.alarms_json(filter.as_ref()))
}

/// `GET /metrics`: Prometheus (OpenMetrics) text.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
        .body(state.hub.metrics().render())
}
