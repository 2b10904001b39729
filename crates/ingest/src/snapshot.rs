//! Stale retained aggregates left by a previous run.
//!
//! A new ingest process starts with empty windows, but the broker still holds the retained
//! aggregates of the previous process. A key that gets no new reading would show its old sum
//! forever. At start-up a short-lived, clean-session connection reads the retained aggregates
//! once ([`read_retained`]); the aggregation task then treats every key it does not track as
//! an orphan ([`Orphans`]): an aggregate stamped at `T` only holds readings from before `T`, so
//! at `T + window` it is published as empty, and `key_idle_ttl` later it is cleared, as if the
//! old process had kept running. A key that receives a reading meanwhile is tracked again, and
//! its orphan actions are skipped.

use std::collections::BTreeSet;
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
                quiet_until = Some(tokio::time::Instant::now() + QUIET);
                if !publish.retain {
                    continue;
                }
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

/// What to do for an orphan key when its time comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OrphanAction {
    /// Publish the empty aggregate: every reading it counted has left the window.
    Empty,
    /// Clear the retained topic: the key has been idle for `key_idle_ttl`.
    Clear,
}

/// Keys with a retained aggregate from a previous run that this process does not track.
#[derive(Debug)]
pub struct Orphans {
    window: Duration,
    idle_ttl: Duration,
    schedule: BTreeSet<(Timestamp, String, u32, OrphanAction)>,
}

impl Orphans {
    /// Orphans handled with the given window and idle TTL.
    pub fn new(window: Duration, idle_ttl: Duration) -> Self {
        Orphans {
            window,
            idle_ttl,
            schedule: BTreeSet::new(),
        }
    }

    /// Adopts a retained aggregate from a previous run.
    pub fn add(&mut self, found: RetainedAggregate) {
        let (at, action) = if found.count > 0 {
            (
                found.stamped.saturating_add(self.window),
                OrphanAction::Empty,
            )
        } else {
            (
                found.stamped.saturating_add(self.idle_ttl),
                OrphanAction::Clear,
            )
        };
        self.schedule
            .insert((at, found.machine, found.scrap_index, action));
    }

    /// Appends every action due at `now` to `out`. The caller skips keys it tracks again and
    /// schedules the clear with [`Orphans::schedule`] after publishing an empty aggregate.
    pub fn take_due(&mut self, now: Timestamp, out: &mut Vec<(String, u32, OrphanAction)>) {
        while self.schedule.first().is_some_and(|first| first.0 <= now) {
            if let Some((_, machine, index, action)) = self.schedule.pop_first() {
                out.push((machine, index, action));
            }
        }
    }

    /// Schedules `action` for a key at `at`: the clear after an empty aggregate, or a retry.
    pub fn schedule(&mut self, at: Timestamp, machine: String, index: u32, action: OrphanAction) {
        self.schedule.insert((at, machine, index, action));
    }

    /// The idle TTL after which an emptied orphan is cleared.
    pub fn idle_ttl(&self) -> Duration {
        self.idle_ttl
    }

    /// When the next action is due.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.schedule.first().map(|(at, ..)| *at)
    }

    /// Number of scheduled actions.
    pub fn len(&self) -> usize {
        self.schedule.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.schedule.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: i64) -> Timestamp {
        Timestamp::from_unix_nanos(n * 1_000_000_000)
    }

    fn found(machine: &str, stamped: i64, count: u64) -> RetainedAggregate {
        RetainedAggregate {
            machine: machine.into(),
            scrap_index: 1,
            stamped: secs(stamped),
            count,
        }
    }

    #[test]
    fn an_orphan_empties_one_window_after_its_stamp_and_clears_a_ttl_later() {
        let mut o = Orphans::new(Duration::from_secs(60), Duration::from_secs(600));
        o.add(found("A1", 100, 3));
        o.add(found("B1", 130, 0));
        assert_eq!(o.next_deadline(), Some(secs(160)));
        let mut due = Vec::new();
        o.take_due(secs(159), &mut due);
        assert!(due.is_empty());
        o.take_due(secs(161), &mut due);
        assert_eq!(due, vec![("A1".to_owned(), 1, OrphanAction::Empty)]);
        o.schedule(
            secs(161).saturating_add(o.idle_ttl()),
            "A1".into(),
            1,
            OrphanAction::Clear,
        );
        due.clear();
        o.take_due(secs(730), &mut due);
        assert_eq!(due, vec![("B1".to_owned(), 1, OrphanAction::Clear)]);
        due.clear();
        o.take_due(secs(761), &mut due);
        assert_eq!(due, vec![("A1".to_owned(), 1, OrphanAction::Clear)]);
        assert!(o.is_empty());
    }

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
