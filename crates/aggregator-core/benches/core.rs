//! Throughput of the core's hot paths: payload parsing (both field-name families), window
//! insert + expire (with and without reading ids), Sparkplug B payloads through decoding and an
//! edge node's session, alarm evaluation with 1 000 rules, and a realistic mix (parse, accept,
//! periodic expire, aggregate encoding).
//!
//! Run with `cargo bench -p aggregator-core`; figures go to the README's performance table.

use std::hint::black_box;
use std::time::Duration;

use aggregator_core::alarm::{AlarmRule, AlarmRules, KeyAlarm};
use aggregator_core::{
    ParseLimits, ReadingId, Timestamp, WindowConfig, WindowStore, WindowTotals, parse_reading,
};
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

/// One DDATA per reading, by alias, as an edge node with 10 devices of 5 scrap metrics sends
/// them: decoded and resolved through the node's session, beside `parse` of JSON readings.
fn bench_sparkplug(c: &mut Criterion) {
    use aggregator_core::sparkplug::{
        self, MessageType, Metric, NodeKey, Payload, SessionConfig, Sessions, Value,
    };
    use prost::Message;

    let metric = |name: Option<String>, alias: u64, value: f64| Metric {
        name,
        alias: Some(alias),
        timestamp: Some(1_767_268_800_000),
        datatype: Some(10),
        value: Some(Value::Double(value)),
        ..Metric::default()
    };
    let birth = |device: usize| Payload {
        timestamp: None,
        metrics: (0..5)
            .map(|i| metric(Some(format!("scrap/{i}")), (device * 5 + i) as u64, 0.0))
            .collect(),
        seq: Some(device as u64 + 1),
    };
    // 1 024 messages: a whole number of sequence cycles, so each iteration goes on from the last.
    let data: Vec<(String, Vec<u8>)> = (0..1024)
        .map(|i| {
            let (device, index) = (i % 10, i % 5);
            let payload = Payload {
                timestamp: Some(1_767_268_800_000),
                metrics: vec![metric(
                    None,
                    (device * 5 + index) as u64,
                    (i % 7) as f64 + 0.25,
                )],
                seq: Some(((11 + i) % 256) as u64),
            };
            (format!("D{device}"), payload.encode_to_vec())
        })
        .collect();
    let node = NodeKey {
        group: "Plant1".into(),
        node: "Line7".into(),
    };
    let config = SessionConfig {
        reorder_timeout: Duration::from_secs(2),
        rebirth_cooldown: Duration::from_secs(5),
        max_nodes: 10,
    };
    let mut sessions = Sessions::new(config);
    let nbirth = Payload {
        timestamp: None,
        metrics: Vec::new(),
        seq: Some(0),
    };
    sessions.apply(&node, MessageType::NodeBirth, None, nbirth, 0);
    for device in 0..10 {
        let name = format!("D{device}");
        sessions.apply(
            &node,
            MessageType::DeviceBirth,
            Some(&name),
            birth(device),
            0,
        );
    }
    let mut group = c.benchmark_group("sparkplug");
    group.throughput(Throughput::Elements(data.len() as u64));
    group.bench_function("decode_and_resolve_ddata", |b| {
        b.iter(|| {
            for (device, bytes) in &data {
                let payload = sparkplug::decode(bytes, 65_536).unwrap();
                let applied =
                    sessions.apply(&node, MessageType::DeviceData, Some(device), payload, 0);
                black_box(applied.metrics.len());
            }
        })
    });
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

/// The window bench again, every reading carrying an id: integer ids (stored inline) and
/// 36-byte UUID-shaped ids (stored on the heap). Prints the id state's bytes per buffered
/// reading once, for a full 60 s window of 600 000 readings.
fn bench_window_ids(c: &mut Criterion) {
    const N: i64 = 1_000_000;
    let machines: Vec<String> = (0..10).map(|m| format!("M{m}")).collect();
    let integer = |i: i64| ReadingId::from_i64(i);
    let uuid = |i: i64| {
        ReadingId::new(&format!("{:08x}-9d4a-4e57-b0c2-{:012x}", i as u32, i))
            .unwrap_or_else(|_| integer(i))
    };
    let run = |make_id: &dyn Fn(i64) -> ReadingId| {
        let mut store = WindowStore::new(WindowConfig::default());
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
            let id = make_id(i);
            let _ = black_box(store.accept_with_id(&reading, Some(&id), now));
            if i % 64 == 0 {
                store.expire(now, &mut changed);
                changed.clear();
            }
        }
        store
    };
    for (name, make_id) in [
        ("integer", &integer as &dyn Fn(i64) -> ReadingId),
        ("uuid", &uuid),
    ] {
        let store = run(make_id);
        eprintln!(
            "window/insert_with_ids/{name}: {} readings buffered, readings {:.1} B each, ids {:.1} B per id ({} ids)",
            store.buffered_readings(),
            store.buffer_bytes() as f64 / store.buffered_readings() as f64,
            store.id_bytes() as f64 / store.tracked_ids() as f64,
            store.tracked_ids(),
        );
    }
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    group.bench_function("insert_and_expire_with_integer_ids", |b| {
        b.iter(|| run(&integer))
    });
    group.bench_function("insert_and_expire_with_uuid_ids", |b| b.iter(|| run(&uuid)));
    group.finish();
}

