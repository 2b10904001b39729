//! Wiring: [`Application::build`] binds the HTTP socket (port 0 works) and recovers the window
//! log; [`Application::run`] starts the MQTT link, the aggregation and the HTTP server, and
//! runs the shutdown sequence when the token fires.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::configuration::IngestConfig;
use crate::durability::window_log::{LogError, Recovery, WindowLog};
use crate::metrics::Metrics;
use crate::mqtt::{Inbound, LinkTask};
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
                let retention = settings.log_retention();
                let (log, recovery) = WindowLog::open(dir, retention, clock_now())?;
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
                    "no data_dir: the windows and open history minutes start empty after every restart (set data_dir to keep them)"
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
    /// When the HTTP server cannot start or fails, or the window log cannot be written.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        let config = &self.config;
        let started_at = clock_now();
        let metrics = Metrics::new();
        let (inbound_tx, inbound_rx) = mpsc::channel(config.settings.limits.incoming_capacity);
        let (link, clients) =
            LinkTask::spawn(config, started_at, inbound_tx.clone(), metrics.clone());
        let server = crate::http::serve(self.listener, metrics.clone(), link.state.clone())
            .map_err(StartupError::Http)?;
        let http = server.handle();
        let http_task = tokio::spawn(server);
        log_started(config, self.addr);
        let snapshot = tokio::spawn(read_snapshot(config.clone(), shutdown.clone(), inbound_tx));

        let mut pipeline = Pipeline::new(config, started_at, clients, metrics);
        if let Some((log, recovery)) = self.log {
            pipeline.restore(log, recovery.records, clock_now());
        }
        pipeline.tick(clock_now());
        let mut inbound_rx = pipeline.run(inbound_rx, &shutdown).await;

        // The link no longer waits for room: what is buffered is still read.
        inbound_rx.close();
        let timeout = Duration::from_millis(config.settings.shutdown_timeout_ms);
        let finished = pipeline
            .finish(inbound_rx, link.state.clone(), timeout)
            .await;
        link.stop().await;
        snapshot.abort();
        http.stop(true).await;
        if let Ok(Err(e)) = http_task.await {
            return Err(StartupError::Http(e));
        }
        finished?;
        tracing::info!("stopped");
        Ok(())
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
        sparkplug_groups = ?settings.sparkplug.groups,
        "HTTP listening"
    );
}

/// Reads the retained state of a previous run (the service runs meanwhile) and hands it to the
/// pipeline, even when nothing was read: alarms and trends wait for it.
async fn read_snapshot(
    config: IngestConfig,
    shutdown: CancellationToken,
    inbound: mpsc::Sender<Inbound>,
) {
    let found = crate::restart::snapshot::read_retained(&config, &shutdown).await;
    let retained = inbound.send(Inbound::Retained(found));
    shutdown.run_until_cancelled(retained).await;
}
