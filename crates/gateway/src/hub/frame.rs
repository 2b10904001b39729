//! The frames of the WebSocket protocol: their JSON, encoded once per frame and shared by
//! every client, the subsets sent to filtered clients, and the merge of a backlog of update
//! frames into the latest value per key. The hub ([`crate::hub`]) decides when frames are
//! made and broadcast; this module knows what they say.

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

/// Most aggregates (or keys) in one frame (~200 KB): bounds the broadcast ring's memory
/// (`client_queue_frames` frames) even when every key changes.
pub(crate) const MAX_ITEMS_PER_FRAME: usize = 1_000;

/// Most bytes of alarms or trends in one frame (by [`EncodedSize`]), like an update frame: a
/// trend of 10 000 samples is ~480 KB, so trends are bounded by size, not count. A single
/// larger value goes alone.
pub(crate) const MAX_FRAME_BYTES: usize = 200 * 1024;

/// About how many bytes a value's JSON takes: what bounds alarm and trend frames and snapshot
/// parts, decided before the values are encoded.
pub(crate) trait EncodedSize {
    fn encoded_size(&self) -> usize;
}

impl EncodedSize for Aggregate {
    fn encoded_size(&self) -> usize {
        176 + self.machine_id.len()
    }
}

impl EncodedSize for AlarmMessage {
    fn encoded_size(&self) -> usize {
        220 + self.machine_id.len()
    }
}

impl EncodedSize for TrendMessage {
    fn encoded_size(&self) -> usize {
        // A point is `{"t":"2026-01-01T12:00:00.000Z","sum":12.5}`.
        80 + self.machine_id.len() + 48 * self.points.len()
    }
}

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
/// `{"online":false,"shardsOnline":2,"shardCount":3}`, `online` meaning every expected shard.
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

/// The items of `items` whose machine `filter` passes (all without a filter).
fn kept<'a, T>(
    items: &'a [T],
    filter: Option<&MachineFilter>,
    machine: impl Fn(&T) -> &str,
) -> Vec<&'a T> {
    let passes = |item: &&T| filter.is_none_or(|f| f.matches(machine(item)));
    items.iter().filter(passes).collect()
}

/// One aggregate of an update frame and the byte range of its JSON object in the frame's
/// text: a filtered subset or a merged backlog is copied from these slices, so an aggregate
/// is serialised once per frame, never once per client.
#[derive(Debug)]
pub(crate) struct UpdateItem {
    aggregate: Aggregate,
    span: Range<usize>,
}

/// What a frame says, kept beside its text so that filtered clients get their part.
#[derive(Debug)]
pub(crate) enum FrameBody {
    /// Changed aggregates.
    Update(Vec<UpdateItem>),
    /// Forgotten keys.
    Remove(Vec<KeyRef>),
    /// The broker link and ingest's liveness.
    Status(MqttState, Option<IngestView>),
    /// The latest alarm message of each changed key, and the keys whose alarm was emptied.
    Alarm(Vec<AlarmMessage>, Vec<KeyRef>),
    /// The latest trend of each changed key, and the keys whose trend was emptied.
    Trend(Vec<TrendMessage>, Vec<KeyRef>),
}

impl FrameBody {
    /// The JSON of a frame other than an update, for a client with `filter`; `None` when
    /// nothing in it concerns the client.
    fn wire(&self, filter: Option<&MachineFilter>) -> Option<Wire<'_>> {
        let keys = |keys| kept(keys, filter, |k: &KeyRef| &k.machine_id);
        match self {
            FrameBody::Update(_) => None,
            FrameBody::Status(mqtt, ingest) => Some(Wire::Status {
                mqtt: *mqtt,
                ingest: *ingest,
            }),
            FrameBody::Remove(all) => {
                let keys = keys(all);
                (!keys.is_empty()).then_some(Wire::Remove { keys })
            }
            FrameBody::Alarm(alarms, removed) => {
                let alarms = kept(alarms, filter, |a| &a.machine_id);
                let removed = keys(removed);
                (!alarms.is_empty() || !removed.is_empty())
                    .then_some(Wire::Alarm { alarms, removed })
            }
            FrameBody::Trend(trends, removed) => {
                let trends = kept(trends, filter, |t| &t.machine_id);
                let removed = keys(removed);
                (!trends.is_empty() || !removed.is_empty())
                    .then_some(Wire::Trend { trends, removed })
            }
        }
    }
}

