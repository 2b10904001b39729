//! Wiring: [`Application::build`] binds the HTTP socket (port 0 works), [`Application::run`]
//! starts the MQTT link task, the aggregation task and the HTTP server, and runs the
//! shutdown sequence when the token fires. The settings reach the link in one place,
//! `readings_link`.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use aggregator_core::Timestamp;
use prometheus_client::registry::Registry;
use rumqttc::AsyncClient;
use service_kit::Link;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::configuration::IngestConfig;
use crate::durability::window_log::{LogError, Recovery, WindowLog};
use crate::metrics::Metrics;
use crate::mqtt::{self, Forwarder, Inbound, LinkState};
use crate::pipeline::{Pipeline, clock_now};

/// Why the service could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The HTTP address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Http(#[source] std::io::Error),
    /// The window log under `data_dir` cannot be opened or written.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// A built, not yet running ingest service.
pub struct Application {
    config: IngestConfig,
    listener: TcpListener,
    addr: SocketAddr,
    log: Option<(WindowLog, Recovery)>,
}

impl Application {
    /// Binds the HTTP listener and opens (recovers) the window log when `data_dir` is set.
    ///
    /// # Errors
    /// [`StartupError::Bind`] when the address is taken or not local; [`StartupError::Log`]
    /// when the data directory cannot be read or written (damaged content is not an error).
    pub fn build(config: IngestConfig) -> Result<Self, StartupError> {
        let settings = &config.settings;
        let bind_error = |source| StartupError::Bind {
            addr: settings.listen,
            source,
        };
        let listener = TcpListener::bind(settings.listen).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let log = match settings.data_dir() {
            Some(dir) => {
                let window = settings.window.config().window;
                let (log, recovery) = WindowLog::open(dir, window, clock_now())?;
                tracing::info!(
                    data_dir = %dir.display(),
                    segments = recovery.segments,
                    records = recovery.records.len(),
                    truncated_bytes = recovery.truncated_bytes,
                    damaged_segments = recovery.damaged_segments,
                    "window log opened"
                );
                Some((log, recovery))
            }
            None => {
                tracing::warn!(
                    "no data_dir: the windows start empty after every restart (set data_dir to keep them)"
                );
                None
            }
        };
        Ok(Application {
            config,
            listener,
            addr,
            log,
        })
    }

    /// The bound HTTP address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs until `shutdown` fires, then stops cleanly: no more input, pending aggregates and
    /// the offline status handed to the broker, DISCONNECT, HTTP server stopped.
    ///
    /// # Errors
    /// When the HTTP server cannot start.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        let Application {
            config,
            listener,
            addr,
            log,
        } = self;
        let started_at = clock_now();
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let limits = &config.settings.limits;
        let (inbound_tx, inbound_rx) = mpsc::channel(limits.incoming_capacity);
        let (link, client) = readings_link(&config, started_at);
        let link = RunningLink::spawn(link, inbound_tx.clone(), metrics.clone());
        let http = RunningHttp::spawn(listener, registry, link.state.clone())?;
        log_started(&config, addr);
        let snapshot_task = spawn_snapshot_read(&config, &shutdown, inbound_tx);

        let mut pipeline = start_pipeline(&config, started_at, client, metrics, log);
        let inbound_rx = pipeline.run(inbound_rx, &shutdown).await;

        link.draining.cancel();
        let timeout = Duration::from_millis(config.settings.shutdown_timeout_ms);
        let finished = pipeline
            .finish(inbound_rx, link.state.clone(), timeout)
            .await;
        link.stop().await;
        snapshot_task.abort();
        http.stop().await?;
        finished?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The readings link as the settings say: every broker of `mqtt.host` with the same options,
/// so the persistent session resumes on a broker that shares it. Returns the client the
/// pipeline publishes and acknowledges through.
fn readings_link(config: &IngestConfig, started_at: Timestamp) -> (Link, AsyncClient) {
    let offline = config.shard.status_payload(false, started_at);
    let options_config = config.clone();
    let failover = config
        .mqtt
        .failover(move |broker| options_config.mqtt_options_at(broker, offline.clone()));
    mqtt::link(
        failover,
        config.mqtt.backoff(),
        config.settings.limits.request_capacity,
        &config.shard.filter,
    )
}

