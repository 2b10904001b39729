//! The frames of the WebSocket protocol: their JSON encoding, done once per frame and shared
//! by every client, the subsets sent to filtered clients, and the merge of a backlog of
//! update frames into the latest value per key.
//!
//! The hub ([`crate::hub`]) decides when frames are made and broadcast; this module only
//! knows what they say and how they read on the wire.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use aggregator_core::alarm::AlarmMessage;
use aggregator_core::trend::TrendMessage;
use aggregator_core::{Aggregate, KeyRef};
use bytestring::ByteString;
use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use serde::Serialize;

/// A (machine, scrap index) key.
pub type Key = (String, u32);

/// Most aggregates (or keys) in one frame (~200 KB). The broadcast ring holds up to
/// `client_queue_frames` frames, so this bounds its memory even when every key changes.
pub(crate) const MAX_ITEMS_PER_FRAME: usize = 1_000;

/// Most trends in one frame: a trend of 90 points is about 5 KB, so a frame stays near
/// the ~200 KB of a full update frame.
pub(crate) const MAX_TRENDS_PER_FRAME: usize = 40;

/// Broker connection state as shown to clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MqttState {
    /// Connected to the broker.
    Connected,
    /// Not connected (starting, or the broker is unreachable).
    #[default]
    Disconnected,
}

/// Ingest liveness as shown to clients: `{"online":true}` for a single ingest; with shards
/// `{"online":false,"shardsOnline":2,"shardCount":3}`, where `online` means every expected
/// shard is online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestView {
    /// Whether ingest (with shards: every expected shard) said it is online.
    pub online: bool,
    /// Shards that said they are online; absent for a single ingest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards_online: Option<u32>,
    /// Shards expected; absent for a single ingest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_count: Option<u32>,
}

impl IngestView {
    /// The view of a single (unsharded) ingest.
    pub fn single(online: bool) -> Self {
        Self {
            online,
            shards_online: None,
            shard_count: None,
        }
    }
}

/// The `?machines=A1,B2` filter of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFilter(HashSet<String>);

impl MachineFilter {
    /// Parses a comma-separated list; `None` when it names no machine (no filter).
    pub fn parse(list: &str) -> Option<Self> {
        let set: HashSet<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        (!set.is_empty()).then_some(Self(set))
    }

    /// Whether `machine` passes.
    pub fn matches(&self, machine: &str) -> bool {
        self.0.contains(machine)
    }
}

/// One aggregate of an update frame, and where its JSON object sits in the frame's text.
///
/// Clients that need a subset (a filter) or a merge (a backlog) build their text from these
/// slices of the shared encoding: the aggregates are serialised once per frame, never once
/// per client.
#[derive(Debug)]
pub struct UpdateItem {
    /// The aggregate.
    pub aggregate: Aggregate,
    /// Byte range of its JSON object in [`Frame::text`].
    span: Range<usize>,
}

/// What a frame says, kept next to its encoding so filtered clients can send a subset.
#[derive(Debug)]
pub enum FrameBody {
    /// Changed aggregates.
    Update(Vec<UpdateItem>),
    /// Forgotten keys.
    Remove(Vec<KeyRef>),
    /// Pipeline status.
    Status,
    /// Changed alarms, and keys whose retained alarm was cleared.
    Alarm {
        /// The latest alarm message of each changed key.
        alarms: Vec<AlarmMessage>,
        /// Keys whose alarm topic was emptied.
        removed: Vec<KeyRef>,
    },
    /// Changed trends, and keys whose retained trend was cleared.
    Trend {
        /// The latest trend of each changed key.
        trends: Vec<TrendMessage>,
        /// Keys whose trend topic was emptied.
        removed: Vec<KeyRef>,
    },
}

/// One broadcast frame: encoded once, shared by every unfiltered client.
#[derive(Debug)]
pub struct Frame {
    /// The JSON text for clients without a filter.
    pub text: ByteString,
    /// The content, for clients with a filter.
    pub body: FrameBody,
}

/// Text of an update frame around its comma-separated aggregates.
const UPDATE_HEAD: &str = r#"{"type":"update","aggregates":["#;
const UPDATE_TAIL: &str = "]}";

