//! The HTTP side: `GET /health` (readiness) and `GET /metrics` (Prometheus text).

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::mqtt::LinkState;

/// OpenMetrics text, which Prometheus scrapes natively.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Serialize)]
struct Health {
    status: &'static str,
    mqtt: &'static str,
    subscribed: bool,
}

/// `200` while both connections are up and the readings subscribed, `503` otherwise; the body
/// says which part is missing.
async fn health(link: web::Data<watch::Receiver<LinkState>>) -> HttpResponse {
    let link = *link.borrow();
    let (code, status) = if link.ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let mqtt = if link.connected() {
        "connected"
    } else {
        "disconnected"
    };
    HttpResponse::build(code).json(Health {
        status,
        mqtt,
        subscribed: link.subscribed,
    })
}

async fn prometheus(metrics: web::Data<Metrics>) -> HttpResponse {
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
    link: watch::Receiver<LinkState>,
) -> std::io::Result<Server> {
    let link = web::Data::new(link);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(metrics.clone()))
            .app_data(link.clone())
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(prometheus))
    })
    // Two endpoints hit by probes and a scraper: one worker is plenty.
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok(server)
}
