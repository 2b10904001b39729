//! The gateway's state and its fan-out: the latest aggregate per key, the pipeline status,
//! and the frames that tell WebSocket clients about changes.
//!
//! The MQTT task records changes as pending; the batcher ([`Hub::run_batcher`]) applies the
//! pending changes of a short interval to the published state and turns them into `remove`,
//! `update` and `status` frames, each encoded once and broadcast. Clients subscribe and take
//! their snapshot of the published state under the same lock the batcher applies and
//! broadcasts under, so a client's frames continue its snapshot exactly: nothing missed,
//! nothing twice.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aggregator_core::{Aggregate, KeyRef};
use bytestring::ByteString;
use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use serde::Serialize;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// A (machine, scrap index) key.
pub type Key = (String, u32);

/// Most aggregates (or keys) in one frame (~200 KB). The broadcast ring holds up to
/// `client_queue_frames` frames, so this bounds its memory even when every key changes.
const MAX_ITEMS_PER_FRAME: usize = 1_000;

/// Broker connection state as shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MqttState {
    /// Connected to the broker.
    Connected,
    /// Not connected (starting, or the broker is unreachable).
    Disconnected,
}

/// Ingest liveness as shown to clients: `{"online":true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IngestView {
    /// Whether ingest said it is online.
    pub online: bool,
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
    fn update(aggregates: Vec<Aggregate>) -> Self {
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
        }
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
enum Wire<'a> {
    Snapshot {
        aggregates: Vec<&'a Aggregate>,
        ingest: Option<IngestView>,
        mqtt: MqttState,
    },
    Remove {
        keys: Vec<&'a KeyRef>,
    },
    Status {
        mqtt: MqttState,
        ingest: Option<IngestView>,
    },
}

fn encode(wire: &Wire<'_>) -> ByteString {
    // expect: these types have string keys and no fallible Serialize impls, so serde_json
    // cannot fail on them (non-finite floats become null).
    let json = serde_json::to_string(wire).expect("frames always serialize");
    ByteString::from(json)
}

/// `/api/health` body.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `ok` while connected to the broker, else `degraded`.
    pub status: &'static str,
    /// Open WebSocket connections.
    pub clients_connected: usize,
    /// Broker connection state.
    pub mqtt: MqttState,
    /// Ingest liveness, `null` when unknown.
    pub ingest: Option<IngestView>,
    /// Aggregates held.
    pub keys: usize,
}

impl Health {
    /// Whether the gateway can serve live data.
    pub fn is_ok(&self) -> bool {
        self.mqtt == MqttState::Connected
    }
}

/// What a new (or resynced) client starts from.
#[derive(Debug)]
pub struct Subscription {
    /// Frames after the snapshot.
    pub frames: broadcast::Receiver<Arc<Frame>>,
    /// The snapshot frame text.
    pub snapshot: ByteString,
}

#[derive(Debug)]
struct Inner {
    /// What clients have been told: snapshots and `/api/aggregates` show this.
    aggregates: BTreeMap<Key, Aggregate>,
    /// Changes since the last flush, latest per key; `None` removes the key.
    pending: BTreeMap<Key, Option<Aggregate>>,
    ingest: Option<IngestView>,
    mqtt: MqttState,
    /// Status changed since the last flush.
    status_dirty: bool,
    /// Encoded unfiltered snapshot, valid until the next change.
    snapshot: Option<ByteString>,
    /// During the retained replay after a reconnect: keys heard of since the reconnect.
    seen: Option<HashSet<Key>>,
}