/// Steady state, as a running ingest sees it: the store already holds a full window (and its
/// id table has grown), then 200 000 more readings arrive and as many expire.
fn bench_window_full(c: &mut Criterion) {
    const MORE: i64 = 200_000;
    let machines: Vec<String> = (0..10).map(|m| format!("M{m}")).collect();
    let full = |with_ids: bool| {
        let mut store = WindowStore::new(WindowConfig::default());
        let mut changed = Vec::new();
        for i in 0..600_000 {
            step(&mut store, &machines, i, with_ids, &mut changed);
        }
        store
    };
    let mut group = c.benchmark_group("window_full");
    group.throughput(Throughput::Elements(MORE as u64));
    group.sample_size(10);
    for (name, with_ids) in [
        ("insert_and_expire", false),
        ("insert_and_expire_with_integer_ids", true),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || full(with_ids),
                |mut store| {
                    let mut changed = Vec::new();
                    for i in 600_000..600_000 + MORE {
                        step(&mut store, &machines, i, with_ids, &mut changed);
                    }
                    store
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Reading number `i` of the window benches (10 000/s over 50 keys), with an integer id or
/// none, and an expiry pass every 64 readings.
fn step(
    store: &mut WindowStore,
    machines: &[String],
    i: i64,
    with_id: bool,
    changed: &mut Vec<aggregator_core::KeyId>,
) {
    let now = Timestamp::from_unix_nanos(BASE + i * 100_000);
    let reading = aggregator_core::Reading {
        machine: &machines[(i % 10) as usize],
        scrap_index: (i % 5) as u32,
        value: 1.25,
        event_time: now,
        time_from_payload: false,
    };
    let id = with_id.then(|| ReadingId::from_i64(i));
    let _ = black_box(store.accept_with_id(&reading, id.as_ref(), now));
    if i % 64 == 0 {
        store.expire(now, changed);
        changed.clear();
    }
}

/// 1 000 rules of every kind (machine+index, machine, `*`+index, `*`) over 1 000 keys.
/// `evaluate` is the per-reading cost once a key's thresholds are resolved (ingest keeps its
/// `KeyAlarm` beside the key); `resolve` is the once-per-key lookup.
fn bench_alarms(c: &mut Criterion) {
    let rule = |machine: String, index: Option<u32>, sum: f64| AlarmRule {
        machine,
        index,
        sum_above: Some(sum),
        avg_above: (sum > 50.0).then_some(sum / 10.0),
        clear_below: None,
    };
    let mut rules: Vec<AlarmRule> = Vec::new();
    for m in 0..180 {
        for i in 0..5 {
            rules.push(rule(format!("M{m}"), Some(i), 30.0 + f64::from(i)));
        }
    }
    for m in 180..270 {
        rules.push(rule(format!("M{m}"), None, 40.0));
    }
    for i in 0..9 {
        rules.push(rule("*".into(), Some(i), 60.0));
    }
    rules.push(rule("*".into(), None, 100.0));
    assert_eq!(rules.len(), 1000);
    let set = AlarmRules::new(&rules).expect("valid bench rules");
    let keys: Vec<(String, u32)> = (0..200)
        .flat_map(|m| (0..5).map(move |i| (format!("M{}", m * 2), i)))
        .collect();
    let mut alarms: Vec<KeyAlarm> = keys
        .iter()
        .map(|(m, i)| KeyAlarm::new(set.resolve(m, *i).expect("the * rule matches all")))
        .collect();

    const N: u64 = 100_000;
    let mut group = c.benchmark_group("alarm");
    group.throughput(Throughput::Elements(N));
    group.bench_function("evaluate_1000_rules", |b| {
        b.iter(|| {
            let mut changes = 0_u32;
            for n in 0..N {
                let k = (n % keys.len() as u64) as usize;
                // Sums sweep 0..70 so keys keep crossing their thresholds both ways.
                let totals = WindowTotals {
                    sum: ((n / 7) % 70) as f64,
                    count: 1 + n % 13,
                };
                let now = Timestamp::from_unix_nanos(BASE + n as i64 * 100_000);
                if alarms[k].evaluate(totals, now).is_some() {
                    changes += 1;
                }
            }
            black_box(changes)
        })
    });
    group.bench_function("resolve_1000_rules", |b| {
        b.iter(|| {
            for n in 0..N {
                let (m, i) = &keys[(n % keys.len() as u64) as usize];
                black_box(set.resolve(m, *i));
            }
        })
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

criterion_group!(
    benches,
    bench_parse,
    bench_sparkplug,
    bench_window,
    bench_window_ids,
    bench_window_full,
    bench_alarms,
    bench_mix
);
criterion_main!(benches);
