// The alarms and trends of the dashboard's model: the latest alarm and trend per
// (machine, scrap index), fed by the snapshot and the gateway's `alarm` and `trend` frames.
// No DOM here (node's test runner exercises it); `dirty` names the keys whose alarm or trend
// changed since the views last looked, and `raisedNow` the alarms newly raised by a frame
// (for the optional browser notification; a snapshot never notifies).

/** One string per key, for the dirty sets and the views' keyed maps (ids never hold U+0000). */
export const keyOf = (machine, index) => `${machine}\u0000${index}`;

/** A wire alarm in the shape the views use, or `null` when it is unusable. */
export function parseAlarm(raw) {
  if (raw === null || typeof raw !== 'object') return null;
  const { maschinenId: machine, scrapIndex: index, state, metric, value, threshold } = raw;
  if (typeof machine !== 'string' || machine.length === 0) return null;
  if (!Number.isSafeInteger(index) || index < 0) return null;
  if (state !== 'raised' && state !== 'cleared') return null;
  if (metric !== 'sum' && metric !== 'avg') return null;
  if (typeof threshold !== 'number' || !Number.isFinite(threshold)) return null;
  if (value !== null && (typeof value !== 'number' || !Number.isFinite(value))) return null;
  const since = typeof raw.since === 'string' ? Date.parse(raw.since) : NaN;
  if (!Number.isFinite(since)) return null;
  return { machine, index, raised: state === 'raised', metric, value, threshold, since };
}

/** A wire trend as `{machine, index, intervalSeconds, points: [{t, sum}]}`, or `null`. */
export function parseTrend(raw) {
  if (raw === null || typeof raw !== 'object') return null;
  const { maschinenId: machine, scrapIndex: index } = raw;
  if (typeof machine !== 'string' || machine.length === 0) return null;
  if (!Number.isSafeInteger(index) || index < 0) return null;
  if (!Array.isArray(raw.points)) return null;
  const points = [];
  for (const p of raw.points) {
    const t = typeof p?.t === 'string' ? Date.parse(p.t) : NaN;
    if (!Number.isFinite(t) || typeof p.sum !== 'number' || !Number.isFinite(p.sum)) return null;
    points.push({ t, sum: p.sum });
  }
  const intervalSeconds = Number.isSafeInteger(raw.intervalSeconds) ? raw.intervalSeconds : null;
  return { machine, index, intervalSeconds, points };
}

/** Most raises kept for notification between two renders (a hidden tab renders nothing). */
const MAX_RAISED_NOW = 20;

/** Latest alarm and trend per key. */
export class Signals {
  constructor() {
    /** keyOf -> parsed alarm (raised or cleared) */
    this.alarms = new Map();
    /** keyOf -> parsed trend */
    this.trends = new Map();
    /** Keys whose alarm or trend changed since the views last looked. */
    this.dirty = new Set();
    /** Alarms raised by the frames since the views last looked (not by a snapshot). */
    this.raisedNow = [];
    /** Whether any alarm changed since the views last looked (the strip is rebuilt then). */
    this.alarmsChanged = false;
    /** Entries that could not be used. */
    this.rejected = 0;
  }

  /** Replaces everything with a snapshot's `alarms` and `trends` (absent: none). */
  applySnapshot(frame) {
    const alarms = this.#parseList(frame.alarms ?? [], parseAlarm);
    const trends = this.#parseList(frame.trends ?? [], parseTrend);
    this.#replace(this.alarms, alarms);
    this.#replace(this.trends, trends);
    this.alarmsChanged = true;
  }

  /** Applies an `alarm` frame; `false` when it is not understood. */
  applyAlarms(frame) {
    if (!Array.isArray(frame.alarms)) return false;
    for (const alarm of this.#parseList(frame.alarms, parseAlarm)) {
      const key = keyOf(alarm.machine, alarm.index);
      const old = this.alarms.get(key);
      if (alarm.raised && !(old?.raised && old.since === alarm.since) && this.raisedNow.length < MAX_RAISED_NOW) {
        this.raisedNow.push(alarm);
      }
      this.alarms.set(key, alarm);
      this.dirty.add(key);
    }
    this.#removeKeys(this.alarms, frame.removed);
    this.alarmsChanged = true;
    return true;
  }

  /** Applies a `trend` frame; `false` when it is not understood. */
  applyTrends(frame) {
    if (!Array.isArray(frame.trends)) return false;
    for (const trend of this.#parseList(frame.trends, parseTrend)) {
      const key = keyOf(trend.machine, trend.index);
      this.trends.set(key, trend);
      this.dirty.add(key);
    }
    this.#removeKeys(this.trends, frame.removed);
    return true;
  }

  alarm(machine, index) {
    return this.alarms.get(keyOf(machine, index)) ?? null;
  }

  trend(machine, index) {
    return this.trends.get(keyOf(machine, index)) ?? null;
  }

  /** Raised alarms, newest first (ties: machine, then index, for a stable strip). */
  raised() {
    const out = [...this.alarms.values()].filter((a) => a.raised);
    out.sort((a, b) => b.since - a.since || (a.machine < b.machine ? -1 : a.machine > b.machine ? 1 : a.index - b.index));
    return out;
  }

  #parseList(list, parse) {
    if (!Array.isArray(list)) {
      this.rejected += 1;
      return [];
    }
    const out = [];
    for (const raw of list) {
      const item = parse(raw);
      if (item) out.push(item);
      else this.rejected += 1;
    }
    return out;
  }

  #replace(map, items) {
    const next = new Map(items.map((item) => [keyOf(item.machine, item.index), item]));
    for (const key of map.keys()) if (!next.has(key)) this.dirty.add(key);
    for (const key of next.keys()) this.dirty.add(key);
    map.clear();
    for (const [key, item] of next) map.set(key, item);
  }

  #removeKeys(map, keys) {
    if (keys === undefined) return;
    if (!Array.isArray(keys)) {
      this.rejected += 1;
      return;
    }
    for (const k of keys) {
      if (k && typeof k.maschinenId === 'string' && Number.isSafeInteger(k.scrapIndex)) {
        const key = keyOf(k.maschinenId, k.scrapIndex);
        if (map.delete(key)) this.dirty.add(key);
      } else {
        this.rejected += 1;
      }
    }
  }
}
