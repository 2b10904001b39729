//! The broker side: one task owns the rumqttc event loop, keeps polling it, feeds the hub
//! and reconnects with capped exponential backoff.
//!
//! The session is clean and the subscription is renewed on every ConnAck, so the broker
//! replays every retained aggregate, alarm and trend: that replay *is* the gateway's state
//! after a (re)start.
//! Keys not replayed after a reconnect were cleared while the gateway was away and are
//! forgotten once the replay has gone quiet.

use std::time::Duration;

use aggregator_core::Aggregate;
use aggregator_core::alarm::AlarmMessage;
use aggregator_core::topic::{
    AGGREGATES_FILTER, ALARMS_FILTER, INGEST_SHARD_STATUS_FILTER, INGEST_STATUS_TOPIC,
    TRENDS_FILTER, key_from_aggregate_topic, key_from_alarm_topic, key_from_trend_topic,
    shard_from_status_topic,
};
use aggregator_core::trend::TrendMessage;
use rumqttc::{
    AsyncClient, Event, EventLoop, Outgoing, Packet, Publish, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use serde::Deserialize;
use service_kit::{Backoff, Failover};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hub::liveness::ShardStatus;
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

/// Why a publish was ignored.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidMessage {
    /// Topic is none of an aggregate, an alarm, a trend or the ingest status.
    #[error("unexpected topic")]
    Topic,
    /// Payload is not an aggregate.
    #[error("payload is not an aggregate: {0}")]
    Aggregate(String),
    /// Payload is not an alarm message.
    #[error("payload is not an alarm: {0}")]
    Alarm(String),
    /// Payload is not a trend message (or one of its times is not RFC 3339).
    #[error("payload is not a trend: {0}")]
    Trend(String),
    /// Payload names another key than its topic.
    #[error("payload key {machine}/{index} differs from the topic")]
    KeyMismatch {
        /// Machine in the payload.
        machine: String,
        /// Index in the payload.
        index: u32,
    },
    /// Payload is not an ingest status.
    #[error("payload is not an ingest status: {0}")]
    Status(String),
}

/// The part of `status/ingest` the gateway needs; other fields are ignored.
#[derive(Deserialize)]
struct Liveness {
    online: bool,
}

/// The part of `status/ingest/{k}` the gateway needs; other fields are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShardLiveness {
    online: bool,
    shard_count: Option<u32>,
}

/// Applies one publish to the hub. An empty payload clears the key (or the ingest status).
///
/// # Errors
/// When the topic or payload cannot be used; the hub is then unchanged.
pub fn apply_publish(hub: &Hub, topic: &str, payload: &[u8]) -> Result<(), InvalidMessage> {
    if topic == INGEST_STATUS_TOPIC {
        if payload.is_empty() {
            hub.set_ingest(None);
            return Ok(());
        }
        let liveness: Liveness =
            serde_json::from_slice(payload).map_err(|e| InvalidMessage::Status(e.to_string()))?;
        hub.set_ingest(Some(liveness.online));
        return Ok(());
    }
    if let Some(shard) = shard_from_status_topic(topic) {
        if payload.is_empty() {
            hub.set_ingest_shard(shard, None);
            return Ok(());
        }
        let liveness: ShardLiveness =
            serde_json::from_slice(payload).map_err(|e| InvalidMessage::Status(e.to_string()))?;
        hub.set_ingest_shard(
            shard,
            Some(ShardStatus {
                online: liveness.online,
                shard_count: liveness.shard_count,
            }),
        );
        return Ok(());
    }
    if let Some((machine, index)) = key_from_alarm_topic(topic) {
        return apply_alarm(hub, machine, index, payload);
    }
    if let Some((machine, index)) = key_from_trend_topic(topic) {
        return apply_trend(hub, machine, index, payload);
    }
    let (machine, index) = key_from_aggregate_topic(topic).ok_or(InvalidMessage::Topic)?;
    if payload.is_empty() {
        hub.remove(machine, index);
        return Ok(());
    }
    let aggregate: Aggregate =
        serde_json::from_slice(payload).map_err(|e| InvalidMessage::Aggregate(e.to_string()))?;
    if aggregate.machine_id != machine || aggregate.scrap_index != index {
        return Err(InvalidMessage::KeyMismatch {
            machine: aggregate.machine_id,
            index: aggregate.scrap_index,
        });
    }
    hub.upsert(aggregate);
    Ok(())
}

fn apply_alarm(hub: &Hub, machine: &str, index: u32, payload: &[u8]) -> Result<(), InvalidMessage> {
    if payload.is_empty() {
        hub.set_alarm(machine, index, None);
        return Ok(());
    }
    let alarm = AlarmMessage::parse(payload).map_err(|e| InvalidMessage::Alarm(e.to_string()))?;
    // A since-when the dashboard cannot show is as unusable as bad JSON.
    alarm
        .raised_state()
        .map_err(|e| InvalidMessage::Alarm(e.to_string()))?;
    check_key(&alarm.machine_id, alarm.scrap_index, machine, index)?;
    hub.set_alarm(machine, index, Some(alarm));
    Ok(())
}

