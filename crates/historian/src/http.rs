//! The HTTP side: `GET /health` (readiness), `GET /metrics` (Prometheus text) and the
//! history API ([`crate::api`]).

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde::Serialize;
use tokio::sync::watch;

use crate::api::ApiState;
use crate::metrics::Metrics;
use crate::mqtt::LinkState;

/// OpenMetrics text, which Prometheus scrapes natively.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What `/health` reads.
#[derive(Clone)]
pub struct HealthSources {
    /// The broker connection.
    pub link: watch::Receiver<LinkState>,
    /// True while the store takes writes.
    pub store: watch::Receiver<bool>,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    mqtt: &'static str,
    subscribed: bool,
    store: &'static str,
}

/// `200` while the broker connection is up, the history subscribed and the store takes
/// writes; `503` otherwise. The body says which part is missing.
async fn health(sources: web::Data<HealthSources>) -> HttpResponse {
    let link = *sources.link.borrow();
    let store = *sources.store.borrow();
    let ready = link.connected && link.subscribed && store;
    let (code, status) = match ready {
        true => (StatusCode::OK, "ok"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    HttpResponse::build(code).json(Health {
        status,
        mqtt: if link.connected {
            "connected"
        } else {
            "disconnected"
        },
        subscribed: link.subscribed,
        store: if store { "available" } else { "unavailable" },
    })
}

async fn metrics_text(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(METRICS_CONTENT_TYPE)
        .body(metrics.render())
}

/// Builds the server on an already bound `listener`. It does not handle signals (the service
/// does); stop it through its handle.
///
/// # Errors
/// When the listener cannot be handed to actix.
pub fn serve(
    listener: TcpListener,
    metrics: Metrics,
    sources: HealthSources,
    api: ApiState,
) -> std::io::Result<Server> {
    let metrics = web::Data::new(metrics);
    let sources = web::Data::new(sources);
    let api = web::Data::new(api);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(metrics.clone())
            .app_data(sources.clone())
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics_text))
            .app_data(api.clone())
            .configure(crate::api::routes)
    })
    // Probes, a scraper and history questions, which wait on the store far more than they
    // compute: two workers.
    .workers(2)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok(server)
}
