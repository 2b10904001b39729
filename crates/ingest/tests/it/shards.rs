//! Shards, reading ids and retained readings with real processes on a real Mosquitto: three
//! shards split the machines of one plain subscription (client-side partitioning) and still
//! sum exactly, each on its own status topic; a resent reading (same id) is dropped, also
//! after a restart on the same data directory; a retained reading is never counted.

use aggregator_core::shard_of;
use serde_json::json;
use tempfile::TempDir;
use test_support::{
    Broker, Collector, Metrics, Publisher, QoS, publish_retained, scrape_metrics, wait_until,
};

use crate::helpers::{TestIngest, WAIT, is_aggregate, latest, readings_topic, wait_metric};

const SHARDS: u32 = 3;
const MACHINES: u32 = 30;
/// Readings per machine: values 1, 2 and 3 on scrap index 0, so every sum is 6.
const PER_MACHINE: u32 = 3;

async fn metrics_of(ingest: &TestIngest) -> Metrics {
    scrape_metrics(&format!("{}/metrics", ingest.base_url))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()))
}

#[tokio::test]
async fn three_shards_on_one_plain_subscription_split_the_machines_and_sum_exactly() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["aggregates/#", "status/#"]).await;
    let mut shards = Vec::new();
    for index in 0..SHARDS {
        let index = index.to_string();
        let count = SHARDS.to_string();
        let args = ["--shard-count", &count, "--shard-index", &index];
        shards.push(TestIngest::start(&broker, &args).await);
    }

    let mut publisher = Publisher::connect(broker.port()).await;
    let mut messages = Vec::new();
    for m in 0..MACHINES {
        for v in 1..=PER_MACHINE {
            let payload = json!({"scrapIndex": 0, "value": v, "id": format!("M{m}-{v}")});
            messages.push((readings_topic(&format!("M{m}")), payload.to_string()));
        }
    }
    publisher
        .publish_all(QoS::AtLeastOnce, messages, WAIT)
        .await
        .unwrap();

    collector
        .wait_for(
            |all| {
                (0..MACHINES).all(|m| {
                    latest(all, &format!("aggregates/M{m}/0"))
                        .is_some_and(|a| is_aggregate(a, PER_MACHINE.into(), 6.0))
                })
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Each shard counted exactly its own machines and dropped the others' before parsing.
    for (index, shard) in shards.iter().enumerate() {
        let own = (0..MACHINES)
            .filter(|m| shard_of(&format!("M{m}"), SHARDS) == index as u32)
            .count() as u32;
        assert!(
            own > 0,
            "shard {index} owns no machine: the test proves nothing"
        );
        let expected_own = f64::from(own * PER_MACHINE);
        let expected_other = f64::from((MACHINES - own) * PER_MACHINE);
        wait_until(
            WAIT,
            &format!("shard {index} counted its readings"),
            || async {
                let metrics = metrics_of(shard).await;
                metrics.get("ingest_readings_other_shard_total", &[]) == Some(expected_other)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", shard.process.logs()));
        let metrics = metrics_of(shard).await;
        assert_eq!(
            metrics.get("ingest_readings_accepted_total", &[]),
            Some(expected_own),
            "shard {index}"
        );
        assert_eq!(metrics.get("ingest_keys", &[]), Some(f64::from(own)));
        assert_eq!(metrics.get("ingest_subscription_qos", &[]), Some(2.0));

        // Liveness on the shard's own topic, naming the shard; never the plain topic.
        let status = collector
            .latest(&format!("status/ingest/{index}"))
            .unwrap_or_else(|| panic!("no status of shard {index}"));
        let status = status.json().unwrap();
        assert_eq!(status["online"], true);
        assert_eq!(status["shard"], index);
        assert_eq!(status["shardCount"], SHARDS);
    }
    assert!(collector.latest("status/ingest").is_none());

    // A stopped shard leaves its own status offline (retained), the others stay online.
    let mut stopped = shards.pop().unwrap();
    stopped.process.terminate().await;
    collector
        .wait_for(
            |all| {
                latest(all, "status/ingest/2")
                    .and_then(|m| m.json().ok())
                    .is_some_and(|s| s["online"] == false && s["shard"] == 2)
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let shard0 = collector.latest("status/ingest/0").unwrap().json().unwrap();
    assert_eq!(shard0["online"], true);

    // A killed shard says goodbye through its last will, on its own topic too.
    let mut killed = shards.pop().unwrap();
    killed.process.kill().await;
    collector
        .wait_for(
            |all| {
                latest(all, "status/ingest/1")
                    .and_then(|m| m.json().ok())
                    .is_some_and(|s| s["online"] == false && s["shardCount"] == 3)
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let shard0 = collector.latest("status/ingest/0").unwrap().json().unwrap();
    assert_eq!(shard0["online"], true);
}

#[tokio::test]
async fn a_resent_reading_is_dropped_also_after_a_restart_on_the_same_data_dir() {
    let broker = Broker::start().await;
    let data = TempDir::new().unwrap();
    let dir = data.path().to_str().unwrap();
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let args = ["--data-dir", dir, "--window-seconds", "600"];
    let mut ingest = TestIngest::start(&broker, &args).await;

    let mut publisher = Publisher::connect(broker.port()).await;
    let topic = readings_topic("D1");
    let with_id = |id: serde_json::Value, value: f64| {
        (
            topic.clone(),
            json!({"scrapIndex": 1, "value": value, "id": id}).to_string(),
        )
    };
    let without_id = (
        topic.clone(),
        json!({"scrapIndex": 1, "value": 100}).to_string(),
    );
    // Ids 7 (integer) and "a"; the integer 7 and the string "7" name the same reading.
    let first = vec![
        with_id(json!(7), 1.0),
        with_id(json!("a"), 2.0),
        with_id(json!("7"), 50.0),
        without_id.clone(),
        without_id.clone(),
    ];
    publisher
        .publish_all(QoS::ExactlyOnce, first, WAIT)
        .await
        .unwrap();
    collector
        .wait_for(
            |all| latest(all, "aggregates/D1/1").is_some_and(|a| is_aggregate(a, 4, 203.0)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    wait_metric(&ingest, "ingest_readings_duplicate_total 1").await;
    let metrics = metrics_of(&ingest).await;
    // Not a rejection: nothing is counted as rejected.
    assert_eq!(metrics.sum("ingest_readings_rejected_total"), 0.0);

    ingest.process.terminate().await;
    let restarted = TestIngest::start_with_id(&broker, &ingest.client_id, &args).await;
    // The same ids again, plus a new one: only the new one counts.
    let second = vec![
        with_id(json!("a"), 20.0),
        with_id(json!(7), 10.0),
        with_id(json!("b"), 4.0),
    ];
    publisher
        .publish_all(QoS::ExactlyOnce, second, WAIT)
        .await
        .unwrap();
    wait_metric(&restarted, "ingest_readings_duplicate_total 2").await;
    collector
        .wait_for(
            |all| latest(all, "aggregates/D1/1").is_some_and(|a| is_aggregate(a, 5, 207.0)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", restarted.process.logs()));
    wait_metric(&restarted, "ingest_readings_accepted_total 1").await;
}

#[tokio::test]
async fn a_retained_reading_published_before_start_is_not_counted() {
    let broker = Broker::start().await;
    publish_retained(
        broker.port(),
        &readings_topic("R1"),
        json!({"scrapIndex": 1, "value": 7}).to_string(),
    )
    .await
    .unwrap();
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let ingest = TestIngest::start(&broker, &[]).await;
    wait_metric(&ingest, "ingest_readings_retained_ignored_total 1").await;

    let mut publisher = Publisher::connect(broker.port()).await;
    publisher
        .publish_all(
            QoS::AtLeastOnce,
            [(
                readings_topic("R1"),
                json!({"scrapIndex": 1, "value": 2}).to_string(),
            )],
            WAIT,
        )
        .await
        .unwrap();
    collector
        .wait_for(
            |all| latest(all, "aggregates/R1/1").is_some_and(|a| is_aggregate(a, 1, 2.0)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let metrics = metrics_of(&ingest).await;
    assert_eq!(
        metrics.get("ingest_readings_accepted_total", &[]),
        Some(1.0)
    );
    assert_eq!(metrics.get("ingest_subscription_qos", &[]), Some(2.0));
    // The granted QoS is logged.
    assert!(
        ingest.process.logs().contains("subscription acknowledged"),
        "{}",
        ingest.process.logs()
    );
}

#[tokio::test]
async fn a_prefixed_subscription_with_the_shard_placeholder_reads_prefixed_topics() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let args = [
        "--shard-count",
        "2",
        "--shard-index",
        "1",
        "--shard-subscribe-topic",
        "shard/{shard}/machines/+/scrap",
    ];
    let ingest = TestIngest::start(&broker, &args).await;
    // The broker partitions: whatever arrives on shard/1/... is this shard's, whatever
    // shard_of says (no client-side drop).
    let mut publisher = Publisher::connect(broker.port()).await;
    publisher
        .publish_all(
            QoS::AtLeastOnce,
            [
                (
                    "shard/1/machines/P1/scrap",
                    json!({"scrapIndex": 0, "value": 3}).to_string(),
                ),
                (
                    "shard/1/machines/P2/scrap",
                    json!({"scrapIndex": 0, "value": 4}).to_string(),
                ),
                (
                    "shard/0/machines/P1/scrap",
                    json!({"scrapIndex": 0, "value": 99}).to_string(),
                ),
            ],
            WAIT,
        )
        .await
        .unwrap();
    collector
        .wait_for(
            |all| {
                latest(all, "aggregates/P1/0").is_some_and(|a| is_aggregate(a, 1, 3.0))
                    && latest(all, "aggregates/P2/0").is_some_and(|a| is_aggregate(a, 1, 4.0))
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let metrics = metrics_of(&ingest).await;
    assert_eq!(
        metrics.get("ingest_readings_other_shard_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        metrics.get("ingest_readings_accepted_total", &[]),
        Some(2.0)
    );
}
