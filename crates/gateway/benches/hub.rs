//! Cost of the gateway's hot paths: applying MQTT payloads to the hub, one batch flush
//! (apply + encode + broadcast) of 500 changed keys, snapshots of 10 000 keys, and the
//! per-client re-encoding for a `?machines=` filter.
//!
//! Run with `cargo bench -p gateway`.

use std::hint::black_box;
use std::sync::Arc;

use aggregator_core::Aggregate;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gateway::decode::apply_publish;
use gateway::hub::{Hub, MachineFilter};
use gateway::metrics::Metrics;

fn aggregate(machine: usize, index: u32, round: u64) -> Aggregate {
    Aggregate {
        machine_id: format!("M{machine}"),
        scrap_index: index,
        sum: round as f64 * 2.5,
        avg: Some(2.5),
        count: round,
        window_seconds: 60,
        timestamp: "2026-01-01T12:00:30.123Z".into(),
        offline: false,
    }
}

fn hub_with(keys: usize) -> Arc<Hub> {
    let hub = Arc::new(Hub::new(256, Arc::new(Metrics::new())));
    for k in 0..keys {
        hub.upsert(aggregate(k / 10, (k % 10) as u32, 1));
    }
    hub.flush();
    hub
}

fn bench_apply(c: &mut Criterion) {
    let payloads: Vec<(String, Vec<u8>)> = (0..1000)
        .map(|k| {
            let a = aggregate(k / 10, (k % 10) as u32, 7);
            (
                format!("aggregates/{}/{}", a.machine_id, a.scrap_index),
                serde_json::to_vec(&a).unwrap(),
            )
        })
        .collect();
    let hub = hub_with(0);
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(payloads.len() as u64));
    group.bench_function("1000 aggregate payloads", |b| {
        b.iter(|| {
            for (topic, payload) in &payloads {
                black_box(apply_publish(&hub, topic, payload)).unwrap();
            }
            hub.flush();
        });
    });
    group.finish();
}

fn bench_flush(c: &mut Criterion) {
    let hub = hub_with(10_000);
    let _keep_a_receiver = hub.subscribe();
    let mut round = 2;
    let mut group = c.benchmark_group("flush");
    group.throughput(Throughput::Elements(500));
    group.bench_function("500 changed keys of 10 000", |b| {
        b.iter_batched(
            || {
                round += 1;
                for k in 0..500 {
                    hub.upsert(aggregate(k / 10, (k % 10) as u32, round));
                }
            },
            |()| hub.flush(),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn bench_snapshot(c: &mut Criterion) {
    let hub = hub_with(10_000);
    let filter = MachineFilter::parse("M1,M2,M3").unwrap();
    let mut group = c.benchmark_group("snapshot");
    // Every part of a snapshot, as a client that keeps up takes them.
    let whole = |filter: Option<&MachineFilter>| {
        let mut sub = hub.subscribe();
        let mut bytes = 0;
        while let Some(part) = hub.snapshot_part(&mut sub, filter) {
            bytes += part.len();
        }
        bytes
    };
    group.bench_function("10 000 keys, every part", |b| {
        b.iter(|| black_box(whole(None)));
    });
    group.bench_function("10 000 keys, filtered to 3 machines", |b| {
        b.iter(|| black_box(whole(Some(&filter))));
    });
    group.finish();
}

fn bench_filter(c: &mut Criterion) {
    let hub = hub_with(0);
    let mut sub = hub.subscribe();
    for k in 0..500 {
        hub.upsert(aggregate(k / 10, (k % 10) as u32, 1));
    }
    hub.flush();
    let frame = sub.frames.try_recv().unwrap();
    let filter = MachineFilter::parse("M1,M2,M3").unwrap();
    let mut group = c.benchmark_group("filter");
    group.bench_function("re-encode 30 of 500 for one client", |b| {
        b.iter(|| black_box(frame.text_for(Some(&filter))));
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_apply,
    bench_flush,
    bench_snapshot,
    bench_filter
);
criterion_main!(benches);
