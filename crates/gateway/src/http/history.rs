//! `/api/history`, `/api/history.csv` and `/api/shifts/current`: answered by the historian
//! (`history.url`), passed through on the dashboard's origin so that the browser needs no
//! second address and the same bearer token guards them as `/api/aggregates`. The answer
//! streams through as the historian writes it; the historian bounds its size.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::http::state::AppState;

/// The headers of the historian's answer that reach the browser.
const PASSED_HEADERS: [HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::CONTENT_DISPOSITION,
    header::CACHE_CONTROL,
];

/// The historian's address and the client that asks it, one per worker (awc's client is
/// bound to its thread).
pub struct HistoryClient {
    base: String,
    client: awc::Client,
}

impl HistoryClient {
    /// A client for the historian at `base` (empty: none configured) that waits at most
    /// `timeout` for an answer to start.
    pub fn new(base: &str, timeout: Duration) -> Self {
        HistoryClient {
            base: base.trim().trim_end_matches('/').to_owned(),
            client: awc::Client::builder().timeout(timeout).finish(),
        }
    }

    /// Whether a historian is configured (`/api/health` says so).
    pub fn configured(&self) -> bool {
        !self.base.is_empty()
    }
}

/// Passes the request's path and query to the historian and its answer back: 401 without the
/// token, 404 when no historian is configured, 502 when it cannot be reached, 504 when it
/// does not answer in time.
pub async fn forward(
    req: HttpRequest,
    state: web::Data<AppState>,
    history: web::Data<HistoryClient>,
) -> HttpResponse {
    if !crate::http::auth::authorized(&req, state.auth_token.as_ref(), None) {
        state.hub.metrics().refused_token.inc();
        return crate::http::auth::unauthorized();
    }
    if !history.configured() {
        return text(
            StatusCode::NOT_FOUND,
            "no historian is configured (history.url)",
        );
    }
    let query = req.query_string();
    let separator = if query.is_empty() { "" } else { "?" };
    let url = format!("{}{}{separator}{query}", history.base, req.path());
    let answer = history.client.get(url).send().await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            state.hub.metrics().history_errors.inc();
            tracing::warn!(error = %e, "the historian did not answer");
            let timed_out = matches!(e, awc::error::SendRequestError::Timeout);
            let status = if timed_out {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            return text(status, "the historian is not reachable");
        }
    };
    let mut response = HttpResponse::build(answer.status());
    for name in PASSED_HEADERS {
        if let Some(value) = answer.headers().get(&name) {
            response.insert_header((name, value.clone()));
        }
    }
    response.streaming(answer)
}

fn text(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain; charset=utf-8")
        .body(format!("{message}\n"))
}