fn apply_trend(hub: &Hub, machine: &str, index: u32, payload: &[u8]) -> Result<(), InvalidMessage> {
    if payload.is_empty() {
        hub.set_trend(machine, index, None);
        return Ok(());
    }
    let trend = TrendMessage::parse(payload).map_err(|e| InvalidMessage::Trend(e.to_string()))?;
    trend
        .points()
        .map_err(|e| InvalidMessage::Trend(e.to_string()))?;
    check_key(&trend.machine_id, trend.scrap_index, machine, index)?;
    hub.set_trend(machine, index, Some(trend));
    Ok(())
}

fn check_key(
    payload_machine: &str,
    payload_index: u32,
    machine: &str,
    index: u32,
) -> Result<(), InvalidMessage> {
    if payload_machine != machine || payload_index != index {
        return Err(InvalidMessage::KeyMismatch {
            machine: payload_machine.to_owned(),
            index: payload_index,
        });
    }
    Ok(())
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
    use std::sync::Arc;

    use super::*;
    use crate::hub::IngestView;
    use crate::metrics::Metrics;

    const A1_2: &str = r#"{"maschinenId":"A1","scrapIndex":2,"sumLast60s":25.0,"avgLast60s":3.5714285714285716,"count":7,"windowSeconds":60,"timestamp":"2026-01-01T12:00:30.123Z"}"#;

    fn hub() -> Hub {
        Hub::new(8, Arc::new(Metrics::new()))
    }

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
    fn aggregates_are_stored_and_cleared() {
        let hub = hub();
        apply_publish(&hub, "aggregates/A1/2", A1_2.as_bytes()).unwrap();
        hub.flush();
        assert_eq!(hub.health().keys, 1);
        let v: serde_json::Value = serde_json::from_str(&hub.aggregates_json()).unwrap();
        assert_eq!(v[0]["sumLast60s"], 25.0);
        apply_publish(&hub, "aggregates/A1/2", b"").unwrap();
        hub.flush();
        assert_eq!(hub.health().keys, 0);
    }

    #[test]
    fn bad_messages_change_nothing() {
        let hub = hub();
        for (topic, payload, want) in [
            ("aggregates/A1/2", &b"{"[..], "Aggregate"),
            ("aggregates/A1/2", b"{\"x\":1}", "Aggregate"),
            ("aggregates/B1/2", A1_2.as_bytes(), "KeyMismatch"),
            ("aggregates/A1/x", A1_2.as_bytes(), "Topic"),
            ("status/ingest", b"[]", "Status"),
            ("alarms/A1/2", b"{}", "Alarm"),
            ("alarms/A1/2", br#"{"maschinenId":"A1","scrapIndex":2,"state":"raised","metric":"sum","value":1.0,"threshold":1.0,"since":"yesterday","timestamp":""}"#, "Alarm"),
            ("alarms/A1/3", br#"{"maschinenId":"A1","scrapIndex":2,"state":"raised","metric":"sum","value":1.0,"threshold":1.0,"since":"2026-01-01T00:00:00Z","timestamp":""}"#, "KeyMismatch"),
            ("trends/A1/2", b"[1,2]", "Trend"),
            ("trends/A1/2", br#"{"maschinenId":"A1","scrapIndex":2,"intervalSeconds":10,"points":[{"t":"noon","sum":1}]}"#, "Trend"),
        ] {
            let err = apply_publish(&hub, topic, payload).unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{topic}: {err:?}");
        }
        hub.flush();
        assert_eq!(hub.health().keys, 0);
        assert_eq!(hub.health().ingest, None);
        assert_eq!(hub.alarms_json(None), "[]");
        assert!(hub.subscribe(None).snapshot.contains(r#""trends":[]"#));
    }

    #[test]
    fn ingest_status_is_tracked() {
        let hub = hub();
        apply_publish(
            &hub,
            "status/ingest",
            br#"{"online":true,"startedAt":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(hub.health().ingest, Some(IngestView::single(true)));
        apply_publish(&hub, "status/ingest", br#"{"online":false}"#).unwrap();
        assert_eq!(hub.health().ingest, Some(IngestView::single(false)));
        apply_publish(&hub, "status/ingest", b"").unwrap();
        assert_eq!(hub.health().ingest, None);
    }

    #[test]
    fn shard_statuses_count_online_of_expected() {
        let hub = hub();
        let shards = |online, count| IngestView {
            online,
            shards_online: Some(online_count(online, count)),
            shard_count: Some(count),
        };
        fn online_count(all: bool, count: u32) -> u32 {
            if all { count } else { count - 1 }
        }
        for k in 0..3 {
            let payload = format!(r#"{{"online":true,"shard":{k},"shardCount":3}}"#);
            apply_publish(&hub, &format!("status/ingest/{k}"), payload.as_bytes()).unwrap();
        }
        assert_eq!(hub.health().ingest, Some(shards(true, 3)));
        apply_publish(
            &hub,
            "status/ingest/2",
            br#"{"online":false,"shard":2,"shardCount":3}"#,
        )
        .unwrap();
        assert_eq!(hub.health().ingest, Some(shards(false, 3)));
        let err = apply_publish(&hub, "status/ingest/1", b"{}").unwrap_err();
        assert!(matches!(err, InvalidMessage::Status(_)), "{err:?}");
        assert!(matches!(
            apply_publish(&hub, "status/ingest/x", br#"{"online":true}"#),
            Err(InvalidMessage::Topic)
        ));
        for k in 0..3 {
            apply_publish(&hub, &format!("status/ingest/{k}"), b"").unwrap();
        }
        assert_eq!(hub.health().ingest, None);
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
