//! What the gateway's MQTT messages mean for the hub: each retained aggregate, alarm, trend
//! and ingest status is checked against its topic and applied, and an empty payload clears
//! what its topic names. A message that cannot be used changes nothing and says why.

use aggregator_core::Aggregate;
use aggregator_core::alarm::AlarmMessage;
use aggregator_core::topic::{
    INGEST_STATUS_TOPIC, key_from_aggregate_topic, key_from_alarm_topic, key_from_trend_topic,
    shard_from_status_topic,
};
use aggregator_core::trend::TrendMessage;
use serde::Deserialize;

use crate::hub::Hub;
use crate::hub::liveness::ShardStatus;

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
    check_key(&aggregate.machine_id, aggregate.scrap_index, machine, index)?;
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
}
