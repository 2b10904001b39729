//! Alarms and trends relayed from the retained `alarms/+/+` and `trends/+/+` topics: the
//! latest message per key, kept beside the aggregates in the hub ([`crate::hub`]).
//!
//! Both follow the aggregates' rules: a change is pending until the batcher flushes it, the
//! snapshot shows the flushed state, an empty retained payload forgets the key, and a key
//! the broker no longer replays after a reconnect is forgotten when the replay ends. Ingest
//! is the only writer of these topics; the gateway stays stateless and rebuilds all of this
//! from the broker's retained messages on every (re)start.

use std::collections::{BTreeMap, HashSet};

use aggregator_core::KeyRef;
use aggregator_core::alarm::{AlarmMessage, AlarmState};
use aggregator_core::trend::TrendMessage;

use crate::hub::frame::{Frame, Key, MachineFilter};

/// Most trends in one frame: a trend of 90 points is about 5 KB, so a frame stays near
/// the ~200 KB of a full update frame.
pub(crate) const MAX_TRENDS_PER_FRAME: usize = 40;

/// The latest value per key of one retained topic family, with its pending changes.
#[derive(Debug)]
pub(crate) struct Latest<V> {
    /// What clients have been told.
    shown: BTreeMap<Key, V>,
    /// Changes since the last flush, latest per key; `None` forgets the key.
    pending: BTreeMap<Key, Option<V>>,
    /// During a retained replay: keys heard of since the reconnect.
    seen: Option<HashSet<Key>>,
}

impl<V> Default for Latest<V> {
    fn default() -> Self {
        Self {
            shown: BTreeMap::new(),
            pending: BTreeMap::new(),
            seen: None,
        }
    }
}

/// What one flush of a [`Latest`] changed.
#[derive(Debug)]
pub(crate) struct Changes<V> {
    /// New or changed values, sorted by key.
    pub changed: Vec<V>,
    /// Keys forgotten that clients had been shown.
    pub removed: Vec<KeyRef>,
}

impl<V> Changes<V> {
    pub(crate) fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

impl<V: PartialEq + Clone> Latest<V> {
    /// Records `value` (`None`: forget) for `key`; `false` when it changes nothing.
    pub(crate) fn set(&mut self, key: Key, value: Option<V>) -> bool {
        if let Some(seen) = self.seen.as_mut() {
            seen.insert(key.clone());
        }
        let current = match self.pending.get(&key) {
            Some(pending) => pending.as_ref(),
            None => self.shown.get(&key),
        };
        if current == value.as_ref() {
            return false;
        }
        self.pending.insert(key, value);
        true
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The shown values, sorted by key.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.shown.values()
    }

    pub(crate) fn begin_resync(&mut self) {
        self.seen = Some(HashSet::new());
    }

    /// Forgets every key not heard of since [`Latest::begin_resync`]; `true` when that
    /// recorded a change.
    pub(crate) fn finish_resync(&mut self) -> bool {
        let Some(seen) = self.seen.take() else {
            return false;
        };
        let live = self.shown.keys().chain(
            self.pending
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|_| k)),
        );
        let stale: Vec<Key> = live.filter(|k| !seen.contains(*k)).cloned().collect();
        let mut changed = false;
        for key in stale {
            changed |= self.set(key, None);
        }
        changed
    }

    /// Applies the pending changes to the shown state.
    pub(crate) fn flush(&mut self) -> Changes<V> {
        let mut changes = Changes {
            changed: Vec::new(),
            removed: Vec::new(),
        };
        for (key, value) in std::mem::take(&mut self.pending) {
            match value {
                Some(v) => {
                    self.shown.insert(key, v.clone());
                    changes.changed.push(v);
                }
                None => {
                    // Added and forgotten within one batch: never shown, nothing to say.
                    if self.shown.remove(&key).is_some() {
                        changes.removed.push(KeyRef {
                            machine_id: key.0,
                            scrap_index: key.1,
                        });
                    }
                }
            }
        }
        changes
    }
}

/// The alarms and trends the gateway relays.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    pub alarms: Latest<AlarmMessage>,
    pub trends: Latest<TrendMessage>,
}

impl Signals {
    pub(crate) fn has_pending(&self) -> bool {
        self.alarms.has_pending() || self.trends.has_pending()
    }

    pub(crate) fn begin_resync(&mut self) {
        self.alarms.begin_resync();
        self.trends.begin_resync();
    }

    /// `true` when keys were forgotten.
    pub(crate) fn finish_resync(&mut self) -> bool {
        let alarms = self.alarms.finish_resync();
        let trends = self.trends.finish_resync();
        alarms || trends
    }

    /// The frames for the pending changes (alarms first), in frames of bounded size; the
    /// pending changes are then the shown state.
    pub(crate) fn flush(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        let alarms = self.alarms.flush();
        if !alarms.is_empty() {
            frames.extend(chunked(
                alarms,
                crate::hub::frame::MAX_ITEMS_PER_FRAME,
                Frame::alarm,
            ));
        }
        let trends = self.trends.flush();
        if !trends.is_empty() {
            frames.extend(chunked(trends, MAX_TRENDS_PER_FRAME, Frame::trend));
        }
        frames
    }

