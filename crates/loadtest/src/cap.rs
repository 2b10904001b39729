//! `loadtest cap`: the per-key publish budget holds under load. One key changed `--rate`
//! times a second must give at most one aggregate message per `--publish-interval-ms` on the
//! broker, plus the burst allowance, and its last value must always arrive, exact.
//!
//! A plain MQTT subscriber on `aggregates/+/+` records when each aggregate message arrives;
//! the figure is the most messages in any one-second window (sliding over the arrivals) and
//! the mean rate over the run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::publisher::Publisher;
use crate::report::{Row, Verdict};
use crate::stack::{self, Bins, BrokerArgs};
use crate::workload::{self, ClockText};

/// Ingest's default burst allowance, assumed when `--publish-burst` is not given.
const DEFAULT_BURST: u32 = 5;

/// Settings of a cap check.
#[derive(Debug, Clone, clap::Args)]
pub struct CapArgs {
    /// Changes per second to the one key.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u64,
    /// Seconds of load (at most 50: nothing may leave the 60 s window).
    #[arg(long, default_value_t = 8)]
    pub duration_secs: u64,
    /// Ingest's `--publish-interval-ms`.
    #[arg(long, default_value_t = 100)]
    pub publish_interval_ms: u64,
    /// Ingest's `--publish-burst` (default: ingest's own default, 5).
    #[arg(long)]
    pub publish_burst: Option<u32>,
    /// Which Mosquitto configuration to start.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Directory of the `ingest` and `gateway` binaries (default: next to this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// Runs the cap check and returns its row.
///
/// # Errors
/// When a part cannot be started or the last value does not arrive in time.
pub async fn run(args: &CapArgs) -> anyhow::Result<Row> {
    if args.duration_secs == 0 || args.duration_secs > 50 {
        bail!("--duration-secs must be 1 to 50");
    }
    if args.rate == 0 || args.publish_interval_ms == 0 {
        bail!("--rate and --publish-interval-ms must be at least 1");
    }
    let bins = Bins::locate(args.bin_dir.as_deref())?;
    let broker = args.broker.config.start().await;
    let mut extra = vec![
        "--publish-interval-ms".to_owned(),
        args.publish_interval_ms.to_string(),
    ];
    if let Some(burst) = args.publish_burst {
        extra.extend(["--publish-burst".to_owned(), burst.to_string()]);
    }
    let ingest = stack::start_ingest(&bins, &broker, &extra).await?;
    let machine = workload::machine(0);
    let aggregate_topic = format!("aggregates/{machine}/0");
    let collector = test_support::Collector::start_with_qos(
        broker.port(),
        &["aggregates/+/+"],
        test_support::QoS::AtLeastOnce,
    )
    .await;

    let topic = workload::topic(&machine);
    let mut publisher =
        Publisher::connect(broker.port(), &test_support::unique_client_id("lt-cap"), 1).await?;
    let mut clock = ClockText::default();
    let mut payload = Vec::with_capacity(128);
    let total = args.rate * args.duration_secs;
    let mut expected_sum = 0.0_f64;
    let start = Instant::now();
    let mut sent = 0_u64;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * args.rate as f64) as u64 + 1).min(total);
        while sent < due {
            let value = workload::value(sent);
            workload::payload(&mut payload, &machine, 0, value, Some(clock.now()));
            publisher.publish(&topic, &payload, false).await?;
            expected_sum += value;
            sent += 1;
        }
        publisher.flush().await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    publisher.finish(Duration::from_secs(30)).await?;

    // The last change always goes out: wait for the aggregate of every reading.
    let arrived = collector
        .wait_for(
            |m| {
                m.iter()
                    .rev()
                    .find(|m| m.topic == aggregate_topic)
                    .and_then(|m| m.json().ok())
                    .is_some_and(|j| j["count"].as_u64() == Some(total))
            },
            Duration::from_secs(30),
        )
        .await;
    ingest.stop().await;
    let messages = arrived
        .map_err(anyhow::Error::msg)
        .context("the last value did not arrive")?;
    let ours: Vec<&test_support::Message> = messages
        .iter()
        .filter(|m| m.topic == aggregate_topic && !m.retain)
        .collect();
    let last = ours.last().context("no aggregate at all")?.json();
    let exact = last
        .ok()
        .and_then(|j| j["sumLast60s"].as_f64())
        .is_some_and(|sum| sum == expected_sum);

    let arrivals: Vec<Instant> = ours.iter().map(|m| m.received).collect();
    let peak = max_in_window(&arrivals, Duration::from_secs(1));
    let span = arrivals
        .last()
        .zip(arrivals.first())
        .map(|(l, f)| l.saturating_duration_since(*f))
        .unwrap_or_default();
    let mean = arrivals.len() as f64 / span.as_secs_f64().max(1e-3);
    let burst = args.publish_burst.unwrap_or(DEFAULT_BURST);
    let per_sec_cap = 1_000 / args.publish_interval_ms;
    let allowed = per_sec_cap + u64::from(burst);
    Ok(Row::new(
        format!(
            "cap: one key changed {} times/s for {} s, --publish-interval-ms {}, burst {burst}, {}",
            args.rate,
            args.duration_secs,
            args.publish_interval_ms,
            args.broker.config.label()
        ),
        format!(
            "at most **{peak}** aggregate messages in any 1 s, mean {mean:.1}/s ({} messages); last value {}",
            arrivals.len(),
            if exact { "arrived, exact" } else { "**wrong**" }
        ),
        format!("<= {per_sec_cap}/s + burst {burst} = {allowed} in any 1 s; last value exact"),
        Verdict::from_ok(peak as u64 <= allowed && exact),
    ))
}

/// The most instants of `sorted` within any window of length `window`.
fn max_in_window(sorted: &[Instant], window: Duration) -> usize {
    let mut best = 0;
    let mut first = 0;
    for (last, at) in sorted.iter().enumerate() {
        while at.saturating_duration_since(sorted[first]) >= window {
            first += 1;
        }
        best = best.max(last - first + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_count_slides_over_the_arrivals() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let arrivals = [
            at(0),
            at(100),
            at(900),
            at(999),
            at(1000),
            at(1500),
            at(1600),
        ];
        // 900 to 1600 ms: five arrivals within one second.
        assert_eq!(max_in_window(&arrivals, Duration::from_secs(1)), 5);
        assert_eq!(max_in_window(&[], Duration::from_secs(1)), 0);
    }
}
