//! Two historians on one store: each writes every bucket it receives, at the same time as the
//! other. Every hourly rollup must still be the sum of its minutes, and two historians starting
//! together on an empty store must both come up.

use std::sync::Arc;

use historian::batch::Batch;
use historian::bucket::HOUR_SECS;
use historian::store::Store;
use test_support::Broker;
use tokio::sync::Barrier;

use crate::helpers::{
    Backend, TestHistorian, hour_start, on_both_stores, one_reading, stored_hours, stored_minutes,
};

on_both_stores!(
    rollups_stay_exact_while_two_writers_change_minutes_of_the_same_hours,
    two_historians_starting_together_on_an_empty_store_both_come_up,
);

/// Hours written; each gets one pair of transactions racing on it.
const HOURS: i64 = 40;

/// Writes one minute of each hour (at `offset` minutes into it), in step with the other
/// writer: both transactions of an hour start together.
async fn write_in_step(store: Store, barrier: Arc<Barrier>, first_hour: i64, offset: i64) {
    for h in 0..HOURS {
        let minute = first_hour + h * HOUR_SECS + offset * 60;
        let mut batch = Batch::default();
        batch.push(
            Some(one_reading("A1", minute, (offset + 1) as f64, true)),
            (),
        );
        barrier.wait().await;
        // SQLite lets one writer in at a time and may answer "busy"; a refused batch is
        // written again, as the writer does.
        while let Err(e) = store.write(&batch).await {
            eprintln!("batch refused, retrying: {e}");
        }
    }
}

async fn rollups_stay_exact_while_two_writers_change_minutes_of_the_same_hours(store: Backend) {
    let setup = store.open();
    setup.migrate().await.unwrap();
    let first_hour = hour_start(HOURS + 2);
    let barrier = Arc::new(Barrier::new(2));
    let a = tokio::spawn(write_in_step(store.open(), barrier.clone(), first_hour, 0));
    let b = tokio::spawn(write_in_step(store.open(), barrier, first_hour, 1));
    a.await.unwrap();
    b.await.unwrap();

    assert_eq!(stored_minutes(&setup).await.len(), 2 * HOURS as usize);
    let hours = stored_hours(&setup).await;
    assert_eq!(hours.len(), HOURS as usize);
    let wrong: Vec<_> = hours
        .iter()
        .filter(|(_, _, _, sum, count, _, _, minutes)| *sum != 3.0 || *count != 2 || *minutes != 2)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {HOURS} hourly rollups miss a minute the other writer committed: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
}

async fn two_historians_starting_together_on_an_empty_store_both_come_up(store: Backend) {
    let broker = Broker::start().await;
    let (first, second) = tokio::join!(
        TestHistorian::start(&broker, &store, &[]),
        TestHistorian::start(&broker, &store, &[]),
    );
    for historian in [&first, &second] {
        let (status, body) = historian.health().await;
        assert_eq!(status, 200, "{body}\n{}", historian.process.logs());
    }
}
