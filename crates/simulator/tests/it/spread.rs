//! Several brokers in `--mqtt-host`: machines spread over them (machine i -> broker i mod n),
//! a connection whose broker dies fails over to the next and re-sends what was not
//! acknowledged, also on a NATS cluster that loses a node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use test_support::{Broker, Collector, Message, NatsCluster, QoS, ServiceProcess};

use crate::helpers::{SIMULATOR, WAIT, expected_sums};

/// A run of several seconds plus a fail-over on a loaded machine.
const LONG_WAIT: Duration = Duration::from_secs(120);

/// Starts the simulator against the broker list `hosts`.
fn spawn_on(hosts: &str, args: &[&str]) -> ServiceProcess {
    let mut all = vec!["--mqtt-host", hosts];
    all.extend_from_slice(args);
    ServiceProcess::spawn(
        SIMULATOR,
        all,
        [("RUST_LOG", "info"), ("LOG_FORMAT", "text")],
    )
}

/// Waits for the exit and returns the `--print-expected` summary, failing with the logs.
async fn summary_of(process: &mut ServiceProcess, timeout: Duration) -> serde_json::Value {
    let status = match process.wait_exit(timeout).await {
        Ok(status) => status,
        Err(e) => {
            process.kill().await;
            panic!("{e}\n{}", process.logs());
        }
    };
    assert!(status.success(), "exit {status:?}\n{}", process.logs());
    serde_json::from_str(process.stdout().trim())
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}):\n{}", process.logs()))
}

/// The machine of a reading, whatever prefix the broker put in front of `machines/{id}/scrap`.
fn machine_of(message: &Message) -> String {
    let levels: Vec<&str> = message.topic.split('/').collect();
    assert!(
        levels.len() >= 3 && levels[levels.len() - 3] == "machines",
        "not a reading topic: {}",
        message.topic
    );
    levels[levels.len() - 2].to_owned()
}

/// Whether the broker on `port` holds a session for `client_id` (a probe connection with
/// `clean_session = false` reads `session_present` from its CONNACK).
async fn has_session(port: u16, client_id: &str) -> bool {
    let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_clean_session(false);
    let (_client, mut event_loop) = rumqttc::AsyncClient::new(options, 4);
    tokio::time::timeout(WAIT, async {
        loop {
            match event_loop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(ack))) => {
                    return ack.session_present;
                }
                Ok(_) => {}
                Err(e) => panic!("probe of port {port}: {e}"),
            }
        }
    })
    .await
    .expect("a CONNACK for the session probe")
}

/// Distinct reading ids received per `(machine, scrapIndex)`.
fn ids_per_key(messages: &[Message]) -> BTreeMap<(String, u32), BTreeSet<String>> {
    let mut ids: BTreeMap<(String, u32), BTreeSet<String>> = BTreeMap::new();
    for message in messages {
        let Ok(json) = message.json() else { continue };
        let (Some(id), Some(index)) = (json["id"].as_str(), index_of(&json)) else {
            continue;
        };
        ids.entry((machine_of(message), index))
            .or_default()
            .insert(id.to_owned());
    }
    ids
}

/// `scrapIndex` or `scrapeIndex`, a number or a string holding one.
fn index_of(json: &serde_json::Value) -> Option<u32> {
    let value = json.get("scrapIndex").or_else(|| json.get("scrapeIndex"))?;
    let n = value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))?;
    u32::try_from(n).ok()
}

/// Keys whose received distinct ids fall short of the expected count, as
/// `(key, received, expected)`.
fn missing(
    received: &BTreeMap<(String, u32), BTreeSet<String>>,
    summary: &serde_json::Value,
) -> Vec<((String, u32), usize, u64)> {
    expected_sums(summary)
        .into_iter()
        .filter_map(|(key, (_, count))| {
            let got = received.get(&key).map_or(0, BTreeSet::len);
            (u64::try_from(got).unwrap_or(u64::MAX) < count).then_some((key, got, count))
        })
        .collect()
}

#[tokio::test]
async fn machines_are_spread_over_two_brokers_by_position_at_qos_1() {
    machines_are_spread_over_two_brokers_by_position("1").await;
}

#[tokio::test]
async fn machines_are_spread_over_two_brokers_by_position_at_qos_0() {
    machines_are_spread_over_two_brokers_by_position("0").await;
}

#[tokio::test]
async fn machines_are_spread_over_two_brokers_by_position_at_qos_2() {
    machines_are_spread_over_two_brokers_by_position("2").await;
}

/// Two brokers, a collector of the readings on each, and the `--mqtt-host` list `a,b`. A broker
/// stops when dropped, so tests bind every field (`a: _a` where only the list uses it).
struct TwoBrokers {
    a: Broker,
    b: Broker,
    on_a: Collector,
    on_b: Collector,
    hosts: String,
}

