//! Wiring: [`Application::build`] binds the listener and prepares the MQTT client;
//! [`Application::run`] serves until the shutdown token fires, then closes every client with
//! 1001, stops the HTTP server within its timeout and disconnects from the broker.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use rumqttc::{AsyncClient, EventLoop};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::configuration::Settings;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::mqtt::{self, MqttTaskConfig};
use crate::routes;
use crate::state::{AppState, ClientConfig};
use crate::ws::ws_route;

/// Capacity of rumqttc's request channel: the gateway only ever queues a subscription and a
/// disconnect.
const MQTT_REQUEST_CAPACITY: usize = 16;

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
    /// The settings are invalid.
    #[error(transparent)]
    Settings(#[from] service_kit::SettingsError),
}

/// A gateway with its listener bound, ready to [`run`](Application::run).
pub struct Application {
    settings: Settings,
    listener: TcpListener,
    hub: Arc<Hub>,
    mqtt_client: AsyncClient,
    event_loop: EventLoop,
}

impl Application {
    /// Binds the listener (port 0 picks a free port) and prepares, without connecting, the
    /// MQTT client.
    ///
    /// # Errors
    /// Invalid settings or an address that cannot be bound.
    pub fn build(settings: Settings) -> Result<Self, StartupError> {
        settings.validate()?;
        let addr = settings.listen_addr()?;
        let listener = TcpListener::bind(addr).map_err(|source| StartupError::Bind {
            addr: settings.http.listen.clone(),
            source,
        })?;
        let metrics = Arc::new(Metrics::new());
        let hub = Arc::new(Hub::new(settings.ws.client_queue_frames, metrics));
        let (mqtt_client, mut event_loop) =
            AsyncClient::new(settings.mqtt_options()?, MQTT_REQUEST_CAPACITY);
        // Small acknowledgements must not wait for Nagle: updates arrive at once.
        let mut network = event_loop.network_options();
        network.set_tcp_nodelay(true);
        event_loop.set_network_options(network);
        Ok(Self {
            settings,
            listener,
            hub,
            mqtt_client,
            event_loop,
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// When the OS cannot tell (never in practice for a bound socket).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// The hub, for in-process tests.
    pub fn hub(&self) -> Arc<Hub> {
        Arc::clone(&self.hub)
    }

    /// Serves until `shutdown` fires, then stops everything in order.
    ///
    /// # Errors
    /// When the HTTP server cannot start or fails.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        let Self {
            settings,
            listener,
            hub,
            mqtt_client,
            event_loop,
        } = self;
        let local = listener.local_addr()?;
        let chart_js = settings.chart_js_path();
        if !chart_js.is_file() {
            tracing::warn!(
                path = %chart_js.display(),
                "Chart.js not found: the dashboard's chart will not load (cards still work); run `npm ci` in the static directory"
            );
        }
        let static_dir = settings.http.static_dir.clone();
        let serve_static = static_dir.is_dir();
        if !serve_static {
            tracing::warn!(path = %static_dir.display(), "static directory not found: the dashboard is not served");
        }

        // The broker link and the batcher outlive the HTTP server so that clients keep
        // getting data until they are closed.
        let background = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(mqtt::run(
            mqtt_client,
            event_loop,
            Arc::clone(&hub),
            MqttTaskConfig {
                backoff_max: settings.reconnect_backoff_max(),
                resync_quiet: settings.resync_quiet(),
            },
            background.clone(),
        ));
        tasks.spawn(Arc::clone(&hub).run_batcher(settings.batch_interval(), background.clone()));

        let clients = TaskTracker::new();
        let state = web::Data::new(AppState {
            hub: Arc::clone(&hub),
            allowed_origins: settings.ws.allowed_origins.clone(),
            max_clients: settings.ws.max_clients,
            client: ClientConfig {
                ping_interval: settings.ping_interval(),
                client_timeout: settings.client_timeout(),
                max_frame_bytes: settings.ws.max_frame_bytes,
            },
            shutdown: shutdown.clone(),
            clients: clients.clone(),
            chart_js,
            auth_token: settings.auth_token()?,
        });
        let server = http_server(state, listener, &settings, static_dir, serve_static)?;
        let handle = server.handle();
        let mut server_task = tokio::spawn(server);
        tracing::info!(
            address = %local,
            mqtt_host = %settings.mqtt.host,
            mqtt_port = settings.mqtt.port,
            mqtt_security = %settings.mqtt_security()?,
            auth_token = state_has_token(&settings),
            "gateway listening"
        );

        let server_result = tokio::select! {
            () = shutdown.cancelled() => None,
            result = &mut server_task => Some(result),
        };
        shutdown.cancel();
        tracing::info!(
            clients = hub.client_count(),
            "shutting down: closing clients"
        );
        clients.close();
        if tokio::time::timeout(settings.shutdown_timeout(), clients.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = hub.client_count(),
                "some clients did not close in time"
            );
        }
        handle.stop(true).await;
        let server_result = match server_result {
            Some(result) => result,
            None => server_task.await,
        };
        background.cancel();
        tasks.close();
        tasks.wait().await;
        tracing::info!("gateway stopped");
        match server_result {
            Ok(result) => result.map_err(StartupError::Server),
            Err(join) => Err(StartupError::Server(std::io::Error::other(join))),
        }
    }
}

/// Whether a bearer token guards the API (for the start-up log; the token itself never is).
fn state_has_token(settings: &Settings) -> bool {
    settings.http.auth_token.is_some() || settings.http.auth_token_file.is_some()
}

/// The actix server, not yet polled. A plain function so that no `App` builder (which is
/// `!Send`) is held in [`Application::run`]'s future.
fn http_server(
    state: web::Data<AppState>,
    listener: TcpListener,
    settings: &Settings,
    static_dir: PathBuf,
    serve_static: bool,
) -> std::io::Result<Server> {
    let mut server = HttpServer::new(move || {
        let app = App::new()
            .app_data(state.clone())
            .route("/ws", web::get().to(ws_route))
            .route("/api/health", web::get().to(routes::health))
            .route("/api/aggregates", web::get().to(routes::aggregates))
            .route("/metrics", web::get().to(routes::metrics))
            .route("/vendor/chart.umd.js", web::get().to(routes::chart_js));
        if serve_static {
            app.service(routes::static_files(&static_dir))
        } else {
            app
        }
    })
    .disable_signals()
    .shutdown_timeout(settings.http.shutdown_timeout_secs)
    .listen(listener)?;
    if settings.http.workers > 0 {
        server = server.workers(settings.http.workers);
    }
    Ok(server.run())
}

/// Installs SIGINT and SIGTERM handlers now and returns a future that resolves with the
/// name of the first one received. Installing early means a signal during start-up is not
/// lost (nor does it kill the process with the default action).
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}
