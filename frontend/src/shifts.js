// Shift totals from the historian, through the gateway: every key's running shift and last
// shift (`GET /api/shifts/current`, one request for all keys), polled every 20 s. The gateway
// says in /api/health whether it has a historian; without one nothing is asked, so a plant
// without history sees no shift parts and its console stays clean.
//
// The pure parts (parsing, chart series, table order) are exported for node's test runner.

import { apiGet, apiUrl } from './api.js';
import { keyOf, naturalCompare } from './state.js';

/** One history row as the views use it, or null when it is unusable. */
export function parseRow(raw) {
  if (raw === null || typeof raw !== 'object') return null;
  const { maschinenId: machine, scrapIndex: index, sum, count, avg } = raw;
  if (typeof machine !== 'string' || !Number.isSafeInteger(index)) return null;
  if (typeof sum !== 'number' || !Number.isFinite(sum) || !Number.isSafeInteger(count)) return null;
  const text = (value) => (typeof value === 'string' ? value : '');
  return {
    machine,
    index,
    shift: typeof raw.shift === 'string' ? raw.shift : null,
    day: text(raw.day),
    start: text(raw.start),
    end: text(raw.end),
    startUtc: text(raw.startUtc),
    endUtc: text(raw.endUtc),
    sum,
    count,
    avg: typeof avg === 'number' && Number.isFinite(avg) ? avg : null,
    final: raw.final === true,
  };
}

/** `/api/shifts/current`'s answer as a Map keyOf(machine, index) -> {current, previous}. */
export function parseCurrentShifts(list) {
  const keys = new Map();
  if (!Array.isArray(list)) return keys;
  for (const raw of list) {
    if (raw === null || typeof raw !== 'object') continue;
    const { maschinenId: machine, scrapIndex: index } = raw;
    if (typeof machine !== 'string' || !Number.isSafeInteger(index)) continue;
    keys.set(keyOf(machine, index), { machine, index, current: parseRow(raw.current), previous: parseRow(raw.previous) });
  }
  return keys;
}

/** `HH:MM` of a local time `2026-12-07T06:00:00+01:00` (plant time, not the browser's). */
export function clockTime(local) {
  return /T(\d\d:\d\d)/.exec(local)?.[1] ?? '';
}

/**
 * The hourly chart of one machine's shift from `/api/history?step=hour` rows: labels are the
 * hours' local starts in time order, one series of sums per scrap index (ascending).
 */
export function hourlySeries(rows) {
  const hours = [...new Set(rows.map((r) => r.startUtc))].sort();
  const position = new Map(hours.map((h, i) => [h, i]));
  const labels = hours.map((h) => clockTime(rows.find((r) => r.startUtc === h).start));
  const byIndex = new Map();
  for (const row of rows) {
    let data = byIndex.get(row.index);
    if (!data) {
      data = hours.map(() => 0);
      byIndex.set(row.index, data);
    }
    data[position.get(row.startUtc)] += row.sum;
  }
  const series = [...byIndex.keys()].sort((a, b) => a - b).map((index) => ({ index, data: byIndex.get(index) }));
  return { labels, series };
}

/** Shift rows for the table: newest shift first, then by scrap index. */
export function tableOrder(rows) {
  return rows.slice().sort((a, b) => (a.startUtc < b.startUtc ? 1 : a.startUtc > b.startUtc ? -1 : a.index - b.index));
}

/** `final`, `running` (not ended yet) or `provisional` (ended, but readings may still come). */
export function rowState(row, now) {
  if (row.final) return 'final';
  return Date.parse(row.endUtc) > now ? 'running' : 'provisional';
}

/**
 * Keeps every key's current and last shift. `onChange(dirtyKeys)` runs after each answer
 * (the keys whose totals changed), and when the totals become unavailable.
 */
export class ShiftFeed {
  constructor(location, { onChange, everyMs = 20_000, idleMs = 600_000 } = {}) {
    this.location = location;
    this.onChange = onChange ?? (() => {});
    this.everyMs = everyMs;
    this.idleMs = idleMs;
    /** True once the gateway has a historian with shift rules. */
    this.available = false;
    this.keys = new Map();
    this.machines = [];
    this.timer = null;
    this.busy = null;
    /** Rounds answered (or failed), for tests and the console. */
    this.polls = 0;
  }

  start() {
    this.refresh();
  }

  /** The entry of a key, or undefined. */
  get(machine, index) {
    return this.keys.get(keyOf(machine, index));
  }

  /** The entries of one machine, by index. */
  ofMachine(machine) {
    return [...this.keys.values()].filter((e) => e.machine === machine).sort((a, b) => a.index - b.index);
  }

  /** Asks now (and then again every `everyMs`); resolves when the answer is in. */
  refresh() {
    if (this.busy) return this.busy;
    clearTimeout(this.timer);
    this.busy = this.#poll()
      .then((waitMs) => {
        this.polls += 1;
        this.timer = setTimeout(() => this.refresh(), waitMs);
      })
      .finally(() => {
        this.busy = null;
      });
    return this.busy;
  }

  /** One round; returns how long to wait for the next. */
  async #poll() {
    try {
      if (!this.available && !(await this.#historianConfigured())) {
        this.#unavailable();
        return this.idleMs;
      }
      const response = await apiGet(this.location, apiUrl(this.location, 'api/shifts/current'));
      if (response.status === 404) {
        // A historian without [[shift]] rules: nothing to show, and asking often would only
        // repeat the browser's 404 line.
        await response.body?.cancel();
        this.#unavailable();
        return this.idleMs;
      }
      if (!response.ok) {
        // Historian or store down, or a token problem: keep what is shown, ask again soon.
        await response.body?.cancel();
        return this.everyMs;
      }
      this.#apply(parseCurrentShifts(await response.json()));
    } catch {
      // Network trouble: the WebSocket's status line already says so; keep what is shown.
    }
    return this.everyMs;
  }

  async #historianConfigured() {
    const response = await fetch(apiUrl(this.location, 'api/health'), { cache: 'no-store', signal: AbortSignal.timeout(10_000) });
    const health = await response.json();
    return health?.history === true;
  }

  #unavailable() {
    const was = this.available || this.keys.size > 0;
    this.available = false;
    const dirty = new Set(this.keys.keys());
    this.keys = new Map();
    this.machines = [];
    if (was) this.onChange(dirty);
  }

  #apply(next) {
    const dirty = new Set();
    for (const [key, entry] of next) {
      if (JSON.stringify(entry) !== JSON.stringify(this.keys.get(key))) dirty.add(key);
    }
    for (const key of this.keys.keys()) if (!next.has(key)) dirty.add(key);
    this.available = true;
    this.keys = next;
    this.machines = [...new Set([...next.values()].map((e) => e.machine))].sort(naturalCompare);
    // Also without changes: the shift view refreshes its rows with every answer.
    this.onChange(dirty);
  }
}
