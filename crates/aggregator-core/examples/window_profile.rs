//! A fixed workload for instruction-count profiling (`valgrind --tool=callgrind`), which is
//! stable on a busy machine where wall-clock benchmarks are not: 1 000 000 in-order readings
//! over 50 keys at 10 000/s into a 60 s window, expiring every 64 readings.
//! Build it with `cargo build --profile profiling -p aggregator-core --example window_profile`
//! (release code with symbols) and run `target/profiling/examples/window_profile` under callgrind.

use std::hint::black_box;

use aggregator_core::{Reading, Timestamp, WindowConfig, WindowStore};

fn main() {
    let expire_every: i64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let machines: Vec<String> = (0..10).map(|m| format!("M{m}")).collect();
    let mut store = WindowStore::new(WindowConfig::default());
    let mut changed = Vec::new();
    let base = 1_767_268_800_000_000_000_i64;
    for i in 0..1_000_000_i64 {
        let now = Timestamp::from_unix_nanos(base + i * 100_000);
        let reading = Reading {
            machine: &machines[(i % 10) as usize],
            scrap_index: (i % 5) as u32,
            value: 1.25,
            event_time: now,
            time_from_payload: false,
        };
        let _ = black_box(store.accept(&reading, now));
        if i % expire_every == 0 {
            store.expire(now, &mut changed);
            changed.clear();
        }
    }
    println!("buffered {}", store.buffered_readings());
}
