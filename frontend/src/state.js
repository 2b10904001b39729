// The dashboard's model: the latest aggregate per (machine, scrap index), the pipeline
// status, and the alarms and trends (`signals`, see signals.js), fed with the gateway's
// WebSocket frames. No DOM here, so node's test runner can exercise it directly; the views
// read it and `dirty` sets tell them what changed.

import { Signals, keyOf } from './signals.js';

/** Compares machine ids the way an operator reads them: A2 before A10, case as a tie-break. */
const collator = new Intl.Collator('en', { numeric: true });
export function naturalCompare(a, b) {
  // The collator calls "a1" and "A1" different but may order them either way per locale;
  // the plain comparison after it keeps distinct ids in a stable, total order.
  return collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** Insertion point of `item` in the sorted array `list` (binary search). */
export function sortedIndex(list, item, compare) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compare(list[mid], item) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const byNumber = (a, b) => a - b;

/**
 * Turns one wire aggregate into the shape the views use, or `null` when it is unusable.
 * The gateway relays what ingest published; a malformed entry is skipped rather than
 * allowed to break the page.
 */
export function parseAggregate(raw) {
  if (raw === null || typeof raw !== 'object') return null;
  const machine = raw.maschinenId;
  const index = raw.scrapIndex;
  const sum = raw.sumLast60s;
  const avg = raw.avgLast60s;
  const count = raw.count;
  if (typeof machine !== 'string' || machine.length === 0) return null;
  if (!Number.isSafeInteger(index) || index < 0) return null;
  if (typeof sum !== 'number' || !Number.isFinite(sum)) return null;
  if (!Number.isSafeInteger(count) || count < 0) return null;
  if (avg !== null && avg !== undefined && (typeof avg !== 'number' || !Number.isFinite(avg))) {
    return null;
  }
  const time = typeof raw.timestamp === 'string' ? Date.parse(raw.timestamp) : NaN;
  return {
    machine,
    index,
    sum,
    avg: count === 0 || avg === undefined ? null : avg,
    count,
    windowSeconds: Number.isSafeInteger(raw.windowSeconds) ? raw.windowSeconds : null,
    time: Number.isFinite(time) ? time : null,
    // Only `true` counts: the gateway leaves the field out while the machine is online.
    offline: raw.offline === true,
  };
}

// keyOf lives with the signals (which need it too) and is re-exported here, where the views
// have always found it.
export { keyOf };

/** Latest aggregates and pipeline status, as told by the gateway. */
export class DashboardState {
  constructor() {
    /** @type {Map<string, Map<number, object>>} machine -> index -> aggregate */
    this.machines = new Map();
    /** Machine ids in natural order. */
    this.machineOrder = [];
    /** Per machine, its scrap indices in ascending order. */
    this.indexOrder = new Map();
    /** Every scrap index present on any machine, ascending, with how many machines have it. */
    this.allIndices = [];
    this.indexUse = new Map();
    /** `'connected'`, another broker state string from the gateway, or `null` (not told yet). */
    this.mqtt = null;
    /** `true`, `false` or `null` (not told yet). */
    this.ingestOnline = null;
    /** `{ online, count }` when ingest runs as shards, else null. */
    this.ingestShards = null;
    /** Browser time of the last frame that carried aggregates. */
    this.lastUpdate = null;
    /** Keys whose aggregate changed, appeared or went since the views last looked. */
    this.dirty = new Set();
    /** Frames that could not be used (bad JSON, unknown type, bad entries). */
    this.rejected = 0;
    /** Alarms and trends per key. */
    this.signals = new Signals();
    /** The parts of a snapshot still being received, or null. */
    this.snapshotParts = null;
  }

  /** Number of keys held. */
  get size() {
    let n = 0;
    for (const indices of this.machines.values()) n += indices.size;
    return n;
  }

  get(machine, index) {
    return this.machines.get(machine)?.get(index);
  }

  /**
   * Applies one frame (already parsed from JSON). Returns `false` when the frame was not
   * understood. A snapshot replaces everything: keys it does not name are gone.
   */
  apply(frame, now = Date.now()) {
    if (frame === null || typeof frame !== 'object') {
      this.rejected += 1;
      return false;
    }
    switch (frame.type) {
      case 'snapshot': {
        const whole = this.#joinSnapshot(frame);
        if (whole === undefined) return true;
        if (whole === null) {
          this.rejected += 1;
          return false;
        }
        frame = whole;
        const incoming = this.#parseList(frame.aggregates);
        const keep = new Set(incoming.map((a) => keyOf(a.machine, a.index)));
        for (const [machine, indices] of this.machines) {
          for (const index of [...indices.keys()]) {
            if (!keep.has(keyOf(machine, index))) this.#remove(machine, index);
          }
        }
        for (const a of incoming) this.#upsert(a);
        this.signals.applySnapshot(frame);
        this.#applyStatus(frame);
        this.lastUpdate = now;
        return true;
      }
      case 'update': {
        for (const a of this.#parseList(frame.aggregates)) this.#upsert(a);
        this.lastUpdate = now;
        return true;
      }
      case 'remove': {
        if (!Array.isArray(frame.keys)) {
          this.rejected += 1;
          return false;
        }
        for (const key of frame.keys) {
          if (key && typeof key.maschinenId === 'string' && Number.isSafeInteger(key.scrapIndex)) {
            this.#remove(key.maschinenId, key.scrapIndex);
          } else {
            this.rejected += 1;
          }
        }
        this.lastUpdate = now;
        return true;
      }
      case 'status':
        this.#applyStatus(frame);
        return true;
      case 'alarm':
        if (this.signals.applyAlarms(frame)) return true;
        this.rejected += 1;
        return false;
      case 'trend':
        if (this.signals.applyTrends(frame)) return true;
        this.rejected += 1;
        return false;
      default:
        this.rejected += 1;
        return false;
    }
  }

  /**
   * Collects a snapshot's parts (`part` 0, 1, ... up to the one with `last`), so that it
   * replaces the state once, whole. Returns the whole snapshot at its last part, `undefined`
   * while parts are still to come, `null` for a part out of order. A snapshot without `part`
   * is whole.
   */
  #joinSnapshot(frame) {
    if (frame.part === undefined) return frame;
    if (frame.part === 0) this.snapshotParts = [];
    if (this.snapshotParts?.length !== frame.part) {
      this.snapshotParts = null;
      return null;
    }
    this.snapshotParts.push(frame);
    if (frame.last !== true) return undefined;
    const parts = this.snapshotParts;
    this.snapshotParts = null;
    const list = (name) => parts.flatMap((p) => (Array.isArray(p[name]) ? p[name] : []));
    return { ...frame, aggregates: list('aggregates'), alarms: list('alarms'), trends: list('trends') };
  }

  /** Forgets the broker/ingest status (the WebSocket went away, so we no longer know). */
  markUnknown() {
    this.mqtt = null;
    this.ingestOnline = null;
    this.ingestShards = null;
  }

  #applyStatus(frame) {
    if (typeof frame.mqtt === 'string') this.mqtt = frame.mqtt;
    // `ingest: null` means the gateway has no liveness message (yet): unknown, not offline.
    const online = frame.ingest === null ? null : frame.ingest?.online;
    if (typeof online === 'boolean' || online === null) {
      this.ingestOnline = online;
      this.ingestShards = shardCounts(frame.ingest);
    }
  }

  #parseList(list) {
    if (!Array.isArray(list)) {
      this.rejected += 1;
      return [];
    }
    const out = [];
    for (const raw of list) {
      const a = parseAggregate(raw);
      if (a) out.push(a);
      else this.rejected += 1;
    }
    return out;
  }

  #upsert(a) {
    let indices = this.machines.get(a.machine);
    if (!indices) {
      indices = new Map();
      this.machines.set(a.machine, indices);
      this.machineOrder.splice(sortedIndex(this.machineOrder, a.machine, naturalCompare), 0, a.machine);
      this.indexOrder.set(a.machine, []);
    }
    const old = indices.get(a.index);
    if (!old) {
      const order = this.indexOrder.get(a.machine);
      order.splice(sortedIndex(order, a.index, byNumber), 0, a.index);
      const uses = this.indexUse.get(a.index) ?? 0;
      if (uses === 0) {
        this.allIndices.splice(sortedIndex(this.allIndices, a.index, byNumber), 0, a.index);
      }
      this.indexUse.set(a.index, uses + 1);
    } else if (
      old.sum === a.sum &&
      old.avg === a.avg &&
      old.count === a.count &&
      old.time === a.time &&
      old.windowSeconds === a.windowSeconds &&
      old.offline === a.offline
    ) {
      return;
    }
    indices.set(a.index, a);
    this.dirty.add(keyOf(a.machine, a.index));
  }

  #remove(machine, index) {
    const indices = this.machines.get(machine);
    if (!indices || !indices.delete(index)) return;
    const order = this.indexOrder.get(machine);
    order.splice(order.indexOf(index), 1);
    if (indices.size === 0) {
      this.machines.delete(machine);
      this.indexOrder.delete(machine);
      this.machineOrder.splice(this.machineOrder.indexOf(machine), 1);
    }
    const uses = this.indexUse.get(index) - 1;
    if (uses === 0) {
      this.indexUse.delete(index);
      this.allIndices.splice(this.allIndices.indexOf(index), 1);
    } else {
      this.indexUse.set(index, uses);
    }
    this.dirty.add(keyOf(machine, index));
  }

  /** Plain copy of the state, for the test hook and debugging. */
  toJSON() {
    const aggregates = [];
    for (const machine of this.machineOrder) {
      for (const index of this.indexOrder.get(machine)) {
        const a = this.machines.get(machine).get(index);
        aggregates.push({ ...a });
      }
    }
    return {
      aggregates,
      mqtt: this.mqtt,
      ingestOnline: this.ingestOnline,
      ingestShards: this.ingestShards ? { ...this.ingestShards } : null,
      lastUpdate: this.lastUpdate,
      rejected: this.rejected + this.signals.rejected,
      alarms: [...this.signals.alarms.values()].map((a) => ({ ...a })),
      trends: [...this.signals.trends.values()].map((t) => ({ machine: t.machine, index: t.index, points: t.points.length })),
    };
  }
}

/**
 * Shards online of expected from an `ingest` status (`{"shardsOnline":2,"shardCount":3}`), or
 * null for a single ingest or anything malformed.
 */
function shardCounts(ingest) {
  const online = ingest?.shardsOnline;
  const count = ingest?.shardCount;
  if (!Number.isInteger(online) || !Number.isInteger(count) || online < 0 || count < 1) return null;
  return { online, count };
}
