//! One test per subcommand.

use std::path::PathBuf;

use loadtest::cap::{self, CapArgs};
use loadtest::cluster::{self, ClusterArgs};
use loadtest::fanout::{self, FanoutArgs};
use loadtest::latency::{self, CompareArgs, LatencyArgs};
use loadtest::memory::{self, MemoryArgs, Scenario};
use loadtest::report::Verdict;
use loadtest::stack::{AnyBroker, AnyBrokerArgs, BrokerArgs, BrokerConfig};
use loadtest::throughput::{self, ThroughputArgs};
use loadtest::workload::Protocol;

/// `target/debug` (or whichever profile built this test), where the service binaries are.
fn bin_dir() -> Option<PathBuf> {
    test_support::service_binary("gateway");
    test_support::service_binary("ingest")
        .parent()
        .map(PathBuf::from)
}

/// The broker of the runs that publish as fast as the broker acknowledges: the project's, with
/// raised queue limits. A stock Mosquitto drops QoS 1 messages for a subscriber more than
/// 1 020 behind, which these checks of the harness's counting could not tell from a counting
/// error. The paced runs use the default, stock.
fn flood_broker() -> BrokerArgs {
    BrokerArgs {
        config: BrokerConfig::Project,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_counts_both_subscribers_and_checks_exact_sums() {
    let row = throughput::run(&ThroughputArgs {
        messages: 2_000,
        machines: 3,
        indices: 2,
        timeout_secs: 60,
        protocol: Protocol::Json,
        ingest_config: None,
        broker: flood_broker(),
        bin_dir: bin_dir(),
    })
    .await
    .expect("a throughput run with exact sums");
    assert!(row.measured.contains("sums exact"), "{row}");
    assert!(row.measured.contains("2000 accepted"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparkplug_throughput_counts_ddata_and_checks_exact_sums() {
    let row = throughput::run(&ThroughputArgs {
        messages: 2_000,
        machines: 3,
        indices: 2,
        timeout_secs: 60,
        protocol: Protocol::Sparkplug,
        ingest_config: None,
        broker: flood_broker(),
        bin_dir: bin_dir(),
    })
    .await
    .expect("a Sparkplug throughput run with exact sums");
    assert!(row.figure.contains("Sparkplug B"), "{row}");
    assert!(row.measured.contains("sums exact"), "{row}");
    assert!(row.measured.contains("2000 accepted"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_row_counts_three_shards_and_one_mosquitto() {
    let row = cluster::run(&ClusterArgs {
        messages: 1_500,
        machines: 30,
        indices: 2,
        connections: 30,
        bare_qos: 0,
        publish_interval_ms: None,
        publish_burst: None,
        ingest_flag: Vec::new(),
        timeout_secs: 90,
        broker: flood_broker(),
        bin_dir: bin_dir(),
    })
    .await
    .expect("a cluster row (the single-Mosquitto run must succeed)");
    assert!(
        row.measured.contains("One ingest on one Mosquitto") && row.measured.contains("sums exact"),
        "{row}"
    );
    assert!(
        row.to_string().contains("(nats-server v"),
        "the row names the server: {row}"
    );
    // With the bare subscriber at QoS 0 every reading has one JetStream consumer, its shard's,
    // so even NATS 2.9.10 must deliver every one (docs/scale-out.md): a failed cluster run is
    // a failure here, and the three shards' counts add up to what was sent.
    assert!(
        row.measured.contains("bare mosquitto_sub (QoS 0)"),
        "the cluster run failed: {row}"
    );
    let accepted: u64 = row
        .measured
        .split("accepted ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .map(|sum| sum.split(" + ").filter_map(|n| n.parse::<u64>().ok()).sum())
        .unwrap_or_else(|| panic!("no shard counts in {row}"));
    assert_eq!(accepted, 1_500, "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_sees_every_reading_in_a_frame() {
    let args = LatencyArgs {
        rate: 200,
        duration_secs: 1,
        publish_interval_ms: Some(0),
        publish_burst: None,
        gateway_flag: Vec::new(),
        ingest_config: None,
        machines: 2,
        indices: 2,
        broker: AnyBrokerArgs::default(),
        bin_dir: bin_dir(),
    };
    let measured = latency::measure(&args).await.expect("a latency run");
    assert_eq!(measured.samples.len(), 200, "one delay per reading");
    assert!(measured.samples.windows(2).all(|w| w[0] <= w[1]), "sorted");
    assert!(
        measured.exact,
        "every key's last frame shows its readings exactly"
    );
}

/// The cluster's mapping sends nothing to `machines/+/scrap`: a run that frames every reading
/// shows that ingest subscribed where the readings are, and that the gateway got every
/// aggregate through another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_on_the_nats_cluster_sees_every_reading_in_a_frame() {
    let args = LatencyArgs {
        rate: 100,
        duration_secs: 1,
        publish_interval_ms: Some(0),
        publish_burst: None,
        gateway_flag: Vec::new(),
        ingest_config: None,
        machines: 2,
        indices: 2,
        broker: AnyBrokerArgs {
            kind: AnyBroker::Nats,
        },
        bin_dir: bin_dir(),
    };
    let measured = latency::measure(&args)
        .await
        .expect("a latency run on the cluster");
    assert_eq!(measured.samples.len(), 100, "one delay per reading");
    assert!(
        measured.exact,
        "every key's last frame shows its readings exactly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_check_counts_one_keys_messages_and_sees_the_last_value() {
    let row = cap::run(&CapArgs {
        rate: 500,
        duration_secs: 2,
        publish_interval_ms: 100,
        publish_burst: Some(2),
        broker: BrokerArgs::default(),
        bin_dir: bin_dir(),
    })
    .await
    .expect("a cap run");
    assert!(row.measured.contains("arrived, exact"), "{row}");
    // 10/s plus the burst of 2; arrival times jitter on a busy machine, so a few more in one
    // second are tolerated here (the benchmark's verdict is strict). Uncapped would be ~500.
    let peak: u64 = row
        .measured
        .split("at most **")
        .nth(1)
        .and_then(|rest| rest.split("**").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peak in {row}"));
    assert!(peak <= 12 + 3, "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_runs_the_original_services_key_set() {
    let row = latency::compare(&CompareArgs {
        rate: 50,
        duration_secs: 1,
        broker: AnyBrokerArgs::default(),
        bin_dir: bin_dir(),
    })
    .await
    .expect("a compare run");
    assert!(row.measured.contains("(50 readings)"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_scenarios_hold_what_was_sent() {
    let base = MemoryArgs {
        scenario: Scenario::Readings,
        readings: 5_000,
        rate: 5_000,
        qos: 1,
        keys: 300,
        clients: 4,
        timeout_secs: 60,
        broker: flood_broker(),
        bin_dir: bin_dir(),
    };
    let row = memory::run(&base).await.expect("readings run");
    assert!(
        row.measured.contains("5000 readings in the window"),
        "{row}"
    );
    let row = memory::run(&MemoryArgs {
        scenario: Scenario::Keys,
        ..base.clone()
    })
    .await
    .expect("keys run");
    assert!(
        row.measured.contains("300 keys tracked, 300 readings"),
        "{row}"
    );
    let row = memory::run(&MemoryArgs {
        scenario: Scenario::Clients,
        ..base.clone()
    })
    .await
    .expect("clients run");
    assert!(
        row.measured
            .contains("each reading client got 300 aggregates"),
        "{row}"
    );
    let row = memory::run(&MemoryArgs {
        scenario: Scenario::Store,
        readings: 10_000,
        ..base
    })
    .await
    .expect("store run");
    assert!(row.measured.contains("10000 held"), "{row}");
    assert_eq!(row.verdict, Verdict::Info);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_clients_all_get_the_final_values() {
    let row = fanout::run(&FanoutArgs {
        clients: 20,
        keys: 5,
        updates_per_sec: 5,
        duration_secs: 1,
        connect_concurrency: 10,
        settle_secs: 20,
        broker: BrokerArgs::default(),
        bin_dir: bin_dir(),
    })
    .await
    .expect("a fan-out run");
    assert!(
        row.measured
            .starts_with("20/20 clients got every final value"),
        "{row}"
    );
    assert!(row.measured.contains(" 0 client errors"), "{row}");
}
