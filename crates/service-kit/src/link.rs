//! One MQTT connection kept up for a service: the only code in ingest, gateway and historian
//! that polls a rumqttc [`EventLoop`]; what differs between them is their [`LinkHandler`].
//!
//! After an error the link pauses as the [`Backoff`] says (rumqttc would retry at once) and
//! tries the next broker of the [`Failover`] list. It subscribes only on a CONNACK without a
//! session: in a resumed one the broker would resend its retained messages. A refused
//! subscription is asked for again after a pause from 1 s, doubling up to the reconnect
//! ceiling: NATS 2.9 refuses while it cannot create its JetStream consumer (a cluster node was
//! just lost) and grants a moment later; an ACL refuses for good.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, MqttState,
    Outgoing, Publish, Request, Subscribe, SubscribeFilter, SubscribeReasonCode,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Backoff, Failover, LogLimit};

/// At most one warning of a repeating kind per this interval.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// What a service adds to its [`Link`]. The link polls nothing until a method returns: a slow
/// handler makes the connection miss keep-alives.
pub trait LinkHandler: Send {
    /// A CONNACK accepted the connection; `state` is rumqttc's, before the first read.
    fn connected(
        &mut self,
        session_present: bool,
        state: &mut MqttState,
    ) -> impl Future<Output = ()> + Send;

    /// An incoming PUBLISH.
    fn publish(&mut self, publish: Publish) -> impl Future<Output = ()> + Send;

    /// The broker granted every filter; `granted` holds its SUBACK codes in filter order.
    fn subscribed(&mut self, granted: &[SubscribeReasonCode]);

    /// The broker refused some filters; the link asks again after a pause.
    fn subscription_refused(&mut self);

    /// The connection failed or was lost; the next attempt goes to broker `next_broker`.
    fn disconnected(&mut self, next_broker: usize);

    /// A packet other than our DISCONNECT was written to the broker.
    fn written(&mut self, _packet: &Outgoing, _state: &mut MqttState) {}

    /// When the handler's own timer is due; asked again after every event.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// The instant [`LinkHandler::deadline`] named has come.
    fn deadline_reached(&mut self) {}
}

/// One connection over the brokers of a [`Failover`] list, with the subscription it keeps.
pub struct Link {
    client: AsyncClient,
    event_loop: EventLoop,
    failover: Failover,
    backoff: Backoff,
    filters: Vec<SubscribeFilter>,
    /// A CONNACK came and no error since.
    connected: bool,
    /// After a refused subscription: when to ask again.
    resubscribe_at: Option<Instant>,
    resubscribe_backoff: Backoff,
    refused_log: LogLimit,
    error_log: LogLimit,
    /// The last connection error logged.
    last_error: String,
}

impl Link {
    /// A link, not yet connected, that subscribes `filters` (if any) on every CONNACK without a
    /// session; returns the client that publishes on it, whose queue holds `request_capacity`
    /// requests.
    pub fn new(
        failover: Failover,
        backoff: Backoff,
        request_capacity: usize,
        filters: Vec<SubscribeFilter>,
    ) -> (Self, AsyncClient) {
        let (client, mut event_loop) = AsyncClient::new(failover.options(), request_capacity);
        no_delay(&mut event_loop);
        let link = Self {
            client: client.clone(),
            event_loop,
            failover,
            resubscribe_backoff: Backoff::new(Duration::from_secs(1), backoff.max()),
            backoff,
            filters,
            connected: false,
            resubscribe_at: None,
            refused_log: LogLimit::new(LOG_EVERY),
            error_log: LogLimit::new(LOG_EVERY),
            last_error: String::new(),
        };
        (link, client)
    }

