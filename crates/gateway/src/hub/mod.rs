//! The gateway's state and its fan-out: the latest aggregate, alarm and trend per key, the
//! pipeline status, and the frames that tell WebSocket clients about changes.
//!
//! The MQTT task records changes as pending (each topic family in a `latest::Latest`); the
//! batcher ([`crate::hub::batcher`]) applies them to the shown state at most once per short
//! interval and broadcasts them as frames, each encoded once. A client subscribes to the
//! frames, then takes its snapshot in parts ([`crate::hub::snapshot`]), each under the lock
//! the batcher applies and broadcasts under, so the frames it applies after the snapshot
//! bring it to the latest state: nothing missed.

pub mod batcher;
pub mod frame;
mod latest;
pub mod liveness;
mod snapshot;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aggregator_core::Aggregate;
use aggregator_core::alarm::{AlarmMessage, AlarmState};
use aggregator_core::trend::TrendMessage;
use serde::Serialize;
use tokio::sync::{Notify, broadcast};

// What subscribers receive is part of the hub's interface.
pub use crate::hub::frame::{Frame, IngestView, Key, MachineFilter, MqttState, merged_texts};
use crate::hub::frame::{FrameBody, MAX_FRAME_BYTES, MAX_ITEMS_PER_FRAME};
use crate::hub::latest::{Latest, Outcome, Stamped, chunks};
use crate::hub::liveness::{IngestLiveness, ShardStatus};
use crate::hub::snapshot::SnapshotCursor;
use crate::metrics::Metrics;

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

/// What a new (or resynced) client starts from: its snapshot, taken part by part with
/// [`Hub::snapshot_part`], then the frames.
#[derive(Debug)]
pub struct Subscription {
    /// Frames since the subscription, to apply after the snapshot's last part.
    pub frames: broadcast::Receiver<Arc<Frame>>,
    /// Where the snapshot has got to; `None` once its last part was taken.
    snapshot: Option<SnapshotCursor>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Snapshots and `/api/aggregates` show the flushed aggregates only.
    aggregates: Latest<Aggregate>,
    alarms: Latest<AlarmMessage>,
    trends: Latest<TrendMessage>,
    ingest: Option<IngestView>,
    liveness: IngestLiveness,
    mqtt: MqttState,
    /// Status changed since the last flush.
    status_dirty: bool,
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
            inner: Mutex::default(),
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

    /// Records `value` (`None`: forget) for `key` in the family `latest` picks, for the
    /// next flush, and wakes the batcher if it changes something; counts it if it is
    /// stamped before the value held (a late redelivery).
    fn set<V: PartialEq + Clone + Stamped>(
        &self,
        latest: impl FnOnce(&mut Inner) -> &mut Latest<V>,
        key: Key,
        value: Option<V>,
    ) {
        match latest(&mut self.lock()).set(key, value) {
            Outcome::Changed => self.wake.notify_one(),
            Outcome::Stale => {
                self.metrics.stale_messages.inc();
            }
            Outcome::Unchanged => {}
        }
    }

    /// Stores the latest aggregate of its key, unless the one held is stamped later.
    pub fn upsert(&self, aggregate: Aggregate) {
        let key = (aggregate.machine_id.clone(), aggregate.scrap_index);
        self.set(|inner| &mut inner.aggregates, key, Some(aggregate));
    }

    /// Forgets a key (its retained aggregate was cleared).
    pub fn remove(&self, machine: &str, index: u32) {
        self.set(|inner| &mut inner.aggregates, (machine.into(), index), None);
    }

    /// Records the latest alarm message of (`machine`, `index`), unless the one held is
    /// stamped later; `None` forgets the key (its retained alarm was emptied). `?machines=`
    /// filters go by `machine`.
    pub fn set_alarm(&self, machine: &str, index: u32, alarm: Option<AlarmMessage>) {
        self.set(|inner| &mut inner.alarms, (machine.into(), index), alarm);
    }

    /// Records the latest trend of (`machine`, `index`), unless the one held ends later;
    /// `None` forgets the key.
    pub fn set_trend(&self, machine: &str, index: u32, trend: Option<TrendMessage>) {
        self.set(|inner| &mut inner.trends, (machine.into(), index), trend);
    }