    /// Every raised alarm passing `filter`, sorted by machine, then index.
    pub(crate) fn raised<'a>(
        &'a self,
        filter: Option<&'a MachineFilter>,
    ) -> impl Iterator<Item = &'a AlarmMessage> + 'a {
        self.alarms.values().filter(move |a| {
            a.state == AlarmState::Raised && filter.is_none_or(|f| f.matches(&a.machine_id))
        })
    }
}

/// Splits `changes` into frames of at most `max` values and `max` removed keys each.
fn chunked<V>(
    changes: Changes<V>,
    max: usize,
    make: fn(Vec<V>, Vec<KeyRef>) -> Frame,
) -> Vec<Frame> {
    let Changes {
        mut changed,
        mut removed,
    } = changes;
    let mut frames = Vec::new();
    while !changed.is_empty() || !removed.is_empty() {
        let rest_changed = changed.split_off(changed.len().min(max));
        let rest_removed = removed.split_off(removed.len().min(max));
        frames.push(make(changed, removed));
        changed = rest_changed;
        removed = rest_removed;
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(m: &str, i: u32) -> Key {
        (m.to_owned(), i)
    }

    #[test]
    fn latest_keeps_the_last_value_and_reports_removals_once() {
        let mut latest: Latest<u32> = Latest::default();
        assert!(latest.set(key("A1", 1), Some(1)));
        assert!(latest.set(key("A1", 1), Some(2)));
        assert!(!latest.set(key("A1", 1), Some(2)), "no change");
        assert!(latest.set(key("B1", 1), Some(5)));
        assert!(latest.set(key("B1", 1), None));
        let changes = latest.flush();
        assert_eq!(changes.changed, vec![2]);
        assert!(changes.removed.is_empty(), "B1/1 was never shown");
        assert!(latest.set(key("A1", 1), None));
        let changes = latest.flush();
        assert!(changes.changed.is_empty());
        assert_eq!(changes.removed.len(), 1);
        assert!(latest.flush().is_empty());
    }

    #[test]
    fn a_resync_forgets_what_was_not_replayed() {
        let mut latest: Latest<u32> = Latest::default();
        latest.set(key("A1", 1), Some(1));
        latest.set(key("A1", 2), Some(1));
        latest.flush();
        latest.begin_resync();
        latest.set(key("A1", 1), Some(1));
        assert!(latest.finish_resync());
        let changes = latest.flush();
        assert_eq!(changes.removed[0].scrap_index, 2);
        assert_eq!(latest.values().count(), 1);
        assert!(!latest.finish_resync(), "only once per replay");
    }

    fn alarm(machine: &str, index: u32, state: AlarmState) -> AlarmMessage {
        let json = format!(
            r#"{{"maschinenId":"{machine}","scrapIndex":{index},"state":"{}","metric":"sum","value":31.0,"threshold":30.0,"since":"2026-01-01T12:00:00.000Z","timestamp":"2026-01-01T12:00:00.000Z"}}"#,
            if state == AlarmState::Raised {
                "raised"
            } else {
                "cleared"
            }
        );
        AlarmMessage::parse(json.as_bytes()).unwrap()
    }

    fn trend(machine: &str, index: u32) -> TrendMessage {
        let json = format!(
            r#"{{"maschinenId":"{machine}","scrapIndex":{index},"intervalSeconds":10,"points":[{{"t":"2026-01-01T12:00:00.000Z","sum":1.5}}]}}"#
        );
        TrendMessage::parse(json.as_bytes()).unwrap()
    }

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_hub_relays_alarms_and_trends_in_snapshots_and_frames() {
        let hub = std::sync::Arc::new(crate::hub::Hub::new(16, Default::default()));
        hub.set_alarm("A1", 1, Some(alarm("A1", 1, AlarmState::Raised)));
        hub.set_alarm("B1", 1, Some(alarm("B1", 1, AlarmState::Cleared)));
        hub.set_trend("A1", 1, Some(trend("A1", 1)));
        assert_eq!(
            hub.alarms_json(None),
            "[]",
            "nothing shown before the flush"
        );
        hub.flush();
        let mut sub = hub.subscribe(None);
        let snap = json(&sub.snapshot);
        assert_eq!(snap["alarms"].as_array().unwrap().len(), 2);
        assert_eq!(snap["trends"][0]["points"][0]["sum"], 1.5);
        let raised = json(&hub.alarms_json(None));
        assert_eq!(raised.as_array().unwrap().len(), 1, "only raised alarms");
        assert_eq!(raised[0]["maschinenId"], "A1");
        let a2 = MachineFilter::parse("B1").unwrap();
        assert_eq!(hub.alarms_json(Some(&a2)), "[]");

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
        assert!(trend_frame.text_for(Some(&a2)).is_none(), "nothing for B1");
        assert!(sub.frames.try_recv().is_err());
        let snap = json(&hub.subscribe(None).snapshot);
        assert_eq!(snap["trends"], serde_json::json!([]));
        assert_eq!(snap["alarms"][0]["maschinenId"], "B1");
    }

    #[test]
    fn chunks_bound_both_lists() {
        let changes = Changes {
            changed: (0..5).map(|i| i.to_string()).collect::<Vec<String>>(),
            removed: Vec::new(),
        };
        let frames = chunked(changes, 2, |changed, removed| {
            assert!(changed.len() <= 2 && removed.len() <= 2);
            Frame::alarm(Vec::new(), removed)
        });
        assert_eq!(frames.len(), 3);
    }
}
