//! `GET /ws`: the upgrade checks (Origin, capacity) and the per-client task.
//!
//! Each client has one task that selects over its frames, its ping timer, its incoming
//! messages and the shutdown token. The task is the only one that ever waits on the client's
//! socket, so a slow client delays nobody else: while it is stuck, its broadcast receiver
//! falls behind; when it catches up it gets a fresh snapshot instead of the backlog. What it
//! may hold in memory is bounded by its [`Outbox`]: a message is queued only while the bytes
//! its socket has not taken are below `ws.client_buffer_bytes`, and a client whose socket
//! makes no room for the next message within the client timeout is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, ProtocolError, Session};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::http::auth;
use crate::http::client_message::{Incoming, classify};
use crate::http::frame_limit::FrameLimit;
use crate::http::origin::origin_allowed;
use crate::http::outbox::{CountingBody, Outbox, wire_size};
use crate::http::state::AppState;
use crate::hub::{ClientSlot, Frame, Hub, MachineFilter, Subscription, merged_texts};

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

/// Handles an upgrade request: 403 for a foreign Origin, 401 without a valid token, 503 when
/// full or shutting down.
pub async fn ws_route(
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<WsQuery>,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let slot = match admit(&req, query.token.as_deref(), &state) {
        Ok(slot) => slot,
        Err(refused) => return Ok(*refused),
    };
    let max_frame_bytes = state.ws.max_frame_bytes;
    let body = limited(&req, body, max_frame_bytes).await?;
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let outbox = Arc::new(Outbox::new(state.ws.client_buffer_bytes));
    let counted = Arc::clone(&outbox);
    let response = response.map_body(move |_, body| CountingBody::new(body, counted, slot).boxed());
    let client = Client {
        session,
        outbox,
        stream: stream.max_frame_size(max_frame_bytes),
        hub: Arc::clone(&state.hub),
        filter: query.machines.as_deref().and_then(MachineFilter::parse),
        ping_interval: Duration::from_secs(state.ws.ping_interval_secs),
        client_timeout: Duration::from_secs(state.ws.client_timeout_secs),
        shutdown: state.shutdown.clone(),
    };
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let span = tracing::info_span!("ws_client", %peer);
    // The message stream is tied to this worker's connection, so the task stays on it.
    actix_web::rt::spawn(state.clients.track_future(client.run().instrument(span)));
    Ok(response)
}

/// `body` behind a [`FrameLimit`] of `max_bytes`, as the payload actix-ws reads.
async fn limited(
    req: &HttpRequest,
    body: web::Payload,
    max_bytes: usize,
) -> actix_web::Result<web::Payload> {
    let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(FrameLimit::new(body, max_bytes));
    web::Payload::from_request(req, &mut Payload::from(stream)).await
}

/// The upgrade checks in order (Origin, token, shutdown, capacity): a client slot, or the
/// response of the first check that refuses (boxed: a response is large, a refusal rare).
fn admit(
    req: &HttpRequest,
    query_token: Option<&str>,
    state: &AppState,
) -> Result<ClientSlot, Box<HttpResponse>> {
    let metrics = state.hub.metrics();
    let headers = req.headers();
    let origin = only(headers, header::ORIGIN);
    let host = only(headers, header::HOST);
    // Two Origin headers: which one the browser meant is anybody's guess.
    let ambiguous = headers.get_all(header::ORIGIN).nth(1).is_some();
    if ambiguous || !origin_allowed(origin, host, &state.ws.allowed_origins) {
        metrics.refused_origin.inc();
        tracing::info!(
            origin,
            host,
            ambiguous,
            "refused a WebSocket upgrade from a foreign origin (list the dashboard's public \
             origin in ws.allowed_origins)"
        );
        return Err(Box::new(
            HttpResponse::Forbidden().body("origin not allowed\n"),
        ));
    }
    if !auth::authorized(req, state.auth_token.as_ref(), query_token) {
        metrics.refused_token.inc();
        tracing::info!(origin, "refused a WebSocket upgrade without a valid token");
        return Err(Box::new(auth::unauthorized()));
    }
    if state.shutdown.is_cancelled() {
        return Err(Box::new(
            HttpResponse::ServiceUnavailable().body("shutting down\n"),
        ));
    }
    state.hub.try_admit(state.ws.max_clients).ok_or_else(|| {
        metrics.refused_capacity.inc();
        tracing::warn!(
            max_clients = state.ws.max_clients,
            "refused a WebSocket upgrade: too many clients"
        );
        Box::new(
            HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "5"))
                .body("too many clients\n"),
        )
    })
}

/// The value of header `name` when the request carries it once; `\u{FFFD}` when it is not
/// text (no origin matches that).
fn only(headers: &header::HeaderMap, name: header::HeaderName) -> Option<&str> {
    let mut values = headers.get_all(name);
    let value = values.next()?;
    let once = values.next().is_none();
    once.then(|| value.to_str().unwrap_or("\u{FFFD}"))
}

/// How a client's task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The gateway is stopping: close with 1001.
    Shutdown,
    /// The client sent Close (or vanished), or its socket closed under a send.
    ClientGone,
    /// No sign of life for the client timeout.
    TimedOut,
    /// A send stalled for the client timeout.
    Stalled,
    /// Oversized or malformed frame.
    Protocol(CloseCode),
}

struct Client {
    session: Session,
    /// The bytes queued for the socket (the response body holds the client's slot).
    outbox: Arc<Outbox>,
    stream: MessageStream,
    hub: Arc<Hub>,
    filter: Option<MachineFilter>,
    ping_interval: Duration,
    /// Silence (or one stalled send) after which the client is dropped.
    client_timeout: Duration,
    shutdown: CancellationToken,
}

