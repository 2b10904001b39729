//! Values the unit tests of the hub, the batcher and the frames share.

use std::sync::Arc;

use aggregator_core::Aggregate;
use bytestring::ByteString;

use crate::hub::Hub;
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
    }
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