impl Frame {
    /// An update frame, encoded as `{"type":"update","aggregates":[...]}`.
    pub(crate) fn update(aggregates: Vec<Aggregate>) -> Self {
        let mut text = Vec::with_capacity(UPDATE_HEAD.len() + 192 * aggregates.len());
        text.extend_from_slice(UPDATE_HEAD.as_bytes());
        let mut items = Vec::with_capacity(aggregates.len());
        for (i, aggregate) in aggregates.into_iter().enumerate() {
            if i > 0 {
                text.push(b',');
            }
            let start = text.len();
            // expect: as in `encode`.
            serde_json::to_writer(&mut text, &aggregate).expect("aggregates always serialize");
            items.push(UpdateItem {
                aggregate,
                span: start..text.len(),
            });
        }
        text.extend_from_slice(UPDATE_TAIL.as_bytes());
        // expect: serde_json writes UTF-8 only.
        let text = String::from_utf8(text).expect("serde_json writes UTF-8");
        Self {
            text: ByteString::from(text),
            body: FrameBody::Update(items),
        }
    }

    /// A remove frame: `{"type":"remove","keys":[...]}`.
    pub(crate) fn remove(keys: Vec<KeyRef>) -> Self {
        let text = encode(&Wire::Remove {
            keys: keys.iter().collect(),
        });
        Self {
            text,
            body: FrameBody::Remove(keys),
        }
    }

    /// A status frame: `{"type":"status","mqtt":...,"ingest":...}`.
    pub(crate) fn status(mqtt: MqttState, ingest: Option<IngestView>) -> Self {
        Self {
            text: encode(&Wire::Status { mqtt, ingest }),
            body: FrameBody::Status,
        }
    }

    /// An alarm frame: `{"type":"alarm","alarms":[...],"removed":[...]}`.
    pub(crate) fn alarm(alarms: Vec<AlarmMessage>, removed: Vec<KeyRef>) -> Self {
        let text = encode(&Wire::Alarm {
            alarms: alarms.iter().collect(),
            removed: removed.iter().collect(),
        });
        Self {
            text,
            body: FrameBody::Alarm { alarms, removed },
        }
    }

    /// A trend frame: `{"type":"trend","trends":[...],"removed":[...]}`.
    pub(crate) fn trend(trends: Vec<TrendMessage>, removed: Vec<KeyRef>) -> Self {
        let text = encode(&Wire::Trend {
            trends: trends.iter().collect(),
            removed: removed.iter().collect(),
        });
        Self {
            text,
            body: FrameBody::Trend { trends, removed },
        }
    }

    /// The JSON object of one of this frame's update items.
    fn item_json(&self, item: &UpdateItem) -> &str {
        &self.text[item.span.clone()]
    }

    /// The text for a client with `filter`; `None` when nothing in the frame concerns it.
    pub fn text_for(&self, filter: Option<&MachineFilter>) -> Option<ByteString> {
        let Some(filter) = filter else {
            return Some(self.text.clone());
        };
        match &self.body {
            FrameBody::Status => Some(self.text.clone()),
            FrameBody::Update(all) => {
                let kept: Vec<&str> = all
                    .iter()
                    .filter(|item| filter.matches(&item.aggregate.machine_id))
                    .map(|item| self.item_json(item))
                    .collect();
                match kept.len() {
                    0 => None,
                    n if n == all.len() => Some(self.text.clone()),
                    _ => Some(join_update(&kept)),
                }
            }
            FrameBody::Remove(all) => {
                let kept: Vec<&KeyRef> = all
                    .iter()
                    .filter(|k| filter.matches(&k.machine_id))
                    .collect();
                match kept.len() {
                    0 => None,
                    n if n == all.len() => Some(self.text.clone()),
                    _ => Some(encode(&Wire::Remove { keys: kept })),
                }
            }
            // Alarm and trend frames are few and small next to updates: a filtered client's
            // subset is encoded for it.
            FrameBody::Alarm { alarms, removed } => {
                let alarms: Vec<&AlarmMessage> = alarms
                    .iter()
                    .filter(|a| filter.matches(&a.machine_id))
                    .collect();
                let removed = kept_keys(removed, filter);
                (!alarms.is_empty() || !removed.is_empty())
                    .then(|| encode(&Wire::Alarm { alarms, removed }))
            }
            FrameBody::Trend { trends, removed } => {
                let trends: Vec<&TrendMessage> = trends
                    .iter()
                    .filter(|t| filter.matches(&t.machine_id))
                    .collect();
                let removed = kept_keys(removed, filter);
                (!trends.is_empty() || !removed.is_empty())
                    .then(|| encode(&Wire::Trend { trends, removed }))
            }
        }
    }
}

fn kept_keys<'a>(keys: &'a [KeyRef], filter: &MachineFilter) -> Vec<&'a KeyRef> {
    keys.iter()
        .filter(|k| filter.matches(&k.machine_id))
        .collect()
}

