//! The shift totals the store keeps beside the buckets, on both stores: each shift's row is
//! the total of the minutes in it, also in a half-hour zone and while two writers change
//! minutes of the same shifts at once; a writer with other rules or synthetic rows stop them
//! being read, and a start with other rules rebuilds them.

use std::sync::Arc;

use aggregator_core::plant_time::{PlantClock, ShiftCalendar, ShiftRule};
use historian::batch::Batch;
use historian::bucket::{Bucket, HOUR_SECS};
use historian::store::{ShiftRules, Store};
use sqlx::Row;
use tokio::sync::Barrier;

use crate::helpers::{Backend, hour_start, on_both_stores, one_reading};

on_both_stores!(
    each_shift_row_is_the_total_of_its_minutes,
    in_a_half_hour_zone_shift_rows_come_from_minutes,
    two_writers_changing_minutes_of_the_same_shifts_keep_them_exact,
    other_rules_stop_the_rows_being_read_and_a_start_rebuilds_them,
    synthetic_rows_stop_the_rows_being_read_until_a_start_rebuilds_them,
);

/// Early 06-14, Late 14-22, Night 22-06 in `zone`.
fn three_shifts(zone: &str) -> ShiftRules {
    rules(
        zone,
        &[
            ("Early", "06:00", "14:00"),
            ("Late", "14:00", "22:00"),
            ("Night", "22:00", "06:00"),
        ],
    )
}

/// Day 08-20 only.
fn day_shift(zone: &str) -> ShiftRules {
    rules(zone, &[("Day", "08:00", "20:00")])
}

fn rules(zone: &str, shifts: &[(&str, &str, &str)]) -> ShiftRules {
    let rules: Vec<ShiftRule> = shifts
        .iter()
        .map(|&(name, start, end)| ShiftRule {
            name: name.into(),
            start: start.into(),
            end: end.into(),
            ..ShiftRule::default()
        })
        .collect();
    let clock = PlantClock::new(zone, "00:00").unwrap();
    let calendar = ShiftCalendar::new(clock, &rules).unwrap();
    ShiftRules::new(Arc::new(calendar), format!("{zone} {shifts:?}"))
}

/// Minutes of A1 and B2 every 13 minutes over `hours` hours from `first`, values in quarter
/// steps (exact sums); every tenth still open.
fn minutes(first: i64, hours: i64) -> Vec<Bucket> {
    (0..hours * 60 / 13)
        .flat_map(|n| {
            let minute = first + n * 13 * 60;
            let sum = 0.25 * (1 + n % 11) as f64;
            [
                one_reading("A1", minute, sum, n % 10 != 0),
                one_reading("B2", minute, 2.0 * sum, true),
            ]
        })
        .collect()
}

/// Writes `buckets` in batches of 25, as the writer would.
async fn write(store: &Store, buckets: &[Bucket]) {
    for chunk in buckets.chunks(25) {
        let mut batch = Batch::default();
        for b in chunk {
            batch.push(Some(b.clone()), ());
        }
        store.write(&batch).await.unwrap();
    }
}

/// A shift row: machine, shift start, sum, count, final.
type ShiftRow = (String, i64, f64, i64, bool);

