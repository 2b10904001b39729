//! `--protocol sparkplug` against a real Mosquitto, what it publishes read by Eclipse Tahu's
//! own decoder (`interop/sparkplug-tahu`, under Node), which shares no code with ours: births
//! before data, one sequence from NBIRTH 0 on that wraps after 255, every alias declared,
//! the sums of the data those the simulator prints, NDEATH at the end; and an NCMD rebirth
//! request answered with the births again.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use aggregator_core::sparkplug::rebirth_request;
use serde_json::Value as Json;
use test_support::{Broker, Collector, Message, QoS};

use crate::helpers::{WAIT, expected_sums, run, spawn};

const GROUP: &str = "scrap-pulse";
const NODE: &str = "sim-node-0";

/// The payloads of `messages` as Tahu's decoder reads them, in its JSON form (64-bit numbers
/// as decimal strings).
fn tahu_decode(messages: &[Message]) -> Vec<Json> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/sparkplug-tahu");
    assert!(
        dir.join("node_modules/sparkplug-payload").is_dir(),
        "Tahu's payload library is not installed: run `npm ci --prefix interop/sparkplug-tahu` \
         (needs Node.js 20+ and npm; scripts/test.sh does it)"
    );
    let mut child = Command::new("node")
        .arg(dir.join("decode.js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect(
            "node not found: install Node.js 20+ (https://nodejs.org, or apt install nodejs npm)",
        );
    let hex: String = messages
        .iter()
        .map(|m| {
            let line: String = m.payload.iter().map(|b| format!("{b:02x}")).collect();
            line + "\n"
        })
        .collect();
    // unwrap: the pipe was just requested.
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(hex.as_bytes())
        .expect("writing to decode.js");
    drop(stdin);
    let out = child.wait_with_output().expect("running decode.js");
    assert!(out.status.success(), "decode.js failed");
    let decoded: Vec<Json> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("decode.js writes JSON"))
        .collect();
    assert_eq!(
        decoded.len(),
        messages.len(),
        "one decoded payload per message"
    );
    decoded
}

/// A Tahu number that may be a decimal string (Long) or a JSON number.
fn int(value: &Json) -> u64 {
    match value {
        Json::String(s) => s.parse().expect("a decimal Long"),
        other => other
            .as_u64()
            .unwrap_or_else(|| panic!("not an integer: {other}")),
    }
}

/// The message type of a Sparkplug topic (`spBv1.0/{group}/{type}/{node}[/{device}]`).
fn kind(topic: &str) -> &str {
    topic.split('/').nth(2).unwrap_or("")
}

fn device(topic: &str) -> &str {
    topic.split('/').nth(4).unwrap_or("")
}

/// The `bdSeq` metric of an NBIRTH or NDEATH.
fn bd_seq(payload: &Json) -> u64 {
    let metrics = payload["metrics"].as_array().expect("metrics");
    let metric = metrics
        .iter()
        .find(|m| m["name"] == "bdSeq")
        .expect("bdSeq");
    assert_eq!(metric["type"], "UInt64");
    int(&metric["value"])
}

/// Checks the stream of one edge node's connection (births, data, death) as a host reads it
/// and returns the sum and count per (device, index) of its data.
fn read_as_a_host(messages: &[Message], decoded: &[Json]) -> BTreeMap<(String, u32), (f64, u64)> {
    let mut aliases: HashMap<u64, (String, u32)> = HashMap::new();
    let mut sums = BTreeMap::new();
    let mut expected_seq = 0_u64;
    let mut data_seen = false;
    for (message, payload) in messages.iter().zip(decoded) {
        let kind = kind(&message.topic);
        if kind == "NDEATH" {
            assert!(payload.get("seq").is_none(), "NDEATH has no seq");
            continue;
        }
        assert_eq!(
            int(&payload["seq"]),
            expected_seq,
            "{} out of sequence",
            message.topic
        );
        expected_seq = (expected_seq + 1) % 256;
        let metrics = payload["metrics"].as_array().expect("metrics");
        match kind {
            "NBIRTH" => {
                assert!(!data_seen && aliases.is_empty(), "one NBIRTH, first");
                let rebirth = metrics.iter().find(|m| m["name"] == "Node Control/Rebirth");
                assert_eq!(rebirth.expect("rebirth metric")["value"], false);
            }
            "DBIRTH" => {
                assert!(!data_seen, "every DBIRTH before the data");
                for metric in metrics {
                    assert_eq!(metric["type"], "Double");
                    let name = metric["name"].as_str().expect("a birth names its metrics");
                    let index = name.strip_prefix("scrap/").expect("scrap/{index}");
                    let key = (device(&message.topic).to_owned(), index.parse().unwrap());
                    let earlier = aliases.insert(int(&metric["alias"]), key);
                    assert!(earlier.is_none(), "alias declared twice in the node");
                }
            }
            "DDATA" => {
                data_seen = true;
                assert_eq!(metrics.len(), 1, "one reading per DDATA");
                let metric = &metrics[0];
                assert!(metric.get("name").is_none(), "data by alias only");
                assert!(
                    int(&metric["timestamp"]) > 1_700_000_000_000,
                    "ms since the epoch"
                );
                let key = aliases[&int(&metric["alias"])].clone();
                assert_eq!(key.0, device(&message.topic), "alias of another device");
                let entry = sums.entry(key).or_insert((0.0, 0));
                entry.0 += metric["value"].as_f64().expect("a Double");
                entry.1 += 1;
            }
            other => panic!("unexpected {other} on {}", message.topic),
        }
    }
    sums
}

