//! What the gateway's MQTT messages mean for the hub: each retained aggregate, alarm, trend
//! and ingest status is checked against its topic and applied, and an empty payload clears
//! what its topic names. A message that cannot be used changes nothing and says why.

use std::fmt::Display;

use aggregator_core::Aggregate;
use aggregator_core::alarm::AlarmMessage;
use aggregator_core::topic::{
    INGEST_STATUS_TOPIC, key_from_aggregate_topic, key_from_alarm_topic, key_from_trend_topic,
    shard_from_status_topic,
};
use aggregator_core::trend::TrendMessage;
use aggregator_core::wire::MAX_SIGNAL_PAYLOAD_BYTES;
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
    /// Payload is larger than any message ingest publishes; it is not parsed.
    #[error("payload is {size} bytes, over the limit of {MAX_SIGNAL_PAYLOAD_BYTES} bytes")]
    TooLarge {
        /// Payload size in bytes.
        size: usize,
    },
}

/// The part of `status/ingest` and `status/ingest/{k}` the gateway needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Liveness {
    online: bool,
    shard_count: Option<u32>,
}

/// Applies one publish to the hub. An empty payload clears the key (or the ingest status).
///
/// # Errors
/// When the topic or payload cannot be used, or the payload is over
/// [`MAX_SIGNAL_PAYLOAD_BYTES`] (whatever the topic: none of ours is that large); the hub is
/// then unchanged.
pub fn apply_publish(hub: &Hub, topic: &str, payload: &[u8]) -> Result<(), InvalidMessage> {
    if payload.len() > MAX_SIGNAL_PAYLOAD_BYTES {
        return Err(InvalidMessage::TooLarge {
            size: payload.len(),
        });
    }
    let shard = shard_from_status_topic(topic);
    if topic == INGEST_STATUS_TOPIC || shard.is_some() {
        let status = (!payload.is_empty())
            .then(|| serde_json::from_slice::<Liveness>(payload))
            .transpose()
            .map_err(|e| InvalidMessage::Status(e.to_string()))?;
        match shard {
            Some(shard) => hub.set_ingest_shard(
                shard,
                status.map(|s| ShardStatus {
                    online: s.online,
                    shard_count: s.shard_count,
                }),
            ),
            None => hub.set_ingest(status.map(|s| s.online)),
        }
    } else if let Some(key @ (machine, index)) = key_from_alarm_topic(topic) {
        // A since-when the dashboard cannot show is as unusable as bad JSON.
        let parse = |p: &[u8]| AlarmMessage::parse(p).and_then(|a| a.raised_state().map(|_| a));
        let alarm = keyed(payload, key, InvalidMessage::Alarm, parse, |a| {
            (&a.machine_id, a.scrap_index)
        })?;
        hub.set_alarm(machine, index, alarm);
    } else if let Some(key @ (machine, index)) = key_from_trend_topic(topic) {
        let parse = |p: &[u8]| TrendMessage::parse(p).and_then(|t| t.points().map(|_| t));
        let trend = keyed(payload, key, InvalidMessage::Trend, parse, |t| {
            (&t.machine_id, t.scrap_index)
        })?;
        hub.set_trend(machine, index, trend);
    } else {
        let key @ (machine, index) =
            key_from_aggregate_topic(topic).ok_or(InvalidMessage::Topic)?;
        let parse = |p: &[u8]| serde_json::from_slice::<Aggregate>(p);
        match keyed(payload, key, InvalidMessage::Aggregate, parse, |a| {
            (&a.machine_id, a.scrap_index)
        })? {
            Some(aggregate) => hub.upsert(aggregate),
            None => hub.remove(machine, index),
        }
    }
    Ok(())
}

/// Reads an aggregate, alarm or trend for the `key` of its topic: `None` for an empty payload,
/// else what `parse` accepts, if it names that key (`key_of`).
fn keyed<M, E: Display>(
    payload: &[u8],
    key: (&str, u32),
    invalid: fn(String) -> InvalidMessage,
    parse: impl FnOnce(&[u8]) -> Result<M, E>,
    key_of: impl FnOnce(&M) -> (&String, u32),
) -> Result<Option<M>, InvalidMessage> {
    if payload.is_empty() {
        return Ok(None);
    }
    let message = parse(payload).map_err(|e| invalid(e.to_string()))?;
    let (machine, index) = key_of(&message);
    if (machine.as_str(), index) != key {
        let machine = machine.to_owned();
        return Err(InvalidMessage::KeyMismatch { machine, index });
    }
    Ok(Some(message))
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
        let whole = crate::fixtures::snapshot(&hub, &mut hub.subscribe(), None);
        assert_eq!(whole["trends"], serde_json::json!([]));
    }

    #[test]
    fn an_oversized_message_is_refused_unparsed_on_any_topic() {
        let hub = hub();
        apply_publish(&hub, "aggregates/A1/2", A1_2.as_bytes()).unwrap();
        // A well-formed aggregate, padded with an unknown field to 2 MB.
        let mut padded = A1_2.as_bytes()[..A1_2.len() - 1].to_vec();
        padded.extend_from_slice(b",\"pad\":\"");
        padded.resize(2 * 1024 * 1024, b'x');
        padded.extend_from_slice(b"\"}");
        for topic in ["aggregates/A1/2", "status/ingest", "trends/A1/2"] {
            let err = apply_publish(&hub, topic, &padded).unwrap_err();
            assert_eq!(err, InvalidMessage::TooLarge { size: padded.len() });
        }
        hub.flush();
        let v: serde_json::Value = serde_json::from_str(&hub.aggregates_json()).unwrap();
        assert_eq!(v[0]["count"], 7, "the key is unchanged");
        assert_eq!(hub.health().ingest, None);
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
