//! Bad input at volume: a flood of malformed payloads among valid ones, and a flood of
//! distinct machine ids against `max_keys`. The service must keep exact sums, keep answering
//! `/health`, keep its memory bounded and its log short.
//!
//! Sizes are the required volumes (100 000 malformed payloads; 1 000 000 distinct ids) and can be
//! lowered for a quick local run with `FLOOD_MALFORMED` and `FLOOD_DISTINCT_IDS`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use test_support::{Collector, Metrics, Publisher, QoS, Rss, try_http_get, wait_until};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestIngest, close, now};

/// Ingest's resident memory may not pass this during a flood (debug build; it idles near
/// 15 MiB and peaked below 30 MiB in these floods; every queue in it is bounded).
const RSS_LIMIT_KIB: u64 = 128 * 1024;
/// How long the service may take to work through a flood on a shared, loaded machine.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(240);
/// Longest a single `/health` answer may take during the flood.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// VmRSS of `pid` in KiB (0 once the process is gone: the poller then fails on `/health`).
fn rss_kib(pid: u32) -> u64 {
    Rss::of(pid).map_or(0, |rss| rss.current_kib())
}

/// A value of the `ingest_*` metrics text, summing every labelled series of `name`.
fn metric(text: &str, name: &str) -> f64 {
    Metrics::parse(text).sum(name)
}

/// What a poller saw of `/health` and memory while a flood ran.
#[derive(Debug, Default)]
struct Watch {
    answers: u64,
    slowest: Duration,
    peak_rss_kib: u64,
}

