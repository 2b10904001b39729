//! The start-up snapshot of the retained aggregates, alarms and trends a previous run left on
//! the broker.
//!
//! A new ingest process starts with empty windows, but the broker still holds the retained
//! aggregates of the previous process. A short-lived, clean-session connection reads them once
//! ([`read_retained`]); the aggregation task then empties and clears those of keys it does not
//! track ([`crate::restart::orphans`]), takes the raised alarms back so a restart does not raise them
//! again ([`crate::signals::alarms`]), and continues the trends ([`crate::signals::trends`]).

use std::time::Duration;

use aggregator_core::alarm::AlarmMessage;
use aggregator_core::topic::{
    AGGREGATES_FILTER, ALARMS_FILTER, TRENDS_FILTER, key_from_aggregate_topic,
    key_from_alarm_topic, key_from_trend_topic,
};
use aggregator_core::trend::{TrendMessage, TrendPoint};
use aggregator_core::wire::MAX_SIGNAL_PAYLOAD_BYTES;
use aggregator_core::{Aggregate, Timestamp};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS, SubscribeFilter};
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
    /// Its machine's Sparkplug node or device was dead.
    pub offline: bool,
}

/// A retained trend found at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct RetainedTrend {
    /// Machine id.
    pub machine: String,
    /// Scrap index.
    pub scrap_index: u32,
    /// Its samples, in message order.
    pub points: Vec<TrendPoint>,
}

/// How much of the broker's retained state a snapshot holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadBack {
    /// Nothing was read: no broker of the list granted the subscription (none reachable, or
    /// none in time, or the shutdown came first). Empty lists say nothing about the broker.
    #[default]
    Nothing,
    /// The subscription was granted but the read was cut short (time limit, lost connection,
    /// shutdown): what came until then.
    Partial,
    /// Every retained message was read (they went quiet after the subscription).
    Complete,
}

impl ReadBack {
    /// Whether anything was read from a broker (empty lists then mean "none retained").
    pub fn happened(self) -> bool {
        self != ReadBack::Nothing
    }
}

/// Everything the start-up snapshot found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Retained aggregates.
    pub aggregates: Vec<RetainedAggregate>,
    /// Retained alarm messages (raised or cleared), each on its own key's topic.
    pub alarms: Vec<AlarmMessage>,
    /// Retained trends.
    pub trends: Vec<RetainedTrend>,
    /// How much of the retained state this is.
    pub read: ReadBack,
    /// Retained messages skipped because they are none of ours: not JSON of the right shape,
    /// another key than their topic's, or over [`MAX_SIGNAL_PAYLOAD_BYTES`].
    pub unusable: usize,
}

/// Reads every retained aggregate, alarm and trend through its own clean-session connection,
/// from the first broker of `mqtt.host` that answers (the others of a list hold the same
/// retained messages: a NATS cluster replicates them). Returns what it got when no broker is
/// reachable, one is slow, or `shutdown` fires, and [`Snapshot::read`] says which: this is
/// best effort, never a reason not to start. Logs what happened in one line.
pub async fn read_retained(config: &IngestConfig, shutdown: &CancellationToken) -> Snapshot {
    let started = tokio::time::Instant::now();
    let deadline = started + SNAPSHOT_TIMEOUT;
    let mut found = Snapshot::default();
    for broker in &config.mqtt.brokers {
        found = read_from(config, broker, deadline, shutdown).await;
        if found.read.happened()
            || shutdown.is_cancelled()
            || tokio::time::Instant::now() >= deadline
        {
            break;
        }
    }
    found.log_outcome(
        config.mqtt.brokers.len(),
        started.elapsed(),
        shutdown.is_cancelled(),
    );
    found
}

/// Reads the snapshot from `broker`: what was found by the quiet period, the `deadline` or
/// `shutdown`, with [`ReadBack::Nothing`] when the subscription was never granted (the next
/// broker may answer).
async fn read_from(
    config: &IngestConfig,
    broker: &service_kit::BrokerAddr,
    deadline: tokio::time::Instant,
    shutdown: &CancellationToken,
) -> Snapshot {
    let (client, mut event_loop) = AsyncClient::new(snapshot_options(config, broker), 16);
    let mut found = Snapshot::default();
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let wake = quiet_until.map_or(deadline, |quiet| quiet.min(deadline));
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(wake) => {
                // Quiet before the deadline: every retained message has come.
                if wake < deadline {
                    found.read = ReadBack::Complete;
                }
                break;
            }
            event = event_loop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                if !subscribe_all(&client) {
                    break;
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(_))) => {
                found.read = ReadBack::Partial;
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
                found.add(&publish.topic, &publish.payload);
            }
            Ok(_) => {}
            // Before the SUBACK nothing was read from this broker: let the caller try the next.
            Err(e) if quiet_until.is_none() => {
                tracing::debug!(broker = %broker, error = %e, "retained-aggregate snapshot: broker not reachable");
                return found;
            }
            Err(e) => {
                tracing::warn!(error = %e, "retained-aggregate snapshot: connection lost");
                break;
            }
        }
    }
    let _ = client.try_disconnect();
    // Let the DISCONNECT go out, briefly.
    let _ = tokio::time::timeout(Duration::from_millis(100), event_loop.poll()).await;
    found
}

/// Queues one SUBSCRIBE to aggregates, alarms and trends, so that its one SUBACK starts the
/// quiet period for all three; false when it cannot be queued.
fn subscribe_all(client: &AsyncClient) -> bool {
    let filters = [AGGREGATES_FILTER, ALARMS_FILTER, TRENDS_FILTER]
        .map(|f| SubscribeFilter::new(f.to_owned(), QoS::AtMostOnce));
    client.try_subscribe_many(filters).is_ok()
}

