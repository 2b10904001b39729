//! The Sparkplug decoder and sessions against payloads made by an implementation they share no
//! code with: Eclipse Tahu's JavaScript payload library (`interop/sparkplug-tahu`, from npm),
//! run under Node. Births, deaths and data as an edge node sends them give exact sums; every
//! numeric datatype reads as the number Tahu was given.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use aggregator_core::sparkplug::{
    self, DataType, MessageType, MetricPattern, NodeKey, Payload, Presence, SessionConfig, Sessions,
};
use serde_json::{Value as Json, json};

const T0: u64 = 1_796_601_600_000;
const MAX_BYTES: usize = 65_536;

/// The payloads Tahu encodes for `specs` (its own JSON form), decoded by ours.
fn tahu(specs: &Json) -> Vec<Payload> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/sparkplug-tahu");
    assert!(
        dir.join("node_modules/sparkplug-payload").is_dir(),
        "Tahu's payload library is not installed: run `npm ci --prefix interop/sparkplug-tahu` \
         (scripts/test.sh does)"
    );
    let mut child = Command::new("node")
        .arg(dir.join("encode.js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node not found: install Node.js 20+ (https://nodejs.org)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(specs.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "encode.js failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|hex| {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            sparkplug::decode(&bytes, MAX_BYTES).unwrap()
        })
        .collect()
}

fn number(metric: &sparkplug::ResolvedMetric) -> Option<f64> {
    DataType::numeric(metric.datatype)?.number(metric.value.as_ref()?)
}

#[test]
fn every_numeric_datatype_reads_as_the_number_tahu_was_given() {
    let cases = [
        ("Int8", json!(-128), -128.0),
        ("Int8", json!(127), 127.0),
        ("Int16", json!(-32768), -32768.0),
        ("Int32", json!(-2_147_483_648_i64), -2_147_483_648.0),
        (
            "Int64",
            json!("-9007199254740993"),
            -9_007_199_254_740_993.0,
        ),
        ("UInt8", json!(255), 255.0),
        ("UInt16", json!(65535), 65535.0),
        ("UInt32", json!(4_294_967_295_u64), 4_294_967_295.0),
        (
            "UInt64",
            json!("18446744073709551615"),
            18_446_744_073_709_551_615.0,
        ),
        ("Float", json!(2.5), 2.5),
        ("Double", json!(0.1), 0.1),
    ];
    let metrics: Vec<Json> = cases
        .iter()
        .enumerate()
        .map(|(i, (kind, value, _))| json!({"name": format!("scrap/{i}"), "type": kind, "value": value}))
        .collect();
    let decoded = tahu(&json!([{"timestamp": T0.to_string(), "seq": "1", "metrics": metrics}]));
    let mut sessions = Sessions::new(config());
    let applied = sessions.apply(&node(), MessageType::NodeData, None, decoded[0].clone(), T0);
    assert_eq!(applied.metrics.len(), cases.len());
    for (metric, (kind, _, expected)) in applied.metrics.iter().zip(&cases) {
        assert_eq!(number(metric), Some(*expected), "{kind}");
        assert_eq!(metric.timestamp, Some(T0), "the payload's time");
    }
}

#[test]
fn births_aliases_and_data_from_tahu_give_exact_sums_and_a_death_goes_offline() {
    let pattern = MetricPattern::default();
    let specs = json!([
        // NBIRTH: bdSeq 5, seq 0, a Boolean that is no reading.
        {"timestamp": T0.to_string(), "seq": "0", "metrics": [
            {"name": "bdSeq", "type": "UInt64", "value": "5"},
            {"name": "Node Control/Rebirth", "type": "Boolean", "value": false}]},
        // DBIRTH of A1: scrap/1 as alias 11 (Double), scrap/2 as alias 12 (Int32).
        {"timestamp": T0.to_string(), "seq": "1", "metrics": [
            {"name": "scrap/1", "alias": "11", "type": "Double", "value": 0.0},
            {"name": "scrap/2", "alias": "12", "type": "Int32", "value": 0},
            {"name": "temperature", "alias": "13", "type": "Float", "value": 21.5}]},
        // DDATA by alias only, with their own times and one historical value.
        {"timestamp": T0.to_string(), "seq": "2", "metrics": [
            {"alias": "11", "timestamp": (T0 + 10).to_string(), "type": "Double", "value": 0.1},
            {"alias": "12", "type": "Int32", "value": -3},
            {"alias": "13", "type": "Float", "value": 22.0}]},
        {"timestamp": T0.to_string(), "seq": "3", "metrics": [
            {"alias": "11", "type": "Double", "value": 0.2},
            {"alias": "11", "type": "Double", "value": 0.3, "isHistorical": true},
            {"alias": "12", "type": "Int32", "value": 7}]},
        // NDEATH with the birth's bdSeq.
        {"timestamp": T0.to_string(), "metrics": [
            {"name": "bdSeq", "type": "UInt64", "value": "5"}]},
    ]);
    let mut payloads = tahu(&specs).into_iter();
    let mut sessions = Sessions::new(config());
    let mut next =
        |kind, device| sessions.apply(&node(), kind, device, payloads.next().unwrap(), T0 + 100);
    assert_eq!(
        next(MessageType::NodeBirth, None).presence,
        Some(Presence::Online { device: None })
    );
    assert!(
        next(MessageType::DeviceBirth, Some("A1"))
            .metrics
            .is_empty()
    );
    let mut live = [0.0_f64; 3];
    let mut historical = 0.0;
    for _ in 0..2 {
        let applied = next(MessageType::DeviceData, Some("A1"));
        assert!(!applied.rebirth && applied.unresolved == 0 && applied.skipped.is_none());
        for metric in &applied.metrics {
            assert_eq!(metric.device.as_deref(), Some("A1"));
            let Some(index) = pattern.index(&metric.name) else {
                assert_eq!(&*metric.name, "temperature");
                continue;
            };
            let value = number(metric).unwrap();
            if metric.is_historical {
                historical += value;
            } else {
                live[index as usize] += value;
            }
        }
    }
    assert_eq!(live, [0.0, 0.1 + 0.2, 4.0]);
    assert_eq!(historical, 0.3);
    assert_eq!(
        next(MessageType::NodeDeath, None).presence,
        Some(Presence::Offline { device: None })
    );
}

fn config() -> SessionConfig {
    SessionConfig {
        reorder_timeout: Duration::from_secs(2),
        rebirth_cooldown: Duration::from_secs(10),
        max_nodes: 16,
    }
}

fn node() -> NodeKey {
    NodeKey {
        group: "Plant1".into(),
        node: "Line-1".into(),
    }
}
