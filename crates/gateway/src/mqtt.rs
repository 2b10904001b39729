//! The broker side: one task owns the rumqttc event loop, keeps polling it, feeds the hub
//! (through [`crate::decode`]) and reconnects with capped exponential backoff.
//!
//! The session is clean and the subscription is renewed on every ConnAck, so the broker
//! replays every retained aggregate, alarm and trend: that replay *is* the gateway's state
//! after a (re)start.
//! Keys not replayed after a reconnect were cleared while the gateway was away and are
//! forgotten once the replay has gone quiet.

use std::time::Duration;

use aggregator_core::topic::{
    AGGREGATES_FILTER, ALARMS_FILTER, INGEST_SHARD_STATUS_FILTER, INGEST_STATUS_TOPIC,
    TRENDS_FILTER,
};
use rumqttc::{
    AsyncClient, Event, EventLoop, Outgoing, Packet, Publish, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use service_kit::{Backoff, Failover};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::decode::apply_publish;
use crate::hub::{Hub, MqttState};

/// First pause after a connection error.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// How long a graceful disconnect may take.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one warning of a kind per this interval; the rest are counted.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// First pause before asking again for subscriptions the broker refused. NATS 2.9 refuses one
/// when it cannot create its JetStream consumer in time, as happens while a cluster node is
/// lost; a moment later it succeeds. A refusal that persists (an ACL) backs off to the
/// reconnect ceiling.
const RESUBSCRIBE_START: Duration = Duration::from_secs(1);

/// Everything the gateway subscribes to, on every ConnAck, in this order.
const FILTERS: [&str; 5] = [
    AGGREGATES_FILTER,
    ALARMS_FILTER,
    TRENDS_FILTER,
    INGEST_STATUS_TOPIC,
    INGEST_SHARD_STATUS_FILTER,
];

/// The filters of a [`FILTERS`] subscription that its SUBACK `codes` refused.
fn refused_filters(codes: &[SubscribeReasonCode]) -> Vec<&'static str> {
    FILTERS
        .iter()
        .zip(codes)
        .filter(|(_, code)| matches!(code, SubscribeReasonCode::Failure))
        .map(|(filter, _)| *filter)
        .collect()
}

/// Queues the subscription to [`FILTERS`] (renewing any of them that already exist).
fn subscribe(client: &AsyncClient) {
    let filters = FILTERS.map(|f| SubscribeFilter::new(f.to_owned(), QoS::AtLeastOnce));
    if let Err(e) = client.try_subscribe_many(filters) {
        tracing::error!(error = %e, "cannot queue the subscription");
    }
}

/// Settings of the MQTT task.
#[derive(Debug, Clone, Copy)]
pub struct MqttTaskConfig {
    /// Ceiling of the reconnect backoff.
    pub backoff_max: Duration,
    /// Quiet time that ends a retained replay.
    pub resync_quiet: Duration,
}

