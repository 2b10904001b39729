//! A backlog queued at the broker while the historian was away, against a broker configured
//! like the shipped one (max_inflight_messages 100): drained in batches at thousands of
//! messages per second. The acknowledgements of a committed batch never wait for the link,
//! which may itself be waiting for room in the writer's channel: were they to wait, both would
//! wait for good once the client's request queue filled.

use std::time::Instant;

use test_support::{Broker, BrokerOptions};

use crate::helpers::{
    Backend, Minute, TestHistorian, WAIT, hour_start, on_both_stores, publish_buckets,
};

on_both_stores!(a_backlog_drains_in_batches_without_the_acks_waiting_for_the_link);

/// Buckets in the backlog: 100 machines x 100 minutes.
const BUCKETS: i64 = 10_000;

async fn a_backlog_drains_in_batches_without_the_acks_waiting_for_the_link(store: Backend) {
    let broker = Broker::start_with(BrokerOptions {
        extra_config: "max_inflight_messages 100\n".into(),
        ..BrokerOptions::default()
    })
    .await;
    let client_id = test_support::unique_client_id("historian");
    let mut first = TestHistorian::spawn(&broker, &store, &client_id, &[]).await;
    first.wait_health(200).await;
    first.process.terminate().await;
    let start = hour_start(48);
    let buckets: Vec<Minute> = (0..BUCKETS)
        .map(|i| Minute::new(&format!("M{}", i / 100), 1, start + 60 * (i % 100), 1.0, 1))
        .collect();
    publish_buckets(&broker, &buckets).await;

    let started = Instant::now();
    let second = TestHistorian::spawn(&broker, &store, &client_id, &[]).await;
    second
        .wait_metric("historian_messages_stored_total", BUCKETS as f64)
        .await;
    let elapsed = started.elapsed();
    let rate = BUCKETS as f64 / elapsed.as_secs_f64();
    let batches = second.metric("historian_batches_committed_total").await;
    println!("{BUCKETS} buckets in {elapsed:?}: {rate:.0}/s in {batches} batches");
    assert!(elapsed < WAIT / 3, "{elapsed:?}\n{}", second.process.logs());
}