#[tokio::test]
async fn tahu_reads_births_before_data_a_wrapping_sequence_and_the_printed_sums() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["spBv1.0/#"]).await;
    let finished = run(
        broker.port(),
        &[
            "--protocol",
            "sparkplug",
            "--machines",
            "4",
            "--count",
            "600",
            "--rate",
            "5000",
            "--seed",
            "5",
            "--print-expected",
        ],
    )
    .await;
    assert!(finished.status.success(), "{}", finished.stderr);
    let summary = finished.summary();
    assert_eq!(
        (summary["sent"].as_u64(), summary["acknowledged"].as_u64()),
        (Some(600), Some(600))
    );
    let ndeath = |m: &[Message]| m.last().is_some_and(|m| kind(&m.topic) == "NDEATH");
    let messages = collector.wait_for(ndeath, WAIT).await.unwrap();
    let decoded = tahu_decode(&messages);

    let kinds: Vec<&str> = messages.iter().map(|m| kind(&m.topic)).collect();
    assert_eq!(
        &kinds[..5],
        ["NBIRTH", "DBIRTH", "DBIRTH", "DBIRTH", "DBIRTH"]
    );
    assert_eq!(kinds.iter().filter(|k| **k == "DDATA").count(), 600);
    assert_eq!(messages.len(), 1 + 4 + 600 + 1, "{kinds:?}");
    assert_eq!(messages[0].topic, format!("spBv1.0/{GROUP}/NBIRTH/{NODE}"));
    let last = messages.len() - 1;
    assert_eq!(bd_seq(&decoded[0]), 0, "the first connection's bdSeq");
    assert_eq!(bd_seq(&decoded[last]), 0, "NDEATH names the birth it ends");
    // 605 numbered messages: the sequence wrapped twice.
    assert_eq!(int(&decoded[last - 1]["seq"]), 604 % 256);

    let sums = read_as_a_host(&messages, &decoded);
    assert_eq!(sums, expected_sums(&summary));
}

#[tokio::test]
async fn an_ncmd_rebirth_request_gets_the_births_again_with_the_same_bd_seq() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["spBv1.0/#"]).await;
    let mut simulator = spawn(
        broker.port(),
        &[
            "--protocol",
            "sparkplug",
            "--machines",
            "2",
            "--rate",
            "40",
            "--duration",
            "60s",
        ],
    );
    let data = |m: &[Message]| m.iter().any(|m| kind(&m.topic) == "DDATA");
    if let Err(e) = collector.wait_for(data, WAIT).await {
        simulator.kill().await;
        panic!("{e}\n{}", simulator.logs());
    }
    // The node subscribed to its NCMD before its births: a reading means it listens.
    let ncmd = format!("spBv1.0/{GROUP}/NCMD/{NODE}");
    let request = rebirth_request(1_796_601_600_000);
    collector
        .client()
        .publish(ncmd, QoS::AtLeastOnce, false, request)
        .await
        .unwrap();
    let reborn = |m: &[Message]| {
        let kinds: Vec<&str> = m.iter().map(|m| kind(&m.topic)).collect();
        let second = kinds
            .iter()
            .rposition(|k| *k == "NBIRTH")
            .filter(|at| *at > 0);
        second.is_some_and(|at| kinds[at..].contains(&"DDATA"))
    };
    let waited = collector.wait_for(reborn, WAIT).await;
    let status = simulator.terminate().await;
    let logs = simulator.logs();
    let messages = waited.unwrap_or_else(|e| panic!("{e}\n{logs}"));
    assert!(status.success(), "{logs}");
    assert_eq!(
        logs.matches("a host asked for a rebirth").count(),
        1,
        "{logs}"
    );

    let at = messages
        .iter()
        .rposition(|m| kind(&m.topic) == "NBIRTH")
        .unwrap();
    let decoded = tahu_decode(&messages);
    assert_eq!(
        bd_seq(&decoded[at]),
        bd_seq(&decoded[0]),
        "a rebirth keeps bdSeq"
    );
    // The births again, numbered from 0, then the data goes on from there.
    let kinds: Vec<&str> = messages[at..].iter().map(|m| kind(&m.topic)).collect();
    assert_eq!(
        &kinds[..4],
        ["NBIRTH", "DBIRTH", "DBIRTH", "DDATA"],
        "{kinds:?}"
    );
    let seqs: Vec<u64> = decoded[at..at + 4].iter().map(|p| int(&p["seq"])).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    read_as_a_host(&messages[at..], &decoded[at..]);
    // SIGTERM: NDEATH before the disconnect.
    let dead = |m: &[Message]| m.last().is_some_and(|m| kind(&m.topic) == "NDEATH");
    let all = collector.wait_for(dead, WAIT).await.unwrap();
    let decoded = tahu_decode(&all[all.len() - 1..]);
    assert_eq!(bd_seq(&decoded[0]), 0);
}
