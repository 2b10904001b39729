//! The publishing loop: follows the schedule, generates and sends messages in batches,
//! reports progress every second and ends with a summary.

use std::time::{Duration, SystemTime};

use aggregator_core::{RejectionReason, Timestamp};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::configuration::{Protocol, SimConfig};
use crate::generator::{ExpectedKey, Generator, TimeStamps};
use crate::schedule::Schedule;
use crate::transport::{BrokerDelivery, Delivery, Transport, TransportError, broker_list};

/// Most messages generated between two writes to the socket (and two clock reads).
const BATCH: u64 = 1024;
/// How long the broker gets at the end to acknowledge what is still in flight.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `--count` messages were sent.
    Count,
    /// `--duration` elapsed.
    Duration,
    /// SIGINT or SIGTERM.
    Signal,
}

/// What a run did; printed at the end, and the source of the exit code.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Seed used (replay a run with `--seed`).
    pub seed: u64,
    /// Why the run ended.
    pub stopped_by: StopReason,
    /// Messages handed to the transport.
    pub sent: u64,
    /// Messages the broker confirmed (QoS 1/2 acknowledgements; QoS 0 end-of-stream).
    pub acknowledged: u64,
    /// Messages known not to have reached the broker.
    pub lost: u64,
    /// Connection errors during the run.
    pub errors: u64,
    /// Valid readings among the sent messages (fresh-key readings of `too_many_keys` not included).
    pub valid: u64,
    /// Malformed messages sent, per rejection reason.
    pub invalid: std::collections::BTreeMap<&'static str, u64>,
    /// Machine ids created by `too_many_keys` messages.
    pub flood_keys: u64,
    /// Wall time of the run in seconds.
    pub elapsed_secs: f64,
    /// Average messages per second.
    pub rate: f64,
    /// Expected sum and count per key of the valid readings (totals over the run, not a
    /// 60 s window).
    pub keys: Vec<ExpectedKey>,
    /// With several brokers: what each connection (named by the broker it started on)
    /// carried. Absent with one broker, whose summary stays as it was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<BrokerDelivery>,
}

impl Summary {
    /// True when every message sent reached the broker (acknowledged for QoS 1/2).
    pub fn complete(&self) -> bool {
        self.acknowledged == self.sent && self.lost == 0
    }

    /// The summary of a run that stopped for `stopped_by` after `elapsed`, from the final
    /// counters of each connection and what the generator produced.
    fn new(
        config: &SimConfig,
        stopped_by: StopReason,
        per_broker: Vec<BrokerDelivery>,
        generator: &Generator,
        elapsed: Duration,
    ) -> Self {
        let delivery: Delivery = per_broker.iter().map(|leg| leg.delivery).sum();
        let invalid = generator.invalid_counts();
        Self {
            seed: config.seed,
            stopped_by,
            sent: delivery.sent,
            acknowledged: delivery.acknowledged,
            lost: delivery.lost,
            errors: delivery.errors,
            valid: delivery.sent - invalid.iter().sum::<u64>(),
            invalid: RejectionReason::ALL
                .iter()
                .map(|k| (k.as_str(), invalid[k.index()]))
                .filter(|(_, n)| *n > 0)
                .collect(),
            flood_keys: generator.flood_keys(),
            elapsed_secs: elapsed.as_secs_f64(),
            rate: per_second(delivery.sent, elapsed),
            keys: generator.expected(),
            brokers: if config.mqtt.brokers.len() > 1 {
                per_broker
            } else {
                Vec::new()
            },
        }
    }

    /// The closing log lines: the totals, and one line per connection with several brokers.
    fn log(&self) {
        tracing::info!(
            stopped_by = ?self.stopped_by,
            sent = self.sent,
            acknowledged = self.acknowledged,
            lost = self.lost,
            errors = self.errors,
            invalid = self.invalid.values().sum::<u64>(),
            elapsed_s = format!("{:.3}", self.elapsed_secs),
            rate = format!("{:.0}", self.rate),
            seed = self.seed,
            complete = self.complete(),
            "summary"
        );
        for leg in &self.brokers {
            let d = leg.delivery;
            tracing::info!(
                broker = %leg.broker,
                machines = leg.machines,
                sent = d.sent,
                acknowledged = d.acknowledged,
                lost = d.lost,
                errors = d.errors,
                failovers = d.failovers,
                "summary per broker"
            );
        }
    }
}

/// Runs until `--count`, `--duration` or `shutdown`, then waits for the broker to confirm
/// everything and disconnects.
///
/// # Errors
/// When the broker cannot be reached at the start or after a connection loss.
pub async fn run(
    config: SimConfig,
    shutdown: CancellationToken,
) -> Result<Summary, TransportError> {
    let config = SimConfig {
        connect_timeout: connect_budget(&config),
        ..config
    };
    // Every setting that shapes the run, so a log says how to repeat it.
    tracing::info!(
        broker = %broker_list(&config),
        mqtt_security = %config.mqtt.security,
        seed = config.seed,
        rate = ?config.settings.rate,
        count = ?config.settings.count,
        duration = ?config.duration,
        machines = config.machines.len(),
        indices = config.indices.len(),
        qos = ?config.qos,
        invalid_ratio = config.settings.invalid_ratio,
        protocol = %config.settings.protocol,
        "simulator starting"
    );
    let mut transport = connect(&config, &shutdown).await?;
    let mut generator = Generator::new(&config);
    let start = Instant::now();
    let stopped_by = publish(&config, &mut transport, &mut generator, start, &shutdown).await?;
    let per_broker = transport.finish(FINISH_TIMEOUT).await;
    let summary = Summary::new(&config, stopped_by, per_broker, &generator, start.elapsed());
    summary.log();
    Ok(summary)
}