/// Polls `/health` and the RSS of `pid` until `stop`; an answer other than 200, or none within
/// [`HEALTH_TIMEOUT`], ends it with an error.
fn watch(
    base_url: &str,
    pid: u32,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Result<Watch, String>> {
    let url = format!("{base_url}/health");
    tokio::spawn(async move {
        let mut seen = Watch::default();
        while !stop.is_cancelled() {
            let started = Instant::now();
            match tokio::time::timeout(HEALTH_TIMEOUT, try_http_get(&url)).await {
                Ok(Ok((200, _))) => seen.answers += 1,
                Ok(Ok((status, body))) => return Err(format!("/health {status}: {body}")),
                Ok(Err(e)) => return Err(format!("/health failed: {e}")),
                Err(_) => return Err(format!("/health silent for {HEALTH_TIMEOUT:?}")),
            }
            seen.slowest = seen.slowest.max(started.elapsed());
            seen.peak_rss_kib = seen.peak_rss_kib.max(rss_kib(pid));
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        Ok(seen)
    })
}

/// Waits until ingest has taken `received` readings in.
async fn wait_received(ingest: &TestIngest, received: u64) {
    let url = format!("{}/metrics", ingest.base_url);
    wait_until(
        FLOOD_TIMEOUT,
        &format!("ingest received {received} readings"),
        || {
            let url = url.clone();
            async move {
                matches!(try_http_get(&url).await, Ok((200, text))
                if metric(&text, "ingest_readings_received_total") >= received as f64)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
}

/// The `i`-th malformed payload: `(topic, payload, reason it must be rejected for)`.
fn malformed(i: u64) -> (String, Vec<u8>, &'static str) {
    let topic = format!("machines/F{}/scrap", i % 50);
    let future = now().unix_millis() + 3_600_000;
    let (payload, reason) = match i % 8 {
        0 => (b"{not json".to_vec(), "invalid_json"),
        1 => (br#"{"value": 1}"#.to_vec(), "missing_field"),
        2 => (
            br#"{"scrapIndex": 1, "value": "abc"}"#.to_vec(),
            "bad_value",
        ),
        3 => (
            br#"{"machineId": "ZZ", "scrapIndex": 1, "value": 1}"#.to_vec(),
            "machine_mismatch",
        ),
        4 => (
            br#"{"scrapIndex": 1, "value": 1, "timestamp": 1000}"#.to_vec(),
            "late",
        ),
        5 => (
            format!(r#"{{"scrapIndex": 1, "value": 1, "timestamp": {future}}}"#).into_bytes(),
            "future",
        ),
        6 if i % 1000 == 6 => (vec![b' '; 70 * 1024], "too_large"),
        6 => (br#"{"scrapIndex": -1, "value": 1}"#.to_vec(), "bad_value"),
        _ => (b"\xff\xfe\x00garbage".to_vec(), "invalid_json"),
    };
    (topic, payload, reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_payloads_leaves_sums_exact_and_the_service_responsive() {
    let malformed_total = env_count("FLOOD_MALFORMED", 100_000);
    let broker = test_support::Broker::start().await;
    // A long window: the flood may take longer than 60 s on a loaded machine, and no valid
    // reading may expire before the sums are compared.
    let ingest = TestIngest::start(&broker, &["--window-seconds", "3600"]).await;
    let pid = ingest.process.pid().expect("ingest runs");
    let idle_rss = rss_kib(pid);
    let stop = CancellationToken::new();
    let watcher = watch(&ingest.base_url, pid, stop.clone());

    let mut publisher = Publisher::connect(broker.port()).await;
    let mut expected: BTreeMap<(String, u32), (f64, u64)> = BTreeMap::new();
    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    let started = Instant::now();
    let mut valid = 0_u64;
    for i in 0..malformed_total {
        let (topic, payload, reason) = malformed(i);
        *reasons.entry(reason).or_default() += 1;
        publisher
            .publish(&topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        // One valid reading after every ten malformed ones; quarters add up exactly.
        if i % 10 == 9 {
            let machine = format!("V{}", valid % 5);
            let index = u32::try_from(valid % 3).unwrap();
            let value = (valid % 7) as f64 + 0.25;
            let entry = expected.entry((machine.clone(), index)).or_default();
            entry.0 += value;
            entry.1 += 1;
            publisher
                .publish(
                    &format!("machines/{machine}/scrap"),
                    QoS::AtLeastOnce,
                    false,
                    format!(r#"{{"scrapIndex": {index}, "value": {value}}}"#),
                )
                .await
                .unwrap();
            valid += 1;
        }
    }
    publisher.flush(FLOOD_TIMEOUT).await.unwrap();
    wait_received(&ingest, malformed_total + valid).await;
    let elapsed = started.elapsed();
    stop.cancel();
    let seen = watcher.await.unwrap().unwrap_or_else(|e| {
        panic!(
            "ingest stopped answering during the flood: {e}\n{}",
            ingest.process.logs()
        )
    });

    let text = ingest.metrics().await;
    for (reason, count) in &reasons {
        let line = format!("ingest_readings_rejected_total{{reason=\"{reason}\"}} {count}");
        assert!(text.contains(&line), "want {line}\n{text}");
    }
    assert_eq!(
        metric(&text, "ingest_readings_rejected_total"),
        malformed_total as f64
    );

    // Every valid key's retained aggregate holds the exact sum and count.
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let all_exact = |c: &Collector| {
        expected.iter().all(|((machine, index), (sum, count))| {
            c.latest(&format!("aggregates/{machine}/{index}"))
                .and_then(|m| m.json().ok())
                .is_some_and(|a| {
                    a["count"] == *count && a["sumLast60s"].as_f64().is_some_and(|s| close(s, *sum))
                })
        })
    };
    wait_until(
        Duration::from_secs(30),
        "exact aggregates for every valid key",
        || async { all_exact(&collector) },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nexpected {expected:?}\ngot {:?}",
            collector
                .messages()
                .iter()
                .map(|m| (m.topic.clone(), m.text()))
                .collect::<Vec<_>>()
        )
    });

    // Logging is rate-limited per reason (default: one line per reason per 10 s).
    let log_lines = ingest
        .process
        .stderr()
        .lines()
        .filter(|l| l.contains("rejected a payload"))
        .count() as u64;
    let allowed = 8 * (elapsed.as_secs() / 10 + 2);
    eprintln!(
        "flood: {malformed_total} malformed + {valid} valid in {elapsed:?}; /health answered {} times, slowest {:?}; \
         RSS idle {idle_rss} KiB, peak {} KiB; {log_lines} rejection log lines",
        seen.answers, seen.slowest, seen.peak_rss_kib
    );
    assert!(seen.answers > 0, "no /health answer during the flood");
    assert!(
        log_lines <= allowed,
        "{log_lines} rejection log lines for {malformed_total} rejections (at most {allowed})"
    );
    assert!(
        seen.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB",
        seen.peak_rss_kib
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_machine_ids_is_capped_at_max_keys() {
    let distinct = env_count("FLOOD_DISTINCT_IDS", 1_000_000);
    const MAX_KEYS: u64 = 10_000;
    let broker = test_support::Broker::start().await;
    let ingest = TestIngest::start(
        &broker,
        &[
            "--window-max-keys",
            &MAX_KEYS.to_string(),
            "--window-seconds",
            "3600",
        ],
    )
    .await;
    let pid = ingest.process.pid().expect("ingest runs");
    let idle_rss = rss_kib(pid);
    let stop = CancellationToken::new();
    let watcher = watch(&ingest.base_url, pid, stop.clone());

    // QoS 0, the load generator's mode: the broker queues for ingest's session (the test
    // broker allows a million queued messages), and nothing waits for a round trip.
    let mut publisher = Publisher::connect(broker.port()).await;
    let started = Instant::now();
    for i in 0..distinct {
        publisher
            .publish(
                &format!("machines/K{i}/scrap"),
                QoS::AtMostOnce,
                false,
                br#"{"scrapIndex":1,"value":1}"#.to_vec(),
            )
            .await
            .unwrap();
    }
    publisher.flush(FLOOD_TIMEOUT).await.unwrap();
    wait_received(&ingest, distinct).await;
    let elapsed = started.elapsed();
    stop.cancel();
    let seen = watcher
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("ingest stopped answering: {e}\n{}", ingest.process.logs()));

    let text = ingest.metrics().await;
    assert_eq!(metric(&text, "ingest_keys"), MAX_KEYS as f64, "{text}");
    let too_many = Metrics::parse(&text)
        .get(
            "ingest_readings_rejected_total",
            &[("reason", "too_many_keys")],
        )
        .unwrap_or_else(|| panic!("no too_many_keys series\n{text}"));
    assert_eq!(too_many, (distinct - MAX_KEYS) as f64);
    assert_eq!(
        metric(&text, "ingest_readings_accepted_total"),
        MAX_KEYS as f64
    );
    eprintln!(
        "cardinality: {distinct} distinct ids in {elapsed:?}; keys {MAX_KEYS}; too_many_keys {too_many}; \
         RSS idle {idle_rss} KiB, peak {} KiB; /health answered {} times, slowest {:?}",
        seen.peak_rss_kib, seen.answers, seen.slowest
    );
    assert!(
        seen.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB",
        seen.peak_rss_kib
    );
}
