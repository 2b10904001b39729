//! One MQTT connection kept up for a service: the only code in ingest and gateway that polls a
//! rumqttc [`EventLoop`].
//!
//! [`Link::run`] polls until its [`CancellationToken`] fires and never does a service's work in
//! between (rumqttc sends requests only while `poll` runs, and a slow poller misses
//! keep-alives). It does what every connection of ours needs:
//!
//! - After a connection error it logs (a lost connection always, a broker that stays out of
//!   reach at most once per [`LOG_EVERY`]), pauses as the [`Backoff`] says (rumqttc would retry
//!   on the very next poll) and points the next attempt at the next broker of the
//!   [`Failover`] list, round-robin.
//! - On a CONNACK without a session it subscribes the link's filters, retrying on later events
//!   while rumqttc's request queue is full. A resumed session still holds them: subscribing
//!   again would make the broker resend its retained messages.
//! - A SUBACK that refuses any filter is answered by subscribing again after a pause that starts
//!   at [`RESUBSCRIBE_START`] and doubles up to the reconnect ceiling. NATS 2.9 refuses while it
//!   cannot create its JetStream consumer in time (a cluster node was just lost) and grants a
//!   moment later; an ACL refuses for good, and then the question is asked rarely.
//!
//! What differs between services is their [`LinkHandler`]: it takes the publishes, learns of
//! the connection's ups and downs (for its metrics and health), adjusts rumqttc's state where
//! it must, and may run one timer of its own inside the loop. A link without filters only
//! connects, for a connection that only publishes.

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnAck, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming,
    MqttState, Outgoing, Publish, SubscribeFilter, SubscribeReasonCode,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Backoff, BrokerAddr, Failover, LogLimit};

/// First pause before asking again for subscriptions the broker refused.
pub const RESUBSCRIBE_START: Duration = Duration::from_secs(1);
/// At most one warning of a repeating kind (broker out of reach, subscription refused) per
/// this interval; the line says how many were left out.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// What a service adds to its [`Link`]. Every method has a default that does nothing, so a
/// handler names only what it needs.
pub trait LinkHandler: Send {
    /// A CONNACK accepted the connection. Called before the first read of the new connection,
    /// with rumqttc's state for a service that has to prepare it. With `session_present`
    /// false the broker kept no session, and the link subscribes once this returns. `Break`
    /// ends [`Link::run`].
    fn connected(
        &mut self,
        session_present: bool,
        state: &mut MqttState,
    ) -> impl Future<Output = ControlFlow<()>> + Send {
        let _ = (session_present, state);
        async { ControlFlow::Continue(()) }
    }

    /// An incoming PUBLISH. The link polls nothing until this returns; `Break` ends
    /// [`Link::run`].
    fn publish(&mut self, publish: Publish) -> impl Future<Output = ControlFlow<()>> + Send {
        let _ = publish;
        async { ControlFlow::Continue(()) }
    }

    /// The broker granted every filter; `granted` holds its SUBACK codes in filter order.
    fn subscribed(&mut self, granted: &[SubscribeReasonCode]) {
        let _ = granted;
    }

    /// The broker refused some filters; the link asks again after a pause.
    fn subscription_refused(&mut self) {}

    /// A packet was written to the broker (our DISCONNECT ends [`Link::run`] instead).
    fn written(&mut self, packet: &Outgoing, state: &mut MqttState) {
        let _ = (packet, state);
    }

    /// The connection failed or was lost; the link pauses and tries again.
    fn connection_failed(&mut self, error: &ConnectionError) {
        let _ = error;
    }

    /// The next connection attempt goes to the broker at `index` of the `mqtt.host` list.
    fn broker_changed(&mut self, index: usize) {
        let _ = index;
    }

    /// When the handler's own timer is due, while it runs. Asked again after every event.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// The instant [`LinkHandler::deadline`] named has come.
    fn deadline_reached(&mut self) {}
}

/// Why [`Link::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEnd {
    /// The stop token fired.
    Stopped,
    /// Our DISCONNECT was written (queued through the client by the service).
    Disconnected,
    /// The handler asked to stop.
    Handler,
}

