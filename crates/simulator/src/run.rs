//! The publishing loop: follows the schedule, generates messages in batches into reused
//! buffers, reports progress every second and ends with a summary.

use std::time::Duration;

use aggregator_core::RejectionReason;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::configuration::SimConfig;
use crate::generator::{ExpectedKey, Generator, TimeStamps};
use crate::schedule::Schedule;
use crate::transport::{BrokerDelivery, Delivery, Transport, TransportError};

/// Most messages generated between two writes to the socket (and two clock reads).
const BATCH: usize = 1024;
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
    let addr = crate::transport::raw::broker_list(&config);
    tracing::info!(
        broker = %addr,
        mqtt_security = %config.security,
        seed = config.seed,
        rate = ?config.rate,
        count = ?config.count,
        duration = ?config.duration,
        machines = config.machines.len(),
        indices = config.indices.len(),
        qos = ?config.qos,
        invalid_ratio = config.invalid_ratio,
        "simulator starting"
    );
    // A run bounded by `--duration` never waits longer than that for a broker either: the
    // budget of every (re)connection is the shorter of the two.
    let budget = config
        .duration
        .map_or(config.connect_timeout, |d| d.min(config.connect_timeout));
    tracing::info!(broker = %addr, give_up_after = ?budget, "connecting to the MQTT broker");
    let connect_config = SimConfig {
        connect_timeout: budget,
        ..config.clone()
    };
    let mut transport = tokio::select! {
        transport = Transport::connect(&connect_config) => transport?,
        () = shutdown.cancelled() => return Err(TransportError::Interrupted { addr }),
    };
    if config.brokers.len() > 1 {
        tracing::info!(broker = %addr, "connected to the MQTT brokers");
    } else {
        tracing::info!(broker = %addr, "connected to the MQTT broker");
    }
    let mut generator = Generator::new(&config);
    let mut schedule = Schedule::new(config.rate, config.machines.len(), config.seed);
    let (mut topic, mut payload) = (String::with_capacity(64), Vec::with_capacity(256));
    let start = Instant::now();
    let end = config.duration.map(|d| start + d);
    let mut progress = Progress::new(start, config.progress_interval);
    let mut sent: u64 = 0;

    let stopped_by = loop {
        if shutdown.is_cancelled() {
            break StopReason::Signal;
        }
        if config.count.is_some_and(|c| sent >= c) {
            break StopReason::Count;
        }
        let now = Instant::now();
        if end.is_some_and(|end| now >= end) {
            break StopReason::Duration;
        }
        let elapsed = now - start;
        if schedule.next_due() <= elapsed {
            let times = TimeStamps::now();
            let limit = config
                .count
                .map_or(BATCH as u64, |c| (c - sent).min(BATCH as u64));
            let mut produced = 0;
            while produced < limit && schedule.next_due() <= elapsed {
                let machine = match schedule.take() {
                    Some(m) => m,
                    None => generator.pick_machine(),
                };
                generator.next(machine, &times, &mut topic, &mut payload);
                transport.send(machine, &topic, &payload).await?;
                produced += 1;
            }
            sent += produced;
            transport.flush().await?;
        } else {
            transport.flush().await?;
            let mut wake = (start + schedule.next_due()).min(progress.next);
            if let Some(end) = end {
                wake = wake.min(end);
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = shutdown.cancelled() => {}
            }
        }
        progress.maybe_report(&transport.delivery(), &generator);
    };

    let (delivery, per_broker) = transport.finish(FINISH_TIMEOUT).await;
    let elapsed = start.elapsed();
    let invalid_counts = generator.invalid_counts();
    let invalid_total: u64 = invalid_counts.iter().sum();
    let summary = Summary {
        seed: config.seed,
        stopped_by,
        sent: delivery.sent,
        acknowledged: delivery.acknowledged,
        lost: delivery.lost,
        errors: delivery.errors,
        valid: delivery.sent - invalid_total,
        invalid: RejectionReason::ALL
            .iter()
            .map(|k| (k.as_str(), invalid_counts[*k as usize]))
            .filter(|(_, n)| *n > 0)
            .collect(),
        flood_keys: generator.flood_keys(),
        elapsed_secs: elapsed.as_secs_f64(),
        rate: per_second(delivery.sent, elapsed),
        keys: generator.expected(),
        brokers: if config.brokers.len() > 1 {
            per_broker
        } else {
            Vec::new()
        },
    };
    tracing::info!(
        stopped_by = ?summary.stopped_by,
        sent = summary.sent,
        acknowledged = summary.acknowledged,
        lost = summary.lost,
        errors = summary.errors,
        invalid = invalid_total,
        elapsed_s = format!("{:.3}", summary.elapsed_secs),
        rate = format!("{:.0}", summary.rate),
        seed = summary.seed,
        complete = summary.complete(),
        "summary"
    );
    for leg in &summary.brokers {
        tracing::info!(
            broker = %leg.broker,
            machines = leg.machines,
            sent = leg.sent,
            acknowledged = leg.acknowledged,
            lost = leg.lost,
            errors = leg.errors,
            failovers = leg.failovers,
            "summary per broker"
        );
    }
    Ok(summary)
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
    last_at: Instant,
    last_sent: u64,
}

impl Progress {
    fn new(start: Instant, interval: Duration) -> Self {
        Self {
            interval,
            next: start + interval,
            last_at: start,
            last_sent: 0,
        }
    }

    fn maybe_report(&mut self, delivery: &Delivery, generator: &Generator) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        let rate = per_second(delivery.sent - self.last_sent, now - self.last_at);
        tracing::info!(
            sent = delivery.sent,
            rate = format!("{rate:.0}"),
            acknowledged = delivery.acknowledged,
            invalid = generator.invalid_counts().iter().sum::<u64>(),
            lost = delivery.lost,
            errors = delivery.errors,
            "progress"
        );
        self.last_at = now;
        self.last_sent = delivery.sent;
        // Skip missed ticks rather than printing a burst after a long stall.
        while self.next <= now {
            self.next += self.interval;
        }
    }
}