/// Logs at most once per [`LOG_EVERY`], saying how many were suppressed in between.
#[derive(Debug, Default)]
struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// Returns `Some(suppressed)` when a line may be logged now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Polls `event_loop` until `shutdown`, then disconnects cleanly. After each connection error
/// the next connection attempt goes to the next broker of `failover` (round-robin).
pub async fn run(
    client: AsyncClient,
    mut event_loop: EventLoop,
    mut failover: Failover,
    hub: std::sync::Arc<Hub>,
    config: MqttTaskConfig,
    shutdown: CancellationToken,
) {
    let metrics = std::sync::Arc::clone(hub.metrics());
    let mut backoff = Backoff::new(BACKOFF_START, config.backoff_max);
    let mut replay_ends: Option<Instant> = None;
    let mut resubscribe_at: Option<Instant> = None;
    let mut resubscribe_backoff = Backoff::new(RESUBSCRIBE_START, config.backoff_max);
    let mut refused_log = RateLimited::default();
    let mut invalid_log = RateLimited::default();
    let mut error_log = RateLimited::default();
    loop {
        let replay_at = replay_ends;
        let replay_timer = async move {
            match replay_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let resubscribe_when = resubscribe_at;
        let resubscribe_timer = async move {
            match resubscribe_when {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = replay_timer => {
                replay_ends = None;
                let forgotten = hub.finish_resync();
                tracing::info!(forgotten, keys = hub.health().keys, "retained replay complete");
                continue;
            }
            () = resubscribe_timer => {
                resubscribe_at = None;
                subscribe(&client);
                continue;
            }
            event = event_loop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                tracing::info!(
                    session_present = ack.session_present,
                    broker = %failover.current(),
                    "connected to the broker"
                );
                hub.begin_resync();
                hub.set_mqtt(MqttState::Connected);
                resubscribe_at = None;
                subscribe(&client);
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused = refused_filters(&ack.return_codes);
                if refused.is_empty() {
                    tracing::debug!("subscription acknowledged");
                    resubscribe_backoff.reset();
                    replay_ends = Some(Instant::now() + config.resync_quiet);
                } else {
                    // Without the subscription its topics would never arrive (and the
                    // replay would forget their retained state): ask again. The replay stays
                    // open until a subscription is complete, so nothing is forgotten meanwhile.
                    metrics.subscriptions_refused.inc();
                    let delay = resubscribe_backoff.next_delay();
                    if let Some(suppressed) = refused_log.allow() {
                        tracing::warn!(
                            ?refused,
                            retry_in_ms = delay.as_millis() as u64,
                            suppressed,
                            "the broker refused subscriptions; subscribing again"
                        );
                    }
                    replay_ends = None;
                    resubscribe_at = Some(Instant::now() + delay);
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                metrics.messages_received.inc();
                on_publish(&hub, &publish, &mut invalid_log);
                if publish.retain && replay_ends.is_some() {
                    replay_ends = Some(Instant::now() + config.resync_quiet);
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics.mqtt_errors.inc();
                hub.set_mqtt(MqttState::Disconnected);
                replay_ends = None;
                resubscribe_at = None;
                let delay = backoff.next_delay();
                if let Some(suppressed) = error_log.allow() {
                    tracing::warn!(error = %e, broker = %failover.current(), retry_in_ms = delay.as_millis() as u64, suppressed, "broker connection failed");
                }
                if let Some(next) = failover.advance(&mut event_loop) {
                    tracing::info!(broker = %next, "failing over to the next broker");
                    let index = i64::try_from(failover.index()).unwrap_or(i64::MAX);
                    metrics.broker_index.set(index);
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    disconnect(&client, &mut event_loop).await;
    hub.set_mqtt(MqttState::Disconnected);
}

fn on_publish(hub: &Hub, publish: &Publish, log: &mut RateLimited) {
    if let Err(e) = apply_publish(hub, &publish.topic, &publish.payload) {
        hub.metrics().messages_invalid.inc();
        if let Some(suppressed) = log.allow() {
            tracing::warn!(topic = %publish.topic, error = %e, suppressed, "ignored an unusable message");
        }
    }
}

/// Sends DISCONNECT and polls until it is written (or the connection is gone).
async fn disconnect(client: &AsyncClient, event_loop: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let flushed = tokio::time::timeout(DISCONNECT_TIMEOUT, async {
        loop {
            match event_loop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    if flushed.is_ok() {
        tracing::info!("disconnected from the broker");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_filters_are_named_by_their_position_in_the_suback() {
        let granted = SubscribeReasonCode::Success(QoS::AtLeastOnce);
        let refused = SubscribeReasonCode::Failure;
        assert!(refused_filters(&[granted; 5]).is_empty());
        // NATS 2.9 during a node loss: the shard statuses' consumer timed out.
        let codes = [granted, granted, refused, granted, refused];
        assert_eq!(
            refused_filters(&codes),
            vec![TRENDS_FILTER, INGEST_SHARD_STATUS_FILTER]
        );
    }

    #[test]
    fn rate_limit_counts_what_it_suppresses() {
        let mut log = RateLimited::default();
        assert_eq!(log.allow(), Some(0));
        assert_eq!(log.allow(), None);
        assert_eq!(log.allow(), None);
        assert_eq!(log.suppressed, 2);
    }
}