/// One broadcast frame: encoded once, shared by every unfiltered client.
#[derive(Debug)]
pub struct Frame {
    /// The JSON text for clients without a filter.
    pub text: ByteString,
    body: FrameBody,
}

/// Text of an update frame around its comma-separated aggregates.
const UPDATE_HEAD: &str = r#"{"type":"update","aggregates":["#;
const UPDATE_TAIL: &str = "]}";

impl Frame {
    /// A frame other than an update.
    pub(crate) fn new(body: FrameBody) -> Self {
        // An update body (which only `update` makes) has no wire form: no text.
        let text = body.wire(None).map(|wire| encode(&wire));
        Self {
            text: text.unwrap_or_default(),
            body,
        }
    }

    /// An update frame, `{"type":"update","aggregates":[...]}`, noting where each aggregate is.
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

    /// The JSON object of one of this frame's update items.
    fn item_json(&self, item: &UpdateItem) -> &str {
        &self.text[item.span.clone()]
    }

    /// The text for a client with `filter`; `None` when nothing in the frame concerns it.
    pub fn text_for(&self, filter: Option<&MachineFilter>) -> Option<ByteString> {
        let Some(filter) = filter else {
            return Some(self.text.clone());
        };
        let FrameBody::Update(all) = &self.body else {
            // Rare and small next to updates: encoded for the client.
            return self.body.wire(Some(filter)).map(|wire| encode(&wire));
        };
        let kept: Vec<&str> = (all.iter())
            .filter(|item| filter.matches(&item.aggregate.machine_id))
            .map(|item| self.item_json(item))
            .collect();
        match kept.len() {
            0 => None,
            n if n == all.len() => Some(self.text.clone()),
            _ => Some(join_update(&kept)),
        }
    }

    fn is_update(&self) -> bool {
        matches!(self.body, FrameBody::Update(_))
    }
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

/// The texts to send for `frames`, taken from a client's queue in one go: each run of update
/// frames becomes one update with the latest aggregate of each key, so a client that fell
/// behind gets the current values instead of every step; other frames keep their place. A
/// lone frame reuses its shared text.
pub fn merged_texts(frames: &[Arc<Frame>], filter: Option<&MachineFilter>) -> Vec<ByteString> {
    let mut texts = Vec::new();
    for run in frames.chunk_by(|a, b| a.is_update() && b.is_update()) {
        match run {
            [frame] => texts.extend(frame.text_for(filter)),
            _ => texts.extend(merge_updates(run, filter)),
        }
    }
    texts
}

/// The latest aggregate of each key of a run of update frames, keys in the order first seen.
fn merge_updates(run: &[Arc<Frame>], filter: Option<&MachineFilter>) -> Vec<ByteString> {
    // Lives only for this merge, so hashbrown's fast default hasher is enough.
    let mut slot: HashMap<(&str, u32), usize> = HashMap::new();
    let mut latest: Vec<&str> = Vec::new();
    for frame in run {
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
    latest
        .chunks(MAX_ITEMS_PER_FRAME)
        .map(join_update)
        .collect()
}

/// The JSON frames of the WebSocket protocol, but `update` and `snapshot`, which are written
/// by hand.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Wire<'a> {
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

    #[test]
    fn other_frames_are_encoded_for_a_filtered_client() {
        let key = |machine: &str| KeyRef {
            machine_id: machine.into(),
            scrap_index: 1,
        };
        let remove = Frame::new(FrameBody::Remove(vec![key("A1"), key("B1")]));
        let a1 = MachineFilter::parse("A1").unwrap();
        assert_eq!(
            json(&remove.text_for(Some(&a1)).unwrap()),
            serde_json::json!({"type": "remove", "keys": [key("A1")]})
        );
        let c1 = MachineFilter::parse("C1").unwrap();
        assert!(remove.text_for(Some(&c1)).is_none());
        let ingest = Some(IngestView::single(true));
        let status = Frame::new(FrameBody::Status(MqttState::Connected, ingest));
        assert_eq!(status.text_for(Some(&c1)), Some(status.text.clone()));
        assert_eq!(
            json(&status.text),
            serde_json::json!({"type": "status", "mqtt": "connected", "ingest": {"online": true}})
        );
    }
}
