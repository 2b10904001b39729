//! A client's snapshot, in parts of about [`PART_BYTES`], each made only when the client has
//! room for it: a client costs one part, never the whole state (100 000 keys with trends are
//! tens of MB).
//!
//! A part's values are taken under the hub's lock (shared, not copied) and encoded after it,
//! so that many clients taking snapshots never hold up the MQTT task. Parts, and the batches
//! within a part, come from different moments. That is safe because the client subscribed to
//! the frames before its first part: every change a later batch already shows is also in a
//! frame it applies after the last part, in order, so it ends on the latest value of every key.

use std::io::Write;
use std::sync::Arc;

use aggregator_core::Aggregate;
use aggregator_core::alarm::AlarmMessage;
use aggregator_core::trend::TrendMessage;
use bytestring::ByteString;
use serde::Serialize;

use crate::hub::frame::{EncodedSize, IngestView, Key, MachineFilter, MqttState};
use crate::hub::latest::Latest;
use crate::hub::{Hub, Inner, Subscription};

/// A part is closed once its text reaches this size (plus at most one batch's misestimate).
pub(crate) const PART_BYTES: usize = 64 * 1024;

/// Where a client's snapshot has got to.
#[derive(Debug, Default)]
pub(crate) struct SnapshotCursor {
    /// The number of the next part, from 0.
    part: u32,
    /// The family being sent; the ones before it are complete.
    family: Family,
    /// The last key of `family` taken.
    after: Option<Key>,
}

/// The lists of a snapshot, in the order they are sent: aggregates first, so that a
/// dashboard has its numbers before the (larger) trends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Family {
    #[default]
    Aggregates,
    Alarms,
    Trends,
    /// Every list is complete.
    Done,
}

impl Family {
    fn next(self) -> Self {
        match self {
            Family::Aggregates => Family::Alarms,
            Family::Alarms => Family::Trends,
            Family::Trends | Family::Done => Family::Done,
        }
    }
}

/// Values taken for a part, to be encoded outside the lock.
enum Batch {
    Aggregates(Vec<Arc<Aggregate>>),
    Alarms(Vec<Arc<AlarmMessage>>),
    Trends(Vec<Arc<TrendMessage>>),
}

/// The three lists of a part being written.
#[derive(Default)]
struct Lists {
    aggregates: Vec<u8>,
    alarms: Vec<u8>,
    trends: Vec<u8>,
}

impl Lists {
    fn len(&self) -> usize {
        self.aggregates.len() + self.alarms.len() + self.trends.len()
    }

    fn add(&mut self, batch: &Batch) {
        match batch {
            Batch::Aggregates(values) => append(&mut self.aggregates, values),
            Batch::Alarms(values) => append(&mut self.alarms, values),
            Batch::Trends(values) => append(&mut self.trends, values),
        }
    }
}

/// `values` as JSON, comma separated, after what `list` holds.
fn append<V: Serialize>(list: &mut Vec<u8>, values: &[Arc<V>]) {
    for value in values {
        if !list.is_empty() {
            list.push(b',');
        }
        // expect: these types have string keys and plain values; writing to a Vec cannot fail.
        serde_json::to_writer(&mut *list, &**value).expect("values serialize");
    }
}

impl Hub {
    /// The next part of `sub`'s snapshot, with only the machines `filter` passes; `None`
    /// after the last. The first part always comes, even for an empty state:
    /// `{"type":"snapshot","part":N,"mqtt":...,"ingest":...,"aggregates":[...],"alarms":[...],
    /// "trends":[...],"last":false}`.
    pub fn snapshot_part(
        &self,
        sub: &mut Subscription,
        filter: Option<&MachineFilter>,
    ) -> Option<ByteString> {
        let cursor = sub.snapshot.as_mut()?;
        let mut lists = Lists::default();
        let status = loop {
            let (batch, status) = {
                let inner = self.lock();
                let room = PART_BYTES.saturating_sub(lists.len());
                (
                    inner.take_batch(cursor, filter, room),
                    (inner.mqtt, inner.ingest),
                )
            };
            if let Some(batch) = &batch {
                lists.add(batch);
            }
            if cursor.family == Family::Done || lists.len() >= PART_BYTES {
                break status;
            }
        };
        let last = cursor.family == Family::Done;
        let text = encode_part(cursor.part, status, &lists, last);
        cursor.part += 1;
        if last {
            sub.snapshot = None;
        }
        Some(text)
    }
}