/// One connection over the brokers of a [`Failover`] list, with the subscription it keeps.
pub struct Link {
    client: AsyncClient,
    event_loop: EventLoop,
    failover: Failover,
    backoff: Backoff,
    filters: Vec<SubscribeFilter>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("failover", &self.failover)
            .field("backoff", &self.backoff)
            .field("filters", &self.filters)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link to the first broker of `failover`, not yet connected (the first
    /// [`Link::run`] connects), pausing after errors as `backoff` says. Returns the client
    /// that publishes on it; `request_capacity` bounds rumqttc's request queue.
    pub fn new(
        failover: Failover,
        backoff: Backoff,
        request_capacity: usize,
    ) -> (Self, AsyncClient) {
        let (client, mut event_loop) = AsyncClient::new(failover.options(), request_capacity);
        crate::no_delay(&mut event_loop);
        let link = Self {
            client: client.clone(),
            event_loop,
            failover,
            backoff,
            filters: Vec::new(),
        };
        (link, client)
    }

    /// Subscribes `filters` (in one SUBSCRIBE) on every CONNACK without a session.
    #[must_use]
    pub fn with_subscription(mut self, filters: Vec<SubscribeFilter>) -> Self {
        self.filters = filters;
        self
    }

    /// The broker in use (or tried next).
    pub fn broker(&self) -> &BrokerAddr {
        self.failover.current()
    }

    /// Polls until `stop` fires, the handler breaks, or our DISCONNECT has been written.
    /// Can be called again after it returned.
    pub async fn run<H: LinkHandler>(
        &mut self,
        handler: &mut H,
        stop: &CancellationToken,
    ) -> LinkEnd {
        let mut pace = Pace::new(self.backoff.max());
        loop {
            let event = tokio::select! {
                biased;
                () = stop.cancelled() => return LinkEnd::Stopped,
                () = sleep_until(pace.resubscribe_at) => {
                    pace.resubscribe_at = None;
                    pace.need_subscribe = !self.try_subscribe();
                    continue;
                }
                () = sleep_until(handler.deadline()) => {
                    handler.deadline_reached();
                    continue;
                }
                event = self.event_loop.poll() => event,
            };
            let flow = match event {
                Ok(event) => self.on_event(event, handler, &mut pace).await,
                Err(e) => self.on_error(&e, handler, &mut pace, stop).await,
            };
            if let ControlFlow::Break(end) = flow {
                return end;
            }
        }
    }

    /// Sends DISCONNECT and polls until it is written, the connection is gone or `timeout`
    /// has passed. True when it was written.
    pub async fn disconnect(&mut self, timeout: Duration) -> bool {
        if self.client.try_disconnect().is_err() {
            return false;
        }
        let event_loop = &mut self.event_loop;
        let written = tokio::time::timeout(timeout, async {
            loop {
                match event_loop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return true,
                    Err(_) => return false,
                    Ok(_) => {}
                }
            }
        })
        .await
        .unwrap_or(false);
        if written {
            tracing::info!("disconnected from the MQTT broker");
        }
        written
    }

    async fn on_event<H: LinkHandler>(
        &mut self,
        event: Event,
        handler: &mut H,
        pace: &mut Pace,
    ) -> ControlFlow<LinkEnd> {
        let flow = match event {
            Event::Incoming(Incoming::ConnAck(ack)) => self.on_connack(ack, handler, pace).await,
            Event::Incoming(Incoming::SubAck(ack)) => {
                self.on_suback(&ack.return_codes, handler, pace);
                ControlFlow::Continue(())
            }
            Event::Incoming(Incoming::Publish(publish)) => handler.publish(publish).await,
            Event::Outgoing(Outgoing::Disconnect) => {
                tracing::info!("disconnected from the MQTT broker");
                return ControlFlow::Break(LinkEnd::Disconnected);
            }
            Event::Outgoing(packet) => {
                handler.written(&packet, &mut self.event_loop.state);
                ControlFlow::Continue(())
            }
            Event::Incoming(_) => ControlFlow::Continue(()),
        };
        if flow.is_break() {
            return ControlFlow::Break(LinkEnd::Handler);
        }
        // After the event, and again after every later one while the request queue is full
        // (each poll drains it a little).
        if pace.need_subscribe {
            pace.need_subscribe = !self.try_subscribe();
        }
        ControlFlow::Continue(())
    }

