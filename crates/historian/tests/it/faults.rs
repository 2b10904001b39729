//! Faults: a store that goes away and comes back, a historian killed and restarted, a stop.
//! Nothing acknowledged is lost and nothing unacknowledged is dropped: the broker keeps what
//! the historian has not acknowledged in its persistent session.

use test_support::Broker;

use crate::helpers::{
    Backend, Minute, TestHistorian, WAIT, hour_start, on_both_stores, publish_buckets,
    stored_minutes, wait_stored,
};

on_both_stores!(
    a_killed_historian_restarted_loses_nothing,
    sigterm_commits_the_batch_at_hand_and_exits_0,
);

/// `count` buckets of `machine`, one per minute from `start`.
fn buckets(machine: &str, start: i64, count: i64) -> Vec<Minute> {
    (0..count)
        .map(|i| Minute::new(machine, 1, start + 60 * i, i as f64, 1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_mid_run_means_503_then_every_bucket_is_stored() {
    let mut store = Backend::postgres().await;
    let broker = Broker::start().await;
    let historian = TestHistorian::start(&broker, &store, &[]).await;
    let before = buckets("P", hour_start(20), 50);
    publish_buckets(&broker, &before).await;
    historian
        .wait_metric("historian_messages_stored_total", 50.0)
        .await;

    let Backend::Postgres(server) = &mut store else {
        unreachable!()
    };
    server.kill().await;
    let during = buckets("Q", hour_start(20), 200);
    publish_buckets(&broker, &during).await;
    historian.wait_health(503).await;
    let (_, body) = historian.health().await;
    assert!(body.contains(r#""store":"unavailable""#), "{body}");
    assert!(historian.metric("historian_store_errors_total").await >= 1.0);

    let Backend::Postgres(server) = &mut store else {
        unreachable!()
    };
    server.restart().await;
    historian.wait_health(200).await;
    let reader = store.open();
    let all: Vec<Minute> = before.into_iter().chain(during).collect();
    wait_stored(&reader, &all, &historian).await;
}

/// Flags that keep every message in one batch that does not commit by itself for a minute.
const HOLD_THE_BATCH: [&str; 6] = [
    "--store-batch-size",
    "100000",
    "--store-batch-max-ms",
    "60000",
    "--store-batch-quiet-ms",
    "60000",
];

async fn a_killed_historian_restarted_loses_nothing(store: Backend) {
    let broker = Broker::start().await;
    let client_id = test_support::unique_client_id("historian");
    let mut first = TestHistorian::spawn(&broker, &store, &client_id, &HOLD_THE_BATCH).await;
    first.wait_health(200).await;
    let sent = buckets("K", hour_start(30), 600);
    let (early, late) = sent.split_at(400);
    publish_buckets(&broker, early).await;
    // Every one of them read into the batch at hand, none committed nor acknowledged.
    first
        .wait_metric("historian_messages_received_total", 400.0)
        .await;
    assert_eq!(first.metric("historian_messages_stored_total").await, 0.0);
    first.process.kill().await;
    // Published while no historian runs: kept in its session.
    publish_buckets(&broker, late).await;

    let second = TestHistorian::spawn(&broker, &store, &client_id, &[]).await;
    let reader = store.open();
    wait_stored(&reader, &sent, &second).await;
    second.wait_health(200).await;
}

async fn sigterm_commits_the_batch_at_hand_and_exits_0(store: Backend) {
    let broker = Broker::start().await;
    let client_id = test_support::unique_client_id("historian");
    let mut first = TestHistorian::spawn(&broker, &store, &client_id, &HOLD_THE_BATCH).await;
    first.wait_health(200).await;
    let sent = buckets("T", hour_start(40), 300);
    publish_buckets(&broker, &sent).await;
    first
        .wait_metric("historian_messages_received_total", 300.0)
        .await;
    let status = first.process.terminate().await;
    assert_eq!(status.code(), Some(0), "{}", first.process.logs());
    first
        .process
        .wait_for_output("stopped", WAIT)
        .await
        .unwrap();
    // Committed on the way out, before any other historian ran.
    let reader = store.open();
    assert_eq!(
        stored_minutes(&reader).await.len(),
        300,
        "{}",
        first.process.logs()
    );
    // And acknowledged: a second historian in the same session receives none of them again.
    let second = TestHistorian::spawn(&broker, &store, &client_id, &[]).await;
    second.wait_health(200).await;
    let marker = buckets("U", hour_start(40), 1);
    publish_buckets(&broker, &marker).await;
    let all: Vec<Minute> = sent.into_iter().chain(marker).collect();
    wait_stored(&reader, &all, &second).await;
    assert_eq!(
        second.metric("historian_messages_received_total").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_postgres_is_down_abandons_the_batch_and_exits_0() {
    let mut store = Backend::postgres().await;
    let broker = Broker::start().await;
    let client_id = test_support::unique_client_id("historian");
    let mut first = TestHistorian::spawn(&broker, &store, &client_id, &[]).await;
    first.wait_health(200).await;
    let Backend::Postgres(server) = &mut store else {
        unreachable!()
    };
    server.kill().await;
    let sent = buckets("D", hour_start(50), 100);
    publish_buckets(&broker, &sent).await;
    first.wait_health(503).await;
    let status = first.process.terminate().await;
    assert_eq!(status.code(), Some(0), "{}", first.process.logs());

    let Backend::Postgres(server) = &mut store else {
        unreachable!()
    };
    server.restart().await;
    // Nothing was acknowledged: the next historian in the session receives every bucket.
    let second = TestHistorian::spawn(&broker, &store, &client_id, &[]).await;
    let reader = store.open();
    wait_stored(&reader, &sent, &second).await;
}
