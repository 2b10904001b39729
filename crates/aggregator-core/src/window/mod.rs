//! The keyed sliding-window store: exact sum and count of the last `window` per
//! (machine, scrap index), expiry scheduling, idle-key forgetting and the `max_keys` cap.
//!
//! Semantics (docs/contract.md, "The window"): at instant `T` a key's window holds the accepted
//! readings with `T - W < t`, so a reading at `t` expires at exactly `t + W`.
//!
//! Cost: an in-order reading is a hash lookup and a push; expiry visits only the keys whose
//! oldest reading is due, through an ordered index of each key's oldest reading, never a scan
//! of all keys. [`WindowStore::next_deadline`] tells the caller when to wake next.
//!
//! Duplicates: [`WindowStore::accept_with_id`] drops a reading whose (machine, id) was already
//! counted within the window (see [`dedup`]: ids leave with their readings).

mod dedup;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use hashbrown::{Equivalent, HashMap};

use crate::parse::{Reading, check_value};
use crate::reading_id::ReadingId;
use crate::rejection::Rejection;
use crate::sum::CompensatedSum;
use crate::timestamp::{Timestamp, duration_nanos};
use crate::wire::Aggregate;
use dedup::{IdIndex, IdMark};

/// Settings of the window store, with the contract's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    /// Window length `W` (default 60 s).
    pub window: Duration,
    /// How far ahead of the ingest clock a reading may be (default 5 s).
    pub max_future_skew: Duration,
    /// Most keys tracked at once (default 100 000).
    pub max_keys: usize,
    /// How long a key's window stays empty before the key is forgotten (default 10 min).
    pub key_idle_ttl: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            window: Duration::from_secs(60),
            max_future_skew: Duration::from_secs(5),
            max_keys: 100_000,
            key_idle_ttl: Duration::from_secs(600),
        }
    }
}

/// A (machine, scrap index) pair. The machine id is shared, so handing keys out is cheap.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Machine id (a legal topic level).
    pub machine: Arc<str>,
    /// Scrap index.
    pub scrap_index: u32,
}

/// A borrowed [`Key`] for lookups; hashes exactly like `Key` (a `str`, then a `u32`).
#[derive(Hash)]
struct KeyQuery<'a> {
    machine: &'a str,
    scrap_index: u32,
}

impl Equivalent<Key> for KeyQuery<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.scrap_index == key.scrap_index && self.machine == &*key.machine
    }
}

/// A handle to a key in one [`WindowStore`]; a forgotten key's handle resolves to nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId {
    slot: u32,
    generation: u32,
}

/// The sum and count of one key's window: the cheap form of an [`Aggregate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowTotals {
    /// Exact sum; exactly 0.0 when `count` is 0.
    pub sum: f64,
    /// Readings in the window.
    pub count: u64,
}

impl WindowTotals {
    /// `sum / count`, `None` for an empty window.
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// What became of a reading offered with its optional id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Counted in this key's window (its aggregate changed).
    Counted(KeyId),
    /// Dropped, not rejected: a reading of the same machine with this id is in the window.
    Duplicate {
        /// Event time of the reading that was counted with this id.
        first_counted_at: Timestamp,
    },
}

/// One buffered reading: 16 bytes.
#[derive(Clone, Copy, Debug)]
struct Entry {
    time: i64,
    value: f64,
}

struct Slot {
    key: Key,
    generation: u32,
    /// Sorted by time; readings mostly arrive in order, so inserts land at the back.
    entries: VecDeque<Entry>,
    /// Exactly [`CompensatedSum::ZERO`] while `entries` is empty.
    sum: CompensatedSum,
    removed_since_rebuild: usize,
    /// The instant the window last became empty, while it is empty.
    empty_since: Option<i64>,
    /// Marks of the buffered readings that carry an id, sorted by time like `entries`.
    id_marks: VecDeque<IdMark>,
}

impl Slot {
    fn totals(&self) -> WindowTotals {
        WindowTotals {
            sum: self.sum.value(),
            count: self.entries.len() as u64,
        }
    }
}

