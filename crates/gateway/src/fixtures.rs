//! Values the unit tests of the hub, the batcher and the frames share.

use std::sync::Arc;

use aggregator_core::Aggregate;
use aggregator_core::alarm::{AlarmMessage, AlarmState};
use aggregator_core::trend::TrendMessage;
use bytestring::ByteString;

use crate::hub::{Hub, MachineFilter, Subscription};
use crate::metrics::Metrics;

/// One reading's aggregate of `sum` for (`machine`, `index`).
pub fn agg(machine: &str, index: u32, sum: f64) -> Aggregate {
    Aggregate {
        machine_id: machine.into(),
        scrap_index: index,
        sum,
        avg: Some(sum),
        count: 1,
        window_seconds: 60,
        timestamp: "2026-01-01T00:00:00.000Z".into(),
        offline: false,
    }
}

/// An alarm message of (`machine`, `index`) in `state`.
pub fn alarm(machine: &str, index: u32, state: AlarmState) -> AlarmMessage {
    let state = match state {
        AlarmState::Raised => "raised",
        AlarmState::Cleared => "cleared",
    };
    let json = format!(
        r#"{{"maschinenId":"{machine}","scrapIndex":{index},"state":"{state}","metric":"sum","value":31.0,"threshold":30.0,"since":"2026-01-01T12:00:00.000Z","timestamp":"2026-01-01T12:00:00.000Z"}}"#
    );
    // unwrap: the text above is a valid alarm message.
    AlarmMessage::parse(json.as_bytes()).unwrap()
}

/// A one-point trend of (`machine`, `index`) with the sum 1.5.
pub fn trend(machine: &str, index: u32) -> TrendMessage {
    let json = format!(
        r#"{{"maschinenId":"{machine}","scrapIndex":{index},"intervalSeconds":10,"points":[{{"t":"2026-01-01T12:00:00.000Z","sum":1.5}}]}}"#
    );
    // unwrap: the text above is a valid trend message.
    TrendMessage::parse(json.as_bytes()).unwrap()
}

/// A hub with room for 16 frames per client.
pub fn hub() -> Arc<Hub> {
    Arc::new(Hub::new(16, Arc::new(Metrics::new())))
}

/// A frame's text as JSON.
pub fn json(text: &ByteString) -> serde_json::Value {
    // unwrap: every frame the gateway makes is JSON; a test should fail loudly if not.
    serde_json::from_str(text).unwrap()
}

/// The whole snapshot of `sub` for `filter`, its parts joined: every list concatenated, the
/// status of the last part. Panics unless the parts are numbered from 0 and only the last says
/// so.
pub fn snapshot(
    hub: &Hub,
    sub: &mut Subscription,
    filter: Option<&MachineFilter>,
) -> serde_json::Value {
    let mut whole = serde_json::Value::Null;
    let mut parts = 0;
    while let Some(text) = hub.snapshot_part(sub, filter) {
        let part = json(&text);
        assert_eq!(part["type"], "snapshot");
        assert_eq!(part["part"], parts, "parts in order");
        assert!(
            whole.get("last") != Some(&serde_json::Value::Bool(true)),
            "nothing after the last part"
        );
        parts += 1;
        if whole.is_null() {
            whole = part;
            continue;
        }
        for list in ["aggregates", "alarms", "trends"] {
            let items = part[list].as_array().unwrap().clone();
            whole[list].as_array_mut().unwrap().extend(items);
        }
        for field in ["mqtt", "ingest", "last"] {
            whole[field] = part[field].clone();
        }
    }
    assert_eq!(whole["last"], true, "the last part says so");
    whole
}
