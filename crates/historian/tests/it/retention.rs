//! The store itself, on both stores: a second start finds its own schema and keeps the rows;
//! pruning deletes minutes and hours older than retention and keeps the rest.

use historian::batch::Batch;
use historian::store::{Pruned, schema};

use crate::helpers::{
    Backend, hour_start, on_both_stores, one_reading, stored_hours, stored_minutes,
};

on_both_stores!(
    a_second_start_finds_its_schema_and_keeps_the_rows,
    pruning_deletes_only_what_retention_no_longer_keeps,
);

async fn a_second_start_finds_its_schema_and_keeps_the_rows(backend: Backend) {
    let store = backend.open();
    assert_eq!(store.migrate().await.unwrap(), 0);
    let mut batch = Batch::default();
    batch.push(Some(one_reading("S", hour_start(1), 2.0, true)), ());
    store.write(&batch).await.unwrap();
    store.close().await;
    let again = backend.open();
    assert_eq!(again.migrate().await.unwrap(), schema::VERSION);
    assert_eq!(stored_minutes(&again).await.len(), 1);
}

async fn pruning_deletes_only_what_retention_no_longer_keeps(backend: Backend) {
    let store = backend.open();
    store.migrate().await.unwrap();
    // One instant for the whole test: hour_start moves at the top of the hour.
    let now = hour_start(0);
    let hours_ago = |n: i64| now - n * 3_600;
    let mut batch = Batch::default();
    for n in [1, 10, 20, 30] {
        batch.push(Some(one_reading("R", hours_ago(n), 2.0, true)), ());
    }
    let written = store.write(&batch).await.unwrap();
    assert_eq!((written.minutes, written.hours), (4, 4));
    let pruned = store.prune(hours_ago(15), hours_ago(25)).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            minutes: 2,
            hours: 1,
            shifts: 0,
        }
    );
    let minutes: Vec<i64> = stored_minutes(&store)
        .await
        .iter()
        .map(|m| m.minute)
        .collect();
    assert_eq!(minutes, [hours_ago(10), hours_ago(1)]);
    let hours: Vec<i64> = stored_hours(&store).await.iter().map(|h| h.2).collect();
    assert_eq!(hours, [hours_ago(20), hours_ago(10), hours_ago(1)]);
}
