//! Sparkplug B as an edge node speaks it, without I/O: what one node publishes and in which
//! order. The machines of a connection are the devices of one edge node; each scrap index of a
//! device is a Double metric `scrap/{index}` with an alias unique in the node.
//!
//! - Every MQTT connection has a `bdSeq` (0..=255, one more per connection); its will is an
//!   NDEATH carrying it, and so is the NDEATH sent before a clean disconnect.
//! - [`EdgeNode::births`]: NBIRTH (`bdSeq`, `Node Control/Rebirth`) with `seq` 0, then one
//!   DBIRTH per device with the next numbers. A rebirth asked for in an NCMD sends them again
//!   with the same `bdSeq`; a new connection sends them with its own.
//! - [`EdgeNode::data`]: one DDATA per reading, its metric by alias only, the next `seq`.
//!   Births and data share the sequence, which wraps after 255.
//! - [`BirthTracker`]: when births are due, from what the connection reports.

use aggregator_core::sparkplug::payload::{Metric, Payload, Value, names};
use aggregator_core::sparkplug::topic::{MessageType, edge_topic};
use prost::Message as _;

/// Sparkplug datatype codes of the metrics sent.
const UINT64: u32 = 8;
const DOUBLE: u32 = 10;
const BOOLEAN: u32 = 11;

/// The name of the metric of scrap index `index`, as ingest's default pattern reads it.
pub fn metric_name(index: u32) -> String {
    format!("scrap/{index}")
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Its topic.
    pub topic: String,
    /// The encoded Sparkplug payload.
    pub payload: Vec<u8>,
}

/// One edge node: its devices and scrap indices, the `bdSeq` of its connection and its next
/// message sequence number.
#[derive(Debug, Clone)]
pub struct EdgeNode {
    group: String,
    node: String,
    devices: Vec<String>,
    /// The DDATA topic of each device, made once.
    data_topics: Vec<String>,
    indices: Vec<u32>,
    bd_seq: u8,
    next_seq: u8,
}

impl EdgeNode {
    /// Node `node` of `group` with `devices`, each with a metric per scrap index of `indices`.
    pub fn new(group: &str, node: &str, devices: Vec<String>, indices: Vec<u32>) -> Self {
        let data_topics = devices
            .iter()
            .map(|d| edge_topic(group, MessageType::DeviceData, node, Some(d)))
            .collect();
        Self {
            group: group.to_owned(),
            node: node.to_owned(),
            devices,
            data_topics,
            indices,
            bd_seq: 0,
            next_seq: 0,
        }
    }

    /// The edge node id.
    pub fn id(&self) -> &str {
        &self.node
    }

    /// The devices, in the order [`EdgeNode::data`] numbers them.
    pub fn devices(&self) -> &[String] {
        &self.devices
    }

    /// The topic hosts send this node's commands on (NCMD).
    pub fn command_topic(&self) -> String {
        edge_topic(&self.group, MessageType::NodeCommand, &self.node, None)
    }

    /// The alias of the metric of `device`'s scrap index at `index_slot`: unique in the node,
    /// and from 1, so that no host mistakes it for an unset field.
    pub fn alias(&self, device: usize, index_slot: usize) -> u64 {
        (device * self.indices.len() + index_slot) as u64 + 1
    }

    /// The NDEATH of a connection with `bd_seq`: its will, and what a clean stop sends.
    pub fn death(&self, bd_seq: u8) -> Outgoing {
        let payload = Payload {
            timestamp: None,
            metrics: vec![bd_seq_metric(bd_seq)],
            seq: None,
        };
        Outgoing {
            topic: edge_topic(&self.group, MessageType::NodeDeath, &self.node, None),
            payload: payload.encode_to_vec(),
        }
    }

    /// The NBIRTH and every DBIRTH of the connection with `bd_seq`, the sequence starting
    /// again at 0.
    pub fn births(&mut self, bd_seq: u8, now_ms: u64) -> Vec<Outgoing> {
        self.bd_seq = bd_seq;
        self.next_seq = 0;
        let rebirth = Metric {
            name: Some(names::REBIRTH.into()),
            timestamp: Some(now_ms),
            datatype: Some(BOOLEAN),
            value: Some(Value::Boolean(false)),
            ..Metric::default()
        };
        let mut node_metrics = vec![bd_seq_metric(bd_seq), rebirth];
        node_metrics[0].timestamp = Some(now_ms);
        let mut births = Vec::with_capacity(1 + self.devices.len());
        births.push(Outgoing {
            topic: edge_topic(&self.group, MessageType::NodeBirth, &self.node, None),
            payload: self.payload(now_ms, node_metrics).encode_to_vec(),
        });
        for slot in 0..self.devices.len() {
            let metrics = self.device_metrics(slot, now_ms);
            let device = Some(self.devices[slot].as_str());
            let topic = edge_topic(&self.group, MessageType::DeviceBirth, &self.node, device);
            births.push(Outgoing {
                topic,
                payload: self.payload(now_ms, metrics).encode_to_vec(),
            });
        }
        births
    }