    /// Records the single ingest's liveness (`None`: its retained status was cleared).
    pub fn set_ingest(&self, online: Option<bool>) {
        self.update_liveness(|live| live.set_single(online));
    }

    /// Records shard `shard`'s liveness (`None`: its retained status was cleared).
    pub fn set_ingest_shard(&self, shard: u32, status: Option<ShardStatus>) {
        self.update_liveness(|live| live.set_shard(shard, status));
    }

    fn update_liveness(&self, f: impl FnOnce(&mut IngestLiveness)) {
        let mut inner = self.lock();
        f(&mut inner.liveness);
        self.refresh_ingest(&mut inner);
    }

    /// Re-derives the ingest view clients see, and tells them when it changed.
    fn refresh_ingest(&self, inner: &mut Inner) {
        let ingest = inner.liveness.view();
        if inner.ingest != ingest {
            inner.ingest = ingest;
            self.status_changed(inner);
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
        inner.status_dirty = true;
        self.wake.notify_one();
    }

    /// Starts a retained replay (after a ConnAck): keys not heard of until
    /// [`Hub::finish_resync`] were cleared while the gateway was away.
    pub fn begin_resync(&self) {
        let mut inner = self.lock();
        inner.aggregates.begin_resync();
        inner.alarms.begin_resync();
        inner.trends.begin_resync();
        inner.liveness.begin_resync();
    }

    /// Ends the retained replay: forgets every key (aggregate, alarm, trend, ingest status)
    /// that was not re-delivered. Returns how many aggregates were forgotten.
    pub fn finish_resync(&self) -> usize {
        let mut inner = self.lock();
        let forgotten = inner.aggregates.finish_resync();
        if forgotten + inner.alarms.finish_resync() + inner.trends.finish_resync() > 0 {
            self.wake.notify_one();
        }
        if inner.liveness.finish_resync() {
            self.refresh_ingest(&mut inner);
        }
        forgotten
    }

    /// Turns the changes since the last call into frames and broadcasts them: removals,
    /// updates, alarms, trends, then status.
    pub fn flush(&self) {
        let mut inner = self.lock();
        let aggregates = inner.aggregates.flush();
        let alarms = inner.alarms.flush();
        let trends = inner.trends.flush();
        if !aggregates.is_empty() {
            let keys = i64::try_from(inner.aggregates.len()).unwrap_or(i64::MAX);
            self.metrics.keys.set(keys);
        }
        let status = std::mem::take(&mut inner.status_dirty)
            .then_some(FrameBody::Status(inner.mqtt, inner.ingest));
        let removed = chunks(aggregates.removed, MAX_ITEMS_PER_FRAME).map(FrameBody::Remove);
        let alarms = alarms.batches(MAX_ITEMS_PER_FRAME, MAX_FRAME_BYTES, FrameBody::Alarm);
        let trends = trends.batches(MAX_ITEMS_PER_FRAME, MAX_FRAME_BYTES, FrameBody::Trend);
        let frames = (removed.map(Frame::new))
            .chain(chunks(aggregates.changed, MAX_ITEMS_PER_FRAME).map(Frame::update))
            .chain(alarms.chain(trends).chain(status).map(Frame::new));
        // Sent while holding the lock: a client subscribing now sees either the state before
        // these frames and then the frames, or the state after them.
        for frame in frames {
            // An error only means no client is connected right now.
            let _ = self.frames.send(Arc::new(frame));
        }
    }

    /// Subscribes to the frames; the snapshot comes next, from [`Hub::snapshot_part`]. Any
    /// state a part shows later was flushed after this, so its frames reach the receiver.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            frames: self.frames.subscribe(),
            snapshot: Some(SnapshotCursor::default()),
        }
    }

    /// Every aggregate as a JSON array, sorted by machine, then index.
    pub fn aggregates_json(&self) -> String {
        let inner = self.lock();
        let all: Vec<&Aggregate> = inner.aggregates.values(None).collect();
        // expect: as in `encode`.
        serde_json::to_string(&all).expect("aggregates always serialize")
    }

    /// Every raised alarm passing `filter` as a JSON array, sorted by machine, then index.
    pub fn alarms_json(&self, filter: Option<&MachineFilter>) -> String {
        let inner = self.lock();
        let raised: Vec<&AlarmMessage> = (inner.alarms.values(filter))
            .filter(|a| a.state == AlarmState::Raised)
            .collect();
        // expect: alarm messages have string keys and plain values.
        serde_json::to_string(&raised).expect("alarms always serialize")
    }

    /// The `/api/health` view.
    pub fn health(&self) -> Health {
        let inner = self.lock();
        let ok = inner.mqtt == MqttState::Connected;
        Health {
            status: if ok { "ok" } else { "degraded" },
            clients_connected: self.client_count(),
            mqtt: inner.mqtt,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{agg, alarm, hub, json, snapshot, trend};
    use aggregator_core::trend::TrendPointMessage;

    fn next(sub: &mut Subscription) -> serde_json::Value {
        json(&sub.frames.try_recv().unwrap().text)
    }

    #[test]
    fn snapshot_is_sorted_and_carries_status() {
        let hub = hub();
        hub.upsert(agg("B1", 1, 1.0));
        hub.upsert(agg("A1", 2, 2.0));
        hub.upsert(agg("A1", 1, 3.0));
        hub.set_ingest(Some(true));
        hub.flush();
        let mut sub = hub.subscribe();
        let snap = snapshot(&hub, &mut sub, None);
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
        let mut sub = hub.subscribe();
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
        let mut sub = hub.subscribe();
        assert_eq!(
            snapshot(&hub, &mut sub, None)["aggregates"]
                .as_array()
                .unwrap()
                .len(),
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
    fn a_late_older_aggregate_does_not_replace_a_newer_one() {
        let hub = hub();
        let at = |sum: f64, timestamp: &str| Aggregate {
            timestamp: timestamp.into(),
            ..agg("A1", 1, sum)
        };
        hub.upsert(at(5.0, "2026-01-01T12:00:41.337Z"));
        hub.flush();
        // Redelivered late: stamped before the value held, shown or pending.
        hub.upsert(at(1.0, "2026-01-01T12:00:17.471Z"));
        hub.upsert(at(6.0, "2026-01-01T12:00:42.000Z"));
        hub.upsert(at(2.0, "2026-01-01T12:00:41.999Z"));
        hub.flush();
        let api: serde_json::Value = serde_json::from_str(&hub.aggregates_json()).unwrap();
        assert_eq!(api[0]["sumLast60s"], 6.0);
        assert_eq!(hub.metrics().stale_messages.get(), 2);
        // A time in another form is not compared: the message applies, as before.
        hub.upsert(at(3.0, "2026-01-01T12:00:00+00:00"));
        hub.flush();
        let api: serde_json::Value = serde_json::from_str(&hub.aggregates_json()).unwrap();
        assert_eq!(api[0]["sumLast60s"], 3.0);
    }

    #[test]
    fn a_late_older_alarm_does_not_bring_back_a_cleared_one() {
        let hub = hub();
        // A1/1's alarm in `state`, stamped `timestamp`, received and flushed.
        let receive = |state: AlarmState, timestamp: &str| {
            let message = AlarmMessage {
                timestamp: timestamp.into(),
                ..alarm("A1", 1, state)
            };
            hub.set_alarm("A1", 1, Some(message));
            hub.flush();
        };
        receive(AlarmState::Raised, "2026-01-01T12:00:10.000Z");
        receive(AlarmState::Cleared, "2026-01-01T12:00:20.000Z");
        // The raise delivered again, late, after the clear that followed it.
        receive(AlarmState::Raised, "2026-01-01T12:00:10.000Z");
        assert_eq!(hub.alarms_json(None), "[]", "the alarm stays cleared");
        assert_eq!(hub.metrics().stale_messages.get(), 1);
        // A later raise applies.
        receive(AlarmState::Raised, "2026-01-01T12:00:30.000Z");
        assert_eq!(json(&hub.alarms_json(None).into())[0]["maschinenId"], "A1");
    }

    #[test]
    fn a_late_older_trend_does_not_replace_a_newer_one() {
        let hub = hub();
        let ending = |t: &str, sum: f64| {
            let mut trend = trend("A1", 1);
            trend.points.push(TrendPointMessage { t: t.into(), sum });
            trend
        };
        hub.set_trend("A1", 1, Some(ending("2026-01-01T12:00:20.000Z", 2.0)));
        hub.flush();
        let mut sub = hub.subscribe();
        let _ = snapshot(&hub, &mut sub, None);
        hub.set_trend("A1", 1, Some(ending("2026-01-01T12:00:10.000Z", 9.0)));
        hub.flush();
        assert!(sub.frames.try_recv().is_err(), "no frame for a stale trend");
        assert_eq!(hub.metrics().stale_messages.get(), 1);
        hub.set_trend("A1", 1, Some(ending("2026-01-01T12:00:30.000Z", 3.0)));
        hub.flush();
        assert_eq!(next(&mut sub)["trends"][0]["points"][1]["sum"], 3.0);
        // Forgetting a key is never stale.
        hub.set_trend("A1", 1, None);
        hub.flush();
        assert_eq!(next(&mut sub)["removed"][0]["maschinenId"], "A1");
    }

    #[test]
    fn a_stale_copy_in_a_retained_replay_keeps_its_key() {
        let hub = hub();
        let at = |timestamp: &str| Aggregate {
            timestamp: timestamp.into(),
            ..agg("A1", 1, 1.0)
        };
        hub.upsert(at("2026-01-01T12:00:20.000Z"));
        hub.flush();
        hub.begin_resync();
        hub.upsert(at("2026-01-01T12:00:10.000Z"));
        assert_eq!(
            hub.finish_resync(),
            0,
            "the key was replayed: not forgotten"
        );
        hub.flush();
        assert_eq!(hub.health().keys, 1);
    }

    #[test]
    fn going_offline_or_online_is_a_change_even_with_the_same_sums() {
        let hub = hub();
        let at = |offline: bool, timestamp: &str| Aggregate {
            offline,
            timestamp: timestamp.into(),
            ..agg("A1", 1, 5.0)
        };
        hub.upsert(at(false, "2026-01-01T12:00:30.000Z"));
        hub.flush();
        let mut sub = hub.subscribe();
        // The death certificate changes nothing but the flag; the birth clears it again, even
        // at the same instant of ingest's clock.
        for (offline, timestamp) in [
            (true, "2026-01-01T12:00:31.000Z"),
            (false, "2026-01-01T12:00:31.000Z"),
        ] {
            hub.upsert(at(offline, timestamp));
            hub.flush();
            let update = next(&mut sub);
            assert_eq!(update["aggregates"][0]["sumLast60s"], 5.0);
            let flag = update["aggregates"][0].get("offline").cloned();
            assert_eq!(
                flag,
                offline.then_some(serde_json::json!(true)),
                "absent when online"
            );
            let api = json(&hub.aggregates_json().into());
            assert_eq!(
                api[0], update["aggregates"][0],
                "the API shows what the frame said"
            );
        }
        assert_eq!(hub.metrics().stale_messages.get(), 0);
    }

    #[test]
    fn unchanged_values_send_nothing() {
        let hub = hub();
        hub.upsert(agg("A1", 1, 1.0));
        hub.flush();
        let mut sub = hub.subscribe();
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
        let mut sub = hub.subscribe();
        let snap = snapshot(&hub, &mut sub, Some(&filter));
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
        hub.set_alarm("A1", 1, Some(alarm("A1", 1, AlarmState::Raised)));
        hub.set_trend("A1", 1, Some(trend("A1", 1)));
        hub.flush();
        let mut sub = hub.subscribe();
        hub.begin_resync();
        hub.upsert(agg("A1", 1, 1.0));
        assert_eq!(hub.finish_resync(), 1, "the count is of aggregates");
        hub.flush();
        let frames: Vec<serde_json::Value> = std::iter::from_fn(|| sub.frames.try_recv().ok())
            .map(|f| json(&f.text))
            .collect();
        let kinds: Vec<&serde_json::Value> = frames.iter().map(|f| &f["type"]).collect();
        assert_eq!(kinds, ["remove", "alarm", "trend"]);
        assert_eq!(frames[0]["keys"][0]["scrapIndex"], 2);
        assert_eq!(hub.health().keys, 1);
        assert_eq!(hub.alarms_json(None), "[]");
        assert_eq!(hub.finish_resync(), 0, "only once per replay");
    }

    #[test]
    fn resync_forgets_shards_whose_status_was_not_redelivered() {
        let hub = hub();
        let online = |count| {
            Some(ShardStatus {
                online: true,
                shard_count: Some(count),
            })
        };
        for k in 0..4 {
            hub.set_ingest_shard(k, online(4));
        }
        let shards = |hub: &Hub| {
            hub.health()
                .ingest
                .map(|v| (v.shards_online, v.shard_count))
        };
        assert_eq!(shards(&hub), Some((Some(4), Some(4))));
        hub.begin_resync();
        for k in 0..3 {
            hub.set_ingest_shard(k, online(3));
        }
        hub.finish_resync();
        assert_eq!(shards(&hub), Some((Some(3), Some(3))));
    }

    #[test]
    fn a_lagging_receiver_sees_lagged() {
        let hub = Arc::new(Hub::new(2, Arc::new(Metrics::new())));
        let mut sub = hub.subscribe();
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
    fn a_backlog_of_updates_is_merged_to_the_latest_values() {
        let hub = hub();
        let mut sub = hub.subscribe();
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

    #[test]
    fn alarms_and_trends_go_out_in_snapshots_and_frames() {
        let hub = hub();
        hub.set_alarm("A1", 1, Some(alarm("A1", 1, AlarmState::Raised)));
        hub.set_alarm("B1", 1, Some(alarm("B1", 1, AlarmState::Cleared)));
        hub.set_trend("A1", 1, Some(trend("A1", 1)));
        assert_eq!(
            hub.alarms_json(None),
            "[]",
            "nothing shown before the flush"
        );
        hub.flush();
        let mut sub = hub.subscribe();
        let snap = snapshot(&hub, &mut sub, None);
        assert_eq!(snap["alarms"].as_array().unwrap().len(), 2);
        assert_eq!(snap["trends"][0]["points"][0]["sum"], 1.5);
        let raised = json(&hub.alarms_json(None).into());
        assert_eq!(raised.as_array().unwrap().len(), 1, "only raised alarms");
        assert_eq!(raised[0]["maschinenId"], "A1");
        let b1 = MachineFilter::parse("B1").unwrap();
        assert_eq!(hub.alarms_json(Some(&b1)), "[]");
        let filtered = snapshot(&hub, &mut hub.subscribe(), Some(&b1));
        assert_eq!(filtered["alarms"][0]["maschinenId"], "B1");
        assert_eq!(filtered["trends"], serde_json::json!([]));

        hub.set_alarm("B1", 1, Some(alarm("B1", 1, AlarmState::Raised)));
        hub.set_alarm("A1", 1, None);
        hub.set_trend("A1", 1, None);
        hub.flush();
        let frame = sub.frames.try_recv().unwrap();
        assert_eq!(
            json(&frame.text),
            serde_json::json!({"type": "alarm",
                "alarms": [alarm("B1", 1, AlarmState::Raised)],
                "removed": [{"maschinenId": "A1", "scrapIndex": 1}]})
        );
        let only_a1 = MachineFilter::parse("A1").unwrap();
        assert_eq!(
            json(&frame.text_for(Some(&only_a1)).unwrap())["alarms"],
            serde_json::json!([])
        );
        let trend_frame = sub.frames.try_recv().unwrap();
        assert_eq!(
            json(&trend_frame.text),
            serde_json::json!({"type": "trend", "trends": [],
                "removed": [{"maschinenId": "A1", "scrapIndex": 1}]})
        );
        assert!(trend_frame.text_for(Some(&b1)).is_none(), "nothing for B1");
        assert!(sub.frames.try_recv().is_err());
        let snap = snapshot(&hub, &mut hub.subscribe(), None);
        assert_eq!(snap["trends"], serde_json::json!([]));
        assert_eq!(snap["alarms"][0]["maschinenId"], "B1");
    }
}