/// Connects to every broker, giving up after the connect timeout or at `shutdown`.
async fn connect(
    config: &SimConfig,
    shutdown: &CancellationToken,
) -> Result<Transport, TransportError> {
    let addr = broker_list(config);
    let give_up_after = config.connect_timeout;
    tracing::info!(broker = %addr, ?give_up_after, "connecting to the MQTT broker");
    let transport = tokio::select! {
        transport = Transport::connect(config) => transport?,
        () = shutdown.cancelled() => return Err(TransportError::Interrupted { addr }),
    };
    if config.mqtt.brokers.len() > 1 {
        tracing::info!(broker = %addr, "connected to the MQTT brokers");
    } else {
        tracing::info!(broker = %addr, "connected to the MQTT broker");
    }
    Ok(transport)
}

/// How long every (re)connection of the run may take: a run bounded by `--duration` never
/// waits longer than that for a broker either.
fn connect_budget(config: &SimConfig) -> Duration {
    config
        .duration
        .map_or(config.connect_timeout, |d| d.min(config.connect_timeout))
}

/// Sends what the schedule says is due, in batches, and sleeps until the next message,
/// the next progress line or the end, until one of the stop conditions holds.
async fn publish(
    config: &SimConfig,
    transport: &mut Transport,
    generator: &mut Generator,
    start: Instant,
    shutdown: &CancellationToken,
) -> Result<StopReason, TransportError> {
    let count = config.settings.count;
    let mut schedule = Schedule::new(config.settings.rate, config.machines.len(), config.seed);
    let end = config.duration.map(|d| start + d);
    let interval = Duration::from_secs_f64(config.settings.progress_interval_secs);
    let mut progress = Progress::new(start, interval);
    let mut sent: u64 = 0;
    loop {
        let now = Instant::now();
        if let Some(reason) = stop_reason(shutdown.is_cancelled(), count, sent, now, end) {
            return Ok(reason);
        }
        let elapsed = now - start;
        if schedule.next_due() <= elapsed {
            let limit = batch_limit(count, sent);
            let sparkplug = matches!(config.protocol, Protocol::Sparkplug { .. });
            let batch = Batch {
                elapsed,
                limit,
                sparkplug,
            };
            sent += send_batch(&mut schedule, generator, transport, batch).await?;
            transport.flush().await?;
        } else {
            transport.flush().await?;
            let wake = (start + schedule.next_due()).min(progress.next);
            let wake = end.map_or(wake, |end| wake.min(end));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = shutdown.cancelled() => {}
            }
        }
        progress.maybe_report(&transport.delivery(), generator);
    }
}

/// Why the run should end now, if it should: a signal first, then `--count`, then
/// `--duration`.
fn stop_reason(
    cancelled: bool,
    count: Option<u64>,
    sent: u64,
    now: Instant,
    end: Option<Instant>,
) -> Option<StopReason> {
    if cancelled {
        Some(StopReason::Signal)
    } else if count.is_some_and(|c| sent >= c) {
        Some(StopReason::Count)
    } else if end.is_some_and(|end| now >= end) {
        Some(StopReason::Duration)
    } else {
        None
    }
}

/// Most messages the next batch may hold: [`BATCH`], and never beyond `--count`.
fn batch_limit(count: Option<u64>, sent: u64) -> u64 {
    count.map_or(BATCH, |c| (c - sent).min(BATCH))
}

/// What the next batch may hold.
#[derive(Debug, Clone, Copy)]
struct Batch {
    /// Messages due by this offset from the start.
    elapsed: Duration,
    /// At most this many.
    limit: u64,
    /// Sparkplug readings rather than JSON payloads.
    sparkplug: bool,
}

/// Generates and sends up to `batch.limit` messages due by `batch.elapsed`, all with one
/// timestamp; returns how many.
async fn send_batch(
    schedule: &mut Schedule,
    generator: &mut Generator,
    transport: &mut Transport,
    batch: Batch,
) -> Result<u64, TransportError> {
    let now = SystemTime::now();
    let times = TimeStamps::at(now);
    let now_ms = Timestamp::from_system_time(now).unix_millis();
    // Readings come from the clock of this machine: never before the epoch.
    let now_ms = u64::try_from(now_ms).unwrap_or(0);
    let (mut topic, mut payload) = (String::with_capacity(64), Vec::with_capacity(256));
    let mut produced = 0;
    while produced < batch.limit && schedule.next_due() <= batch.elapsed {
        let machine = schedule.take().unwrap_or_else(|| generator.pick_machine());
        if batch.sparkplug {
            let (index_slot, value) = generator.next_reading(machine);
            transport
                .send_reading(machine, index_slot, value, now_ms)
                .await?;
        } else {
            generator.next(machine, &times, &mut topic, &mut payload);
            transport.send(machine, &topic, &payload).await?;
        }
        produced += 1;
    }
    Ok(produced)
}