/// The snapshot connection's options for `broker`: its own client id and a clean session,
/// so that it never touches the main connection's persistent session.
fn snapshot_options(config: &IngestConfig, broker: &service_kit::BrokerAddr) -> MqttOptions {
    let mut options = MqttOptions::new(
        format!("{}-snapshot", config.mqtt.client_id),
        &broker.host,
        broker.port,
    );
    let max_packet = config.mqtt.settings.max_packet_bytes;
    options
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(max_packet, max_packet);
    // Same login and TLS as the main connection: the secured broker's ACL lets user ingest read
    // aggregates/#, alarms/# and trends/#.
    config.mqtt.security.apply_to(&mut options);
    options
}

impl Snapshot {
    /// The one line that says what the start-up read came to, after trying `brokers` brokers
    /// for `waited`.
    fn log_outcome(&self, brokers: usize, waited: Duration, shut_down: bool) {
        let (aggregates, alarms, trends, unusable) = (
            self.aggregates.len(),
            self.alarms.len(),
            self.trends.len(),
            self.unusable,
        );
        if unusable > 0 {
            tracing::warn!(
                unusable,
                "retained state: skipped messages on aggregates/, alarms/ or trends/ that are not ingest's"
            );
        }
        match self.read {
            ReadBack::Complete => {
                tracing::info!(aggregates, alarms, trends, "retained state read back");
            }
            ReadBack::Partial => tracing::warn!(
                aggregates,
                alarms,
                trends,
                "retained state read back in part: the read was cut short"
            ),
            ReadBack::Nothing if shut_down => {
                tracing::info!("no retained state read: shutting down");
            }
            ReadBack::Nothing => tracing::warn!(
                brokers,
                waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                limit_s = SNAPSHOT_TIMEOUT.as_secs(),
                "no retained state read: no broker of mqtt.host reachable; alarms and trends start without it"
            ),
        }
    }

    /// Keeps a retained message if it is a well-formed aggregate, alarm or trend of the key its
    /// topic names; clears (empty payloads) are skipped, anything else is skipped and counted
    /// in [`Snapshot::unusable`]. A payload over [`MAX_SIGNAL_PAYLOAD_BYTES`] is not parsed.
    pub fn add(&mut self, topic: &str, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        if payload.len() > MAX_SIGNAL_PAYLOAD_BYTES {
            self.unusable += 1;
        } else if let Some(aggregate) = parse_retained(topic, payload) {
            self.aggregates.push(aggregate);
        } else if let Some((machine, index)) = key_from_alarm_topic(topic)
            && let Ok(alarm) = AlarmMessage::parse(payload)
            && alarm.machine_id == machine
            && alarm.scrap_index == index
        {
            self.alarms.push(alarm);
        } else if let Some((machine, index)) = key_from_trend_topic(topic)
            && let Ok(trend) = TrendMessage::parse(payload)
            && trend.machine_id == machine
            && trend.scrap_index == index
            && let Ok(points) = trend.points()
        {
            self.trends.push(RetainedTrend {
                machine: machine.to_owned(),
                scrap_index: index,
                points,
            });
        } else {
            self.unusable += 1;
        }
    }
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
        offline: aggregate.offline,
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

    #[test]
    fn alarms_and_trends_are_kept_only_on_their_own_topic() {
        let alarm = br#"{"maschinenId":"A1","scrapIndex":2,"state":"raised","metric":"sum","value":31.0,"threshold":30.0,"since":"2026-01-01T12:00:30.123Z","timestamp":"2026-01-01T12:00:30.123Z"}"#;
        let trend = br#"{"maschinenId":"A1","scrapIndex":2,"intervalSeconds":10,"points":[{"t":"2026-01-01T12:00:10.000Z","sum":1.0}]}"#;
        let mut s = Snapshot::default();
        s.add("alarms/A1/2", alarm);
        s.add("alarms/B1/2", alarm);
        s.add("alarms/A1/2", b"");
        s.add("trends/A1/2", trend);
        s.add("trends/A1/3", trend);
        s.add("trends/A1/2", b"{}");
        assert_eq!(s.alarms.len(), 1);
        assert_eq!(s.trends.len(), 1);
        assert_eq!(s.trends[0].points.len(), 1);
        assert!(s.aggregates.is_empty());
        assert_eq!(s.unusable, 3, "two on another key's topic, one not a trend");
    }

    #[test]
    fn an_oversized_retained_message_is_skipped_unparsed_and_counted() {
        let aggregate = br#"{"maschinenId":"A1","scrapIndex":2,"sumLast60s":5.0,"avgLast60s":2.5,"count":2,"windowSeconds":60,"timestamp":"2026-01-01T12:00:30.123Z"}"#;
        let mut padded = aggregate[..aggregate.len() - 1].to_vec();
        padded.extend_from_slice(b",\"pad\":\"");
        padded.resize(2 * 1024 * 1024, b'x');
        padded.extend_from_slice(b"\"}");
        assert!(
            serde_json::from_slice::<Aggregate>(&padded).is_ok(),
            "a valid aggregate"
        );
        let mut s = Snapshot::default();
        s.add("aggregates/A1/2", &padded);
        s.add("aggregates/A1/2", b"");
        s.add("aggregates/A1/2", aggregate);
        assert_eq!(s.aggregates.len(), 1);
        assert_eq!(s.unusable, 1);
    }
}
