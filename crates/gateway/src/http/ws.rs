//! `GET /ws`: the upgrade checks (Origin, capacity) and the per-client task.
//!
//! Each client has one task that selects over its frames, its ping timer, its incoming
//! messages and the shutdown token. The task is the only one that ever waits on the client's
//! socket, so a slow client delays nobody else: while it is stuck, its broadcast receiver
//! falls behind; when it catches up it gets a fresh snapshot instead of the backlog; if one
//! send stalls for the whole client timeout the client is dropped.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, ProtocolError, Session};
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::http::origin::origin_allowed;
use crate::http::state::{AppState, ClientConfig};
use crate::hub::{ClientSlot, Hub, MachineFilter, merged_texts};

/// Most queued frames merged into one send: bounds the work of one merge.
const MAX_MERGED_FRAMES: usize = 64;

/// How long a close frame may take to be queued at shutdown or on a protocol error.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Query string of `/ws`.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// `A1,B2`: only these machines.
    machines: Option<String>,
    /// The bearer token, for browsers, which cannot set headers on an upgrade.
    token: Option<String>,
}

/// Handles an upgrade request: 403 for a foreign Origin, 503 when full or shutting down.
pub async fn ws_route(
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<WsQuery>,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let metrics = state.hub.metrics();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("\u{FFFD}"));
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, host, &state.allowed_origins) {
        metrics.refused_origin.inc();
        tracing::info!(
            origin,
            host,
            "refused a WebSocket upgrade from a foreign origin"
        );
        return Ok(HttpResponse::Forbidden().body("origin not allowed\n"));
    }
    if !crate::http::auth::authorized(&req, state.auth_token.as_ref(), query.token.as_deref()) {
        metrics.refused_token.inc();
        tracing::info!(origin, "refused a WebSocket upgrade without a valid token");
        return Ok(crate::http::auth::unauthorized());
    }
    if state.shutdown.is_cancelled() {
        return Ok(HttpResponse::ServiceUnavailable().body("shutting down\n"));
    }
    let Some(slot) = state.hub.try_admit(state.max_clients) else {
        metrics.refused_capacity.inc();
        tracing::warn!(
            max_clients = state.max_clients,
            "refused a WebSocket upgrade: too many clients"
        );
        return Ok(HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .body("too many clients\n"));
    };
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream.max_frame_size(state.client.max_frame_bytes);
    let filter = query.machines.as_deref().and_then(MachineFilter::parse);
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let client = Client {
        session,
        stream,
        hub: Arc::clone(&state.hub),
        filter,
        config: state.client,
        shutdown: state.shutdown.clone(),
        _slot: slot,
    };
    let span = tracing::info_span!("ws_client", %peer);
    // The message stream is tied to this worker's connection, so the task stays on it.
    actix_web::rt::spawn(state.clients.track_future(client.run().instrument(span)));
    Ok(response)
}

/// How a client's task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The gateway is stopping: close with 1001.
    Shutdown,
    /// The client sent Close (or vanished).
    ClientGone,
    /// No sign of life for the client timeout.
    TimedOut,
    /// A send stalled for the client timeout.
    Stalled,
    /// Oversized or malformed frame.
    Protocol(CloseCode),
}

/// Why a send did not complete.
enum SendError {
    Closed,
    Stalled,
    Shutdown,
}

impl From<SendError> for End {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Closed => End::ClientGone,
            SendError::Stalled => End::Stalled,
            SendError::Shutdown => End::Shutdown,
        }
    }
}

struct Client {
    session: Session,
    stream: MessageStream,
    hub: Arc<Hub>,
    filter: Option<MachineFilter>,
    config: ClientConfig,
    shutdown: CancellationToken,
    /// Held for the life of the task: frees the client's place when the task ends.
    _slot: ClientSlot,
}

impl Client {
    async fn run(mut self) {
        tracing::debug!(filtered = self.filter.is_some(), "client connected");
        let end = self.serve().await;
        let metrics = Arc::clone(self.hub.metrics());
        let close = match end {
            End::Shutdown => Some(CloseReason {
                code: CloseCode::Away,
                description: Some("gateway shutting down".into()),
            }),
            End::TimedOut => {
                metrics.clients_timed_out.inc();
                Some(CloseReason {
                    code: CloseCode::Away,
                    description: Some("no answer to pings".into()),
                })
            }
            End::Protocol(code) => Some(CloseReason {
                code,
                description: None,
            }),
            End::ClientGone => Some(CloseReason {
                code: CloseCode::Normal,
                description: None,
            }),
            // Its queue is full: a close frame would only wait behind the backlog.
            End::Stalled => {
                metrics.slow_clients_dropped.inc();
                None
            }
        };
        tracing::debug!(?end, "client finished");
        if let Some(reason) = close {
            // Closed or stuck: either way the connection goes when the session is dropped.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.session.close(Some(reason))).await;
        }
    }