/// An update frame from already encoded aggregates: copying, no serialising.
fn join_update(objects: &[&str]) -> ByteString {
    let len =
        UPDATE_HEAD.len() + UPDATE_TAIL.len() + objects.iter().map(|o| o.len() + 1).sum::<usize>();
    let mut text = String::with_capacity(len);
    text.push_str(UPDATE_HEAD);
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(object);
    }
    text.push_str(UPDATE_TAIL);
    ByteString::from(text)
}

/// The texts to send for `frames`, taken from a client's queue in one go: runs of
/// consecutive update frames are merged into one (the latest aggregate of each key), so a
/// client that fell behind gets the current values instead of replaying every step; other
/// frames keep their place. A run of one frame reuses its shared text.
pub fn merged_texts(frames: &[Arc<Frame>], filter: Option<&MachineFilter>) -> Vec<ByteString> {
    let mut texts = Vec::new();
    let mut run: Vec<&Arc<Frame>> = Vec::new();
    for frame in frames {
        if matches!(frame.body, FrameBody::Update(_)) {
            run.push(frame);
            continue;
        }
        flush_run(&mut run, filter, &mut texts);
        texts.extend(frame.text_for(filter));
    }
    flush_run(&mut run, filter, &mut texts);
    texts
}

fn flush_run(
    run: &mut Vec<&Arc<Frame>>,
    filter: Option<&MachineFilter>,
    texts: &mut Vec<ByteString>,
) {
    match run.len() {
        0 => {}
        1 => texts.extend(run[0].text_for(filter)),
        _ => {
            // Keys in the order first seen, each with its latest encoded aggregate. The map
            // lives only for this merge, so hashbrown's fast default hasher is enough.
            let items: usize = run
                .iter()
                .map(|f| match &f.body {
                    FrameBody::Update(items) => items.len(),
                    _ => 0,
                })
                .sum();
            let mut slot: HashMap<(&str, u32), usize> = HashMap::with_capacity(items);
            let mut latest: Vec<&str> = Vec::with_capacity(items);
            for frame in run.iter() {
                let FrameBody::Update(items) = &frame.body else {
                    continue;
                };
                for item in items {
                    let a = &item.aggregate;
                    if filter.is_some_and(|f| !f.matches(&a.machine_id)) {
                        continue;
                    }
                    let json = frame.item_json(item);
                    match slot.entry((&a.machine_id, a.scrap_index)) {
                        Entry::Occupied(e) => latest[*e.get()] = json,
                        Entry::Vacant(e) => {
                            e.insert(latest.len());
                            latest.push(json);
                        }
                    }
                }
            }
            texts.extend(latest.chunks(MAX_ITEMS_PER_FRAME).map(join_update));
        }
    }
    run.clear();
}

/// The JSON frames of the WebSocket protocol.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Wire<'a> {
    Snapshot {
        aggregates: Vec<&'a Aggregate>,
        ingest: Option<IngestView>,
        mqtt: MqttState,
        alarms: Vec<&'a AlarmMessage>,
        trends: Vec<&'a TrendMessage>,
    },
    Remove {
        keys: Vec<&'a KeyRef>,
    },
    Status {
        mqtt: MqttState,
        ingest: Option<IngestView>,
    },
    Alarm {
        alarms: Vec<&'a AlarmMessage>,
        removed: Vec<&'a KeyRef>,
    },
    Trend {
        trends: Vec<&'a TrendMessage>,
        removed: Vec<&'a KeyRef>,
    },
}

pub(crate) fn encode(wire: &Wire<'_>) -> ByteString {
    // expect: these types have string keys and no fallible Serialize impls, so serde_json
    // cannot fail on them (non-finite floats become null).
    let json = serde_json::to_string(wire).expect("frames always serialize");
    ByteString::from(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{agg, json};

    #[test]
    fn update_frames_are_the_protocol_json_and_subsets_reuse_it() {
        let (a1, b1) = (agg("A1", 1, 1.5), agg("B\"<1>", 2, 2.0));
        let frame = Frame::update(vec![a1.clone(), b1.clone()]);
        let both = serde_json::json!({"type": "update", "aggregates": [a1, b1]});
        assert_eq!(json(&frame.text), both);
        let filter = MachineFilter::parse("B\"<1>").unwrap();
        let only_b = frame.text_for(Some(&filter)).unwrap();
        assert_eq!(
            json(&only_b),
            serde_json::json!({"type": "update", "aggregates": [b1]})
        );
    }
}
