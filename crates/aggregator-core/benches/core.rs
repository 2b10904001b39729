//! Throughput of the core's hot paths: payload parsing (both field-name families), window
//! insert + expire, and a realistic mix (parse, accept, periodic expire, aggregate encoding).
//!
//! Run with `cargo bench -p aggregator-core`; figures go to the README's performance table.

use std::hint::black_box;
use std::time::Duration;

use aggregator_core::{ParseLimits, Timestamp, WindowConfig, WindowStore, parse_reading};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const BASE: i64 = 1_767_268_800_000_000_000; // 2026-01-01T12:00:00Z in ns

fn payloads() -> Vec<(String, Vec<u8>)> {
    (0..1000)
        .map(|i| {
            let machine = format!("M{}", i % 10);
            let body = if i % 2 == 0 {
                format!(
                    r#"{{"machineId":"{machine}","scrapIndex":{},"value":{}.25,"timestamp":"2026-01-01T12:00:{:02}.{:03}Z"}}"#,
                    i % 5,
                    i % 7,
                    i % 60,
                    i % 1000
                )
            } else {
                format!(
                    r#"{{"maschinenId":"{machine}","scrapeIndex":"{}","value":"{}","zeitstempel":"2026-01-01T13:00:{:02}.5+01:00"}}"#,
                    i % 5,
                    i % 7,
                    i % 60
                )
            };
            (format!("machines/{machine}/scrap"), body.into_bytes())
        })
        .collect()
}

fn bench_parse(c: &mut Criterion) {
    let inputs = payloads();
    let limits = ParseLimits::default();
    let now = Timestamp::from_unix_nanos(BASE);
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("mixed_field_names", |b| {
        b.iter(|| {
            for (topic, payload) in &inputs {
                let r = parse_reading(topic, payload, now, &limits);
                black_box(r.is_ok());
            }
        })
    });
    let english: Vec<_> = inputs.iter().step_by(2).cloned().collect();
    let german: Vec<_> = inputs.iter().skip(1).step_by(2).cloned().collect();
    for (name, set) in [("english_fields", &english), ("german_fields", &german)] {
        group.throughput(Throughput::Elements(set.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                for (topic, payload) in set {
                    black_box(parse_reading(topic, payload, now, &limits).is_ok());
                }
            })
        });
    }
    group.finish();
}

/// 50 keys, readings 100 µs apart (10 000/s), window 60 s: a full window is 600 000 readings
/// and every insert eventually expires one.
fn bench_window(c: &mut Criterion) {
    const N: i64 = 1_000_000;
    let machines: Vec<String> = (0..10).map(|m| format!("M{m}")).collect();
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    group.bench_function("insert_and_expire", |b| {
        b.iter_batched(
            || WindowStore::new(WindowConfig::default()),
            |mut store| {
                let mut changed = Vec::new();
                for i in 0..N {
                    let now = Timestamp::from_unix_nanos(BASE + i * 100_000);
                    let reading = aggregator_core::Reading {
                        machine: &machines[(i % 10) as usize],
                        scrap_index: (i % 5) as u32,
                        value: 1.25,
                        event_time: now,
                        time_from_payload: false,
                    };
                    let _ = black_box(store.accept(&reading, now));
                    if i % 64 == 0 {
                        store.expire(now, &mut changed);
                        changed.clear();
                    }
                }
                store
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// What ingest does per message: parse, accept, expire every millisecond of clock, and encode
/// the aggregate of the changed key about once per 100 readings (coalescing).
fn bench_mix(c: &mut Criterion) {
    let inputs = payloads();
    let limits = ParseLimits::default();
    let mut group = c.benchmark_group("mix");
    group.throughput(Throughput::Elements(100_000));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("parse_accept_expire_encode", |b| {
        b.iter_batched(
            || {
                WindowStore::new(WindowConfig {
                    window: Duration::from_secs(60),
                    ..WindowConfig::default()
                })
            },
            |mut store| {
                let mut changed = Vec::new();
                for i in 0..100_000_i64 {
                    let now = Timestamp::from_unix_nanos(BASE + 60_000_000_000 + i * 10_000);
                    let (topic, payload) = &inputs[(i % 1000) as usize];
                    let Ok(mut reading) = parse_reading(topic, payload, now, &limits) else {
                        continue;
                    };
                    reading.event_time = now;
                    if let Ok(id) = store.accept(&reading, now)
                        && i % 100 == 0
                    {
                        let agg = store.aggregate(id, now);
                        black_box(serde_json::to_vec(&agg).map(|v| v.len()).ok());
                    }
                    if i % 100 == 0 {
                        store.expire(now, &mut changed);
                        changed.clear();
                    }
                }
                store
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_parse, bench_window, bench_mix);
criterion_main!(benches);