impl TwoBrokers {
    async fn start() -> Self {
        let (a, b) = (Broker::start().await, Broker::start().await);
        let on_a = Collector::start(a.port(), &["machines/+/scrap"]).await;
        let on_b = Collector::start(b.port(), &["machines/+/scrap"]).await;
        let hosts = format!("127.0.0.1:{},127.0.0.1:{}", a.port(), b.port());
        Self {
            a,
            b,
            on_a,
            on_b,
            hosts,
        }
    }
}

async fn machines_are_spread_over_two_brokers_by_position(qos: &str) {
    let TwoBrokers {
        a,
        b,
        on_a,
        on_b,
        hosts,
    } = TwoBrokers::start().await;
    let mut process = spawn_on(
        &hosts,
        &[
            "--machines",
            "10",
            "--qos",
            qos,
            "--count",
            "2000",
            "--rate",
            "5000",
            "--seed",
            "5",
            "--mqtt-client-id",
            "sim-spread",
            "--print-expected",
        ],
    );
    let summary = summary_of(&mut process, WAIT).await;
    if qos != "0" {
        // Each connection had a persistent session under its own id; the end removed both.
        assert!(
            !has_session(a.port(), "sim-spread-0").await,
            "session left on a"
        );
        assert!(
            !has_session(b.port(), "sim-spread-1").await,
            "session left on b"
        );
    }
    assert_eq!(
        (&summary["sent"], &summary["acknowledged"], &summary["lost"]),
        (&2000.into(), &2000.into(), &0.into()),
        "{summary}"
    );
    let brokers = summary["brokers"].as_array().expect("per-broker counts");
    assert_eq!(brokers.len(), 2, "{summary}");
    for (leg, port) in brokers.iter().zip([a.port(), b.port()]) {
        assert_eq!(leg["broker"], format!("127.0.0.1:{port}"), "{summary}");
        assert_eq!(leg["machines"], 5, "{summary}");
        assert_eq!(leg["acknowledged"], leg["sent"], "{summary}");
        assert_eq!(leg["failovers"], 0, "{summary}");
    }
    let sent = |k: usize| usize::try_from(brokers[k]["sent"].as_u64().unwrap()).unwrap();
    assert_eq!(sent(0) + sent(1), 2000);
    let messages_a = on_a.wait_for(|m| m.len() >= sent(0), WAIT).await.unwrap();
    let messages_b = on_b.wait_for(|m| m.len() >= sent(1), WAIT).await.unwrap();
    assert_eq!((messages_a.len(), messages_b.len()), (sent(0), sent(1)));
    // Machine i of M1..M10 is at position i - 1: odd numbers on a, even ones on b.
    let machines =
        |messages: &[Message]| -> BTreeSet<String> { messages.iter().map(machine_of).collect() };
    let want = |first: u32| -> BTreeSet<String> {
        (first..=10).step_by(2).map(|i| format!("M{i}")).collect()
    };
    assert_eq!(machines(&messages_a), want(1));
    assert_eq!(machines(&messages_b), want(2));
    // The expected sums are those of everything sent, over both brokers.
    let mut all = messages_a;
    all.extend(messages_b);
    assert_eq!(crate::helpers::sums(&all), expected_sums(&summary));
    let stderr = process.stderr();
    for port in [a.port(), b.port()] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("connection for this broker's machines")
                    && l.contains(&format!("127.0.0.1:{port}"))
                    && l.contains("machines=5")),
            "the start-up log names each broker's machine count:\n{stderr}"
        );
    }
}

/// What a broker without persistence may lose when it dies: readings it had acknowledged in
/// the instant it stopped but not yet written to its subscriber. Mosquitto handles a batch of
/// publishes per loop and writes acknowledgements and deliveries afterwards, so a few; far
/// fewer than the readings the frozen broker never acknowledged, which must all arrive.
const LOST_BY_THE_DYING_BROKER: usize = 10;