    /// Polls until `stop` fires or our DISCONNECT has been written.
    pub async fn run(&mut self, handler: &mut impl LinkHandler, stop: &CancellationToken) {
        loop {
            let event = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = sleep_until(self.resubscribe_at) => {
                    self.resubscribe_at = None;
                    self.subscribe();
                    continue;
                }
                () = sleep_until(handler.deadline()) => {
                    handler.deadline_reached();
                    continue;
                }
                event = self.event_loop.poll() => event,
            };
            match event {
                // A refused connection comes as an error too.
                Ok(Event::Incoming(Incoming::ConnAck(ack)))
                    if ack.code == ConnectReturnCode::Success =>
                {
                    self.on_connack(ack.session_present);
                    let state = &mut self.event_loop.state;
                    handler.connected(ack.session_present, state).await;
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    self.on_suback(&ack.return_codes, handler)
                }
                Ok(Event::Incoming(Incoming::Publish(publish))) => handler.publish(publish).await,
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    tracing::info!("disconnected from the MQTT broker");
                    return;
                }
                Ok(Event::Outgoing(packet)) => handler.written(&packet, &mut self.event_loop.state),
                Ok(Event::Incoming(_)) => {}
                Err(error) => {
                    let pause = self.on_error(&error, handler);
                    if tokio::time::timeout(pause, stop.cancelled()).await.is_ok() {
                        return;
                    }
                }
            }
        }
    }

    /// Sends DISCONNECT and polls until it is written (true), the connection is gone or
    /// `timeout` has passed.
    pub async fn disconnect(&mut self, timeout: Duration) -> bool {
        if self.client.try_disconnect().is_err() {
            return false;
        }
        let written = async {
            while let Ok(event) = self.event_loop.poll().await {
                if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
                    tracing::info!("disconnected from the MQTT broker");
                    return true;
                }
            }
            false
        };
        tokio::time::timeout(timeout, written)
            .await
            .unwrap_or(false)
    }

    fn on_connack(&mut self, session_present: bool) {
        tracing::info!(
            session_present,
            client_id = %self.event_loop.mqtt_options.client_id(),
            broker = %self.failover.current(),
            "connected to the MQTT broker"
        );
        self.backoff.reset();
        self.resubscribe_backoff.reset();
        self.connected = true;
        if !session_present && !self.filters.is_empty() {
            self.subscribe();
        }
    }

    fn on_suback(&mut self, codes: &[SubscribeReasonCode], handler: &mut impl LinkHandler) {
        let refused = refused_filters(&self.filters, codes);
        if refused.is_empty() {
            self.resubscribe_backoff.reset();
            tracing::info!(filters = ?self.filters, granted = ?codes, "subscription acknowledged");
            return handler.subscribed(codes);
        }
        let pause = self.resubscribe_backoff.next_delay();
        if let Some(suppressed) = self.refused_log.admit_at(Instant::now()) {
            tracing::warn!(
                ?refused,
                retry_in_ms = pause.as_millis() as u64,
                suppressed,
                "the broker refused the subscription (an ACL, or a cluster node lost); asking again"
            );
        }
        self.resubscribe_at = Some(Instant::now() + pause);
        handler.subscription_refused();
    }

    /// Logs `error`, points the next attempt at the next broker and returns the pause before it.
    fn on_error(&mut self, error: &ConnectionError, handler: &mut impl LinkHandler) -> Duration {
        let pause = self.backoff.next_delay();
        // u64: a u128 field would be a string in JSON logs.
        let retry_in_ms = pause.as_millis() as u64;
        if self.lost() {
            let broker = self.failover.current();
            tracing::warn!(%error, %broker, retry_in_ms, "lost the connection to the MQTT broker; reconnecting");
        } else if let Some(suppressed) = self.admit_error(error, Instant::now()) {
            let broker = self.failover.current();
            tracing::warn!(%error, %broker, retry_in_ms, suppressed, "cannot reach the MQTT broker");
        }
        if let Some(next) = self.failover.advance(&mut self.event_loop) {
            tracing::info!(broker = %next, "failing over to the next broker");
        }
        handler.disconnected(self.failover.index());
        pause
    }

    /// After a connection error: whether a connection was up until now. The next CONNACK
    /// decides afresh whether to subscribe.
    fn lost(&mut self) -> bool {
        self.resubscribe_at = None;
        std::mem::take(&mut self.connected)
    }

    /// `Some(left out since the last one)` when a failed connection attempt gets a warning: a
    /// different error at once (a bare I/O error may come first, then the reason, such as an
    /// untrusted certificate), the same one at most once per [`LOG_EVERY`].
    fn admit_error(&mut self, error: &ConnectionError, now: Instant) -> Option<u64> {
        let text = error.to_string();
        if text == self.last_error {
            return self.error_log.admit_at(now);
        }
        self.last_error = text;
        Some(self.error_log.force_at(now))
    }

    /// Queues the subscription where rumqttc keeps an earlier session's requests: it sends them
    /// before the client's, whose queue may be full, and drops them on a new session.
    fn subscribe(&mut self) {
        let subscribe = Request::Subscribe(Subscribe::new_many(self.filters.clone()));
        self.event_loop.pending.push_back(subscribe);
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

/// Sleeps until `at`, or forever without one (a timer that is off in a `select!`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Turns Nagle's algorithm off: with it on, a small PUBLISH (an aggregate) waited for the
/// broker's ACK of the segment before, i.e. for the next reading (20 ms at 50 msg/s).
fn no_delay(event_loop: &mut rumqttc::EventLoop) {
    let mut network = event_loop.network_options();
    network.set_tcp_nodelay(true);
    event_loop.set_network_options(network);
}

#[cfg(test)]
mod tests {
    use rumqttc::{MqttOptions, QoS};

    use super::*;
    use crate::BrokerAddr;

    fn link() -> Link {
        let broker = BrokerAddr {
            host: "127.0.0.1".into(),
            port: 1,
        };
        let options = Box::new(|b: &BrokerAddr| MqttOptions::new("t", &b.host, b.port));
        let failover = Failover::new(vec![broker], options);
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let filter = SubscribeFilter::new("t/#".into(), QoS::AtLeastOnce);
        Link::new(failover, backoff, 1, vec![filter]).0
    }

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
        let mut link = link();
        link.on_connack(false);
        let pending = &link.event_loop.pending;
        assert!(
            matches!(pending.front(), Some(Request::Subscribe(_))),
            "{pending:?}"
        );
        link.resubscribe_at = Some(Instant::now());
        assert!(link.lost(), "it was connected");
        assert_eq!(link.resubscribe_at, None);
        assert!(!link.lost(), "no second loss without a connection");
    }

    #[test]
    fn a_different_connection_error_is_logged_at_once_the_same_one_rarely() {
        let refused = || ConnectionError::Io(std::io::ErrorKind::ConnectionRefused.into());
        let mut link = link();
        let now = Instant::now();
        assert_eq!(link.admit_error(&refused(), now), Some(0));
        assert_eq!(link.admit_error(&refused(), now), None);
        assert_eq!(
            link.admit_error(&ConnectionError::NetworkTimeout, now),
            Some(1),
            "a new reason, with the count left out"
        );
        assert_eq!(
            link.admit_error(&ConnectionError::NetworkTimeout, now),
            None
        );
        assert_eq!(link.admit_error(&refused(), now), Some(1));
        assert_eq!(link.admit_error(&refused(), now + LOG_EVERY), Some(0));
    }
}
