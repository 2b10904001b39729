//! What a Sparkplug host application remembers of each edge node: the `bdSeq` of its birth,
//! its message sequence number, and the names and datatypes behind its metric aliases. From
//! them each message's metrics are resolved, duplicates and lost messages noticed, and deaths
//! told from stale wills. Readings that cannot be resolved are counted, never guessed; the
//! answer to what cannot be resolved is a rebirth request, at most one per cool-down.
//!
//! Sequence numbers (0..=255, wrapping) tell a lost message from a late one: a number skipped
//! is missing, a missing number that arrives within the reorder timeout is late and taken, and
//! a number neither next nor missing is a copy and dropped. Readings are sums, so a late
//! message counts as it comes; only a number still missing after the timeout asks for a
//! rebirth.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::payload::{Metric, Payload, Value, names};
use super::topic::MessageType;

/// How long a skipped sequence number may take to arrive, and how often a node is asked for
/// a rebirth at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// A sequence number still missing this long after a later one arrived is lost.
    pub reorder_timeout: Duration,
    /// At most one rebirth request per node in this time.
    pub rebirth_cooldown: Duration,
    /// Most edge nodes remembered; messages of further nodes are refused, so that clients
    /// inventing node ids cannot grow the memory without bound.
    pub max_nodes: usize,
}

/// An edge node: its group and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    /// The group.
    pub group: String,
    /// The edge node's id.
    pub node: String,
}

/// A metric of a message with its name and datatype resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedMetric {
    /// The device it belongs to; `None`: the edge node's own metric.
    pub device: Option<Arc<str>>,
    /// Its name (shared with the birth that declared it: resolving copies no text).
    pub name: Arc<str>,
    /// Its datatype code.
    pub datatype: u32,
    /// Its value; `None` for a null metric.
    pub value: Option<Value>,
    /// Its own time, else the payload's, in ms since the epoch.
    pub timestamp: Option<u64>,
    /// Recorded earlier and sent late: history, not a live value.
    pub is_historical: bool,
}

/// A node or device coming or going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// A birth: the node (`device` `None`) or the device is online.
    Online {
        /// The device, or `None` for the node.
        device: Option<String>,
    },
    /// A death: the node with all its devices (`device` `None`), or one device, is offline.
    Offline {
        /// The device, or `None` for the node and its devices.
        device: Option<String>,
    },
}

/// Why a message or some of its metrics were not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// A sequence number already taken: a copy.
    Duplicate,
    /// An NDEATH whose `bdSeq` is not that of the current birth: the will of an earlier
    /// connection. (With no birth known, a death is taken.)
    StaleDeath,
    /// A command, which a host sends rather than reads.
    Command,
    /// A node not yet known while `max_nodes` are.
    TooManyNodes,
}

/// What one message did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Applied {
    /// The metrics of a data message (births declare, they carry no readings).
    pub metrics: Vec<ResolvedMetric>,
    /// Metrics whose name or datatype is unknown.
    pub unresolved: usize,
    /// A node or device came or went.
    pub presence: Option<Presence>,
    /// Ask the node for a rebirth now.
    pub rebirth: bool,
    /// The message was not taken, and why.
    pub skipped: Option<Skipped>,
}

/// Every edge node heard from.
#[derive(Debug, Clone)]
pub struct Sessions {
    config: SessionConfig,
    nodes: HashMap<NodeKey, Node>,
}

/// A metric a birth declared.
#[derive(Debug, Clone)]
struct Declared {
    device: Option<Arc<str>>,
    name: Arc<str>,
    datatype: Option<u32>,
}

/// One edge node's state.
#[derive(Debug, Clone, Default)]
struct Node {
    /// The `bdSeq` of its current birth; `None` before one.
    birth: Option<u64>,
    /// The sequence number expected next.
    next_seq: Option<u8>,
    /// Skipped sequence numbers and when they were noticed, ms.
    missing: BTreeMap<u8, u64>,
    /// Alias to what a birth declared under it.
    aliases: HashMap<u64, Declared>,
    /// (device, name) to datatype, as declared in births.
    datatypes: HashMap<(Option<Arc<str>>, Arc<str>), u32>,
    /// When a rebirth was last asked for, ms.
    last_rebirth: Option<u64>,
}

