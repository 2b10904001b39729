//! The gateway's broker link: a [`service_kit::Link`] subscribed to every topic the dashboard
//! shows, feeding the hub ([`crate::decode`] reads each message).
//!
//! The session is clean, so on every connection the broker replays every retained aggregate,
//! alarm and trend: that replay *is* the gateway's state. Keys it did not replay were cleared
//! while the gateway was away, and are forgotten once the replay has gone quiet.

use std::sync::Arc;
use std::time::Duration;

use aggregator_core::topic::{
    AGGREGATES_FILTER, ALARMS_FILTER, INGEST_SHARD_STATUS_FILTER, INGEST_STATUS_TOPIC,
    TRENDS_FILTER,
};
use rumqttc::{MqttState, Publish, QoS, SubscribeFilter, SubscribeReasonCode};
use service_kit::link::LOG_EVERY;
use service_kit::{Link, LinkHandler, LogLimit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::configuration::GatewayConfig;
use crate::decode::apply_publish;
use crate::hub::{Hub, MqttState as LinkStatus};

/// Runs the link over the `mqtt.host` list into `hub` until `stop`, then disconnects cleanly.
pub async fn run(config: GatewayConfig, hub: Arc<Hub>, stop: CancellationToken) {
    let filters = [
        AGGREGATES_FILTER,
        ALARMS_FILTER,
        TRENDS_FILTER,
        INGEST_STATUS_TOPIC,
        INGEST_SHARD_STATUS_FILTER,
    ]
    .map(|f| SubscribeFilter::new(f.to_owned(), QoS::AtLeastOnce));
    // rumqttc's default clean session: every (re)connect gets the retained state anew.
    let mqtt = config.mqtt.clone();
    let failover = config.mqtt.failover(move |broker| mqtt.options_at(broker));
    // The gateway queues nothing but its DISCONNECT.
    let (mut link, _client) = Link::new(failover, config.mqtt.backoff(), 1, filters.into());
    let mut feed = HubFeed {
        hub,
        resync_quiet: Duration::from_millis(config.settings.resync_quiet_ms),
        replay_ends: None,
        invalid_log: LogLimit::new(LOG_EVERY),
    };
    link.run(&mut feed, &stop).await;
    link.disconnect(Duration::from_secs(2)).await;
    feed.hub.set_mqtt(LinkStatus::Disconnected);
}

/// Applies what the link receives to the hub and times the end of each retained replay.
struct HubFeed {
    hub: Arc<Hub>,
    /// The quiet time that ends a replay.
    resync_quiet: Duration,
    /// While a replay runs after a complete subscription: when it counts as finished.
    replay_ends: Option<Instant>,
    invalid_log: LogLimit,
}

impl LinkHandler for HubFeed {
    async fn connected(&mut self, _: bool, _: &mut MqttState) {
        self.hub.begin_resync();
        self.hub.set_mqtt(LinkStatus::Connected);
    }

    async fn publish(&mut self, publish: Publish) {
        self.hub.metrics().messages_received.inc();
        if let Err(e) = apply_publish(&self.hub, &publish.topic, &publish.payload) {
            self.hub.metrics().messages_invalid.inc();
            if let Some(suppressed) = self.invalid_log.admit_at(Instant::now()) {
                tracing::warn!(topic = %publish.topic, error = %e, suppressed, "ignored an unusable message");
            }
        }
        if publish.retain && self.replay_ends.is_some() {
            self.replay_ends = Some(Instant::now() + self.resync_quiet);
        }
    }

    fn subscribed(&mut self, _: &[SubscribeReasonCode]) {
        self.replay_ends = Some(Instant::now() + self.resync_quiet);
    }

    fn subscription_refused(&mut self) {
        self.hub.metrics().subscriptions_refused.inc();
        // Ending the replay now would forget the retained state of the refused topics.
        self.replay_ends = None;
    }

    fn disconnected(&mut self, next_broker: usize) {
        self.hub.metrics().mqtt_errors.inc();
        self.hub.metrics().broker_index.set(next_broker as i64);
        self.hub.set_mqtt(LinkStatus::Disconnected);
        self.replay_ends = None;
    }

    fn deadline(&self) -> Option<Instant> {
        self.replay_ends
    }

    fn deadline_reached(&mut self) {
        self.replay_ends = None;
        let forgotten = self.hub.finish_resync();
        let keys = self.hub.health().keys;
        tracing::info!(forgotten, keys, "retained replay complete");
    }
}