    async fn serve(&mut self) -> End {
        let metrics = Arc::clone(self.hub.metrics());
        let mut sub = self.hub.subscribe(self.filter.as_ref());
        if let Err(e) = self.send(Message::Text(sub.snapshot.clone())).await {
            return e.into();
        }
        let mut last_alive = Instant::now();
        let mut ping = tokio::time::interval_at(
            Instant::now() + self.config.ping_interval,
            self.config.ping_interval,
        );
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return End::Shutdown,
                message = self.stream.recv() => match message {
                    Some(Ok(Message::Close(_))) | None => return End::ClientGone,
                    Some(Ok(Message::Ping(bytes))) => {
                        last_alive = Instant::now();
                        if let Err(e) = self.send(Message::Pong(bytes)).await {
                            return e.into();
                        }
                    }
                    // Pongs, and anything else a client says, prove it is alive; content is ignored.
                    Some(Ok(_)) => last_alive = Instant::now(),
                    Some(Err(ProtocolError::Overflow)) => return End::Protocol(CloseCode::Size),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "protocol error");
                        return End::Protocol(CloseCode::Protocol);
                    }
                },
                _ = ping.tick() => {
                    if last_alive.elapsed() >= self.config.client_timeout {
                        return End::TimedOut;
                    }
                    if let Err(e) = self.send(Message::Ping(Default::default())).await {
                        return e.into();
                    }
                }
                frame = sub.frames.recv() => match frame {
                    Ok(frame) => {
                        // Whatever else is already queued goes out merged with it: a client
                        // that fell behind catches up with the latest values at once.
                        let mut frames = vec![frame];
                        let mut lagged = false;
                        while frames.len() < MAX_MERGED_FRAMES {
                            match sub.frames.try_recv() {
                                Ok(frame) => frames.push(frame),
                                Err(TryRecvError::Lagged(_)) => {
                                    lagged = true;
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        if lagged {
                            metrics.resyncs.inc();
                            sub = self.hub.subscribe(self.filter.as_ref());
                            if let Err(e) = self.send(Message::Text(sub.snapshot.clone())).await {
                                return e.into();
                            }
                            continue;
                        }
                        for text in merged_texts(&frames, self.filter.as_ref()) {
                            if let Err(e) = self.send(Message::Text(text)).await {
                                return e.into();
                            }
                        }
                    }
                    Err(RecvError::Lagged(skipped)) => {
                        metrics.resyncs.inc();
                        tracing::debug!(skipped, "client fell behind, resyncing");
                        // A new receiver and a new snapshot: the old backlog is older than
                        // the snapshot and must not be replayed after it.
                        sub = self.hub.subscribe(self.filter.as_ref());
                        if let Err(e) = self.send(Message::Text(sub.snapshot.clone())).await {
                            return e.into();
                        }
                    }
                    Err(RecvError::Closed) => return End::Shutdown,
                },
            }
        }
    }

    /// Queues one message for the client's socket, giving up when it stays full for the
    /// client timeout or the gateway stops meanwhile.
    async fn send(&mut self, message: Message) -> Result<(), SendError> {
        let is_text = matches!(message, Message::Text(_));
        let result = tokio::select! {
            r = send_message(&mut self.session, message) => r.map_err(|_| SendError::Closed),
            () = tokio::time::sleep(self.config.client_timeout) => Err(SendError::Stalled),
            () = self.shutdown.cancelled() => Err(SendError::Shutdown),
        };
        if result.is_ok() && is_text {
            self.hub.metrics().frames_sent.inc();
        }
        result
    }
}

async fn send_message(session: &mut Session, message: Message) -> Result<(), actix_ws::Closed> {
    match message {
        Message::Text(text) => session.text(text).await,
        Message::Ping(bytes) => session.ping(&bytes).await,
        Message::Pong(bytes) => session.pong(&bytes).await,
        // The client task sends nothing else.
        _ => Ok(()),
    }
}
