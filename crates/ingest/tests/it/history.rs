//! Minute buckets from the real binary: finals equal to the readings sent, through a SIGKILL
//! with a data directory, and free of duplicates and retained copies.
//!
//! A minute is final one window after its end. To get finals within seconds instead of a
//! minute, each test puts its readings (with explicit times) into minutes that have already
//! ended and picks a window that reaches just back into them: at the start the window is the
//! time since the minute began plus a margin for starting ingest and publishing, so the last
//! past minute closes about `margin` seconds after the start.

use std::collections::BTreeMap;
use std::time::Duration;

use aggregator_core::history::minute_of;
use aggregator_core::{HistoryBucket, Timestamp};
use serde_json::json;
use tempfile::TempDir;
use test_support::{Broker, Collector, Message, Publisher, QoS, unique_client_id};

use crate::helpers::{TestIngest, WAIT, now, readings_topic, wait_metric};

/// Window and minutes of a test, fixed when it starts.
struct Plan {
    /// `--window-seconds`.
    window_seconds: String,
    /// The minute that ended last (the current one's start minus 60 s).
    previous: Timestamp,
}

impl Plan {
    /// A window that keeps `minutes_back` ended minutes open for about `margin` more seconds
    /// (the oldest of them); each further one closes a minute later.
    fn new(minutes_back: u64, margin: u64) -> Self {
        let now = now();
        let current = minute_of(now);
        let into_minute = now.duration_since(current).as_secs() + 1;
        let window = 60 * (minutes_back - 1) + into_minute + margin;
        Plan {
            window_seconds: window.to_string(),
            previous: current.saturating_sub(Duration::from_secs(60)),
        }
    }

    /// An event time `offset_ms` into the ended minute `back` minutes before the current one.
    fn at(&self, back: u64, offset_ms: u64) -> Timestamp {
        self.previous
            .saturating_sub(Duration::from_secs(60 * (back - 1)))
            .saturating_add(Duration::from_millis(offset_ms))
    }

    fn flags<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut flags = vec![
            "--window-seconds",
            self.window_seconds.as_str(),
            "--history-interval-seconds",
            "1",
        ];
        flags.extend_from_slice(extra);
        flags
    }
}

/// A reading of `index` with `value` at `time`, with an id when given.
fn reading_at(index: u32, value: f64, time: Timestamp, id: Option<&str>) -> String {
    let mut reading =
        json!({"scrapIndex": index, "value": value, "timestamp": time.to_rfc3339_millis()});
    if let Some(id) = id {
        reading["id"] = json!(id);
    }
    reading.to_string()
}

fn bucket(message: &Message) -> Option<HistoryBucket> {
    serde_json::from_slice(&message.payload).ok()
}

/// Every bucket message received per (machine, index, minute), in arrival order.
fn by_minute(messages: &[Message]) -> BTreeMap<(String, u32, String), Vec<HistoryBucket>> {
    let mut buckets: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for b in messages.iter().filter_map(bucket) {
        let id = (b.machine_id.clone(), b.scrap_index, b.minute.clone());
        buckets.entry(id).or_default().push(b);
    }
    buckets
}

/// The final bucket of `machine`/`index` for the minute starting at `minute`.
fn final_of(
    messages: &[Message],
    machine: &str,
    index: u32,
    minute: Timestamp,
) -> Option<HistoryBucket> {
    let minute = minute.to_rfc3339_millis();
    messages.iter().filter_map(bucket).find(|b| {
        b.is_final && b.machine_id == machine && b.scrap_index == index && b.minute == minute
    })
}

/// Count, sum, min and max of `values`.
fn totals(values: &[f64]) -> (u64, f64, f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (values.len() as u64, values.iter().sum(), min, max)
}

fn totals_of(b: &HistoryBucket) -> (u64, f64, f64, f64) {
    (b.count, b.sum, b.min, b.max)
}

/// Exact binary fractions: sums do not depend on the order of addition.
fn value_of(i: u64) -> f64 {
    ((i * 7) % 11) as f64 * 0.5 - 1.25
}