#[tokio::test]
async fn a_killed_broker_fails_over_and_its_unacknowledged_readings_are_sent_again() {
    let TwoBrokers {
        a: _a,
        mut b,
        on_a,
        on_b,
        hosts,
    } = TwoBrokers::start().await;
    let mut process = spawn_on(
        &hosts,
        &[
            "--machines",
            "10",
            "--qos",
            "1",
            "--rate",
            "2000",
            "--duration",
            "6s",
            "--print-expected",
        ],
    );
    on_b.wait_for(|m| m.len() >= 2000, WAIT)
        .await
        .map_err(|e| format!("{e}\n{}", process.logs()))
        .unwrap();
    // Frozen, b acknowledges nothing more while the simulator goes on sending to it; what b
    // delivered before reaches its collector, which then falls quiet.
    b.freeze();
    let from_b = quiet(&on_b).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.kill().await;
    let summary = summary_of(&mut process, LONG_WAIT).await;
    assert_eq!(summary["acknowledged"], summary["sent"], "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    let brokers = summary["brokers"].as_array().expect("per-broker counts");
    assert!(
        brokers[1]["failovers"].as_u64().unwrap() >= 1,
        "b's connection moved to a: {summary}"
    );
    assert_eq!(brokers[0]["failovers"], 0, "{summary}");
    let resent = unacknowledged_at_failover(&process.stderr());
    assert!(
        resent > 10 * LOST_BY_THE_DYING_BROKER,
        "the frozen broker left many readings unacknowledged ({resent}):\n{}",
        process.logs()
    );
    let union = |from_a: &[Message]| {
        let mut all = from_a.to_vec();
        all.extend(from_b.iter().cloned());
        ids_per_key(&all)
    };
    let short = |received: &BTreeMap<(String, u32), BTreeSet<String>>| -> usize {
        missing(received, &summary)
            .iter()
            .map(|(_, got, want)| usize::try_from(*want).unwrap() - got)
            .sum()
    };
    // a's collector may still be receiving the readings sent again.
    let _ = on_a
        .wait_for(|m| short(&union(m)) <= LOST_BY_THE_DYING_BROKER, WAIT)
        .await;
    let received = union(&on_a.messages());
    assert!(
        short(&received) <= LOST_BY_THE_DYING_BROKER,
        "of {resent} readings sent again, some never arrived (key, distinct ids received, \
         expected): {:?}\n{}",
        missing(&received, &summary),
        process.logs()
    );
    let distinct: usize = received.values().map(BTreeSet::len).sum();
    let valid = usize::try_from(summary["valid"].as_u64().unwrap()).unwrap();
    assert!(distinct <= valid, "no id beyond those sent");
}

/// The collector's messages once none has arrived for half a second.
async fn quiet(collector: &Collector) -> Vec<Message> {
    let mut seen = collector.messages().len();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = collector.messages();
        if now.len() == seen {
            return now;
        }
        seen = now.len();
    }
}

/// The `unacknowledged` count of the simulator's first connection error.
fn unacknowledged_at_failover(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("MQTT connection error"))
        .find_map(|l| {
            l.split("unacknowledged=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no connection error with a count in:\n{stderr}"))
}

#[tokio::test]
async fn qos0_connection_of_a_killed_broker_carries_on_through_the_other() {
    let TwoBrokers {
        a: _a,
        mut b,
        on_a,
        on_b,
        hosts,
    } = TwoBrokers::start().await;
    let mut process = spawn_on(
        &hosts,
        &[
            "--machines",
            "2",
            "--qos",
            "0",
            "--rate",
            "500",
            "--print-expected",
        ],
    );
    on_b.wait_for(|m| m.len() >= 200, WAIT)
        .await
        .map_err(|e| format!("{e}\n{}", process.logs()))
        .unwrap();
    b.kill().await;
    // M2 (position 1) was b's; after the fail-over its readings arrive at a.
    on_a.wait_for(
        |m| m.iter().filter(|m| m.topic == "machines/M2/scrap").count() >= 200,
        WAIT,
    )
    .await
    .map_err(|e| format!("{e}\n{}", process.logs()))
    .unwrap();
    process.terminate().await;
    let summary: serde_json::Value = serde_json::from_str(process.stdout().trim())
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}):\n{}", process.logs()));
    let legs = summary["brokers"].as_array().expect("per-broker counts");
    assert!(legs[1]["failovers"].as_u64().unwrap() >= 1, "{summary}");
    assert!(legs[1]["errors"].as_u64().unwrap() >= 1, "{summary}");
    assert_eq!(legs[0]["errors"], 0, "{summary}");
}

#[tokio::test]
async fn a_nats_cluster_loses_a_node_and_every_reading_arrives() {
    let mut cluster = NatsCluster::start().await;
    for node in 0..3 {
        cluster
            .wait_mqtt(node, Duration::from_secs(90))
            .await
            .map_err(|e| format!("{e}\n{}", cluster.logs()))
            .unwrap();
    }
    let collector = Collector::start_with_qos(
        cluster.mqtt_port(0),
        &["shard/+/machines/+/scrap"],
        QoS::AtLeastOnce,
    )
    .await;
    let mut process = spawn_on(
        &cluster.mqtt_hosts_from(0),
        &[
            "--machines",
            "30",
            "--qos",
            "1",
            "--rate",
            "300",
            "--duration",
            "12s",
            "--print-expected",
        ],
    );
    collector
        .wait_for(|m| m.len() >= 900, Duration::from_secs(60))
        .await
        .map_err(|e| format!("{e}\n{}", process.logs()))
        .unwrap();
    cluster.kill(2).await;
    let summary = summary_of(&mut process, Duration::from_secs(180)).await;
    assert_eq!(summary["acknowledged"], summary["sent"], "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    let brokers = summary["brokers"].as_array().expect("per-broker counts");
    assert_eq!(brokers.len(), 3, "{summary}");
    assert!(
        brokers[2]["failovers"].as_u64().unwrap() >= 1,
        "node 3's connection moved on: {summary}"
    );
    let arrived = collector
        .wait_for(
            |m| missing(&ids_per_key(m), &summary).is_empty(),
            Duration::from_secs(90),
        )
        .await;
    let received = ids_per_key(&collector.messages());
    assert!(
        arrived.is_ok(),
        "readings missing (key, distinct ids received, expected): {:?}\n{}",
        missing(&received, &summary),
        process.logs()
    );
}