    async fn on_connack<H: LinkHandler>(
        &mut self,
        ack: ConnAck,
        handler: &mut H,
        pace: &mut Pace,
    ) -> ControlFlow<()> {
        if ack.code != ConnectReturnCode::Success {
            // rumqttc reports a refused connection as an error; nothing to do with this one.
            return ControlFlow::Continue(());
        }
        self.backoff.reset();
        pace.connected(ack.session_present);
        tracing::info!(
            session_present = ack.session_present,
            broker = %self.failover.current(),
            "connected to the MQTT broker"
        );
        handler
            .connected(ack.session_present, &mut self.event_loop.state)
            .await
    }

    fn on_suback<H: LinkHandler>(
        &mut self,
        codes: &[SubscribeReasonCode],
        handler: &mut H,
        pace: &mut Pace,
    ) {
        let refused = refused_filters(&self.filters, codes);
        if refused.is_empty() {
            pace.resubscribe_backoff.reset();
            tracing::info!(filters = ?filter_names(&self.filters), granted = ?codes, "subscription acknowledged");
            handler.subscribed(codes);
            return;
        }
        let delay = pace.resubscribe_backoff.next_delay();
        if let Some(suppressed) = pace.refused_log.admit() {
            tracing::warn!(
                ?refused,
                retry_in_ms = millis(delay),
                suppressed,
                "the broker refused the subscription (an ACL, or a cluster node lost); asking again"
            );
        }
        pace.resubscribe_at = Some(Instant::now() + delay);
        handler.subscription_refused();
    }

    async fn on_error<H: LinkHandler>(
        &mut self,
        error: &ConnectionError,
        handler: &mut H,
        pace: &mut Pace,
        stop: &CancellationToken,
    ) -> ControlFlow<LinkEnd> {
        handler.connection_failed(error);
        let was_connected = pace.disconnected();
        let delay = self.backoff.next_delay();
        let broker = self.failover.current();
        if was_connected {
            tracing::warn!(%error, %broker, retry_in_ms = millis(delay), "lost the connection to the MQTT broker; reconnecting");
        } else if let Some(suppressed) = pace.admit_error(error, Instant::now()) {
            tracing::warn!(%error, %broker, retry_in_ms = millis(delay), suppressed, "cannot reach the MQTT broker");
        }
        if let Some(next) = self.failover.advance(&mut self.event_loop) {
            tracing::info!(broker = %next, "failing over to the next broker");
            handler.broker_changed(self.failover.index());
        }
        tokio::select! {
            () = stop.cancelled() => ControlFlow::Break(LinkEnd::Stopped),
            () = tokio::time::sleep(delay) => ControlFlow::Continue(()),
        }
    }

    /// Queues the subscription; false while rumqttc's request queue is full.
    fn try_subscribe(&self) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        match self.client.try_subscribe_many(self.filters.iter().cloned()) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "subscription queued later");
                false
            }
        }
    }
}

/// What one [`Link::run`] keeps between events besides the link itself.
struct Pace {
    /// A CONNACK came and no error since.
    connected: bool,
    /// The subscription is still to be queued.
    need_subscribe: bool,
    /// After a refused subscription: when to ask again.
    resubscribe_at: Option<Instant>,
    resubscribe_backoff: Backoff,
    refused_log: LogLimit,
    error_log: LogLimit,
    /// The text of the last connection error logged.
    last_error: String,
}