/// Messages per second, for display.
#[allow(clippy::cast_precision_loss)]
fn per_second(messages: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        messages as f64 / secs
    } else {
        0.0
    }
}

/// The once-a-second progress line.
struct Progress {
    interval: Duration,
    next: Instant,
    /// When the last line was written, and what had been sent by then.
    last: (Instant, u64),
}

impl Progress {
    fn new(start: Instant, interval: Duration) -> Self {
        Self {
            interval,
            next: start + interval,
            last: (start, 0),
        }
    }

    fn maybe_report(&mut self, delivery: &Delivery, generator: &Generator) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        let rate = per_second(delivery.sent - self.last.1, now - self.last.0);
        tracing::info!(
            sent = delivery.sent,
            rate = format!("{rate:.0}"),
            acknowledged = delivery.acknowledged,
            invalid = generator.invalid_counts().iter().sum::<u64>(),
            lost = delivery.lost,
            errors = delivery.errors,
            "progress"
        );
        self.last = (now, delivery.sent);
        // Skip missed ticks rather than printing a burst after a long stall.
        while self.next <= now {
            self.next += self.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_stops_before_the_count_and_the_count_before_the_duration() {
        let now = Instant::now();
        let past = Some(now);
        assert_eq!(
            stop_reason(true, Some(5), 5, now, past),
            Some(StopReason::Signal)
        );
        assert_eq!(
            stop_reason(false, Some(5), 5, now, past),
            Some(StopReason::Count)
        );
        assert_eq!(
            stop_reason(false, Some(5), 4, now, past),
            Some(StopReason::Duration)
        );
        let later = Some(now + Duration::from_secs(1));
        assert_eq!(stop_reason(false, Some(5), 4, now, later), None);
        assert_eq!(stop_reason(false, None, u64::MAX, now, None), None);
    }

    #[test]
    fn a_batch_never_goes_beyond_the_count() {
        assert_eq!(batch_limit(None, 123), BATCH);
        assert_eq!(batch_limit(Some(10_000), 0), BATCH);
        assert_eq!(batch_limit(Some(1500), 1000), 500);
        assert_eq!(batch_limit(Some(1500), 1500), 0);
    }

    #[test]
    fn a_duration_shorter_than_the_connect_timeout_bounds_the_connection_wait() {
        let mut config = SimConfig::for_broker("localhost", 1883);
        config.connect_timeout = Duration::from_secs(30);
        assert_eq!(connect_budget(&config), Duration::from_secs(30));
        config.duration = Some(Duration::from_secs(5));
        assert_eq!(connect_budget(&config), Duration::from_secs(5));
        config.duration = Some(Duration::from_secs(60));
        assert_eq!(connect_budget(&config), Duration::from_secs(30));
    }

    #[test]
    fn the_summary_splits_valid_from_invalid_and_lists_brokers_only_when_there_are_several() {
        let mut config = SimConfig::for_broker("localhost", 1883);
        config.settings.invalid_ratio = 0.25;
        let mut generator = Generator::new(&config);
        let times = TimeStamps::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let (mut topic, mut payload) = (String::new(), Vec::new());
        for _ in 0..16 {
            let machine = generator.pick_machine();
            generator.next(machine, &times, &mut topic, &mut payload);
        }
        let leg = BrokerDelivery {
            broker: "localhost:1883".into(),
            machines: 3,
            delivery: Delivery {
                sent: 16,
                acknowledged: 16,
                ..Delivery::default()
            },
        };
        let elapsed = Duration::from_secs(2);
        let summarize = |config: &SimConfig| {
            Summary::new(
                config,
                StopReason::Count,
                vec![leg.clone()],
                &generator,
                elapsed,
            )
        };

        let summary = summarize(&config);
        assert_eq!(summary.valid, 12);
        // Every fourth message is malformed, cycling through the reasons in contract order;
        // reasons never sent are left out.
        let invalid: Vec<(&str, u64)> = summary.invalid.iter().map(|(k, n)| (*k, *n)).collect();
        assert_eq!(
            invalid,
            [
                ("bad_value", 1),
                ("invalid_json", 1),
                ("missing_field", 1),
                ("too_large", 1)
            ]
        );
        assert_eq!(summary.keys.iter().map(|k| k.count).sum::<u64>(), 12);
        assert!((summary.rate - 8.0).abs() < 1e-9);
        assert!(summary.complete());
        assert!(summary.brokers.is_empty(), "one broker: no list");

        config.mqtt.brokers.push(config.mqtt.brokers[0].clone());
        assert_eq!(summarize(&config).brokers.len(), 1);
    }
}