/// Inserts `item` into `queue`, which is sorted by `time`; in order, it goes to the back.
fn insert_sorted<T>(queue: &mut VecDeque<T>, item: T, time: impl Fn(&T) -> i64) {
    let t = time(&item);
    match queue.back() {
        Some(last) if time(last) > t => {
            let at = queue.partition_point(|e| time(e) <= t);
            queue.insert(at, item);
        }
        _ => queue.push_back(item),
    }
}

/// Gives a queue's memory back once it is less than half used.
fn shrink<T>(queue: &mut VecDeque<T>) {
    let len = queue.len();
    if queue.capacity() > 2 * len + 8 {
        queue.shrink_to(len + len / 2);
    }
}

/// The window of every key, with exact sums.
///
/// # Memory
/// A buffered reading takes 16 bytes (time and value) in a per-key ring buffer, which grows
/// by doubling and is shrunk when less than half full: at most 32 bytes a reading on average,
/// plus about 180 bytes per key ([`WindowStore::buffer_bytes`] reports the buffers). A reading
/// with an id also costs a record and a mark ([`WindowStore::id_bytes`]).
///
/// # Time
/// Every method that depends on time takes `now` from the caller; call
/// [`WindowStore::expire`] with the current instant before reading totals.
pub struct WindowStore {
    config: WindowConfig,
    window_nanos: i64,
    /// hashbrown's default foldhash: several times faster than SipHash on short ids, and
    /// randomly seeded, so crafted machine ids cannot aim at one bucket. Looked up by a
    /// borrowed [`KeyQuery`]: one hash, no allocation.
    index: HashMap<Key, KeyId>,
    slots: Vec<Option<Slot>>,
    free_slots: Vec<u32>,
    next_generation: u32,
    buffered: usize,
    /// `(oldest reading time, slot)` of every non-empty key: the expiry schedule.
    oldest: BTreeSet<(i64, u32)>,
    /// `(empty since, slot)` of every key whose window is empty: the forgetting schedule.
    idle: BTreeSet<(i64, u32)>,
    /// Ids of the buffered readings that carried one, for duplicate detection.
    ids: IdIndex,
}