fn encode_part(
    part: u32,
    (mqtt, ingest): (MqttState, Option<IngestView>),
    lists: &Lists,
    last: bool,
) -> ByteString {
    let mut out = Vec::with_capacity(lists.len() + 256);
    // expect (here and below): writing to a Vec cannot fail, and the status serializes.
    write!(out, r#"{{"type":"snapshot","part":{part},"mqtt":"#).expect("to a Vec");
    serde_json::to_writer(&mut out, &mqtt).expect("status serializes");
    out.extend_from_slice(br#","ingest":"#);
    serde_json::to_writer(&mut out, &ingest).expect("status serializes");
    for (name, list) in [
        ("aggregates", &lists.aggregates),
        ("alarms", &lists.alarms),
        ("trends", &lists.trends),
    ] {
        write!(out, r#","{name}":["#).expect("to a Vec");
        out.extend_from_slice(list);
        out.push(b']');
    }
    write!(out, r#","last":{last}}}"#).expect("to a Vec");
    // expect: serde_json and the literals above write UTF-8 only.
    ByteString::from(String::from_utf8(out).expect("snapshot parts are UTF-8"))
}

impl Inner {
    /// The values of the cursor's family after its key, about `room` bytes of them (at least
    /// one), advancing the cursor; `None` when the snapshot is complete.
    fn take_batch(
        &self,
        cursor: &mut SnapshotCursor,
        filter: Option<&MachineFilter>,
        room: usize,
    ) -> Option<Batch> {
        let batch = match cursor.family {
            Family::Aggregates => Batch::Aggregates(take(&self.aggregates, cursor, filter, room)),
            Family::Alarms => Batch::Alarms(take(&self.alarms, cursor, filter, room)),
            Family::Trends => Batch::Trends(take(&self.trends, cursor, filter, room)),
            Family::Done => return None,
        };
        Some(batch)
    }
}

/// The values of `latest` after the cursor's key until their estimated size reaches `room`
/// (at least one); moves the cursor to the next family when none is left.
fn take<V: EncodedSize + PartialEq + Clone>(
    latest: &Latest<V>,
    cursor: &mut SnapshotCursor,
    filter: Option<&MachineFilter>,
    room: usize,
) -> Vec<Arc<V>> {
    let start = cursor.after.take();
    let mut values = Vec::new();
    let mut size = 0;
    let mut last: Option<&Key> = None;
    let mut entries = latest.after(start.as_ref(), filter);
    loop {
        if size >= room && !values.is_empty() {
            cursor.after = last.cloned();
            return values;
        }
        let Some((key, value)) = entries.next() else {
            break;
        };
        size += value.encoded_size();
        values.push(Arc::clone(value));
        last = Some(key);
    }
    cursor.family = cursor.family.next();
    cursor.after = None;
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{agg, hub, json, snapshot, trend};
    use crate::hub::MachineFilter;

    type View = std::collections::BTreeMap<String, f64>;

    /// Applies the aggregates of a snapshot part or an update frame to `view`.
    fn take(view: &mut View, part: &serde_json::Value) {
        for a in part["aggregates"].as_array().unwrap() {
            let machine = a["maschinenId"].as_str().unwrap().to_owned();
            view.insert(machine, a["sumLast60s"].as_f64().unwrap());
        }
    }

    #[test]
    fn a_large_state_goes_in_bounded_parts_in_key_order() {
        let hub = hub();
        for m in 0..600 {
            hub.upsert(agg(&format!("M{m:03}"), 1, f64::from(m)));
            hub.set_trend(&format!("M{m:03}"), 1, Some(trend(&format!("M{m:03}"), 1)));
        }
        hub.flush();
        let mut sub = hub.subscribe();
        let mut parts = Vec::new();
        while let Some(text) = hub.snapshot_part(&mut sub, None) {
            assert!(
                text.len() < PART_BYTES + 1024,
                "a part is bounded: {}",
                text.len()
            );
            parts.push(json(&text));
        }
        assert!(
            parts.len() > 2,
            "600 aggregates and trends take several parts"
        );
        let lasts: Vec<bool> = parts.iter().map(|p| p["last"] == true).collect();
        assert_eq!(lasts.iter().filter(|l| **l).count(), 1);
        assert_eq!(lasts.last(), Some(&true));
        let machines = |list: &str| -> Vec<String> {
            (parts.iter())
                .flat_map(|p| p[list].as_array().unwrap().clone())
                .map(|a| a["maschinenId"].as_str().unwrap().to_owned())
                .collect()
        };
        let expected: Vec<String> = (0..600).map(|m| format!("M{m:03}")).collect();
        assert_eq!(machines("aggregates"), expected);
        assert_eq!(machines("trends"), expected);
        assert!(hub.snapshot_part(&mut sub, None).is_none());
    }

    #[test]
    fn changes_between_parts_end_on_the_latest_state_once_the_frames_are_applied() {
        let hub = hub();
        for m in 0..1_000 {
            hub.upsert(agg(&format!("M{m:04}"), 1, 1.0));
        }
        hub.flush();
        let mut sub = hub.subscribe();
        let first = json(&hub.snapshot_part(&mut sub, None).unwrap());
        let mut view = View::new();

        take(&mut view, &first);
        // Between parts: a key already sent changes, one not yet sent changes twice, one
        // not yet sent goes away.
        hub.upsert(agg("M0000", 1, 7.0));
        hub.upsert(agg("M0999", 1, 8.0));
        hub.flush();
        hub.upsert(agg("M0999", 1, 9.0));
        hub.remove("M0998", 1);
        hub.flush();
        while let Some(text) = hub.snapshot_part(&mut sub, None) {
            take(&mut view, &json(&text));
        }
        while let Ok(frame) = sub.frames.try_recv() {
            let frame = json(&frame.text);
            match frame["type"].as_str().unwrap() {
                "update" => take(&mut view, &frame),
                "remove" => {
                    for k in frame["keys"].as_array().unwrap() {
                        view.remove(k["maschinenId"].as_str().unwrap());
                    }
                }
                _ => {}
            }
        }
        let whole = snapshot(&hub, &mut hub.subscribe(), None);
        let mut latest = View::new();
        take(&mut latest, &whole);
        assert_eq!(view, latest);
        assert_eq!((view["M0000"], view["M0999"], view.len()), (7.0, 9.0, 999));
    }

    #[test]
    fn a_filtered_snapshot_holds_only_its_machines() {
        let hub = hub();
        for m in 0..2_000 {
            hub.upsert(agg(&format!("M{m}"), 1, 1.0));
        }
        hub.flush();
        let filter = MachineFilter::parse("M5,M1999").unwrap();
        let whole = snapshot(&hub, &mut hub.subscribe(), Some(&filter));
        assert_eq!(whole["part"], 0, "two aggregates fit one part");
        let machines: Vec<&str> = (whole["aggregates"].as_array().unwrap().iter())
            .map(|a| a["maschinenId"].as_str().unwrap())
            .collect();
        assert_eq!(machines, ["M1999", "M5"]);
    }
}
