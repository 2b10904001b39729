//! Sparkplug B payloads on any bytes, through the decoder and an edge node's session: neither
//! may panic, and what the session resolves must be consistent.
//!
//! The first byte picks the message type (and whether a device is named); the rest is the
//! payload. Each input runs against a session that has seen a birth declaring aliases 0..8,
//! so that data, deaths, copies and gaps all reach their rules.
#![no_main]

use std::time::Duration;

use aggregator_core::sparkplug::{
    self, DataType, MessageType, Metric, NodeKey, Payload, SessionConfig, Sessions, Skipped, Value,
};
use libfuzzer_sys::fuzz_target;

const MAX_BYTES: usize = 65_536;
const T0: u64 = 1_796_601_600_000;
const KINDS: [MessageType; 8] = [
    MessageType::NodeBirth,
    MessageType::NodeDeath,
    MessageType::NodeData,
    MessageType::NodeCommand,
    MessageType::DeviceBirth,
    MessageType::DeviceDeath,
    MessageType::DeviceData,
    MessageType::DeviceCommand,
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(first % 8)];
    let device = kind.names_a_device().then_some("A1");
    let Ok(payload) = sparkplug::decode(bytes, MAX_BYTES) else {
        return;
    };
    let node = NodeKey {
        group: "G".into(),
        node: "N".into(),
    };
    let mut sessions = Sessions::new(SessionConfig {
        reorder_timeout: Duration::from_secs(2),
        rebirth_cooldown: Duration::from_secs(10),
        max_nodes: 16,
    });
    let birth = Payload {
        timestamp: Some(T0),
        seq: Some(0),
        metrics: (0..8)
            .map(|alias| Metric {
                name: Some(format!("scrap/{alias}")),
                alias: Some(alias),
                datatype: Some(u32::try_from(alias).unwrap_or(0) + 3),
                ..Metric::default()
            })
            .collect(),
    };
    sessions.apply(&node, MessageType::DeviceBirth, Some("A1"), birth, T0);
    let declared = payload.metrics.len();
    let seq = payload.seq;
    let applied = sessions.apply(&node, kind, device, payload.clone(), T0 + 1);
    assert!(applied.metrics.len() + applied.unresolved <= declared);
    for metric in &applied.metrics {
        if let (Some(datatype), Some(value)) = (DataType::numeric(metric.datatype), &metric.value) {
            if let Some(number) = datatype.number(value) {
                assert!(number.is_finite());
            }
        }
        assert!(!matches!(metric.value, Some(Value::Bytes(ref b)) if b.len() > MAX_BYTES));
    }
    // A message with a sequence number counts once: the same again is a copy.
    let sequenced = !matches!(
        kind,
        MessageType::NodeBirth
            | MessageType::NodeDeath
            | MessageType::NodeCommand
            | MessageType::DeviceCommand
    ) && seq.is_some();
    let again = sessions.apply(&node, kind, device, payload, T0 + 2);
    if sequenced && applied.skipped.is_none() {
        assert_eq!(again.skipped, Some(Skipped::Duplicate));
        assert!(again.metrics.is_empty());
    }
    sessions.lost(T0 + 60_000);
});
