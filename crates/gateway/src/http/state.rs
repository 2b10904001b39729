//! What the HTTP and WebSocket handlers share, built once by [`crate::startup`] and handed
//! to every actix worker. Kept apart from start-up so that handlers depend on this plain data
//! only, never on the code that wires them.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;

/// What handlers share.
#[derive(Debug)]
pub struct AppState {
    /// State and fan-out.
    pub hub: Arc<Hub>,
    /// `ws.allowed_origins`: the origins allowed besides the gateway's own address.
    pub allowed_origins: Vec<String>,
    /// Client cap.
    pub max_clients: usize,
    /// Per-client timing.
    pub client: ClientConfig,
    /// Fires when the gateway stops: clients close with 1001, new upgrades get 503.
    pub shutdown: CancellationToken,
    /// Client tasks, awaited at shutdown.
    pub clients: TaskTracker,
    /// Bearer token of `/ws`, `/api/aggregates` and `/api/alarms`; `None`: open.
    pub auth_token: Option<service_kit::Secret>,
}

/// Per-client timing, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// Interval between pings.
    pub ping_interval: Duration,
    /// Silence (or one stalled send) after which the client is dropped.
    pub client_timeout: Duration,
    /// Largest inbound frame.
    pub max_frame_bytes: usize,
    /// Most bytes queued for the client's socket.
    pub buffer_bytes: usize,
}
