//! Wiring: [`Application::from_config`] binds the listener; [`Application::run`] serves until the
//! shutdown token fires, then closes every client with 1001, stops the HTTP server within its
//! timeout and disconnects from the broker.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::configuration::GatewayConfig;
use crate::http::history::{self, HistoryClient};
use crate::http::routes;
use crate::http::state::AppState;
use crate::http::ws::ws_route;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::mqtt;

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from `http.listen`.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Server(#[from] std::io::Error),
}

/// A gateway with its listener bound, ready to [`run`](Application::run).
pub struct Application {
    settings: GatewayConfig,
    listener: TcpListener,
    hub: Arc<Hub>,
}

impl Application {
    /// Binds the listener (port 0 picks a free port).
    ///
    /// # Errors
    /// An address that cannot be bound.
    pub fn from_config(settings: GatewayConfig) -> Result<Self, StartupError> {
        let listener = TcpListener::bind(settings.listen).map_err(|source| StartupError::Bind {
            addr: settings.settings.http.listen.clone(),
            source,
        })?;
        let metrics = Arc::new(Metrics::new());
        let hub = Arc::new(Hub::new(settings.settings.ws.client_queue_frames, metrics));
        Ok(Self {
            settings,
            listener,
            hub,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// The hub, for in-process tests.
    pub fn hub(&self) -> Arc<Hub> {
        Arc::clone(&self.hub)
    }

    /// Serves until `shutdown` fires, then stops in order: WebSocket clients (closed with
    /// 1001), the HTTP server within its timeout, then what feeds the hub (the broker link and
    /// the batcher), so that clients get data until they are closed.
    ///
    /// # Errors
    /// When the HTTP server cannot start or fails.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        let settings = &self.settings;
        let local = self.listener.local_addr()?;
        let clients = TaskTracker::new();
        let server = http_server(self.listener, &self.hub, settings, &shutdown, &clients)?;
        let handle = server.handle();
        let feeds = TaskTracker::new();
        let stop_feeds = CancellationToken::new();
        let link = mqtt::run(settings.clone(), Arc::clone(&self.hub), stop_feeds.clone());
        feeds.spawn(link);
        let batch_interval = Duration::from_millis(settings.settings.ws.batch_interval_ms);
        feeds.spawn(Arc::clone(&self.hub).run_batcher(batch_interval, stop_feeds.clone()));
        let mut server_task = tokio::spawn(server);
        tracing::info!(
            address = %local,
            broker = %settings.mqtt.brokers[0],
            mqtt_security = %settings.mqtt.security,
            auth_token = settings.auth_token.is_some(),
            "gateway listening"
        );
        // The server ends on its own only when it fails; either way the shutdown begins.
        let ended = shutdown.run_until_cancelled(&mut server_task).await;
        shutdown.cancel();
        let shutdown_timeout = Duration::from_secs(settings.settings.http.shutdown_timeout_secs);
        close_clients(&self.hub, &clients, shutdown_timeout).await;
        // Gracefully, within the server's shutdown timeout.
        handle.stop(true).await;
        let server_result = match ended {
            Some(result) => result,
            None => server_task.await,
        };
        stop_feeds.cancel();
        feeds.close();
        feeds.wait().await;
        tracing::info!("gateway stopped");
        Ok(server_result.map_err(std::io::Error::other)??)
    }
}

/// Closes every WebSocket client (each sends its Close frame) and waits at most `timeout`.
async fn close_clients(hub: &Hub, clients: &TaskTracker, timeout: Duration) {
    tracing::info!(
        clients = hub.client_count(),
        "shutting down: closing clients"
    );
    clients.close();
    if tokio::time::timeout(timeout, clients.wait()).await.is_err() {
        tracing::warn!(
            left = hub.client_count(),
            "some clients did not close in time"
        );
    }
}

/// The dashboard directory and its Chart.js on disk when `static_dir` is set and present;
/// `None` serves the copy built into the binary. Warns about what is missing.
fn dashboard(static_dir: Option<PathBuf>) -> Option<(PathBuf, PathBuf)> {
    let dir = static_dir?;
    if !dir.is_dir() {
        tracing::warn!(path = %dir.display(), "static directory not found: serving the dashboard built into the binary");
        return None;
    }
    let chart_js = crate::http::assets::disk_chart_js(&dir);
    if !chart_js.is_file() {
        tracing::warn!(
            path = %chart_js.display(),
            "Chart.js not found: the dashboard's chart will not load (cards still work); run scripts/refresh-chartjs.sh or `npm ci` in the static directory"
        );
    }
    Some((dir, chart_js))
}

/// The actix server, not yet polled. A plain function so that no `App` builder (`!Send`) is
/// held in [`Application::run`]'s future.
fn http_server(
    listener: TcpListener,
    hub: &Arc<Hub>,
    settings: &GatewayConfig,
    shutdown: &CancellationToken,
    clients: &TaskTracker,
) -> std::io::Result<Server> {
    let state = web::Data::new(AppState {
        hub: Arc::clone(hub),
        ws: settings.settings.ws.clone(),
        shutdown: shutdown.clone(),
        clients: clients.clone(),
        auth_token: settings.auth_token.clone(),
    });
    let dashboard = dashboard(settings.settings.http.static_dir.clone());
    let client_timeout = Duration::from_secs(settings.settings.ws.client_timeout_secs);
    cut_off_stuck_peers(&listener, client_timeout)?;
    let history = settings.settings.history.clone();
    let mut server = HttpServer::new(move || {
        let timeout = Duration::from_millis(history.timeout_ms);
        let history_client = web::Data::new(HistoryClient::new(&history.url, timeout));
        App::new()
            .wrap(crate::http::assets::security_headers())
            .app_data(state.clone())
            .app_data(history_client)
            .route("/ws", web::get().to(ws_route))
            .route("/api/health", web::get().to(routes::health))
            .route("/api/aggregates", web::get().to(routes::aggregates))
            .route("/api/alarms", web::get().to(routes::alarms))
            .route("/api/history", web::get().to(history::forward))
            .route("/api/history.csv", web::get().to(history::forward))
            .route("/api/shifts/current", web::get().to(history::forward))
            .route("/metrics", web::get().to(routes::metrics))
            // Last: it answers every path the routes above do not.
            .service(crate::http::assets::service(dashboard.clone()))
    })
    .disable_signals()
    .shutdown_timeout(settings.settings.http.shutdown_timeout_secs)
    .listen(listener)?;
    if settings.settings.http.workers > 0 {
        server = server.workers(settings.settings.http.workers);
    }
    Ok(server.run())
}

/// Makes the kernel close a connection whose peer takes none of the data sent to it for
/// `timeout` (`TCP_USER_TIMEOUT`, inherited by every accepted socket): a client that never
/// reads, and whose task gave up on it, would otherwise keep its slot and its buffered bytes
/// for as long as its host answers TCP probes.
fn cut_off_stuck_peers(listener: &TcpListener, timeout: Duration) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    socket2::SockRef::from(listener).set_tcp_user_timeout(Some(timeout))?;
    #[cfg(not(target_os = "linux"))]
    let _ = (listener, timeout);
    Ok(())
}
