//! What the load consists of: keys, reading payloads with exactly representable values (JSON,
//! or Sparkplug B through the simulator's edge node), and the sums ingest must arrive at.

use std::collections::HashMap;
use std::time::SystemTime;

use aggregator_core::Timestamp;

/// How the readings are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Protocol {
    /// One JSON reading per message on `machines/{id}/scrap`.
    #[default]
    Json,
    /// Sparkplug B: one edge node per connection whose devices are its machines, one DDATA
    /// per reading (metric `scrap/{index}` by alias), ingest following [`SPARKPLUG_GROUP`].
    Sparkplug,
}

impl Protocol {
    /// As the report says it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Sparkplug => "Sparkplug B",
        }
    }
}

/// The Sparkplug group of the load's edge nodes (the simulator's default).
pub const SPARKPLUG_GROUP: &str = "scrap-pulse";

/// Every reading of the Sparkplug load as a host receives it.
pub const SPARKPLUG_DATA_FILTER: &str = "spBv1.0/scrap-pulse/DDATA/+/+";

/// A machine id for index `i`: `M000`, `M001`, ...
pub fn machine(i: usize) -> String {
    format!("M{i:03}")
}

/// The `n`-th reading's value: quarters from 0.25 to 5.0, exact in binary floating point,
/// so the expected sums are exact whatever the order of addition.
pub fn value(n: u64) -> f64 {
    ((n % 20) + 1) as f64 * 0.25
}

/// An RFC 3339 timestamp of the current millisecond, formatted at most once per millisecond.
#[derive(Debug, Default)]
pub struct ClockText {
    millis: i64,
    text: String,
}

impl ClockText {
    /// The current time as text.
    pub fn now(&mut self) -> &str {
        let now = Timestamp::from_system_time(SystemTime::now());
        if now.unix_millis() != self.millis || self.text.is_empty() {
            self.millis = now.unix_millis();
            self.text = now.to_rfc3339_millis();
        }
        &self.text
    }
}

/// Writes a reading payload as the machines send it (with an RFC 3339 timestamp when given).
pub fn payload(out: &mut Vec<u8>, machine: &str, index: u32, value: f64, timestamp: Option<&str>) {
    payload_with_id(out, machine, index, value, timestamp, None);
}

/// As [`payload`], with the reading's `id` when given: ingest counts a (machine, id) once per
/// window, so a broker's redelivery cannot change the sums.
pub fn payload_with_id(
    out: &mut Vec<u8>,
    machine: &str,
    index: u32,
    value: f64,
    timestamp: Option<&str>,
    id: Option<u64>,
) {
    use std::io::Write as _;
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        r#"{{"machineId":"{machine}","scrapIndex":{index},"value":{value}"#
    );
    if let Some(ts) = timestamp {
        let _ = write!(out, r#","timestamp":"{ts}""#);
    }
    if let Some(id) = id {
        let _ = write!(out, r#","id":{id}"#);
    }
    out.push(b'}');
}

/// The topic of a reading.
pub fn topic(machine: &str) -> String {
    format!("machines/{machine}/scrap")
}

/// Expected (sum, count) per key.
#[derive(Debug, Default)]
pub struct Expected(pub HashMap<(String, u32), (f64, u64)>);

impl Expected {
    /// Adds the readings recorded in `other` (e.g. another connection's share).
    pub fn merge(&mut self, other: Expected) {
        for (key, (sum, count)) in other.0 {
            let e = self.0.entry(key).or_insert((0.0, 0));
            e.0 += sum;
            e.1 += count;
        }
    }

    /// Records one published reading.
    pub fn add(&mut self, machine: &str, index: u32, value: f64) {
        let e = self
            .0
            .entry((machine.to_owned(), index))
            .or_insert((0.0, 0));
        e.0 += value;
        e.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_valid_json_with_the_fields() {
        let mut out = Vec::new();
        payload(
            &mut out,
            "M001",
            3,
            value(1),
            Some("2026-01-01T00:00:00.000Z"),
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["machineId"], "M001");
        assert_eq!(v["scrapIndex"], 3);
        assert_eq!(v["value"], 0.5);
        assert_eq!(v["timestamp"], "2026-01-01T00:00:00.000Z");
    }

    #[test]
    fn payload_carries_the_id_when_given() {
        let mut out = Vec::new();
        payload_with_id(&mut out, "M002", 0, value(0), None, Some(42));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], 42);
        assert_eq!(v["value"], 0.25);
        assert!(v.get("timestamp").is_none());
        payload(&mut out, "M002", 0, value(0), None);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("id").is_none(), "{v}");
    }

    #[test]
    fn merged_expectations_add_per_key() {
        let mut a = Expected::default();
        a.add("M000", 0, 1.0);
        let mut b = Expected::default();
        b.add("M000", 0, 0.5);
        b.add("M001", 1, 2.0);
        a.merge(b);
        assert_eq!(a.0[&("M000".to_owned(), 0)], (1.5, 2));
        assert_eq!(a.0[&("M001".to_owned(), 1)], (2.0, 1));
    }

    #[test]
    fn clock_text_is_rfc3339() {
        let mut c = ClockText::default();
        assert!(Timestamp::parse_rfc3339(c.now()).is_ok());
    }
}