impl Sessions {
    /// No node known yet.
    pub fn new(config: SessionConfig) -> Self {
        Sessions {
            config,
            nodes: HashMap::new(),
        }
    }

    /// Applies one message of `kind` from `node` (and `device`) at `now_ms`.
    pub fn apply(
        &mut self,
        node: &NodeKey,
        kind: MessageType,
        device: Option<&str>,
        payload: Payload,
        now_ms: u64,
    ) -> Applied {
        let config = self.config;
        let mut applied = Applied::default();
        if !self.nodes.contains_key(node) && self.nodes.len() >= config.max_nodes {
            applied.skipped = Some(Skipped::TooManyNodes);
            return applied;
        }
        let state = self.nodes.entry(node.clone()).or_default();
        match kind {
            MessageType::NodeCommand | MessageType::DeviceCommand => {
                applied.skipped = Some(Skipped::Command);
            }
            MessageType::NodeBirth => {
                state.born(&payload);
                applied.presence = Some(Presence::Online { device: None });
            }
            MessageType::NodeDeath => {
                // Without a birth known (a host that started after it), a death cannot be
                // told stale: it is taken, and the node's next birth would follow it anyway.
                if state.birth.is_none() || bd_seq(&payload) == state.birth {
                    *state = Node {
                        last_rebirth: state.last_rebirth,
                        ..Node::default()
                    };
                    applied.presence = Some(Presence::Offline { device: None });
                } else {
                    applied.skipped = Some(Skipped::StaleDeath);
                }
            }
            MessageType::DeviceBirth
            | MessageType::DeviceDeath
            | MessageType::DeviceData
            | MessageType::NodeData => {
                if state.birth.is_none() {
                    applied.rebirth = true;
                }
                match state.sequence(payload.seq, now_ms) {
                    Sequence::Duplicate => applied.skipped = Some(Skipped::Duplicate),
                    Sequence::Lost => applied.rebirth = true,
                    Sequence::Taken => {}
                }
                if applied.skipped.is_none() {
                    match kind {
                        MessageType::DeviceBirth => {
                            state.declare(device, &payload.metrics);
                            let device = device.map(str::to_owned);
                            applied.presence = Some(Presence::Online { device });
                        }
                        MessageType::DeviceDeath => {
                            let device = device.map(str::to_owned);
                            applied.presence = Some(Presence::Offline { device });
                        }
                        _ => state.resolve(device, payload, &mut applied),
                    }
                }
            }
        }
        if applied.rebirth {
            applied.rebirth = state.may_ask(now_ms, config.rebirth_cooldown);
        }
        applied
    }

    /// The nodes whose skipped sequence numbers are still missing after the reorder timeout,
    /// to be asked for a rebirth now (each at most once per cool-down).
    pub fn lost(&mut self, now_ms: u64) -> Vec<NodeKey> {
        let timeout = millis(self.config.reorder_timeout);
        let cooldown = self.config.rebirth_cooldown;
        let mut due: Vec<NodeKey> = self
            .nodes
            .iter_mut()
            .filter_map(|(key, node)| {
                let expired = node
                    .missing
                    .values()
                    .any(|since| now_ms.saturating_sub(*since) >= timeout);
                if !expired {
                    return None;
                }
                node.missing.clear();
                node.may_ask(now_ms, cooldown).then(|| key.clone())
            })
            .collect();
        due.sort();
        due
    }

    /// When [`Sessions::lost`] has something to tell next, in ms: the earliest time a
    /// missing sequence number runs out of the reorder timeout.
    pub fn next_lost_check(&self) -> Option<u64> {
        let timeout = millis(self.config.reorder_timeout);
        let noticed = self.nodes.values().flat_map(|n| n.missing.values());
        noticed.min().map(|since| since.saturating_add(timeout))
    }

