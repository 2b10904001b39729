//! What is stored: every bucket, the highest revision of each minute whatever the order and
//! copies, hourly rollups equal to their minutes, malformed messages skipped and counted.

use test_support::Broker;

use crate::helpers::{
    Backend, Minute, TestHistorian, hour_start, on_both_stores, publish, publish_buckets,
    stored_hours, stored_minutes, wait_stored,
};

on_both_stores!(
    published_buckets_are_stored,
    copies_older_revisions_and_reordering_change_nothing,
    hourly_rollups_are_the_sum_of_their_minutes,
    malformed_messages_are_counted_and_skipped_between_good_ones,
);

async fn published_buckets_are_stored(store: Backend) {
    let broker = Broker::start().await;
    let historian = TestHistorian::start(&broker, &store, &[]).await;
    let hour = hour_start(3);
    let mut buckets: Vec<Minute> = (0..30)
        .map(|i| Minute::new("A1", 1, hour + 60 * i, 1.5 * i as f64, 1))
        .collect();
    buckets.push(Minute::new("B 2", 7, hour, 42.0, 3));
    buckets[0].is_final = true;
    publish_buckets(&broker, &buckets).await;
    let reader = store.open();
    wait_stored(&reader, &buckets, &historian).await;
    historian
        .wait_metric("historian_messages_stored_total", 31.0)
        .await;
    assert_eq!(
        historian.metric("historian_minutes_written_total").await,
        31.0
    );
    let (status, body) = historian.health().await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""store":"available""#), "{body}");
}

async fn copies_older_revisions_and_reordering_change_nothing(store: Backend) {
    let broker = Broker::start().await;
    let historian = TestHistorian::start(&broker, &store, &[]).await;
    let minute = hour_start(2) + 120;
    let revisions: Vec<Minute> = (1..=5)
        .map(|r| Minute::new("M", 2, minute, 10.0 * r as f64, r))
        .collect();
    let newest = revisions[4].clone();
    // Newest first, then every older one, a copy of the newest, and a stale copy.
    let mut order = vec![newest.clone()];
    order.extend([0, 3, 1, 2].map(|i| revisions[i].clone()));
    order.push(newest.clone());
    order.push(revisions[0].clone());
    publish_buckets(&broker, &order).await;
    historian
        .wait_metric("historian_messages_stored_total", 7.0)
        .await;
    let reader = store.open();
    wait_stored(&reader, std::slice::from_ref(&newest), &historian).await;
    // Each in its own batch: the store, not the batch, keeps the highest revision.
    for stale in revisions.iter().take(4).chain([&newest]) {
        publish_buckets(&broker, std::slice::from_ref(stale)).await;
    }
    historian
        .wait_metric("historian_messages_stored_total", 12.0)
        .await;
    assert_eq!(stored_minutes(&reader).await, std::slice::from_ref(&newest));
    let hours = stored_hours(&reader).await;
    assert_eq!(hours.len(), 1, "{hours:?}");
    assert_eq!((hours[0].3, hours[0].4), (newest.sum, newest.count));
}

async fn hourly_rollups_are_the_sum_of_their_minutes(store: Backend) {
    let broker = Broker::start().await;
    let historian = TestHistorian::start(&broker, &store, &[]).await;
    let hour = hour_start(5);
    // Two hours of one key, one of another; the last minute of the first hour is revised.
    let mut buckets: Vec<Minute> = (0..90)
        .map(|i| Minute::new("H", 1, hour + 60 * i, 0.25 + i as f64, 1))
        .collect();
    buckets.push(Minute::new("H", 2, hour + 600, 9.0, 1));
    let mut revised = Minute::new("H", 1, hour + 60 * 59, 1_000.0, 2);
    revised.min = -3.0;
    publish_buckets(&broker, &buckets).await;
    publish_buckets(&broker, std::slice::from_ref(&revised)).await;
    buckets[59] = revised;
    let reader = store.open();
    wait_stored(&reader, &buckets, &historian).await;
    historian
        .wait_metric("historian_messages_stored_total", 92.0)
        .await;
    let minutes = stored_minutes(&reader).await;
    let hours = stored_hours(&reader).await;
    assert_eq!(hours.len(), 3, "{hours:?}");
    for (machine, index, start, sum, count, min, max, n) in &hours {
        let of_hour: Vec<&Minute> = minutes
            .iter()
            .filter(|m| &m.machine == machine && i64::from(m.index) == *index)
            .filter(|m| m.minute >= *start && m.minute < start + 3_600)
            .collect();
        let expected_sum: f64 = of_hour.iter().map(|m| m.sum).sum();
        assert!((sum - expected_sum).abs() <= 1e-9 * expected_sum.abs().max(1.0));
        assert_eq!(*count, of_hour.iter().map(|m| m.count).sum::<i64>());
        assert_eq!(
            *min,
            of_hour.iter().map(|m| m.min).fold(f64::INFINITY, f64::min)
        );
        assert_eq!(
            *max,
            of_hour
                .iter()
                .map(|m| m.max)
                .fold(f64::NEG_INFINITY, f64::max)
        );
        assert_eq!(*n, of_hour.len() as i64);
    }
    assert_eq!((hours[0].2, hours[0].7, hours[0].5), (hour, 60, -3.0));
    assert_eq!((hours[1].2, hours[1].7), (hour + 3_600, 30));
}

async fn malformed_messages_are_counted_and_skipped_between_good_ones(store: Backend) {
    let broker = Broker::start().await;
    let historian = TestHistorian::start(&broker, &store, &[]).await;
    let minute = hour_start(1);
    let good: Vec<Minute> = (0..4)
        .map(|i| Minute::new("G", i, minute, 1.0 + f64::from(i), 1))
        .collect();
    let other = Minute::new("X", 1, minute, 5.0, 1);
    let mut zero = other.clone();
    zero.count = 0;
    let mut unordered = other.clone();
    unordered.min = 9.0;
    let bad: Vec<(String, Vec<u8>)> = vec![
        ("history/X/1".into(), b"{not json".to_vec()),
        ("history/X/notanumber".into(), other.payload().into_bytes()),
        ("history/Y/1".into(), other.payload().into_bytes()),
        (other.topic(), zero.payload().into_bytes()),
        (other.topic(), unordered.payload().into_bytes()),
        (
            other.topic(),
            other.payload().replace("5.0", "1e999").into_bytes(),
        ),
        (other.topic(), vec![b' '; 64 * 1024 + 1]),
    ];
    let mut messages = Vec::new();
    for (good, bad) in good.iter().zip(bad.chunks(2)) {
        messages.push((good.topic(), good.payload().into_bytes()));
        messages.extend(bad.iter().cloned());
    }
    publish(&broker, messages).await;
    let reader = store.open();
    wait_stored(&reader, &good, &historian).await;
    historian
        .wait_metric("historian_messages_stored_total", 11.0)
        .await;
    assert_eq!(
        historian.metric("historian_messages_invalid_total").await,
        7.0
    );
    historian.wait_health(200).await;
    historian
        .process
        .wait_for_output("malformed history message skipped", crate::helpers::WAIT)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_commits_through_a_write_ahead_log() {
    let store = Backend::sqlite();
    let broker = Broker::start().await;
    let _historian = TestHistorian::start(&broker, &store, &[]).await;
    let row = sqlx::query("PRAGMA journal_mode")
        .fetch_one(store.open().pool())
        .await
        .unwrap();
    let mode: String = sqlx::Row::get(&row, 0);
    assert_eq!(mode, "wal");
}