impl Client {
    async fn run(mut self) {
        tracing::debug!(filtered = self.filter.is_some(), "client connected");
        let end = self.serve().await;
        tracing::debug!(?end, "client finished");
        let metrics = self.hub.metrics();
        let (code, description) = match end {
            End::Shutdown => (CloseCode::Away, Some("gateway shutting down")),
            End::TimedOut => {
                metrics.clients_timed_out.inc();
                (CloseCode::Away, Some("no answer to pings"))
            }
            End::Protocol(code) => (code, None),
            End::ClientGone => (CloseCode::Normal, None),
            // Its outbox is full: a close frame would only wait behind the backlog.
            End::Stalled => {
                metrics.slow_clients_dropped.inc();
                return;
            }
        };
        let description = description.map(String::from);
        let close = self.session.close(Some(CloseReason { code, description }));
        // Closed or stuck: either way the connection goes when the session is dropped.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }

    /// Sends the snapshot, then frames, pings and pongs until the client or the gateway ends
    /// the connection.
    async fn serve(&mut self) -> End {
        let mut sub = match self.subscribe().await {
            Ok(sub) => sub,
            Err(end) => return end,
        };
        let mut last_alive = Instant::now();
        let mut ping =
            tokio::time::interval_at(Instant::now() + self.ping_interval, self.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => Err(End::Shutdown),
                message = self.stream.recv() => self.on_message(message, &mut last_alive).await,
                _ = ping.tick() => self.ping(last_alive).await,
                frame = sub.frames.recv() => self.on_frame(frame, &mut sub).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Subscribes to the frames and sends the snapshot they follow, a part at a time: each
    /// part is made only when the outbox has room for it.
    async fn subscribe(&mut self) -> Result<Subscription, End> {
        let mut sub = self.hub.subscribe();
        while let Some(part) = self.hub.snapshot_part(&mut sub, self.filter.as_ref()) {
            self.send(Message::Text(part)).await?;
        }
        Ok(sub)
    }

    /// Handles what the client said ([`classify`]): anything proves it alive, a ping is
    /// answered, content is ignored.
    async fn on_message(
        &mut self,
        message: Option<Result<Message, ProtocolError>>,
        last_alive: &mut Instant,
    ) -> Result<(), End> {
        match classify(message) {
            Incoming::Gone => Err(End::ClientGone),
            Incoming::Refused(code) => Err(End::Protocol(code)),
            Incoming::Alive => {
                *last_alive = Instant::now();
                Ok(())
            }
            Incoming::Ping(bytes) => {
                *last_alive = Instant::now();
                self.send(Message::Pong(bytes)).await
            }
        }
    }

    /// Pings the client, unless it has been silent for the client timeout.
    async fn ping(&mut self, last_alive: Instant) -> Result<(), End> {
        if last_alive.elapsed() >= self.client_timeout {
            return Err(End::TimedOut);
        }
        self.send(Message::Ping(Default::default())).await
    }

    /// Sends `frame` merged with whatever else is already queued, so a client that fell a
    /// little behind catches up with the latest values at once; one that fell too far
    /// behind gets a fresh snapshot instead.
    async fn on_frame(
        &mut self,
        frame: Result<Arc<Frame>, RecvError>,
        sub: &mut Subscription,
    ) -> Result<(), End> {
        let queued = match frame {
            Ok(frame) => queued_after(frame, &mut sub.frames),
            Err(RecvError::Lagged(skipped)) => Err(skipped),
            Err(RecvError::Closed) => return Err(End::Shutdown),
        };
        match queued {
            Ok(frames) => {
                for text in merged_texts(&frames, self.filter.as_ref()) {
                    self.send(Message::Text(text)).await?;
                }
            }
            Err(skipped) => {
                self.hub.metrics().resyncs.inc();
                tracing::debug!(skipped, "client fell behind, resyncing");
                // A new receiver and a new snapshot: the old backlog is older than the
                // snapshot and must not be replayed after it.
                *sub = self.subscribe().await?;
            }
        }
        Ok(())
    }

    /// Queues one message for the client's socket once its outbox has room, giving up when
    /// there is none within the client timeout or the gateway stops meanwhile.
    async fn send(&mut self, message: Message) -> Result<(), End> {
        let is_text = matches!(message, Message::Text(_));
        let Self {
            session, outbox, ..
        } = self;
        let queued = async {
            outbox.reserve(wire_size(&message)).await;
            send_message(session, message).await
        };
        tokio::select! {
            r = queued => r.map_err(|_| End::ClientGone)?,
            () = tokio::time::sleep(self.client_timeout) => return Err(End::Stalled),
            () = self.shutdown.cancelled() => return Err(End::Shutdown),
        }
        if is_text {
            self.hub.metrics().frames_sent.inc();
        }
        Ok(())
    }
}

/// `first` and the frames already queued behind it, at most [`MAX_MERGED_FRAMES`]; `Err`
/// with the count of frames lost when the client fell so far behind that some were.
fn queued_after(
    first: Arc<Frame>,
    frames: &mut broadcast::Receiver<Arc<Frame>>,
) -> Result<Vec<Arc<Frame>>, u64> {
    let mut queued = vec![first];
    while queued.len() < MAX_MERGED_FRAMES {
        match frames.try_recv() {
            Ok(frame) => queued.push(frame),
            Err(TryRecvError::Lagged(skipped)) => return Err(skipped),
            Err(_) => break,
        }
    }
    Ok(queued)
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