    /// How many nodes are known.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is known.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// What a sequence number was.
enum Sequence {
    /// Next, late or the first: taken.
    Taken,
    /// Taken before.
    Duplicate,
    /// So far ahead that the numbers between cannot be waited for.
    Lost,
}

/// Numbers further ahead than this are not waited for: the node has restarted or many
/// messages were lost.
const MAX_AHEAD: u8 = 127;

impl Node {
    /// An NBIRTH: a new session with its `bdSeq`, sequence number and declarations.
    fn born(&mut self, payload: &Payload) {
        *self = Node {
            birth: Some(bd_seq(payload).unwrap_or(0)),
            next_seq: payload.seq.map(|s| wrap(s).wrapping_add(1)),
            last_rebirth: self.last_rebirth,
            ..Node::default()
        };
        self.declare(None, &payload.metrics);
    }

    /// Remembers the aliases and datatypes a birth of `device` (or the node) declares,
    /// replacing that device's earlier ones.
    fn declare(&mut self, device: Option<&str>, metrics: &[Metric]) {
        let device: Option<Arc<str>> = device.map(Arc::from);
        self.aliases.retain(|_, declared| declared.device != device);
        self.datatypes.retain(|(d, _), _| *d != device);
        for metric in metrics {
            let Some(name) = &metric.name else { continue };
            let name: Arc<str> = Arc::from(name.as_str());
            if let Some(alias) = metric.alias {
                let declared = Declared {
                    device: device.clone(),
                    name: name.clone(),
                    datatype: metric.datatype,
                };
                self.aliases.insert(alias, declared);
            }
            if let Some(datatype) = metric.datatype {
                self.datatypes.insert((device.clone(), name), datatype);
            }
        }
    }

    /// Checks a message's sequence number against the one expected.
    fn sequence(&mut self, seq: Option<u64>, now_ms: u64) -> Sequence {
        let Some(seq) = seq.map(wrap) else {
            return Sequence::Taken;
        };
        let Some(next) = self.next_seq else {
            self.next_seq = Some(seq.wrapping_add(1));
            return Sequence::Taken;
        };
        if seq == next {
            self.next_seq = Some(next.wrapping_add(1));
            return Sequence::Taken;
        }
        if self.missing.remove(&seq).is_some() {
            return Sequence::Taken;
        }
        let ahead = seq.wrapping_sub(next);
        if ahead > MAX_AHEAD {
            return Sequence::Duplicate;
        }
        if usize::from(ahead) + self.missing.len() > usize::from(MAX_AHEAD) {
            self.missing.clear();
            self.next_seq = Some(seq.wrapping_add(1));
            return Sequence::Lost;
        }
        let mut skipped = next;
        while skipped != seq {
            self.missing.entry(skipped).or_insert(now_ms);
            skipped = skipped.wrapping_add(1);
        }
        self.next_seq = Some(seq.wrapping_add(1));
        Sequence::Taken
    }

    /// Resolves the metrics of a data message into `applied`.
    fn resolve(&self, device: Option<&str>, payload: Payload, applied: &mut Applied) {
        let device: Option<Arc<str>> = device.map(Arc::from);
        for metric in payload.metrics {
            let declared = match (metric.name, metric.alias) {
                (Some(name), _) => Some(Declared {
                    device: device.clone(),
                    name: Arc::from(name),
                    datatype: None,
                }),
                (None, Some(alias)) => self.aliases.get(&alias).cloned(),
                (None, None) => None,
            };
            let Some(declared) = declared else {
                applied.unresolved += 1;
                applied.rebirth |= metric.alias.is_some();
                continue;
            };
            let Declared {
                device: owner,
                name,
                datatype: declared_type,
            } = declared;
            let datatype = metric.datatype.or(declared_type).or_else(|| {
                let key = (owner.clone(), name.clone());
                self.datatypes.get(&key).copied()
            });
            let Some(datatype) = datatype else {
                applied.unresolved += 1;
                applied.rebirth = true;
                continue;
            };
            let is_null = metric.is_null.unwrap_or(false);
            applied.metrics.push(ResolvedMetric {
                device: owner,
                name,
                datatype,
                value: if is_null { None } else { metric.value },
                timestamp: metric.timestamp.or(payload.timestamp),
                is_historical: metric.is_historical.unwrap_or(false),
            });
        }
    }