/// The link task and what the shutdown sequence steers it with.
struct RunningLink {
    /// Link state, for `/health` and the shutdown sequence.
    state: watch::Receiver<LinkState>,
    /// Stop forwarding readings (shutdown has begun); polling goes on.
    draining: CancellationToken,
    /// Stop polling at once.
    abort: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningLink {
    fn spawn(link: Link, inbound: mpsc::Sender<Inbound>, metrics: Metrics) -> Self {
        let (state_tx, state) = watch::channel(LinkState::default());
        let draining = CancellationToken::new();
        let abort = CancellationToken::new();
        let forwarder = Forwarder {
            inbound,
            state: state_tx,
            metrics,
            draining: draining.clone(),
        };
        let task = tokio::spawn(mqtt::run(link, forwarder, abort.clone()));
        Self {
            state,
            draining,
            abort,
            task,
        }
    }

    /// Stops polling (our DISCONNECT is written by now, or the shutdown gave up on it).
    async fn stop(self) {
        self.abort.cancel();
        let _ = self.task.await;
    }
}

/// The HTTP server task (`/health`, `/metrics`).
struct RunningHttp {
    handle: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningHttp {
    fn spawn(
        listener: TcpListener,
        registry: Registry,
        link: watch::Receiver<LinkState>,
    ) -> Result<Self, StartupError> {
        let server =
            crate::http::serve(listener, Arc::new(registry), link).map_err(StartupError::Http)?;
        Ok(Self {
            handle: server.handle(),
            task: tokio::spawn(server),
        })
    }

    /// Stops the server gracefully; its error, if it failed.
    async fn stop(self) -> Result<(), StartupError> {
        self.handle.stop(true).await;
        match self.task.await {
            Ok(Err(e)) => Err(StartupError::Http(e)),
            _ => Ok(()),
        }
    }
}

/// One line with the address and every setting an operator asks about first.
fn log_started(config: &IngestConfig, addr: SocketAddr) {
    let settings = &config.settings;
    tracing::info!(
        %addr,
        broker = %config.mqtt.brokers[0],
        client_id = %config.mqtt.client_id,
        mqtt_security = %config.mqtt.security,
        window_seconds = settings.window.seconds,
        shard = config.shard.index,
        shard_count = config.shard.count,
        subscribe_topic = %config.shard.filter,
        publish_interval_ms = settings.publish.interval_ms,
        publish_burst = settings.publish.burst,
        alarm_rules = config.alarms.len(),
        trend_interval_seconds = settings.trend.interval_seconds,
        trend_points = settings.trend.points,
        "HTTP listening"
    );
}

/// Reads the retained state of a previous run in the background (the service runs
/// meanwhile) and hands it to the pipeline, even when nothing was read: alarms and trends
/// wait for it.
fn spawn_snapshot_read(
    config: &IngestConfig,
    shutdown: &CancellationToken,
    inbound: mpsc::Sender<Inbound>,
) -> JoinHandle<()> {
    let config = config.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let found = crate::restart::snapshot::read_retained(&config, &shutdown).await;
        tokio::select! {
            _ = inbound.send(Inbound::Retained(found)) => {}
            () = shutdown.cancelled() => {}
        }
    })
}

/// The aggregation pipeline with the recovered windows restored and their aggregates handed to
/// the client, before any new input is taken.
fn start_pipeline(
    config: &IngestConfig,
    started_at: Timestamp,
    client: AsyncClient,
    metrics: Metrics,
    log: Option<(WindowLog, Recovery)>,
) -> Pipeline {
    let mut pipeline = Pipeline::new(config, started_at, client, metrics);
    if let Some((log, recovery)) = log {
        pipeline.restore(log, recovery.records, clock_now());
    }
    pipeline.tick(clock_now());
    pipeline
}
