//! The start-up snapshot of the retained aggregates a previous run left on the broker.
//!
//! A new ingest process starts with empty windows, but the broker still holds the retained
//! aggregates of the previous process. A short-lived, clean-session connection reads them once
//! ([`read_retained`]); the aggregation task then empties and clears those of keys it does not
//! track ([`crate::orphans`]).

use std::time::Duration;

use aggregator_core::topic::{AGGREGATES_FILTER, key_from_aggregate_topic};
use aggregator_core::{Aggregate, Timestamp};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio_util::sync::CancellationToken;

use crate::configuration::IngestConfig;

/// How long after the last retained message the snapshot is considered complete: Mosquitto
/// sends every retained message right after the SUBACK.
const QUIET: Duration = Duration::from_millis(500);
/// Upper bound on the whole snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// A retained aggregate found at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct RetainedAggregate {
    /// Machine id.
    pub machine: String,
    /// Scrap index.
    pub scrap_index: u32,
    /// Its ingest-clock stamp.
    pub stamped: Timestamp,
    /// Readings it counted.
    pub count: u64,
}

/// Reads every retained aggregate on the broker through its own clean-session connection.
/// Returns what it got when the broker is unreachable, slow or `shutdown` fires: this is a
/// best-effort clean-up, never a reason not to start.
pub async fn read_retained(
    config: &IngestConfig,
    shutdown: &CancellationToken,
) -> Vec<RetainedAggregate> {
    let mut options = MqttOptions::new(
        format!("{}-snapshot", config.client_id),
        &config.mqtt_host,
        config.mqtt_port,
    );
    options
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(config.max_packet_bytes, config.max_packet_bytes);
    // Same login and TLS as the main connection: the secured broker's ACL lets user ingest read
    // aggregates/#.
    config.security.apply_to(&mut options);
    let (client, mut event_loop) = AsyncClient::new(options, 16);
    let mut found = Vec::new();
    let overall = tokio::time::sleep(SNAPSHOT_TIMEOUT);
    tokio::pin!(overall);
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let quiet = tokio::time::sleep_until(
            quiet_until.unwrap_or_else(|| tokio::time::Instant::now() + SNAPSHOT_TIMEOUT),
        );
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            () = &mut overall => {
                tracing::warn!(found = found.len(), "retained-aggregate snapshot incomplete");
                break;
            }
            () = quiet, if quiet_until.is_some() => break,
            event = event_loop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                if client
                    .try_subscribe(AGGREGATES_FILTER, QoS::AtMostOnce)
                    .is_err()
                {
                    break;
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(_))) => {
                quiet_until = Some(tokio::time::Instant::now() + QUIET);
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                // Live aggregates (this very process republishes while readings flow) are not
                // part of the snapshot: only retained copies count as its progress, or the
                // snapshot would never go quiet and would end at its time limit.
                if !publish.retain {
                    continue;
                }
                quiet_until = Some(tokio::time::Instant::now() + QUIET);
                if let Some(found_one) = parse_retained(&publish.topic, &publish.payload) {
                    found.push(found_one);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "retained-aggregate snapshot: no broker");
                break;
            }
        }
    }
    let _ = client.try_disconnect();
    // Let the DISCONNECT go out, briefly.
    let _ = tokio::time::timeout(Duration::from_millis(100), event_loop.poll()).await;
    found
}

/// A retained aggregate, or `None` for clears and anything that is not one of ours.
fn parse_retained(topic: &str, payload: &[u8]) -> Option<RetainedAggregate> {
    let (machine, scrap_index) = key_from_aggregate_topic(topic)?;
    let aggregate: Aggregate = serde_json::from_slice(payload).ok()?;
    if aggregate.machine_id != machine || aggregate.scrap_index != scrap_index {
        return None;
    }
    Some(RetainedAggregate {
        machine: machine.to_owned(),
        scrap_index,
        stamped: Timestamp::parse_rfc3339(&aggregate.timestamp).ok()?,
        count: aggregate.count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_aggregates_are_adopted() {
        let payload = br#"{"maschinenId":"A1","scrapIndex":2,"sumLast60s":5.0,"avgLast60s":2.5,"count":2,"windowSeconds":60,"timestamp":"2026-01-01T12:00:30.123Z"}"#;
        let got = parse_retained("aggregates/A1/2", payload).unwrap();
        assert_eq!(
            (got.machine.as_str(), got.scrap_index, got.count),
            ("A1", 2, 2)
        );
        assert!(
            parse_retained("aggregates/B1/2", payload).is_none(),
            "key mismatch"
        );
        assert!(parse_retained("aggregates/A1/2", b"").is_none(), "a clear");
        assert!(parse_retained("aggregates/A1/2", b"{}").is_none());
    }
}
