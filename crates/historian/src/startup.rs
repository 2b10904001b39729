//! Wiring: [`Application::build`] binds the HTTP socket (port 0 works) and opens the store's
//! pool (it connects on first use); [`Application::run`] starts the MQTT link, the HTTP server
//! and the writer, and runs the shutdown sequence when the token fires.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::api::ApiState;
use crate::configuration::{HistorianConfig, redact};
use crate::http::HealthSources;
use crate::metrics::Metrics;
use crate::mqtt::LinkTask;
use crate::store::{Store, StoreError};
use crate::writer::Writer;

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
    /// The store cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A built, not yet running historian.
pub struct Application {
    config: HistorianConfig,
    listener: TcpListener,
    addr: SocketAddr,
    store: Store,
}

impl Application {
    /// Binds the HTTP listener and prepares the store's pool.
    ///
    /// # Errors
    /// [`StartupError::Bind`] when the address is taken or not local; [`StartupError::Store`]
    /// when the store URL cannot be used.
    pub fn build(config: HistorianConfig) -> Result<Self, StartupError> {
        let listen = config.settings.listen;
        let bind_error = |source| StartupError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let store = Store::open(&config.settings.store.url, config.store_kind)?
            .with_shifts(config.shift_rules());
        Ok(Self {
            config,
            listener,
            addr,
            store,
        })
    }

    /// The bound HTTP address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs until `shutdown` fires, then stops: the batch at hand committed and acknowledged
    /// (or abandoned unacknowledged), DISCONNECT, HTTP server stopped.
    ///
    /// # Errors
    /// When the HTTP server cannot start or fails, or the store belongs to a newer historian.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        let config = &self.config;
        let metrics = Metrics::new();
        let capacity = config.settings.store.batch_size.saturating_mul(2);
        let (inbound_tx, inbound_rx) = mpsc::channel(capacity);
        let link = LinkTask::spawn(config, inbound_tx, metrics.clone());
        let (available, store_state) = watch::channel(false);
        let sources = HealthSources {
            link: link.state.clone(),
            store: store_state,
        };
        let api = ApiState {
            store: self.store.clone(),
            calendar: Arc::clone(&config.calendar),
            settings: config.settings.api.clone(),
        };
        let interval = Duration::from_secs(config.settings.api.shift_topic_interval_secs);
        let feed_stop = shutdown.child_token();
        let feed = tokio::spawn(crate::shift_feed::run(
            api.clone(),
            link.client.clone(),
            interval,
            metrics.clone(),
            sources.store.clone(),
            feed_stop.clone(),
        ));
        let server = crate::http::serve(self.listener, metrics.clone(), sources, api)
            .map_err(StartupError::Http)?;
        let http = server.handle();
        let http_task = tokio::spawn(server);
        log_started(config, self.addr);

        let writer = Writer::new(
            config,
            self.store.clone(),
            link.client.clone(),
            link.generation.clone(),
            metrics,
            available,
        );
        let written = writer.run(inbound_rx, &shutdown).await;
        feed_stop.cancel();
        let _ = feed.await;
        let timeout = Duration::from_millis(config.settings.shutdown_timeout_ms);
        link.stop(timeout).await;
        self.store.close().await;
        http.stop(true).await;
        if let Ok(Err(e)) = http_task.await {
            return Err(StartupError::Http(e));
        }
        written?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// One line with the address and every setting an operator asks about first.
fn log_started(config: &HistorianConfig, addr: SocketAddr) {
    let settings = &config.settings;
    tracing::info!(
        %addr,
        broker = %config.mqtt.brokers[0],
        client_id = %config.mqtt.client_id,
        mqtt_security = %config.mqtt.security,
        store = %redact(&settings.store.url),
        batch_size = settings.store.batch_size,
        batch_max_ms = settings.store.batch_max_ms,
        minute_days = settings.retention.minute_days,
        hour_days = settings.retention.hour_days,
        "HTTP listening"
    );
}