impl Pace {
    fn new(ceiling: Duration) -> Self {
        Self {
            connected: false,
            need_subscribe: false,
            resubscribe_at: None,
            resubscribe_backoff: Backoff::new(RESUBSCRIBE_START, ceiling),
            refused_log: LogLimit::new(LOG_EVERY),
            error_log: LogLimit::new(LOG_EVERY),
            last_error: String::new(),
        }
    }

    /// Whether a failed connection attempt gets a warning: `Some(left out since the previous
    /// one)`. A different error is always logged (the first failure may be a bare I/O error
    /// and the next one the reason, such as an untrusted certificate); the same one again at
    /// most once per [`LOG_EVERY`].
    fn admit_error(&mut self, error: &ConnectionError, now: Instant) -> Option<u64> {
        let text = error.to_string();
        if text == self.last_error {
            return self.error_log.admit_at(now);
        }
        self.last_error = text;
        Some(self.error_log.force_at(now))
    }

    /// A new connection; `subscribed` when it needs no SUBSCRIBE of ours.
    fn connected(&mut self, subscribed: bool) {
        self.connected = true;
        self.need_subscribe = !subscribed;
        self.resubscribe_at = None;
        self.resubscribe_backoff.reset();
    }

    /// A connection error; returns whether a connection was up until now.
    fn disconnected(&mut self) -> bool {
        // A retry queued while disconnected would go out after a reconnect that may not
        // want it (a resumed session): the next CONNACK decides afresh.
        self.resubscribe_at = None;
        std::mem::take(&mut self.connected)
    }
}

/// The filters a SUBACK's `codes` refused, named by their position in `filters`.
fn refused_filters<'f>(
    filters: &'f [SubscribeFilter],
    codes: &[SubscribeReasonCode],
) -> Vec<&'f str> {
    filters
        .iter()
        .zip(codes)
        .filter(|(_, code)| matches!(code, SubscribeReasonCode::Failure))
        .map(|(filter, _)| filter.path.as_str())
        .collect()
}

fn filter_names(filters: &[SubscribeFilter]) -> Vec<&str> {
    filters.iter().map(|f| f.path.as_str()).collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sleeps until `at`, or forever without one (a timer that is off in a `select!`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use rumqttc::QoS;

    use super::*;

    #[test]
    fn refused_filters_are_named_by_their_position_in_the_suback() {
        let filters: Vec<SubscribeFilter> = ["a/#", "b/#", "c/#"]
            .map(|f| SubscribeFilter::new(f.into(), QoS::AtLeastOnce))
            .into();
        let granted = SubscribeReasonCode::Success(QoS::AtLeastOnce);
        let refused = SubscribeReasonCode::Failure;
        assert!(refused_filters(&filters, &[granted; 3]).is_empty());
        assert_eq!(
            refused_filters(&filters, &[refused, granted, refused]),
            ["a/#", "c/#"]
        );
    }

    #[test]
    fn a_lost_connection_cancels_a_pending_resubscribe() {
        let mut pace = Pace::new(Duration::from_secs(30));
        pace.connected(false);
        assert!(pace.need_subscribe);
        pace.resubscribe_at = Some(Instant::now());
        assert!(pace.disconnected(), "it was connected");
        assert_eq!(pace.resubscribe_at, None);
        assert!(!pace.disconnected(), "no second loss without a connection");
    }

    #[test]
    fn a_different_connection_error_is_logged_at_once_the_same_one_rarely() {
        let refused = || ConnectionError::Io(std::io::ErrorKind::ConnectionRefused.into());
        let mut pace = Pace::new(Duration::from_secs(30));
        let now = Instant::now();
        assert_eq!(pace.admit_error(&refused(), now), Some(0));
        assert_eq!(pace.admit_error(&refused(), now), None);
        assert_eq!(
            pace.admit_error(&ConnectionError::NetworkTimeout, now),
            Some(1),
            "a new reason, with the count left out"
        );
        assert_eq!(
            pace.admit_error(&ConnectionError::NetworkTimeout, now),
            None
        );
        assert_eq!(pace.admit_error(&refused(), now), Some(1));
        assert_eq!(pace.admit_error(&refused(), now + LOG_EVERY), Some(0));
    }
}
