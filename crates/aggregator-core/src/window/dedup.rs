//! Duplicate detection by reading id: which (machine, id) pairs were counted within the window.
//!
//! Layout: one hash table of records `(id, event time, slot)` for the whole store, hashed by
//! (machine, id), the machine being that of the record's slot; beside its readings, each slot
//! keeps a time-sorted queue of marks `(event time, hash)` of its readings that carried an id.
//!
//! Life of an id: counting a reading with an id inserts its record and pushes its mark; expiry
//! pops the marks of the readings it removes and deletes their records, so the table holds
//! only ids of buffered readings. A record whose reading is outside the window but not yet
//! expired is stale: it makes no new reading a duplicate, and the new reading takes it over.
//!
//! Invariant: every record's slot is live and holds the record's reading, because a record is
//! only removed through its own mark, which leaves together with that reading.
//!
//! Cost per id-carrying reading: a 40-byte record (the id inline up to 22 bytes) at the
//! table's load factor, plus a 16-byte mark ([`WindowStore::id_bytes`](super::WindowStore::id_bytes)).

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

use super::Slot;
use crate::reading_id::ReadingId;

/// One counted (machine, id).
pub(super) struct IdRecord {
    id: ReadingId,
    time: i64,
    slot: u32,
}

/// Where a slot's id-carrying reading can find its record again at expiry.
#[derive(Clone, Copy, Debug)]
pub(super) struct IdMark {
    pub(super) time: i64,
    pub(super) hash: u64,
}

/// The table of counted ids of every key.
#[derive(Default)]
pub(super) struct IdIndex {
    table: HashTable<IdRecord>,
    /// Randomly seeded per process, like the key index, so crafted ids cannot aim at a bucket.
    hasher: DefaultHashBuilder,
    /// Heap bytes of ids too long to be stored inline.
    heap_bytes: usize,
}

fn machine_of(slots: &[Option<Slot>], slot: u32) -> &str {
    // A record's slot is always live (see the module doc); "" only keeps this total.
    slots
        .get(slot as usize)
        .and_then(Option::as_ref)
        .map_or("", |s| &s.key.machine)
}

fn hash_of(hasher: &DefaultHashBuilder, machine: &str, id: &ReadingId) -> u64 {
    hasher.hash_one((machine, id.as_bytes()))
}

impl IdIndex {
    /// The hash under which (machine, id) is filed.
    pub(super) fn hash(&self, machine: &str, id: &ReadingId) -> u64 {
        hash_of(&self.hasher, machine, id)
    }

    /// The event time of the reading counted with (machine, id), if its record is still held
    /// (it may be stale: the caller compares with the window start).
    pub(super) fn counted_at(
        &self,
        hash: u64,
        machine: &str,
        id: &ReadingId,
        slots: &[Option<Slot>],
    ) -> Option<i64> {
        self.table
            .find(hash, |r| {
                r.id == *id && machine_of(slots, r.slot) == machine
            })
            .map(|r| r.time)
    }

    /// Records that (machine of `slot`, id) was counted at `time`, where
    /// [`counted_at`](Self::counted_at) found no record: no second probe.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        id: &ReadingId,
        time: i64,
        slot: u32,
        slots: &[Option<Slot>],
    ) {
        self.heap_bytes += id.heap_bytes();
        let hasher = &self.hasher;
        self.table.insert_unique(
            hash,
            IdRecord {
                id: id.clone(),
                time,
                slot,
            },
            |r| hash_of(hasher, machine_of(slots, r.slot), &r.id),
        );
    }

    /// Moves the stale record of (machine of `slot`, id) to the reading now counted at `time`.
    /// Its old mark finds nothing to remove later, unless the record has expired again by then,
    /// when removing it is right.
    pub(super) fn refresh(
        &mut self,
        hash: u64,
        id: &ReadingId,
        time: i64,
        slot: u32,
        slots: &[Option<Slot>],
    ) {
        let machine = machine_of(slots, slot);
        if let Some(stale) = self.table.find_mut(hash, |r| {
            r.id == *id && machine_of(slots, r.slot) == machine
        }) {
            stale.time = time;
            stale.slot = slot;
        }
    }

    /// Removes the record behind `mark` of `slot` (whose machine is `machine`) if it has
    /// expired (`time <= cutoff`).
    pub(super) fn forget(&mut self, mark: IdMark, slot: u32, machine: &str, cutoff: i64) {
        let hasher = &self.hasher;
        // The table compares only 7 bits of the hash before calling this check, so the full
        // hash is checked too: another expired record of the slot must not be taken for it.
        if let Ok(entry) = self.table.find_entry(mark.hash, |r| {
            r.slot == slot && r.time <= cutoff && hash_of(hasher, machine, &r.id) == mark.hash
        }) {
            let (record, _) = entry.remove();
            self.heap_bytes -= record.id.heap_bytes();
        }
    }

    /// Gives memory back after a burst of ids has expired: the table never shrinks by itself.
    pub(super) fn shrink(&mut self, slots: &[Option<Slot>]) {
        let len = self.table.len();
        if self.table.capacity() > 4 * len + 64 {
            let hasher = &self.hasher;
            self.table.shrink_to(2 * len, |r| {
                hash_of(hasher, machine_of(slots, r.slot), &r.id)
            });
        }
    }

    /// Ids held.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Bytes reserved by the table (records and control bytes) and by long ids.
    pub(super) fn bytes(&self) -> usize {
        self.table.capacity() * (std::mem::size_of::<IdRecord>() + 1) + self.heap_bytes
    }
}