/// State plus fan-out; shared by the MQTT task, the batcher, HTTP handlers and clients.
#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    frames: broadcast::Sender<Arc<Frame>>,
    wake: Notify,
    clients: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// A hub whose clients may fall `queue_frames` frames behind before they are resynced.
    pub fn new(queue_frames: usize, metrics: Arc<Metrics>) -> Self {
        let (frames, _) = broadcast::channel(queue_frames.max(1));
        Self {
            inner: Mutex::new(Inner {
                aggregates: BTreeMap::new(),
                ingest: None,
                mqtt: MqttState::Disconnected,
                pending: BTreeMap::new(),
                status_dirty: false,
                snapshot: None,
                seen: None,
            }),
            frames,
            wake: Notify::new(),
            clients: AtomicUsize::new(0),
            metrics,
        }
    }

    /// The metrics this hub updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is one insert
        // or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a change of `key` to `value` (`None`: forget it) for the next flush, unless it
    /// changes nothing.
    fn change(&self, inner: &mut Inner, key: Key, value: Option<Aggregate>) {
        let current = match inner.pending.get(&key) {
            Some(pending) => pending.as_ref(),
            None => inner.aggregates.get(&key),
        };
        if current == value.as_ref() {
            return;
        }
        inner.pending.insert(key, value);
        self.wake.notify_one();
    }

    /// Stores the latest aggregate of its key.
    pub fn upsert(&self, aggregate: Aggregate) {
        let key = (aggregate.machine_id.clone(), aggregate.scrap_index);
        let mut inner = self.lock();
        if let Some(seen) = inner.seen.as_mut() {
            seen.insert(key.clone());
        }
        self.change(&mut inner, key, Some(aggregate));
    }

    /// Forgets a key (its retained aggregate was cleared).
    pub fn remove(&self, machine: &str, index: u32) {
        let key = (machine.to_owned(), index);
        let mut inner = self.lock();
        if let Some(seen) = inner.seen.as_mut() {
            seen.insert(key.clone());
        }
        self.change(&mut inner, key, None);
    }

    /// Records ingest liveness (`None`: its retained status was cleared).
    pub fn set_ingest(&self, ingest: Option<IngestView>) {
        let mut inner = self.lock();
        if inner.ingest != ingest {
            inner.ingest = ingest;
            self.status_changed(&mut inner);
        }
    }

    /// Records the broker connection state.
    pub fn set_mqtt(&self, state: MqttState) {
        self.metrics
            .broker_connected
            .set(i64::from(state == MqttState::Connected));
        let mut inner = self.lock();
        if inner.mqtt != state {
            inner.mqtt = state;
            self.status_changed(&mut inner);
        }
    }

    fn status_changed(&self, inner: &mut Inner) {
        // Status is small and idempotent, so snapshots show it at once; the status frame
        // that follows may repeat it.
        inner.snapshot = None;
        inner.status_dirty = true;
        self.wake.notify_one();
    }

    /// Starts a retained replay (after a ConnAck): keys not heard of until
    /// [`Hub::finish_resync`] were cleared while the gateway was away.
    pub fn begin_resync(&self) {
        self.lock().seen = Some(HashSet::new());
    }

    /// Ends the retained replay: forgets every key that was not re-delivered. Returns how
    /// many were forgotten.
    pub fn finish_resync(&self) -> usize {
        let mut inner = self.lock();
        let Some(seen) = inner.seen.take() else {
            return 0;
        };
        let live = inner.aggregates.keys().chain(
            inner
                .pending
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|_| k)),
        );
        let stale: HashSet<Key> = live.filter(|k| !seen.contains(*k)).cloned().collect();
        let forgotten = stale.len();
        for key in stale {
            self.change(&mut inner, key, None);
        }
        forgotten
    }

    /// Turns the changes since the last call into frames and broadcasts them.
    pub fn flush(&self) {
        let mut inner = self.lock();
        if inner.pending.is_empty() && !inner.status_dirty {
            return;
        }
        let pending = std::mem::take(&mut inner.pending);
        let mut updates = Vec::new();
        let mut removes = Vec::new();
        for (key, value) in pending {
            match value {
                Some(a) => {
                    inner.aggregates.insert(key, a.clone());
                    updates.push(a);
                }
                // A key added and removed within one batch was never shown: nothing to say.
                None => {
                    if inner.aggregates.remove(&key).is_some() {
                        removes.push(KeyRef {
                            machine_id: key.0,
                            scrap_index: key.1,
                        });
                    }
                }
            }
        }
        if !updates.is_empty() || !removes.is_empty() {
            inner.snapshot = None;
            self.metrics.keys.set(gauge_value(inner.aggregates.len()));
        }
        // Sent while holding the lock: a client subscribing now sees either the state before
        // these frames and then the frames, or the state after them.
        while !removes.is_empty() {
            let rest = removes.split_off(removes.len().min(MAX_ITEMS_PER_FRAME));
            let text = encode(&Wire::Remove {
                keys: removes.iter().collect(),
            });
            self.broadcast(text, FrameBody::Remove(removes));
            removes = rest;
        }
        while !updates.is_empty() {
            let rest = updates.split_off(updates.len().min(MAX_ITEMS_PER_FRAME));
            self.send_frame(Frame::update(updates));
            updates = rest;
        }
        if std::mem::take(&mut inner.status_dirty) {
            let text = encode(&Wire::Status {
                mqtt: inner.mqtt,
                ingest: inner.ingest,
            });
            self.broadcast(text, FrameBody::Status);
        }
    }

    fn broadcast(&self, text: ByteString, body: FrameBody) {
        self.send_frame(Frame { text, body });
    }

    fn send_frame(&self, frame: Frame) {
        // An error only means no client is connected right now.
        let _ = self.frames.send(Arc::new(frame));
    }

    /// Flushes changes until `shutdown`, at most once per batch interval: a change after a
    /// quiet interval is flushed at once (leading edge), so an idle dashboard sees it without
    /// delay; changes that arrive within the interval of the last flush wait for its end, so a
    /// busy one gets one frame per interval instead of one per change.
    ///
    /// Batching only pays when there are many clients to send each frame to, so the interval
    /// is `interval` at most but shrinks with the client count (see [`batch_interval`]): one
    /// dashboard gets every change at once, ten thousand get 20 ms batches.
    pub async fn run_batcher(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut last_flush: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
            }
            let interval = batch_interval(interval, self.client_count());
            if let Some(due) = last_flush.map(|at| at + interval)
                && due > tokio::time::Instant::now()
            {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(due) => {}
                }
            }
            self.flush();
            last_flush = Some(tokio::time::Instant::now());
        }
    }

    /// Subscribes to the frames and takes the snapshot they follow, atomically.
    pub fn subscribe(&self, filter: Option<&MachineFilter>) -> Subscription {
        let mut inner = self.lock();
        let frames = self.frames.subscribe();
        let snapshot = match filter {
            Some(filter) => encode(&Wire::Snapshot {
                aggregates: inner
                    .aggregates
                    .values()
                    .filter(|a| filter.matches(&a.machine_id))
                    .collect(),
                ingest: inner.ingest,
                mqtt: inner.mqtt,
            }),
            None => {
                if let Some(cached) = &inner.snapshot {
                    cached.clone()
                } else {
                    let text = encode(&Wire::Snapshot {
                        aggregates: inner.aggregates.values().collect(),
                        ingest: inner.ingest,
                        mqtt: inner.mqtt,
                    });
                    inner.snapshot = Some(text.clone());
                    text
                }
            }
        };
        Subscription { frames, snapshot }
    }

    /// Every aggregate as a JSON array, sorted by machine, then index.
    pub fn aggregates_json(&self) -> String {
        let inner = self.lock();
        let all: Vec<&Aggregate> = inner.aggregates.values().collect();
        // expect: as in `encode`.
        serde_json::to_string(&all).expect("aggregates always serialize")
    }

    /// The `/api/health` view.
    pub fn health(&self) -> Health {
        let inner = self.lock();
        let mqtt = inner.mqtt;
        Health {
            status: if mqtt == MqttState::Connected {
                "ok"
            } else {
                "degraded"
            },
            clients_connected: self.clients.load(Ordering::Relaxed),
            mqtt,
            ingest: inner.ingest,
            keys: inner.aggregates.len(),
        }
    }

    /// Reserves a client slot unless `max` clients are connected.
    pub fn try_admit(self: &Arc<Self>, max: usize) -> Option<ClientSlot> {
        self.clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.metrics.clients.inc();
        Some(ClientSlot {
            hub: Arc::clone(self),
        })
    }

    /// Open client connections.
    pub fn client_count(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }
}