    /// The declarations of a DBIRTH: name, alias and datatype of each scrap metric, with no
    /// value yet (a birth's value would be no reading).
    fn device_metrics(&self, device: usize, now_ms: u64) -> Vec<Metric> {
        let declare = |(slot, index): (usize, &u32)| Metric {
            name: Some(metric_name(*index)),
            alias: Some(self.alias(device, slot)),
            timestamp: Some(now_ms),
            datatype: Some(DOUBLE),
            is_null: Some(true),
            ..Metric::default()
        };
        self.indices.iter().enumerate().map(declare).collect()
    }

    /// Writes the DDATA of one reading of `device` (position in [`EdgeNode::devices`]) at
    /// `index_slot` (position in the indices) into `payload` (cleared first) and returns its
    /// topic.
    pub fn data(
        &mut self,
        device: usize,
        index_slot: usize,
        value: f64,
        now_ms: u64,
        payload: &mut Vec<u8>,
    ) -> &str {
        let metric = Metric {
            alias: Some(self.alias(device, index_slot)),
            timestamp: Some(now_ms),
            datatype: Some(DOUBLE),
            value: Some(Value::Double(value)),
            ..Metric::default()
        };
        let message = self.payload(now_ms, vec![metric]);
        payload.clear();
        // expect: a Vec grows as needed, so encoding into it cannot run out of room.
        message.encode(payload).expect("encoding into a Vec");
        &self.data_topics[device]
    }

    /// A payload with the next sequence number.
    fn payload(&mut self, now_ms: u64, metrics: Vec<Metric>) -> Payload {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        Payload {
            timestamp: Some(now_ms),
            metrics,
            seq: Some(u64::from(seq)),
        }
    }
}

/// The `bdSeq` metric of NBIRTH and NDEATH.
fn bd_seq_metric(bd_seq: u8) -> Metric {
    Metric {
        name: Some(names::BD_SEQ.into()),
        datatype: Some(UINT64),
        value: Some(Value::Long(u64::from(bd_seq))),
        ..Metric::default()
    }
}

/// Whether an NCMD payload asks for a rebirth (`Node Control/Rebirth` true); what cannot be
/// decoded asks for nothing.
pub fn asks_for_rebirth(payload: &[u8]) -> bool {
    Payload::decode(payload).is_ok_and(|p| {
        p.metrics.iter().any(|m| {
            m.name.as_deref() == Some(names::REBIRTH) && m.value == Some(Value::Boolean(true))
        })
    })
}

/// Why births are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Births {
    /// A new connection (its own `bdSeq`).
    Connected,
    /// A host asked for them (the same `bdSeq`).
    Rebirth,
}

/// Decides when births are due from two counters the connection keeps: connections made and
/// rebirth requests received.
#[derive(Debug, Clone, Copy, Default)]
pub struct BirthTracker {
    connections: u64,
    rebirths: u64,
}

