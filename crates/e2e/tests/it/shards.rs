//! Three ingest shards on one Mosquitto, all on the plain `machines/+/scrap` subscription
//! (client-side partitioning), fed by the real simulator with its reading ids: the gateway's
//! `/api/aggregates` equals the simulator's `--print-expected` sums exactly, and every machine
//! was counted by exactly one shard.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::Value;
use test_support::{Broker, ServiceProcess, http_get, scrape_metrics, service_binary, wait_until};

use crate::helpers::{TestService, WAIT, by_key, close};

const SHARDS: u32 = 3;
const MACHINES: u32 = 30;
const MESSAGES: u32 = 900;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_and_the_simulator_give_the_exact_sums_through_the_gateway() {
    let broker = Broker::start().await;
    let mut shards = Vec::new();
    for index in 0..SHARDS {
        let (index, count) = (index.to_string(), SHARDS.to_string());
        let args = [
            "--shard-count",
            &count,
            "--shard-index",
            &index,
            "--window-seconds",
            "600",
            "--publish-interval-ms",
            "0",
        ];
        shards.push(TestService::ingest(broker.port(), &args).await);
    }
    let gateway = TestService::gateway(broker.port(), &[]).await;

    let port = broker.port().to_string();
    let (machines, messages) = (MACHINES.to_string(), MESSAGES.to_string());
    let mut simulator = ServiceProcess::spawn(
        service_binary("simulator"),
        [
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            &port,
            "--machines",
            &machines,
            "--count",
            &messages,
            "--rate",
            "3000",
            "--qos",
            "1",
            "--seed",
            "12",
            "--print-expected",
        ],
        [("RUST_LOG", "warn")],
    );
    let status = simulator.wait_exit(WAIT).await.unwrap();
    assert!(status.success(), "{}", simulator.logs());
    let summary: Value = serde_json::from_str(
        simulator
            .stdout()
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no summary\n{}", simulator.logs())),
    )
    .unwrap();
    let expected = by_key(&summary["keys"], "sum");
    assert_eq!(
        expected.values().map(|(_, n)| n).sum::<u64>(),
        u64::from(MESSAGES)
    );

    let url = gateway.url("/api/aggregates");
    // What the gateway showed last, for the failure message.
    let last = RefCell::new(HashMap::new());
    let reached = wait_until(WAIT, "the gateway shows the simulator's sums", || async {
        let (status, body) = http_get(&url).await;
        let Ok(list) = serde_json::from_str::<Value>(&body) else {
            return false;
        };
        let got = by_key(&list, "sumLast60s");
        let equal = status == 200
            && got.len() == expected.len()
            && expected.iter().all(|(key, (sum, count))| {
                got.get(key)
                    .is_some_and(|(s, n)| n == count && close(*s, *sum))
            });
        *last.borrow_mut() = got;
        equal
    })
    .await;
    if let Err(e) = reached {
        panic!("{e}\nexpected {expected:?}\ngot {:?}", last.borrow());
    }

    // Every reading was counted by exactly one shard, and no shard took another's machine.
    let (mut accepted, mut other, mut keys) = (0.0, 0.0, 0.0);
    for shard in &shards {
        let metrics = scrape_metrics(&shard.url("/metrics")).await.unwrap();
        let own = metrics.get("ingest_readings_accepted_total", &[]).unwrap();
        assert!(
            own > 0.0,
            "a shard counted nothing: the split proves nothing"
        );
        accepted += own;
        other += metrics
            .get("ingest_readings_other_shard_total", &[])
            .unwrap();
        keys += metrics.get("ingest_keys", &[]).unwrap();
        assert_eq!(
            metrics.get("ingest_readings_duplicate_total", &[]),
            Some(0.0)
        );
    }
    assert_eq!(accepted, f64::from(MESSAGES));
    assert_eq!(other, f64::from(MESSAGES * (SHARDS - 1)));
    assert_eq!(keys, expected.len() as f64);
}
