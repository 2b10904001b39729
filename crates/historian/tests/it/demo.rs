//! Synthetic history: a fill stores exactly the generated buckets and rollups, a second fill
//! changes nothing, and a real bucket replaces a synthetic one while a fill never replaces a
//! real one.

use historian::demo::{self, Plan};
use test_support::Broker;

use crate::helpers::{
    Backend, Minute, TestHistorian, hour_start, on_both_stores, publish_buckets, stored_hours,
    stored_minutes, wait_stored,
};

on_both_stores!(a_fill_stores_its_buckets_once_and_never_replaces_real_ones);

async fn a_fill_stores_its_buckets_once_and_never_replaces_real_ones(store: Backend) {
    let writer = store.open();
    writer.migrate().await.unwrap();
    let plan = Plan {
        days: 2,
        machines: 2,
        indexes: 2,
        end: hour_start(0) + 1_800,
    };
    let filled = demo::fill(&writer, plan, |_| {}).await.unwrap();

    let mut expected = Vec::new();
    let mut expected_hours = 0;
    for day in [hour_start(48), hour_start(24)] {
        for (machine, index) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
            let (minutes, hours) = demo::key_day(machine, index, day);
            expected.extend(minutes.into_iter().map(|b| Minute {
                machine: b.machine,
                index: b.index,
                minute: b.minute,
                sum: b.sum,
                count: b.count,
                min: b.min,
                max: b.max,
                revision: b.revision,
                is_final: b.is_final,
            }));
            expected_hours += hours.len();
        }
    }
    expected.sort_by(|a, b| (&a.machine, a.index, a.minute).cmp(&(&b.machine, b.index, b.minute)));
    assert_eq!(filled.minutes as usize, expected.len());
    assert_eq!(stored_minutes(&writer).await, expected);
    let hours = stored_hours(&writer).await;
    assert_eq!(hours.len(), expected_hours);
    let minute_sum: f64 = expected.iter().map(|m| m.sum).sum();
    let hour_sum: f64 = hours.iter().map(|h| h.3).sum();
    assert_eq!(minute_sum, hour_sum);

    let again = demo::fill(&writer, plan, |_| {}).await.unwrap();
    assert_eq!(
        (again.minutes, again.hours),
        (0, 0),
        "a second fill adds nothing"
    );

    // A real bucket for a synthetic minute replaces it, and its hour is rolled up anew.
    let broker = Broker::start().await;
    let historian = TestHistorian::start(&broker, &store, &[]).await;
    let mut real = expected[0].clone();
    real.sum = 1_000.0;
    real.max = 1_000.0;
    real.revision = 1;
    real.is_final = false;
    publish_buckets(&broker, std::slice::from_ref(&real)).await;
    let mut now_stored = expected.clone();
    now_stored[0] = real.clone();
    wait_stored(&writer, &now_stored, &historian).await;
    demo::fill(&writer, plan, |_| {}).await.unwrap();
    assert_eq!(
        stored_minutes(&writer).await,
        now_stored,
        "a fill replaced a real bucket"
    );
    let hours = stored_hours(&writer).await;
    let hour_sum: f64 = hours.iter().map(|h| h.3).sum();
    assert_eq!(hour_sum, minute_sum - expected[0].sum + 1_000.0);
}
