//! The gateway's broker link: a [`service_kit::Link`] subscribed to every topic the dashboard
//! shows, feeding the hub ([`crate::decode`] says what each message means).
//!
//! The session is clean and the subscription is renewed on every ConnAck, so the broker
//! replays every retained aggregate, alarm and trend: that replay *is* the gateway's state
//! after a (re)start.
//! Keys not replayed after a reconnect were cleared while the gateway was away and are
//! forgotten once the replay has gone quiet (the handler's own timer in the link loop).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use aggregator_core::topic::{
    AGGREGATES_FILTER, ALARMS_FILTER, INGEST_SHARD_STATUS_FILTER, INGEST_STATUS_TOPIC,
    TRENDS_FILTER,
};
use rumqttc::{ConnectionError, MqttState, Publish, QoS, SubscribeFilter, SubscribeReasonCode};
use service_kit::{Backoff, Failover, Link, LinkHandler, LogLimit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::decode::apply_publish;
use crate::hub::{Hub, MqttState as LinkStatus};

/// How long a graceful disconnect may take.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Capacity of rumqttc's request channel: the gateway only ever queues a subscription and a
/// disconnect.
const REQUEST_CAPACITY: usize = 16;

/// Everything the gateway subscribes to, on every ConnAck, in this order.
const FILTERS: [&str; 5] = [
    AGGREGATES_FILTER,
    ALARMS_FILTER,
    TRENDS_FILTER,
    INGEST_STATUS_TOPIC,
    INGEST_SHARD_STATUS_FILTER,
];

/// The gateway's link over the brokers of `failover`, not yet connected, pausing after errors
/// as `backoff` says.
pub fn link(failover: Failover, backoff: Backoff) -> Link {
    let filters = FILTERS
        .map(|f| SubscribeFilter::new(f.to_owned(), QoS::AtLeastOnce))
        .into();
    // The client is not needed: the link queues the subscription and the DISCONNECT itself.
    let (link, _client) = Link::new(failover, backoff, REQUEST_CAPACITY);
    link.with_subscription(filters)
}

/// Runs `link` into `hub` until `shutdown`, then disconnects cleanly. `resync_quiet` is the
/// quiet time that ends a retained replay.
pub async fn run(
    mut link: Link,
    hub: Arc<Hub>,
    resync_quiet: Duration,
    shutdown: CancellationToken,
) {
    let mut feed = HubFeed {
        hub,
        resync_quiet,
        replay_ends: None,
        invalid_log: LogLimit::new(service_kit::link::LOG_EVERY),
    };
    link.run(&mut feed, &shutdown).await;
    link.disconnect(DISCONNECT_TIMEOUT).await;
    feed.hub.set_mqtt(LinkStatus::Disconnected);
}

/// Applies what the link receives to the hub and times the end of each retained replay.
struct HubFeed {
    hub: Arc<Hub>,
    resync_quiet: Duration,
    /// While a replay runs after a complete subscription: when it counts as finished.
    replay_ends: Option<Instant>,
    invalid_log: LogLimit,
}

impl LinkHandler for HubFeed {
    async fn connected(&mut self, _session_present: bool, _: &mut MqttState) -> ControlFlow<()> {
        self.hub.begin_resync();
        self.hub.set_mqtt(LinkStatus::Connected);
        ControlFlow::Continue(())
    }

    async fn publish(&mut self, publish: Publish) -> ControlFlow<()> {
        self.hub.metrics().messages_received.inc();
        if let Err(e) = apply_publish(&self.hub, &publish.topic, &publish.payload) {
            self.hub.metrics().messages_invalid.inc();
            if let Some(suppressed) = self.invalid_log.admit() {
                tracing::warn!(topic = %publish.topic, error = %e, suppressed, "ignored an unusable message");
            }
        }
        if publish.retain && self.replay_ends.is_some() {
            self.replay_ends = Some(Instant::now() + self.resync_quiet);
        }
        ControlFlow::Continue(())
    }

    fn subscribed(&mut self, _granted: &[SubscribeReasonCode]) {
        self.replay_ends = Some(Instant::now() + self.resync_quiet);
    }

    fn subscription_refused(&mut self) {
        self.hub.metrics().subscriptions_refused.inc();
        // Without the subscription its topics would never arrive, and ending the replay would
        // forget their retained state: it stays open until a subscription is complete.
        self.replay_ends = None;
    }

    fn connection_failed(&mut self, _error: &ConnectionError) {
        self.hub.metrics().mqtt_errors.inc();
        self.hub.set_mqtt(LinkStatus::Disconnected);
        self.replay_ends = None;
    }

    fn broker_changed(&mut self, index: usize) {
        let index = i64::try_from(index).unwrap_or(i64::MAX);
        self.hub.metrics().broker_index.set(index);
    }

    fn deadline(&self) -> Option<Instant> {
        self.replay_ends
    }

    fn deadline_reached(&mut self) {
        self.replay_ends = None;
        let forgotten = self.hub.finish_resync();
        tracing::info!(
            forgotten,
            keys = self.hub.health().keys,
            "retained replay complete"
        );
    }
}
