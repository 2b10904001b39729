//! What the HTTP and WebSocket handlers share, built once by [`crate::startup`] and handed
//! to every actix worker. Kept apart from start-up so that handlers depend on this plain data
//! only, never on the code that wires them.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::configuration::WsSettings;
use crate::hub::Hub;

/// What handlers share.
#[derive(Debug)]
pub struct AppState {
    /// State and fan-out.
    pub hub: Arc<Hub>,
    /// The `[ws]` settings: allowed origins, client cap, per-client timing and frame limit.
    pub ws: WsSettings,
    /// Fires when the gateway stops: clients close with 1001, new upgrades get 503.
    pub shutdown: CancellationToken,
    /// Client tasks, awaited at shutdown.
    pub clients: TaskTracker,
    /// Bearer token of `/ws` and `/api/` but `/api/health`; `None`: open.
    pub auth_token: Option<service_kit::Secret>,
}