async fn shift_rows(store: &Store) -> Vec<ShiftRow> {
    let rows = sqlx::query(
        "SELECT machine, shift_start, sum, count, is_final FROM shift_buckets \
         ORDER BY machine, scrap_index, shift_start",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    rows.iter()
        .map(|r| {
            let is_final: i64 = r.get(4);
            (r.get(0), r.get(1), r.get(2), r.get(3), is_final != 0)
        })
        .collect()
}

/// The rows each shift of `shifts` (local start and end hours, as UTC offsets from midnight
/// of the first day) should have: the plain sum of the minutes in it, computed here.
fn expected(buckets: &[Bucket], spans: &[(i64, i64)]) -> Vec<ShiftRow> {
    let mut rows = Vec::new();
    for machine in ["A1", "B2"] {
        for &(start, end) in spans {
            let mine: Vec<&Bucket> = buckets
                .iter()
                .filter(|b| b.machine == machine && (start..end).contains(&b.minute))
                .collect();
            if mine.is_empty() {
                continue;
            }
            rows.push((
                machine.to_owned(),
                start,
                mine.iter().map(|b| b.sum).sum(),
                mine.len() as i64,
                mine.iter().all(|b| b.is_final),
            ));
        }
    }
    rows
}

/// Midnight UTC a few days ago: the tests' shifts lie well in the past.
fn midnight() -> i64 {
    hour_start(96) / 86_400 * 86_400
}

/// The spans of `shift` rules at `(start, end)` hours after `day`, for `days` days; `offset`
/// seconds before them for a zone ahead of UTC.
fn spans(day: i64, days: i64, shifts: &[(i64, i64)], offset: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = (-1..days)
        .flat_map(|d| {
            shifts.iter().map(move |&(s, e)| {
                let base = day + d * 86_400 - offset;
                (base + s * HOUR_SECS, base + e * HOUR_SECS)
            })
        })
        .collect();
    out.sort_unstable();
    out
}

async fn each_shift_row_is_the_total_of_its_minutes(backend: Backend) {
    let store = backend.open().with_shifts(three_shifts("UTC"));
    store.migrate().await.unwrap();
    let day = midnight();
    let buckets = minutes(day + 5 * HOUR_SECS, 30);
    write(&store, &buckets).await;
    let spans = spans(day, 3, &[(6, 14), (14, 22), (22, 30)], 0);
    assert_eq!(shift_rows(&store).await, expected(&buckets, &spans));
    assert!(store.shift_totals_kept().await.unwrap());
    // A later revision of a minute changes its shift's row.
    let mut changed = buckets[2].clone();
    changed.sum += 10.0;
    changed.revision = 2;
    write(&store, std::slice::from_ref(&changed)).await;
    let mut now = buckets.clone();
    now[2] = changed;
    let rows = expected(&now, &spans);
    assert_eq!(shift_rows(&store).await, rows);
    // Retention deletes shift rows as it deletes hours, by their start.
    let cut = rows[2].1;
    let pruned = store.prune(day, cut).await.unwrap();
    let kept: Vec<ShiftRow> = rows.iter().filter(|r| r.1 >= cut).cloned().collect();
    assert_eq!(pruned.shifts, (rows.len() - kept.len()) as u64);
    assert_eq!(shift_rows(&store).await, kept);
}

async fn in_a_half_hour_zone_shift_rows_come_from_minutes(backend: Backend) {
    // Kolkata is UTC+05:30 all year: its 06:00 is 00:30 UTC, inside an hour's bucket.
    let store = backend.open().with_shifts(three_shifts("Asia/Kolkata"));
    store.migrate().await.unwrap();
    let day = midnight();
    let buckets = minutes(day, 30);
    write(&store, &buckets).await;
    let spans = spans(
        day,
        3,
        &[(6, 14), (14, 22), (22, 30)],
        5 * HOUR_SECS + 1_800,
    );
    assert_eq!(shift_rows(&store).await, expected(&buckets, &spans));
}

async fn two_writers_changing_minutes_of_the_same_shifts_keep_them_exact(backend: Backend) {
    backend
        .open()
        .with_shifts(day_shift("UTC"))
        .migrate()
        .await
        .unwrap();
    let day = midnight();
    let barrier = Arc::new(Barrier::new(2));
    // Each writer writes minutes of different hours of the same day shifts, in step: the one
    // from 08:00 on, the other from 14:00 on, one minute per transaction.
    let writer = |first_hour: i64| {
        let store = backend.open().with_shifts(day_shift("UTC"));
        let barrier = Arc::clone(&barrier);
        async move {
            for d in 0..3 {
                for m in 0..20 {
                    let minute = day + d * 86_400 + first_hour * HOUR_SECS + m * 60;
                    let mut batch = Batch::default();
                    batch.push(Some(one_reading("A1", minute, 1.0, true)), ());
                    barrier.wait().await;
                    // SQLite answers "busy" to one of two writers at once: written again, as
                    // the writer does.
                    while let Err(e) = store.write(&batch).await {
                        eprintln!("batch refused, retrying: {e}");
                    }
                }
            }
        }
    };
    tokio::join!(writer(8), writer(14));
    let rows = shift_rows(&backend.open()).await;
    let want: Vec<ShiftRow> = (0..3)
        .map(|d| {
            (
                "A1".to_owned(),
                day + d * 86_400 + 8 * HOUR_SECS,
                40.0,
                40,
                true,
            )
        })
        .collect();
    assert_eq!(
        rows, want,
        "a shift row misses a minute the other writer committed"
    );
}

async fn other_rules_stop_the_rows_being_read_and_a_start_rebuilds_them(backend: Backend) {
    let three = backend.open().with_shifts(three_shifts("UTC"));
    three.migrate().await.unwrap();
    let day = midnight();
    let buckets = minutes(day, 30);
    write(&three, &buckets[..100]).await;
    // A historian with other rules writes: nobody may read the rows any more.
    let other = backend.open().with_shifts(day_shift("UTC"));
    write(&other, &buckets[100..]).await;
    assert!(!three.shift_totals_kept().await.unwrap());
    assert!(!other.shift_totals_kept().await.unwrap());
    // Its next start rebuilds them by its rules, from every bucket.
    other.migrate().await.unwrap();
    assert!(other.shift_totals_kept().await.unwrap());
    assert!(!three.shift_totals_kept().await.unwrap());
    let day_spans = spans(day, 3, &[(8, 20)], 0);
    assert_eq!(shift_rows(&other).await, expected(&buckets, &day_spans));
    // And the first one's start takes them back to its own.
    three.migrate().await.unwrap();
    let spans = spans(day, 3, &[(6, 14), (14, 22), (22, 30)], 0);
    assert_eq!(shift_rows(&three).await, expected(&buckets, &spans));
    assert!(!other.shift_totals_kept().await.unwrap());
}

async fn synthetic_rows_stop_the_rows_being_read_until_a_start_rebuilds_them(backend: Backend) {
    let store = backend.open().with_shifts(day_shift("UTC"));
    store.migrate().await.unwrap();
    let day = midnight();
    let buckets = minutes(day, 30);
    write(&store, &buckets[..50]).await;
    assert!(store.shift_totals_kept().await.unwrap());
    let mut rest = buckets[50..].to_vec();
    rest.sort_by(|a, b| (&a.machine, a.minute).cmp(&(&b.machine, b.minute)));
    let hours: Vec<_> = rest
        .chunk_by(|a, b| (&a.machine, a.hour()) == (&b.machine, b.hour()))
        .filter_map(historian::store::HourRow::of)
        .collect();
    store.insert_new(&rest, &hours).await.unwrap();
    assert!(!store.shift_totals_kept().await.unwrap());
    store.migrate().await.unwrap();
    assert!(store.shift_totals_kept().await.unwrap());
    assert_eq!(
        shift_rows(&store).await,
        expected(&buckets, &spans(day, 3, &[(8, 20)], 0))
    );
}