    /// Whether a rebirth may be asked for now; if so, it counts as asked.
    fn may_ask(&mut self, now_ms: u64, cooldown: Duration) -> bool {
        let allowed = self
            .last_rebirth
            .is_none_or(|last| now_ms.saturating_sub(last) >= millis(cooldown));
        if allowed {
            self.last_rebirth = Some(now_ms);
        }
        allowed
    }
}

/// The `bdSeq` metric of a birth or death.
fn bd_seq(payload: &Payload) -> Option<u64> {
    payload
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some(names::BD_SEQ))
        .and_then(|m| match m.value {
            Some(Value::Long(v)) => Some(v),
            Some(Value::Int(v)) => Some(u64::from(v)),
            _ => None,
        })
}

/// A sequence number as the 0..=255 it is meant to be.
#[allow(clippy::cast_possible_truncation)]
fn wrap(seq: u64) -> u8 {
    (seq % 256) as u8
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: SessionConfig = SessionConfig {
        reorder_timeout: Duration::from_secs(2),
        rebirth_cooldown: Duration::from_secs(10),
        max_nodes: 2,
    };
    const T0: u64 = 1_796_601_600_000;

    fn node() -> NodeKey {
        NodeKey {
            group: "Plant1".into(),
            node: "Line-1".into(),
        }
    }

    fn declared(name: &str, alias: u64, datatype: u32) -> Metric {
        Metric {
            name: Some(name.into()),
            alias: Some(alias),
            datatype: Some(datatype),
            ..Metric::default()
        }
    }

    fn by_alias(alias: u64, value: f64) -> Metric {
        Metric {
            alias: Some(alias),
            value: Some(Value::Double(value)),
            ..Metric::default()
        }
    }

    fn bd_seq_metric(bd_seq: u64) -> Metric {
        Metric {
            name: Some(names::BD_SEQ.into()),
            datatype: Some(8),
            value: Some(Value::Long(bd_seq)),
            ..Metric::default()
        }
    }

    fn payload(seq: u64, metrics: Vec<Metric>) -> Payload {
        Payload {
            timestamp: Some(T0),
            metrics,
            seq: Some(seq),
        }
    }

    /// A session after NBIRTH (seq 0, bdSeq 3) and DBIRTH of A1 (seq 1) declaring alias 7 as
    /// the Double `scrap/1`.
    fn born() -> Sessions {
        let mut sessions = Sessions::new(CONFIG);
        let birth = payload(0, vec![bd_seq_metric(3)]);
        let applied = sessions.apply(&node(), MessageType::NodeBirth, None, birth, T0);
        assert_eq!(applied.presence, Some(Presence::Online { device: None }));
        let birth = payload(1, vec![declared("scrap/1", 7, 10)]);
        let applied = sessions.apply(&node(), MessageType::DeviceBirth, Some("A1"), birth, T0);
        assert_eq!(
            applied.presence,
            Some(Presence::Online {
                device: Some("A1".into())
            })
        );
        assert!(applied.metrics.is_empty(), "a birth carries no readings");
        sessions
    }

    fn data(sessions: &mut Sessions, seq: u64, value: f64, now: u64) -> Applied {
        let message = payload(seq, vec![by_alias(7, value)]);
        sessions.apply(&node(), MessageType::DeviceData, Some("A1"), message, now)
    }

    #[test]
    fn aliases_declared_in_births_resolve_data() {
        let mut sessions = born();
        let applied = data(&mut sessions, 2, 1.5, T0);
        assert_eq!(
            applied.metrics,
            vec![ResolvedMetric {
                device: Some("A1".into()),
                name: "scrap/1".into(),
                datatype: 10,
                value: Some(Value::Double(1.5)),
                timestamp: Some(T0),
                is_historical: false,
            }]
        );
        assert!(!applied.rebirth);
        assert_eq!(applied.unresolved, 0);
    }

    #[test]
    fn a_named_metric_with_a_datatype_needs_no_declaration_and_nbirth_need_not_start_at_zero() {
        let mut sessions = Sessions::new(CONFIG);
        let birth = payload(200, vec![bd_seq_metric(0)]);
        sessions.apply(&node(), MessageType::NodeBirth, None, birth, T0);
        let metric = Metric {
            name: Some("scrap/4".into()),
            datatype: Some(3),
            value: Some(Value::Int(5)),
            timestamp: Some(T0 - 10),
            ..Metric::default()
        };
        let applied = sessions.apply(
            &node(),
            MessageType::NodeData,
            None,
            payload(201, vec![metric]),
            T0,
        );
        assert_eq!(&*applied.metrics[0].name, "scrap/4");
        assert_eq!(applied.metrics[0].timestamp, Some(T0 - 10));
        assert!(!applied.rebirth);
    }

    #[test]
    fn an_unknown_alias_or_data_before_any_birth_asks_for_a_rebirth_once_per_cooldown() {
        let mut sessions = Sessions::new(CONFIG);
        let first = data(&mut sessions, 5, 1.0, T0);
        assert_eq!((first.unresolved, first.rebirth), (1, true));
        assert!(first.metrics.is_empty(), "never guessed");
        let again = data(&mut sessions, 6, 1.0, T0 + 1_000);
        assert_eq!(
            (again.unresolved, again.rebirth),
            (1, false),
            "cooling down"
        );
        let later = data(&mut sessions, 7, 1.0, T0 + 10_000);
        assert!(later.rebirth);

        let mut sessions = born();
        let message = payload(2, vec![by_alias(8, 1.0)]);
        let applied = sessions.apply(&node(), MessageType::DeviceData, Some("A1"), message, T0);
        assert_eq!((applied.unresolved, applied.rebirth), (1, true));
    }

    #[test]
    fn a_copy_is_dropped_and_a_late_message_is_taken() {
        let mut sessions = born();
        assert!(data(&mut sessions, 2, 1.0, T0).skipped.is_none());
        assert_eq!(
            data(&mut sessions, 2, 1.0, T0).skipped,
            Some(Skipped::Duplicate)
        );
        // 3 is skipped, then arrives within the reorder timeout.
        assert_eq!(data(&mut sessions, 4, 1.0, T0).metrics.len(), 1);
        assert_eq!(data(&mut sessions, 3, 1.0, T0 + 1_000).metrics.len(), 1);
        assert!(sessions.lost(T0 + 5_000).is_empty());
        assert_eq!(
            data(&mut sessions, 3, 1.0, T0 + 1_000).skipped,
            Some(Skipped::Duplicate)
        );
    }

    #[test]
    fn a_gap_not_filled_within_the_reorder_timeout_asks_for_a_rebirth() {
        let mut sessions = born();
        data(&mut sessions, 2, 1.0, T0);
        assert_eq!(sessions.next_lost_check(), None);
        assert_eq!(data(&mut sessions, 4, 1.0, T0 + 100).metrics.len(), 1);
        assert_eq!(sessions.next_lost_check(), Some(T0 + 2_100));
        assert!(sessions.lost(T0 + 1_999).is_empty());
        assert_eq!(sessions.lost(T0 + 2_100), vec![node()]);
        assert!(sessions.lost(T0 + 2_200).is_empty(), "asked once");
        assert_eq!(sessions.next_lost_check(), None);
    }

    #[test]
    fn sequence_numbers_wrap_after_255() {
        let mut sessions = born();
        for seq in 2..=255 {
            assert!(data(&mut sessions, seq, 1.0, T0).skipped.is_none());
        }
        assert!(
            data(&mut sessions, 256, 1.0, T0).skipped.is_none(),
            "0 again"
        );
        assert!(data(&mut sessions, 1, 1.0, T0).skipped.is_none());
        assert!(sessions.lost(T0 + 60_000).is_empty());
    }

    #[test]
    fn a_death_with_the_births_bd_seq_takes_the_node_offline_and_a_stale_will_does_not() {
        let mut sessions = born();
        let stale = payload(0, vec![bd_seq_metric(2)]);
        let applied = sessions.apply(&node(), MessageType::NodeDeath, None, stale, T0);
        assert_eq!(applied.skipped, Some(Skipped::StaleDeath));
        assert_eq!(applied.presence, None);

        let mut death = payload(0, vec![bd_seq_metric(3)]);
        death.seq = None;
        let applied = sessions.apply(&node(), MessageType::NodeDeath, None, death, T0);
        assert_eq!(applied.presence, Some(Presence::Offline { device: None }));
        // Its aliases died with it: data now asks for a rebirth.
        let after = data(&mut sessions, 2, 1.0, T0 + 1);
        assert_eq!((after.unresolved, after.rebirth), (1, true));
    }

    #[test]
    fn a_death_of_a_node_whose_birth_came_before_this_host_is_taken() {
        let mut sessions = Sessions::new(CONFIG);
        let death = payload(0, vec![bd_seq_metric(7)]);
        let applied = sessions.apply(&node(), MessageType::NodeDeath, None, death, T0);
        assert_eq!(applied.presence, Some(Presence::Offline { device: None }));
        assert_eq!(applied.skipped, None);
    }

    #[test]
    fn a_device_death_takes_only_that_device_offline() {
        let mut sessions = born();
        let applied = sessions.apply(
            &node(),
            MessageType::DeviceDeath,
            Some("A1"),
            payload(2, vec![]),
            T0,
        );
        assert_eq!(
            applied.presence,
            Some(Presence::Offline {
                device: Some("A1".into())
            })
        );
    }

    #[test]
    fn a_rebirth_replaces_the_aliases() {
        let mut sessions = born();
        let birth = payload(0, vec![bd_seq_metric(4)]);
        sessions.apply(&node(), MessageType::NodeBirth, None, birth, T0);
        let birth = payload(1, vec![declared("scrap/2", 7, 9)]);
        sessions.apply(&node(), MessageType::DeviceBirth, Some("A1"), birth, T0);
        let message = payload(
            2,
            vec![Metric {
                alias: Some(7),
                value: Some(Value::Float(2.0)),
                is_historical: Some(true),
                ..Metric::default()
            }],
        );
        let applied = sessions.apply(&node(), MessageType::DeviceData, Some("A1"), message, T0);
        assert_eq!(&*applied.metrics[0].name, "scrap/2");
        assert_eq!(applied.metrics[0].datatype, 9);
        assert!(applied.metrics[0].is_historical);
    }

    #[test]
    fn nodes_beyond_the_limit_are_refused_and_known_ones_go_on() {
        let mut sessions = born();
        let other = |name: &str| NodeKey {
            group: "Plant1".into(),
            node: name.into(),
        };
        let birth = || payload(0, vec![bd_seq_metric(1)]);
        let second = sessions.apply(&other("Line-2"), MessageType::NodeBirth, None, birth(), T0);
        assert_eq!(second.skipped, None);
        let third = sessions.apply(&other("Line-3"), MessageType::NodeBirth, None, birth(), T0);
        assert_eq!(third.skipped, Some(Skipped::TooManyNodes));
        assert_eq!(third.presence, None);
        assert_eq!(sessions.len(), 2);
        assert_eq!(data(&mut sessions, 2, 1.0, T0).metrics.len(), 1);
    }

    #[test]
    fn commands_are_not_read() {
        let mut sessions = born();
        let applied = sessions.apply(
            &node(),
            MessageType::NodeCommand,
            None,
            payload(9, vec![]),
            T0,
        );
        assert_eq!(applied.skipped, Some(Skipped::Command));
        assert!(data(&mut sessions, 2, 1.0, T0).skipped.is_none());
    }
}