impl BirthTracker {
    /// What is due now that the connection reports `connections` and `rebirths`: a new
    /// connection's births include whatever rebirth was asked for before them.
    pub fn check(&mut self, connections: u64, rebirths: u64) -> Option<Births> {
        let seen = *self;
        *self = Self {
            connections,
            rebirths,
        };
        if connections != seen.connections {
            Some(Births::Connected)
        } else if rebirths != seen.rebirths {
            Some(Births::Rebirth)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use aggregator_core::sparkplug::{NodeKey, SessionConfig, Sessions, Topic, rebirth_request};

    use super::*;

    const T0: u64 = 1_796_601_600_000;

    fn node() -> EdgeNode {
        EdgeNode::new(
            "G",
            "sim-node-0",
            vec!["A1".into(), "B1".into()],
            vec![1, 2, 5],
        )
    }

    fn decode(message: &Outgoing) -> Payload {
        Payload::decode(message.payload.as_slice()).unwrap()
    }

    #[test]
    fn births_declare_every_metric_with_a_unique_alias_and_number_from_zero() {
        let mut node = node();
        let births = node.births(7, T0);
        let topics: Vec<&str> = births.iter().map(|b| b.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "spBv1.0/G/NBIRTH/sim-node-0",
                "spBv1.0/G/DBIRTH/sim-node-0/A1",
                "spBv1.0/G/DBIRTH/sim-node-0/B1"
            ]
        );
        let nbirth = decode(&births[0]);
        assert_eq!(nbirth.seq, Some(0));
        assert_eq!(nbirth.metrics[0].name.as_deref(), Some(names::BD_SEQ));
        assert_eq!(nbirth.metrics[0].value, Some(Value::Long(7)));
        assert_eq!(nbirth.metrics[0].datatype, Some(UINT64));
        assert_eq!(nbirth.metrics[1].name.as_deref(), Some(names::REBIRTH));
        assert_eq!(nbirth.metrics[1].value, Some(Value::Boolean(false)));
        let mut aliases = std::collections::HashSet::new();
        for (n, birth) in births[1..].iter().enumerate() {
            let dbirth = decode(birth);
            assert_eq!(dbirth.seq, Some(n as u64 + 1));
            let names: Vec<&str> = dbirth
                .metrics
                .iter()
                .flat_map(|m| m.name.as_deref())
                .collect();
            assert_eq!(names, ["scrap/1", "scrap/2", "scrap/5"]);
            for metric in &dbirth.metrics {
                assert_eq!(
                    (metric.datatype, metric.is_null),
                    (Some(DOUBLE), Some(true))
                );
                assert!(aliases.insert(metric.alias.unwrap()), "alias twice");
            }
        }
        assert!(!aliases.contains(&0));
    }

    #[test]
    fn data_carries_the_alias_only_and_the_sequence_wraps_after_255() {
        let mut node = node();
        node.births(0, T0);
        let mut payload = Vec::new();
        let mut seqs = Vec::new();
        for _ in 0..300 {
            let topic = node.data(1, 2, 2.5, T0 + 1, &mut payload).to_owned();
            assert_eq!(topic, "spBv1.0/G/DDATA/sim-node-0/B1");
            let data = Payload::decode(payload.as_slice()).unwrap();
            let metric = &data.metrics[0];
            assert_eq!(metric.name, None);
            assert_eq!(metric.alias, Some(node.alias(1, 2)));
            assert_eq!(metric.value, Some(Value::Double(2.5)));
            assert_eq!(metric.timestamp, Some(T0 + 1));
            seqs.push(data.seq.unwrap());
        }
        // NBIRTH 0, DBIRTHs 1 and 2, then the data.
        assert_eq!(&seqs[..3], [3, 4, 5]);
        assert_eq!(seqs[252], 255);
        assert_eq!(seqs[253], 0);
        assert!(seqs.iter().all(|s| *s <= 255));
    }

    #[test]
    fn a_rebirth_keeps_the_bd_seq_and_starts_the_sequence_again() {
        let mut node = node();
        node.births(3, T0);
        node.data(0, 0, 1.0, T0, &mut Vec::new());
        let again = node.births(3, T0 + 5);
        assert_eq!(decode(&again[0]).seq, Some(0));
        assert_eq!(decode(&again[0]).metrics[0].value, Some(Value::Long(3)));
        let death = decode(&node.death(3));
        assert_eq!(death.seq, None);
        assert_eq!(death.metrics[0].value, Some(Value::Long(3)));
        assert_eq!(node.death(3).topic, "spBv1.0/G/NDEATH/sim-node-0");
    }

    #[test]
    fn only_a_rebirth_metric_set_to_true_asks_for_a_rebirth() {
        assert!(asks_for_rebirth(&rebirth_request(T0)));
        let mut no = Payload::decode(rebirth_request(T0).as_slice()).unwrap();
        no.metrics[0].value = Some(Value::Boolean(false));
        assert!(!asks_for_rebirth(&no.encode_to_vec()));
        assert!(!asks_for_rebirth(b"\x12\x05\x01"));
    }

    #[test]
    fn births_are_due_on_each_connection_and_each_rebirth_request() {
        let mut tracker = BirthTracker::default();
        assert_eq!(tracker.check(0, 0), None, "not connected yet");
        assert_eq!(tracker.check(1, 0), Some(Births::Connected));
        assert_eq!(tracker.check(1, 0), None);
        assert_eq!(
            tracker.check(1, 2),
            Some(Births::Rebirth),
            "two asks, one rebirth"
        );
        assert_eq!(
            tracker.check(2, 3),
            Some(Births::Connected),
            "one set of births"
        );
        assert_eq!(tracker.check(2, 3), None);
    }

    /// What a host application makes of the messages: every reading resolved by alias.
    #[test]
    fn the_core_host_resolves_every_reading_of_a_node() {
        let mut node = node();
        let mut sessions = Sessions::new(SessionConfig {
            reorder_timeout: std::time::Duration::from_secs(1),
            rebirth_cooldown: std::time::Duration::from_secs(10),
            max_nodes: 10,
        });
        let mut messages = node.births(1, T0);
        let mut payload = Vec::new();
        for n in 0..600 {
            let topic = node.data(n % 2, n % 3, 1.0, T0, &mut payload).to_owned();
            messages.push(Outgoing {
                topic,
                payload: payload.clone(),
            });
        }
        let mut resolved = 0;
        for message in messages {
            let Some(Topic::Edge {
                group,
                kind,
                node,
                device,
            }) = Topic::parse(&message.topic)
            else {
                panic!("{}", message.topic)
            };
            let key = NodeKey {
                group: group.into(),
                node: node.into(),
            };
            let applied = sessions.apply(&key, kind, device, decode(&message), T0);
            assert!(!applied.rebirth && applied.skipped.is_none(), "{applied:?}");
            assert_eq!(applied.unresolved, 0);
            resolved += applied.metrics.len();
        }
        assert_eq!(resolved, 600);
    }
}