/// One admitted client; frees its slot when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    hub: Arc<Hub>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.hub.clients.fetch_sub(1, Ordering::AcqRel);
        self.hub.metrics.clients.dec();
    }
}

/// Client frame sends per second the batcher aims to stay under: at 20 ms batches this is
/// reached at 4 000 clients; below it, frames go out sooner.
const SEND_BUDGET_PER_SEC: f64 = 200_000.0;

/// The pause between flushes for `clients` clients: long enough that `clients` sends per
/// flush stay within [`SEND_BUDGET_PER_SEC`], never longer than the configured `max`.
pub fn batch_interval(max: Duration, clients: usize) -> Duration {
    max.min(Duration::from_secs_f64(
        clients as f64 / SEND_BUDGET_PER_SEC,
    ))
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(machine: &str, index: u32, sum: f64) -> Aggregate {
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

    fn hub() -> Arc<Hub> {
        Arc::new(Hub::new(16, Arc::new(Metrics::new())))
    }

    fn json(text: &ByteString) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    fn next(sub: &mut Subscription) -> serde_json::Value {
        json(&sub.frames.try_recv().unwrap().text)
    }

    #[test]
    fn snapshot_is_sorted_and_carries_status() {
        let hub = hub();
        hub.upsert(agg("B1", 1, 1.0));
        hub.upsert(agg("A1", 2, 2.0));
        hub.upsert(agg("A1", 1, 3.0));
        hub.set_ingest(Some(IngestView { online: true }));
        hub.flush();
        let sub = hub.subscribe(None);
        let snap = json(&sub.snapshot);
        assert_eq!(snap["type"], "snapshot");
        assert_eq!(snap["ingest"], serde_json::json!({"online": true}));
        assert_eq!(snap["mqtt"], "disconnected");
        let keys: Vec<(String, u64)> = snap["aggregates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["maschinenId"].as_str().unwrap().to_owned(),
                    a["scrapIndex"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            vec![("A1".into(), 1), ("A1".into(), 2), ("B1".into(), 1)]
        );
        let api: serde_json::Value = serde_json::from_str(&hub.aggregates_json()).unwrap();
        assert_eq!(api, snap["aggregates"]);
    }

    #[test]
    fn a_batch_sends_latest_values_removals_and_status() {
        let hub = hub();
        hub.upsert(agg("A1", 1, 1.0));
        hub.upsert(agg("A1", 2, 1.0));
        hub.flush();
        let mut sub = hub.subscribe(None);
        hub.upsert(agg("A1", 1, 2.0));
        hub.upsert(agg("A1", 1, 3.0));
        hub.remove("A1", 2);
        hub.set_mqtt(MqttState::Connected);
        hub.flush();
        let remove = next(&mut sub);
        assert_eq!(
            remove,
            serde_json::json!({"type":"remove","keys":[{"maschinenId":"A1","scrapIndex":2}]})
        );
        let update = next(&mut sub);
        assert_eq!(update["type"], "update");
        assert_eq!(update["aggregates"].as_array().unwrap().len(), 1);
        assert_eq!(update["aggregates"][0]["sumLast60s"], 3.0);
        let status = next(&mut sub);
        assert_eq!(
            status,
            serde_json::json!({"type":"status","mqtt":"connected","ingest":null})
        );
        assert!(sub.frames.try_recv().is_err(), "nothing more");
        hub.flush();
        assert!(
            sub.frames.try_recv().is_err(),
            "an empty flush sends nothing"
        );
    }

    #[test]
    fn frames_continue_the_snapshot_without_repeats() {
        let hub = hub();
        hub.upsert(agg("A1", 1, 1.0));
        hub.upsert(agg("A1", 2, 1.0));
        hub.flush();
        hub.upsert(agg("A1", 1, 2.0));
        hub.remove("A1", 2);
        hub.upsert(agg("B1", 1, 1.0));
        hub.remove("B1", 1);
        // Subscribed between the changes and their flush: the snapshot is the flushed state,
        // and the frames carry exactly the changes.
        let mut sub = hub.subscribe(None);
        assert_eq!(
            json(&sub.snapshot)["aggregates"].as_array().unwrap().len(),
            2
        );
        assert_eq!(hub.health().keys, 2);
        hub.flush();
        assert_eq!(
            next(&mut sub)["keys"],
            serde_json::json!([{"maschinenId":"A1","scrapIndex":2}]),
            "B1/1 was never shown, so it is not removed"
        );
        let update = next(&mut sub);
        assert_eq!(update["aggregates"].as_array().unwrap().len(), 1);
        assert_eq!(update["aggregates"][0]["sumLast60s"], 2.0);
        assert!(sub.frames.try_recv().is_err());
        assert_eq!(hub.health().keys, 1);
    }

    #[test]
    fn unchanged_values_send_nothing() {
        let hub = hub();
        hub.upsert(agg("A1", 1, 1.0));
        hub.flush();
        let mut sub = hub.subscribe(None);
        hub.upsert(agg("A1", 1, 1.0));
        hub.remove("Z9", 1);
        hub.set_mqtt(MqttState::Disconnected);
        hub.flush();
        assert!(sub.frames.try_recv().is_err());
    }

    #[test]
    fn filters_keep_only_their_machines() {
        let hub = hub();
        let filter = MachineFilter::parse("A1, C3").unwrap();
        hub.upsert(agg("A1", 1, 1.0));
        hub.upsert(agg("B1", 1, 1.0));
        hub.flush();
        let mut sub = hub.subscribe(Some(&filter));
        let snap = json(&sub.snapshot);
        assert_eq!(snap["aggregates"].as_array().unwrap().len(), 1);
        hub.upsert(agg("A1", 1, 5.0));
        hub.upsert(agg("B1", 1, 5.0));
        hub.flush();
        let frame = sub.frames.try_recv().unwrap();
        let text = frame.text_for(Some(&filter)).unwrap();
        let v = json(&text);
        assert_eq!(v["aggregates"].as_array().unwrap().len(), 1);
        assert_eq!(v["aggregates"][0]["maschinenId"], "A1");
        hub.upsert(agg("B1", 1, 6.0));
        hub.flush();
        let frame = sub.frames.try_recv().unwrap();
        assert!(frame.text_for(Some(&filter)).is_none());
        assert!(frame.text_for(None).is_some());
        assert_eq!(MachineFilter::parse(" , "), None);
    }

    #[test]
    fn resync_forgets_keys_not_redelivered() {
        let hub = hub();
        hub.upsert(agg("A1", 1, 1.0));
        hub.upsert(agg("A1", 2, 1.0));
        hub.flush();
        let mut sub = hub.subscribe(None);
        hub.begin_resync();
        hub.upsert(agg("A1", 1, 1.0));
        assert_eq!(hub.finish_resync(), 1);
        hub.flush();
        assert_eq!(next(&mut sub)["type"], "remove");
        assert_eq!(hub.health().keys, 1);
        assert_eq!(hub.finish_resync(), 0, "only once per replay");
    }

    #[test]
    fn a_lagging_receiver_sees_lagged() {
        let hub = Arc::new(Hub::new(2, Arc::new(Metrics::new())));
        let mut sub = hub.subscribe(None);
        for i in 0..5 {
            hub.upsert(agg("A1", 1, f64::from(i)));
            hub.flush();
        }
        assert!(matches!(
            sub.frames.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(3))
        ));
    }

    #[test]
    fn batch_interval_grows_with_clients_up_to_the_setting() {
        let max = Duration::from_millis(20);
        assert_eq!(batch_interval(max, 0), Duration::ZERO);
        assert_eq!(batch_interval(max, 200), Duration::from_millis(1));
        assert_eq!(batch_interval(max, 2_000), Duration::from_millis(10));
        assert_eq!(batch_interval(max, 10_000), max);
        assert_eq!(batch_interval(Duration::ZERO, 10_000), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_after_a_quiet_interval_is_sent_at_once() {
        let hub = hub();
        let slots: Vec<ClientSlot> = (0..10_000)
            .map(|_| hub.try_admit(20_000).unwrap())
            .collect();
        let mut sub = hub.subscribe(None);
        let shutdown = CancellationToken::new();
        let batcher =
            tokio::spawn(Arc::clone(&hub).run_batcher(Duration::from_millis(20), shutdown.clone()));
        let start = tokio::time::Instant::now();
        hub.upsert(agg("A1", 1, 1.0));
        sub.frames.recv().await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "leading edge: no wait");
        hub.upsert(agg("A1", 1, 2.0));
        hub.upsert(agg("A1", 1, 3.0));
        let frame = sub.frames.recv().await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(20),
            "under load: one frame per interval"
        );
        assert_eq!(json(&frame.text)["aggregates"][0]["sumLast60s"], 3.0);
        shutdown.cancel();
        batcher.await.unwrap();
        drop(slots);
    }

    #[test]
    fn a_backlog_of_updates_is_merged_to_the_latest_values() {
        let hub = hub();
        let mut sub = hub.subscribe(None);
        for (sum, machine) in [(1.0, "A1"), (2.0, "B1"), (3.0, "A1")] {
            hub.upsert(agg(machine, 1, sum));
            hub.flush();
        }
        hub.remove("B1", 1);
        hub.flush();
        hub.upsert(agg("A1", 1, 4.0));
        hub.flush();
        let frames: Vec<Arc<Frame>> = std::iter::from_fn(|| sub.frames.try_recv().ok()).collect();
        assert_eq!(frames.len(), 5);
        let texts: Vec<serde_json::Value> = merged_texts(&frames, None).iter().map(json).collect();
        assert_eq!(
            texts.len(),
            3,
            "updates merged, the removal kept in its place"
        );
        let sums: Vec<(String, f64)> = texts[0]["aggregates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["maschinenId"].as_str().unwrap().to_owned(),
                    a["sumLast60s"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(sums, vec![("A1".into(), 3.0), ("B1".into(), 2.0)]);
        assert_eq!(texts[1]["type"], "remove");
        assert_eq!(texts[2]["aggregates"][0]["sumLast60s"], 4.0);
        let filter = MachineFilter::parse("B1").unwrap();
        let filtered = merged_texts(&frames, Some(&filter));
        assert_eq!(filtered.len(), 2, "B1's update and its removal");
    }

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
    fn admission_is_capped_and_slots_are_freed() {
        let hub = hub();
        let a = hub.try_admit(2).unwrap();
        let _b = hub.try_admit(2).unwrap();
        assert!(hub.try_admit(2).is_none());
        drop(a);
        assert!(hub.try_admit(2).is_some());
        assert_eq!(hub.health().clients_connected, 1);
    }

    #[test]
    fn health_reflects_the_broker() {
        let hub = hub();
        assert!(!hub.health().is_ok());
        assert_eq!(hub.health().status, "degraded");
        hub.set_mqtt(MqttState::Connected);
        assert!(hub.health().is_ok());
        let v = serde_json::to_value(hub.health()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status":"ok","clients_connected":0,"mqtt":"connected","ingest":null,"keys":0})
        );
    }
}