#[tokio::test]
async fn readings_over_two_minutes_give_final_buckets_with_their_totals() {
    let plan = Plan::new(2, 10);
    let broker = Broker::start().await;
    let ingest = TestIngest::start(&broker, &plan.flags(&[])).await;
    let collector = Collector::start(broker.port(), &["history/#"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    // Late in each minute: the older one must still be inside the window when they arrive.
    let readings: Vec<(u32, u64, f64)> = (0..40)
        .map(|i| (u32::from(i % 2 == 0), 2 - i % 2, value_of(i)))
        .collect();
    let messages = readings
        .iter()
        .enumerate()
        .map(|(i, &(index, back, value))| {
            let time = plan.at(back, 59_000 + i as u64 * 10);
            (readings_topic("H1"), reading_at(index, value, time, None))
        });
    publisher
        .publish_all(QoS::AtLeastOnce, messages, WAIT)
        .await
        .unwrap();
    wait_metric(&ingest, "ingest_readings_accepted_total 40\n").await;

    let keys: Vec<(u32, u64)> = vec![(0, 1), (1, 2)];
    let all_final = |m: &[Message]| {
        keys.iter()
            .all(|&(index, back)| final_of(m, "H1", index, plan.at(back, 0)).is_some())
    };
    // The later minute closes a minute after the first.
    let received = collector
        .wait_for(all_final, WAIT + Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    for (index, back) in keys {
        let values: Vec<f64> = readings
            .iter()
            .filter(|r| (r.0, r.1) == (index, back))
            .map(|r| r.2)
            .collect();
        let last = final_of(&received, "H1", index, plan.at(back, 0)).unwrap();
        assert_eq!(
            totals_of(&last),
            totals(&values),
            "H1/{index}, {back} minutes back"
        );
    }
    let buckets = by_minute(&received);
    assert_eq!(
        buckets.len(),
        2,
        "no bucket for minutes without readings: {buckets:?}"
    );
    let message = received.iter().find(|m| m.topic == "history/H1/0").unwrap();
    assert!(!message.retain && message.qos == QoS::AtLeastOnce);
}

#[tokio::test]
async fn a_final_bucket_holds_every_acknowledged_reading_through_a_sigkill() {
    let plan = Plan::new(1, 25);
    let broker = Broker::start().await;
    let data = TempDir::new().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let flags = plan.flags(&["--data-dir", data_dir.as_str()]);
    let client_id = unique_client_id("ingest");
    let mut first = TestIngest::start_with_id(&broker, &client_id, &flags).await;
    let collector = Collector::start(broker.port(), &["history/#"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    let n = 60_u64;
    let message = |i: u64| {
        let time = plan.at(1, 54_000 + i * 100);
        let id = format!("k{i}");
        let payload = reading_at((i % 2) as u32, value_of(i), time, Some(&id));
        (readings_topic("K1"), payload)
    };
    publisher
        .publish_all(QoS::ExactlyOnce, (0..n / 2).map(message), WAIT)
        .await
        .unwrap();
    // The first half is in an open bucket: the minute is part-way when ingest dies.
    collector
        .wait_for(
            |m| {
                let open = by_minute(m);
                open.values().map(|b| b.last().unwrap().count).sum::<u64>() == n / 2
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", first.process.logs()));
    first.process.kill().await;

    let second = TestIngest::start_with_id(&broker, &client_id, &flags).await;
    publisher
        .publish_all(QoS::ExactlyOnce, (n / 2..n).map(message), WAIT)
        .await
        .unwrap();
    let all_final =
        |m: &[Message]| (0..2).all(|index| final_of(m, "K1", index, plan.at(1, 0)).is_some());
    let received = collector
        .wait_for(all_final, WAIT + Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", first.process.logs(), second.process.logs()));
    for (id, messages) in by_minute(&received) {
        let index = u64::from(id.1);
        let values: Vec<f64> = (0..n).filter(|i| i % 2 == index).map(value_of).collect();
        let finals: Vec<_> = messages.iter().filter(|b| b.is_final).collect();
        assert_eq!(finals.len(), 1, "{id:?}: {messages:?}");
        assert_eq!(totals_of(finals[0]), totals(&values), "{id:?}");
        let newest = messages.iter().max_by_key(|b| b.revision).unwrap();
        assert!(
            newest.is_final,
            "{id:?}: the highest revision is the final one: {messages:?}"
        );
    }
}

#[tokio::test]
async fn duplicates_and_retained_readings_enter_no_bucket() {
    let plan = Plan::new(1, 10);
    let broker = Broker::start().await;
    let time = |ms: u64| plan.at(1, 58_000 + ms);
    // Stored by the broker before ingest subscribes: replayed to it with the retain flag.
    let retained = reading_at(3, 1000.0, time(0), Some("r"));
    test_support::publish_retained(broker.port(), &readings_topic("D1"), retained)
        .await
        .unwrap();
    let ingest = TestIngest::start(&broker, &plan.flags(&[])).await;
    let collector = Collector::start(broker.port(), &["history/#"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    let messages = [
        reading_at(3, 1.0, time(1), Some("a")),
        reading_at(3, 100.0, time(2), Some("a")),
        reading_at(3, 2.0, time(3), Some("b")),
    ]
    .map(|payload| (readings_topic("D1"), payload));
    publisher
        .publish_all(QoS::AtLeastOnce, messages, WAIT)
        .await
        .unwrap();
    wait_metric(&ingest, "ingest_readings_duplicate_total 1\n").await;
    wait_metric(&ingest, "ingest_readings_retained_ignored_total 1\n").await;
    let received = collector
        .wait_for(|m| final_of(m, "D1", 3, plan.at(1, 0)).is_some(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let last = final_of(&received, "D1", 3, plan.at(1, 0)).unwrap();
    assert_eq!(totals_of(&last), (2, 3.0, 1.0, 2.0));
    for b in received.iter().filter_map(bucket) {
        assert!(b.max <= 2.0 && b.count <= 2, "{b:?}");
    }
    wait_metric(&ingest, "ingest_history_open_buckets 0\n").await;
}

#[tokio::test]
async fn a_stop_sends_the_open_buckets_that_changed_since_they_were_last_sent() {
    let broker = Broker::start().await;
    // The default interval (10 s): the second reading's change waits for it.
    let mut ingest = TestIngest::start(&broker, &[]).await;
    let collector = Collector::start(broker.port(), &["history/#"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    let time = now();
    let first = [(readings_topic("S1"), reading_at(0, 1.5, time, None))];
    publisher
        .publish_all(QoS::AtLeastOnce, first, WAIT)
        .await
        .unwrap();
    collector
        .wait_for(|m| m.iter().filter_map(bucket).any(|b| b.count == 1), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let second = [(readings_topic("S1"), reading_at(0, 2.0, time, None))];
    publisher
        .publish_all(QoS::AtLeastOnce, second, WAIT)
        .await
        .unwrap();
    wait_metric(&ingest, "ingest_readings_accepted_total 2\n").await;
    let status = ingest.process.terminate().await;
    assert!(status.success(), "{status:?}\n{}", ingest.process.logs());
    let received = collector
        .wait_for(|m| m.iter().filter_map(bucket).any(|b| b.count == 2), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let last = received.iter().filter_map(bucket).last().unwrap();
    assert_eq!((last.count, last.sum, last.is_final), (2, 3.5, false));
}

#[tokio::test]
async fn a_restart_rebuilds_an_open_minute_from_readings_that_already_left_the_window() {
    // The readings at 45 s into the minute leave the window about 25 s after the start; the
    // minute closes 15 s after that.
    let plan = Plan::new(1, 40);
    let start = now();
    let broker = Broker::start().await;
    let data = TempDir::new().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    // A trend tick every second: the log's compaction runs at least that often.
    let extra = [
        "--data-dir",
        data_dir.as_str(),
        "--trend-interval-seconds",
        "1",
    ];
    let flags = plan.flags(&extra);
    let client_id = unique_client_id("ingest");
    let mut first = TestIngest::start_with_id(&broker, &client_id, &flags).await;
    let collector = Collector::start(broker.port(), &["history/#"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    let early = (0..20_u64).map(|i| {
        let payload = reading_at(0, value_of(i), plan.at(1, 45_000 + i), None);
        (readings_topic("L1"), payload)
    });
    publisher
        .publish_all(QoS::ExactlyOnce, early, WAIT)
        .await
        .unwrap();
    wait_metric(&first, "ingest_readings_accepted_total 20\n").await;
    // Killed only once those readings have left the window and a log kept for the window
    // alone would have dropped them (its first segment is sealed a quarter window after the
    // start): only a log kept until the minute closes still has them.
    let window = Duration::from_secs(plan.window_seconds.parse().unwrap());
    let gone = plan.at(1, 45_020).saturating_add(window);
    let sealed = start.saturating_add(window / 4);
    let dropped = gone.max(sealed).saturating_add(Duration::from_secs(2));
    test_support::wait_until(WAIT, "the early readings left the window", || async {
        now() > dropped
    })
    .await
    .unwrap();
    first.process.kill().await;

    let second = TestIngest::start_with_id(&broker, &client_id, &flags).await;
    let logs = second.process.stderr();
    assert!(logs.contains("history_only=20"), "{logs}");
    let late = (20..30_u64).map(|i| {
        let payload = reading_at(0, value_of(i), plan.at(1, 59_000 + i), None);
        (readings_topic("L1"), payload)
    });
    publisher
        .publish_all(QoS::ExactlyOnce, late, WAIT)
        .await
        .unwrap();
    let received = collector
        .wait_for(
            |m| final_of(m, "L1", 0, plan.at(1, 0)).is_some(),
            WAIT + WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.process.logs()));
    let last = final_of(&received, "L1", 0, plan.at(1, 0)).unwrap();
    let values: Vec<f64> = (0..30).map(value_of).collect();
    assert_eq!(totals_of(&last), totals(&values));
}