impl WindowStore {
    /// An empty store.
    pub fn new(config: WindowConfig) -> Self {
        WindowStore {
            window_nanos: duration_nanos(config.window),
            config,
            index: HashMap::default(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            next_generation: 0,
            buffered: 0,
            oldest: BTreeSet::new(),
            idle: BTreeSet::new(),
            ids: IdIndex::default(),
        }
    }

    /// The settings this store was built with.
    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// Adds a reading at ingest-clock instant `now`; returns the key whose aggregate changed.
    ///
    /// Rejects it as `bad_value` when its value is outside the range of
    /// [`check_value`](crate::parse::check_value) (a reading built by hand or replayed from an
    /// older log), as `late` when `t <= now - W`, as `future` when
    /// `t > now + max_future_skew`, and as `too_many_keys` when it would create key number
    /// `max_keys + 1`. So every buffered value is within 1e12 either way, and no sum can
    /// overflow.
    pub fn accept(&mut self, reading: &Reading<'_>, now: Timestamp) -> Result<KeyId, Rejection> {
        self.check(reading, now)?;
        self.count(reading)
    }

    /// Like [`accept`](Self::accept) for a reading with its optional id.
    ///
    /// A reading whose machine had a reading with the same id counted in the window at `now`
    /// (on any scrap index) is an [`Accepted::Duplicate`]; the id is kept until that reading
    /// expires. Readings without id count every time. Rejections come first: a late copy of a
    /// counted reading is `late`.
    pub fn accept_with_id(
        &mut self,
        reading: &Reading<'_>,
        id: Option<&ReadingId>,
        now: Timestamp,
    ) -> Result<Accepted, Rejection> {
        self.check(reading, now)?;
        let Some(id) = id else {
            return self.count(reading).map(Accepted::Counted);
        };
        let window_start = now.unix_nanos().saturating_sub(self.window_nanos);
        let hash = self.ids.hash(reading.machine, id);
        let held = self.ids.counted_at(hash, reading.machine, id, &self.slots);
        if let Some(t) = held
            && t > window_start
        {
            return Ok(Accepted::Duplicate {
                first_counted_at: Timestamp::from_unix_nanos(t),
            });
        }
        let key = self.count(reading)?;
        let time = reading.event_time.unix_nanos();
        match held {
            None => self.ids.insert(hash, id, time, key.slot, &self.slots),
            // Outside the window but not yet expired: the new reading takes its place.
            Some(_) => self.ids.refresh(hash, id, time, key.slot, &self.slots),
        }
        if let Some(slot) = self.slots[key.slot as usize].as_mut() {
            insert_sorted(&mut slot.id_marks, IdMark { time, hash }, |m| m.time);
        }
        Ok(Accepted::Counted(key))
    }

    fn check(&self, reading: &Reading<'_>, now: Timestamp) -> Result<(), Rejection> {
        check_value(reading.value)?;
        let t = reading.event_time.unix_nanos();
        let window_start = now.unix_nanos().saturating_sub(self.window_nanos);
        if t <= window_start {
            return Err(Rejection::Late {
                event_time: reading.event_time,
                window_start: Timestamp::from_unix_nanos(window_start),
            });
        }
        let latest = now.saturating_add(self.config.max_future_skew);
        if reading.event_time > latest {
            return Err(Rejection::Future {
                event_time: reading.event_time,
                latest_accepted: latest,
            });
        }
        Ok(())
    }

    /// Adds a reading that passed the time checks to its key, creating the key if needed.
    fn count(&mut self, reading: &Reading<'_>) -> Result<KeyId, Rejection> {
        let id = match self.lookup(reading.machine, reading.scrap_index) {
            Some(id) => id,
            None => self.create_key(reading.machine, reading.scrap_index)?,
        };
        self.push(
            id.slot,
            Entry {
                time: reading.event_time.unix_nanos(),
                value: reading.value,
            },
        );
        Ok(id)
    }

    fn create_key(&mut self, machine: &str, scrap_index: u32) -> Result<KeyId, Rejection> {
        if self.index.len() >= self.config.max_keys {
            return Err(Rejection::TooManyKeys {
                limit: self.config.max_keys,
            });
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let key = Key {
            machine: Arc::from(machine),
            scrap_index,
        };
        let slot_no = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(None);
            // Slots are bounded by max_keys, which is far below u32::MAX.
            u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
        });
        self.slots[slot_no as usize] = Some(Slot {
            key: key.clone(),
            generation,
            entries: VecDeque::new(),
            sum: CompensatedSum::ZERO,
            removed_since_rebuild: 0,
            empty_since: None,
            id_marks: VecDeque::new(),
        });
        let id = KeyId {
            slot: slot_no,
            generation,
        };
        self.index.insert(key, id);
        Ok(id)
    }

    fn push(&mut self, slot_no: u32, entry: Entry) {
        let Some(slot) = self.slots[slot_no as usize].as_mut() else {
            return;
        };
        let old_front = slot.entries.front().map(|e| e.time);
        insert_sorted(&mut slot.entries, entry, |e| e.time);
        slot.sum.add(entry.value);
        if let Some(since) = slot.empty_since.take() {
            self.idle.remove(&(since, slot_no));
        }
        match old_front {
            None => {
                self.oldest.insert((entry.time, slot_no));
            }
            Some(front) if entry.time < front => {
                self.oldest.remove(&(front, slot_no));
                self.oldest.insert((entry.time, slot_no));
            }
            Some(_) => {}
        }
        self.buffered += 1;
    }

    /// Removes every reading with `t <= now - W` and records in `changed` each key whose
    /// aggregate changed. A key whose window becomes empty is idle from the instant its last
    /// reading expired.
    pub fn expire(&mut self, now: Timestamp, changed: &mut Vec<KeyId>) {
        let cutoff = now.unix_nanos().saturating_sub(self.window_nanos);
        while let Some(&(front, slot_no)) = self.oldest.first()
            && front <= cutoff
        {
            self.oldest.pop_first();
            let Some(slot) = self.slots[slot_no as usize].as_mut() else {
                continue;
            };
            let mut last_removed = front;
            let mut removed = 0;
            while let Some(e) = slot.entries.front()
                && e.time <= cutoff
            {
                last_removed = e.time;
                slot.sum.add(-e.value);
                slot.entries.pop_front();
                removed += 1;
            }
            self.buffered -= removed;
            slot.removed_since_rebuild += removed;
            while let Some(&mark) = slot.id_marks.front()
                && mark.time <= cutoff
            {
                slot.id_marks.pop_front();
                self.ids.forget(mark, slot_no, &slot.key.machine, cutoff);
            }
            shrink(&mut slot.id_marks);
            match slot.entries.front() {
                None => {
                    // Exactly zero, whatever rounding the removals left behind.
                    slot.sum = CompensatedSum::ZERO;
                    slot.removed_since_rebuild = 0;
                    let since = last_removed.saturating_add(self.window_nanos);
                    slot.empty_since = Some(since);
                    self.idle.insert((since, slot_no));
                }
                Some(first) => {
                    self.oldest.insert((first.time, slot_no));
                    if slot.removed_since_rebuild >= slot.entries.len().max(32) {
                        slot.sum = CompensatedSum::of(slot.entries.iter().map(|e| e.value));
                        slot.removed_since_rebuild = 0;
                    }
                }
            }
            shrink(&mut slot.entries);
            changed.push(KeyId {
                slot: slot_no,
                generation: slot.generation,
            });
        }
        self.ids.shrink(&self.slots);
    }

    /// Forgets every key whose window has been empty for `key_idle_ttl` at `now`, appending
    /// them to `forgotten` (their retained aggregates are to be cleared). Their [`KeyId`]s
    /// become stale.
    pub fn forget_idle(&mut self, now: Timestamp, forgotten: &mut Vec<Key>) {
        let deadline = now.saturating_sub(self.config.key_idle_ttl).unix_nanos();
        while let Some(&(since, slot_no)) = self.idle.first()
            && since <= deadline
        {
            self.idle.pop_first();
            let Some(slot) = self.slots[slot_no as usize].take() else {
                continue;
            };
            self.index.remove(&slot.key);
            self.free_slots.push(slot_no);
            forgotten.push(slot.key);
        }
    }

    /// The earliest instant at which [`expire`](Self::expire) or
    /// [`forget_idle`](Self::forget_idle) would change anything, so a service can sleep until
    /// exactly then. `None` when nothing is buffered and no key is idle.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let forget = (self.idle.first()).map(|&(since, _)| {
            Timestamp::from_unix_nanos(since).saturating_add(self.config.key_idle_ttl)
        });
        self.next_expiry().into_iter().chain(forget).min()
    }

    /// The instant the oldest buffered reading leaves its window.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.oldest
            .first()
            .map(|&(t, _)| Timestamp::from_unix_nanos(t.saturating_add(self.window_nanos)))
    }

    /// The handle of a key, if it is tracked.
    pub fn lookup(&self, machine: &str, scrap_index: u32) -> Option<KeyId> {
        self.index
            .get(&KeyQuery {
                machine,
                scrap_index,
            })
            .copied()
    }

    fn slot(&self, id: KeyId) -> Option<&Slot> {
        self.slots
            .get(id.slot as usize)?
            .as_ref()
            .filter(|s| s.generation == id.generation)
    }

    /// The key behind a handle; `None` if it has been forgotten.
    pub fn key(&self, id: KeyId) -> Option<&Key> {
        self.slot(id).map(|s| &s.key)
    }

    /// Sum and count of a key's window as of the last [`expire`](Self::expire).
    pub fn totals(&self, id: KeyId) -> Option<WindowTotals> {
        self.slot(id).map(Slot::totals)
    }

    /// The wire aggregate of a key, stamped with `now`.
    pub fn aggregate(&self, id: KeyId, now: Timestamp) -> Option<Aggregate> {
        let slot = self.slot(id)?;
        let totals = slot.totals();
        Some(Aggregate {
            machine_id: slot.key.machine.to_string(),
            scrap_index: slot.key.scrap_index,
            sum: totals.sum,
            avg: totals.avg(),
            count: totals.count,
            window_seconds: self.config.window.as_secs(),
            timestamp: now.to_rfc3339_millis(),
            offline: false,
        })
    }

    /// Handles of every tracked key, in no particular order.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.slots.iter().enumerate().filter_map(|(n, s)| {
            s.as_ref().map(|s| KeyId {
                slot: n as u32,
                generation: s.generation,
            })
        })
    }

    /// Number of tracked keys (including idle ones not yet forgotten).
    pub fn key_count(&self) -> usize {
        self.index.len()
    }

    /// Number of buffered readings over all keys.
    pub fn buffered_readings(&self) -> usize {
        self.buffered
    }

    /// Number of ids held for duplicate detection (one per buffered reading that had an id).
    pub fn tracked_ids(&self) -> usize {
        self.ids.len()
    }

    /// Bytes reserved for duplicate detection: the id table (capacity, not length), the
    /// heap part of long ids, and the per-key mark queues.
    pub fn id_bytes(&self) -> usize {
        self.ids.bytes() + self.reserved(|s| &s.id_marks)
    }

    /// Bytes reserved by the reading buffers (capacity, not length).
    pub fn buffer_bytes(&self) -> usize {
        self.reserved(|s| &s.entries)
    }

    /// Bytes reserved by one queue of every key.
    fn reserved<T>(&self, queue: impl Fn(&Slot) -> &VecDeque<T>) -> usize {
        let slots = self.slots.iter().flatten();
        slots.map(|s| queue(s).capacity() * size_of::<T>()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn at(secs: f64) -> Timestamp {
        Timestamp::from_unix_nanos((secs * SEC as f64) as i64 + 1_700_000_000 * SEC)
    }

    fn reading(machine: &str, index: u32, value: f64, t: Timestamp) -> Reading<'_> {
        Reading {
            machine,
            scrap_index: index,
            value,
            event_time: t,
            time_from_payload: true,
        }
    }

    fn store() -> WindowStore {
        WindowStore::new(WindowConfig {
            window: Duration::from_secs(60),
            max_future_skew: Duration::from_secs(5),
            max_keys: 3,
            key_idle_ttl: Duration::from_secs(600),
        })
    }

    #[test]
    fn window_boundary_is_exclusive_at_the_start() {
        let mut s = store();
        let id = s.accept(&reading("A1", 2, 4.0, at(0.0)), at(0.0)).unwrap();
        let mut changed = Vec::new();
        s.expire(at(59.999), &mut changed);
        assert!(changed.is_empty());
        assert_eq!(s.totals(id).unwrap().count, 1);
        assert_eq!(s.next_expiry(), Some(at(60.0)));
        s.expire(at(60.0), &mut changed);
        assert_eq!(changed, vec![id]);
        let totals = s.totals(id).unwrap();
        assert_eq!((totals.sum, totals.count, totals.avg()), (0.0, 0, None));
    }

    #[test]
    fn late_and_future_readings_are_rejected() {
        let mut s = store();
        let late = s.accept(&reading("A1", 1, 1.0, at(0.0)), at(60.0));
        assert!(matches!(late, Err(Rejection::Late { .. })), "{late:?}");
        let ok = s.accept(&reading("A1", 1, 1.0, at(65.0)), at(60.0));
        assert!(ok.is_ok());
        let future = s.accept(&reading("A1", 1, 1.0, at(65.001)), at(60.0));
        assert!(
            matches!(future, Err(Rejection::Future { .. })),
            "{future:?}"
        );
        assert_eq!(s.buffered_readings(), 1);
    }

    #[test]
    fn max_keys_caps_new_keys_but_not_existing_ones() {
        let mut s = store();
        for m in ["A", "B", "C"] {
            s.accept(&reading(m, 0, 1.0, at(0.0)), at(0.0)).unwrap();
        }
        let err = s
            .accept(&reading("D", 0, 1.0, at(0.0)), at(0.0))
            .unwrap_err();
        assert_eq!(err, Rejection::TooManyKeys { limit: 3 });
        assert!(s.accept(&reading("A", 0, 1.0, at(1.0)), at(1.0)).is_ok());
        assert_eq!(s.key_count(), 3);
    }

    #[test]
    fn out_of_order_readings_expire_at_their_own_time() {
        let mut s = store();
        let id = s
            .accept(&reading("A1", 1, 1.0, at(10.0)), at(10.0))
            .unwrap();
        s.accept(&reading("A1", 1, 2.0, at(5.0)), at(10.0)).unwrap();
        s.accept(&reading("A1", 1, 4.0, at(7.0)), at(10.0)).unwrap();
        assert_eq!(s.next_expiry(), Some(at(65.0)));
        let mut changed = Vec::new();
        s.expire(at(67.0), &mut changed);
        assert_eq!(s.totals(id).unwrap(), WindowTotals { sum: 1.0, count: 1 });
        assert_eq!(s.next_expiry(), Some(at(70.0)));
    }

    #[test]
    fn idle_keys_are_forgotten_after_the_ttl_and_free_their_place() {
        let mut s = store();
        let id = s.accept(&reading("A1", 1, 1.0, at(0.0)), at(0.0)).unwrap();
        let mut changed = Vec::new();
        s.expire(at(61.0), &mut changed);
        assert_eq!(s.next_deadline(), Some(at(660.0)));
        let mut forgotten = Vec::new();
        s.forget_idle(at(659.0), &mut forgotten);
        assert!(forgotten.is_empty());
        s.forget_idle(at(660.0), &mut forgotten);
        assert_eq!(forgotten.len(), 1);
        assert_eq!(&*forgotten[0].machine, "A1");
        assert_eq!(s.key(id), None, "stale handle resolves to nothing");
        assert_eq!(s.key_count(), 0);
        assert_eq!(s.next_deadline(), None);
        let again = s
            .accept(&reading("A1", 1, 3.0, at(700.0)), at(700.0))
            .unwrap();
        assert_ne!(again, id);
        assert_eq!(s.totals(again).unwrap().sum, 3.0);
    }

    #[test]
    fn a_new_reading_cancels_forgetting() {
        let mut s = store();
        s.accept(&reading("A1", 1, 1.0, at(0.0)), at(0.0)).unwrap();
        let mut changed = Vec::new();
        s.expire(at(61.0), &mut changed);
        s.accept(&reading("A1", 1, 1.0, at(100.0)), at(100.0))
            .unwrap();
        let mut forgotten = Vec::new();
        s.forget_idle(at(700.0), &mut forgotten);
        assert!(forgotten.is_empty());
        assert_eq!(s.key_count(), 1);
    }

    #[test]
    fn aggregate_has_the_wire_fields() {
        let mut s = store();
        let id = s.accept(&reading("A1", 2, 4.0, at(0.0)), at(0.0)).unwrap();
        s.accept(&reading("A1", 2, 3.0, at(1.0)), at(1.0)).unwrap();
        let agg = s.aggregate(id, at(1.5)).unwrap();
        assert_eq!(agg.machine_id, "A1");
        assert_eq!(agg.scrap_index, 2);
        assert_eq!(agg.sum, 7.0);
        assert_eq!(agg.avg, Some(3.5));
        assert_eq!(agg.count, 2);
        assert_eq!(agg.window_seconds, 60);
    }

    #[test]
    fn values_outside_the_range_are_refused_even_when_built_by_hand() {
        let mut s = store();
        let id = s.accept(&reading("A1", 1, 2.0, at(0.0)), at(0.0)).unwrap();
        for value in [1e308, 1e308, -1e13, f64::INFINITY, f64::NAN] {
            let err = s
                .accept_with_id(&reading("A1", 1, value, at(1.0)), None, at(1.0))
                .unwrap_err();
            assert_eq!(err.reason(), crate::RejectionReason::BadValue, "{value}");
        }
        assert!(
            s.accept(&reading("B1", 1, 1e308, at(1.0)), at(1.0))
                .is_err()
        );
        assert_eq!(s.key_count(), 1, "a refused reading creates no key");
        assert_eq!(s.totals(id).unwrap(), WindowTotals { sum: 2.0, count: 1 });
    }

    #[test]
    fn a_full_window_of_the_largest_values_stays_finite_and_recovers_exactly() {
        // The design load, all on one key: 10 000 readings/s for 60 s. The first 30 s carry
        // the largest accepted value, the last 30 s quarters (exact in binary).
        let mut s = WindowStore::new(WindowConfig::default());
        let step = 100_000_i64; // ns between readings
        let per_half = 300_000_i64;
        let mut changed = Vec::new();
        let mut id = None;
        for i in 0..2 * per_half {
            let now = Timestamp::from_unix_nanos(i * step);
            let value = if i < per_half { 1e12 } else { 0.25 };
            id = Some(s.accept(&reading("A1", 1, value, now), now).unwrap());
        }
        let id = id.unwrap();
        let full = s.totals(id).unwrap();
        let exact = 300_000.0 * 1e12 + 300_000.0 * 0.25;
        assert_eq!(full.count, 600_000);
        assert!(full.sum.is_finite());
        assert!(
            (full.sum - exact).abs() <= exact * f64::EPSILON,
            "{}",
            full.sum
        );
        // Every large value has left just before 90 s: what remains is exact again.
        s.expire(Timestamp::from_unix_nanos(90 * SEC - 1), &mut changed);
        let rest = s.totals(id).unwrap();
        assert_eq!(rest.count, 300_000);
        assert_eq!(rest.sum, 300_000.0 * 0.25);
        // And the alternating extremes cancel to exactly zero once they are all gone.
        let mut s = WindowStore::new(WindowConfig::default());
        for i in 0..per_half {
            let now = Timestamp::from_unix_nanos(i * step);
            let value = if i % 2 == 0 { 1e12 } else { -1e12 + 0.5 };
            s.accept(&reading("A1", 1, value, now), now).unwrap();
        }
        let id = s.lookup("A1", 1).unwrap();
        assert_eq!(s.totals(id).unwrap().sum, 150_000.0 * 0.5);
        s.expire(Timestamp::from_unix_nanos(200 * SEC), &mut changed);
        assert_eq!(s.totals(id).unwrap(), WindowTotals { sum: 0.0, count: 0 });
    }

    #[test]
    fn buffers_cost_at_most_32_bytes_per_reading_on_average() {
        let mut s = WindowStore::new(WindowConfig::default());
        let machines: Vec<String> = (0..50).map(|m| format!("M{m}")).collect();
        let mut changed = Vec::new();
        // 10 000 readings/s for 120 s over 250 keys, so buffers have grown and shrunk.
        for step in 0..120_000_i64 {
            let now = Timestamp::from_unix_nanos(step * 12_000_000);
            let m = &machines[(step % 50) as usize];
            s.accept(&reading(m, (step % 5) as u32, 1.0, now), now)
                .unwrap();
            if step % 1000 == 0 {
                s.expire(now, &mut changed);
                changed.clear();
                if s.buffered_readings() > 10_000 {
                    let per_reading = s.buffer_bytes() as f64 / s.buffered_readings() as f64;
                    assert!(
                        per_reading <= 32.0,
                        "{per_reading} bytes per reading at {step}"
                    );
                }
            }
        }
    }
}
