// The page's pure modules (state, alarms and trends, shift totals, formats, backoff, chart series), tested in node without a
// browser: quick checks of the rules the browser tests then see end to end.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { chartData } from '../src/chart.js';
import { backoffDelay, socketUrl } from '../src/connection.js';
import { Locale, initialLanguage } from '../src/i18n.js';
import { alarmText, sparklinePoints } from '../src/alarm-view.js';
import { apiHeaders, apiUrl, attachmentName } from '../src/api.js';
import { clockTime, hourlySeries, parseCurrentShifts, parseRow, rowState, tableOrder } from '../src/shifts.js';
import { DashboardState, keyOf, naturalCompare } from '../src/state.js';

const agg = (machine, index, sum, count, extra = {}) => ({
  maschinenId: machine,
  scrapIndex: index,
  sumLast60s: sum,
  avgLast60s: count ? sum / count : null,
  count,
  windowSeconds: 60,
  timestamp: '2026-01-01T12:00:00.000Z',
  ...extra,
});

test('machine ids sort naturally: A2 before A10, distinct ids never tie', () => {
  const ids = ['A10', 'B1', 'A2', 'a1', 'A1', 'A100', 'Z'];
  assert.deepEqual([...ids].sort(naturalCompare), ['a1', 'A1', 'A2', 'A10', 'A100', 'B1', 'Z']);
  assert.notEqual(naturalCompare('a1', 'A1'), 0);
});

test('a snapshot replaces all state; updates and removes change only their keys', () => {
  const s = new DashboardState();
  s.apply({ type: 'snapshot', aggregates: [agg('A10', 1, 5, 2), agg('A2', 3, 1, 1), agg('A2', 1, 2, 1)], ingest: { online: true } });
  assert.deepEqual(s.machineOrder, ['A2', 'A10']);
  assert.deepEqual(s.indexOrder.get('A2'), [1, 3]);
  assert.deepEqual(s.allIndices, [1, 3]);
  assert.equal(s.ingestOnline, true);
  assert.equal(s.dirty.size, 3);
  s.dirty.clear();

  s.apply({ type: 'update', aggregates: [agg('A2', 1, 7, 3)] });
  assert.equal(s.get('A2', 1).sum, 7);
  assert.deepEqual([...s.dirty], ['A2\u00001']);

  s.apply({ type: 'remove', keys: [{ maschinenId: 'A2', scrapIndex: 3 }] });
  assert.equal(s.get('A2', 3), undefined);
  assert.deepEqual(s.allIndices, [1]);

  // A later snapshot without A10 drops it, and brings B1.
  s.apply({ type: 'snapshot', aggregates: [agg('A2', 1, 7, 3), agg('B1', 2, 4, 4)], ingest: { online: false } });
  assert.deepEqual(s.machineOrder, ['A2', 'B1']);
  assert.equal(s.get('A10', 1), undefined);
  assert.deepEqual(s.allIndices, [1, 2]);
  assert.equal(s.size, 2);
  assert.equal(s.ingestOnline, false);
});

test('a snapshot in parts replaces the state once, at its last part', () => {
  const s = new DashboardState();
  s.apply({ type: 'update', aggregates: [agg('OLD', 1, 1, 1)] });
  const part = (n, last, aggregates, extra = {}) =>
    ({ type: 'snapshot', part: n, last, mqtt: 'connected', ingest: { online: true }, aggregates, alarms: [], trends: [], ...extra });
  assert.equal(s.apply(part(0, false, [agg('A1', 1, 5, 2)])), true);
  assert.equal(s.get('OLD', 1).sum, 1, 'nothing replaced before the last part');
  assert.equal(s.get('A1', 1), undefined);
  assert.equal(s.apply(part(1, true, [agg('B1', 1, 3, 1)])), true);
  assert.deepEqual(s.machineOrder, ['A1', 'B1']);
  assert.equal(s.get('OLD', 1), undefined);
  assert.equal(s.mqtt, 'connected');

  // A part out of order (a lost part 1) is rejected and the partial snapshot dropped; the next
  // snapshot starts over from part 0.
  s.apply(part(0, false, [agg('C1', 1, 1, 1)]));
  assert.equal(s.apply(part(2, true, [agg('D1', 1, 1, 1)])), false);
  assert.equal(s.rejected, 1);
  assert.deepEqual(s.machineOrder, ['A1', 'B1']);
  s.apply(part(0, true, [agg('E1', 1, 1, 1)]));
  assert.deepEqual(s.machineOrder, ['E1']);
});

test('an unchanged aggregate marks nothing dirty', () => {
  const s = new DashboardState();
  s.apply({ type: 'update', aggregates: [agg('A1', 1, 5, 2)] });
  s.dirty.clear();
  s.apply({ type: 'update', aggregates: [agg('A1', 1, 5, 2)] });
  assert.equal(s.dirty.size, 0);
});

test('offline comes only from `offline: true`, and going on or off line is a change', () => {
  const s = new DashboardState();
  s.apply({ type: 'update', aggregates: [agg('A1', 1, 5, 2), agg('A1', 2, 5, 2, { offline: 'yes' })] });
  assert.deepEqual(s.toJSON().aggregates.map((a) => a.offline), [false, false]);
  s.dirty.clear();
  // Same sums and time: only the flag differs, and that must still reach the cards.
  s.apply({ type: 'update', aggregates: [agg('A1', 1, 5, 2, { offline: true })] });
  assert.equal(s.get('A1', 1).offline, true);
  assert.deepEqual([...s.dirty], [keyOf('A1', 1)]);
  s.dirty.clear();
  s.apply({ type: 'update', aggregates: [agg('A1', 1, 5, 2)] });
  assert.equal(s.get('A1', 1).offline, false);
  assert.equal(s.dirty.size, 1);
});

test('malformed frames and entries are counted and skipped, never thrown', () => {
  const s = new DashboardState();
  assert.equal(s.apply(null), false);
  assert.equal(s.apply({ type: 'bogus' }), false);
  s.apply({
    type: 'update',
    aggregates: [
      agg('A1', 1, 5, 2),
      { maschinenId: 'A1', scrapIndex: -1, sumLast60s: 1, count: 1 },
      { maschinenId: 'A1', scrapIndex: 2, sumLast60s: 'NaN', count: 1 },
      { maschinenId: 42, scrapIndex: 2, sumLast60s: 1, count: 1 },
      'junk',
    ],
  });
  s.apply({ type: 'remove', keys: 'nope' });
  assert.equal(s.size, 1);
  assert.equal(s.rejected, 7);
});

test('ingest shards: a status with shard counts gives online of expected; a single ingest has none', () => {
  const s = new DashboardState();
  s.apply({ type: 'status', mqtt: 'connected', ingest: { online: false, shardsOnline: 2, shardCount: 3 } });
  assert.equal(s.ingestOnline, false);
  assert.deepEqual(s.toJSON().ingestShards, { online: 2, count: 3 });
  s.apply({ type: 'status', mqtt: 'connected', ingest: { online: true, shardsOnline: 3, shardCount: 3 } });
  assert.equal(s.ingestOnline, true);
  assert.deepEqual(s.ingestShards, { online: 3, count: 3 });
  s.apply({ type: 'status', mqtt: 'connected', ingest: { online: true } });
  assert.equal(s.ingestShards, null);
  s.apply({ type: 'status', mqtt: 'connected', ingest: { online: true, shardsOnline: 'x', shardCount: 3 } });
  assert.equal(s.ingestShards, null, 'malformed counts are ignored');
  s.apply({ type: 'status', mqtt: 'connected', ingest: { online: true, shardsOnline: 1, shardCount: 1 } });
  s.markUnknown();
  assert.equal(s.ingestShards, null);
  assert.equal(new Locale('de').t('ingestShards', { online: 3, count: 3 }), '3/3 Shards online');
  assert.equal(new Locale('en').t('ingestShards', { online: 2, count: 3 }), '2/3 shards online');
});

test('status frames set broker and ingest state; losing the socket makes them unknown', () => {
  const s = new DashboardState();
  s.apply({ type: 'status', mqtt: 'disconnected', ingest: { online: true } });
  assert.equal(s.mqtt, 'disconnected');
  assert.equal(s.ingestOnline, true);
  s.apply({ type: 'status', mqtt: 'connected' });
  assert.equal(s.ingestOnline, true, 'a frame without ingest leaves it as it was');
  s.apply({ type: 'status', mqtt: 'connected', ingest: null });
  assert.equal(s.ingestOnline, null, 'ingest: null is unknown');
  s.markUnknown();
  assert.equal(s.mqtt, null);
  assert.equal(s.ingestOnline, null);
});

test('numbers use the locale: German decimal comma, two decimals, a dash for no average', () => {
  const de = new Locale('de');
  const en = new Locale('en');
  assert.equal(de.avg(25 / 7), '3,57');
  assert.equal(en.avg(25 / 7), '3.57');
  assert.equal(de.avg(null), '–');
  assert.equal(de.sum(1234.5), '1.234,5');
  assert.equal(en.sum(1234.5), '1,234.5');
  assert.equal(de.sum(0), '0');
  assert.equal(de.age(3400), 'vor 3 s');
  assert.equal(en.age(125_000), '2 min ago');
  assert.equal(de.age(-5000), 'vor 0 s', 'a clock ahead of ours reads as just now');
  assert.equal(de.age(2 * 86_400_000), 'vor 2 T');
});

test('the language is the stored choice, else the browser language, else German', () => {
  assert.equal(initialLanguage(null, ['en-US', 'de']), 'en');
  assert.equal(initialLanguage(null, ['fr-FR', 'de-AT']), 'de');
  assert.equal(initialLanguage(null, ['fr-FR']), 'de');
  assert.equal(initialLanguage('de', ['en-US']), 'de');
  assert.equal(initialLanguage('xx', ['en-GB']), 'en');
});

test('reconnect delays grow exponentially to a cap, with jitter in [50 %, 100 %)', () => {
  const low = { random: () => 0 };
  const high = { random: () => 0.999999 };
  assert.equal(backoffDelay(0, low), 250);
  assert.equal(backoffDelay(1, low), 500);
  assert.equal(backoffDelay(3, high), 4000);
  assert.equal(backoffDelay(50, high), 30_000);
  assert.equal(backoffDelay(50, low), 15_000);
});

test('the socket URL sits beside the page, ws or wss like the page', () => {
  assert.equal(socketUrl(new URL('http://h:8000/')), 'ws://h:8000/ws');
  assert.equal(socketUrl(new URL('https://h/scrap/#x')), 'wss://h/scrap/ws');
  assert.equal(socketUrl(new URL('http://h/?lang=x&machines=A1,B2')), 'ws://h/ws?machines=A1%2CB2');
  assert.equal(socketUrl(new URL('http://h/?token=s3cr%2Bt')), 'ws://h/ws?token=s3cr%2Bt');
  assert.equal(
    socketUrl(new URL('http://h/?machines=A1&token=t')),
    'ws://h/ws?machines=A1&token=t',
  );
});

test('chart series: one per scrap index, machines in natural order, gaps as null', () => {
  const s = new DashboardState();
  s.apply({ type: 'snapshot', aggregates: [agg('A10', 1, 5, 2), agg('A2', 2, 3, 3), agg('A2', 1, 0, 0)] });
  assert.deepEqual(chartData(s, 'sum'), {
    labels: ['A2', 'A10'],
    series: [
      { index: 1, data: [0, 5] },
      { index: 2, data: [3, null] },
    ],
  });
  assert.deepEqual(chartData(s, 'avg').series[0].data, [null, 2.5]);
});

test('no source file uses an HTML-parsing DOM API (wire values must stay text)', async () => {
  const { readdir, readFile } = await import('node:fs/promises');
  const dir = new URL('../src/', import.meta.url);
  const banned = /\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment|DOMParser)\b/;
  for (const name of await readdir(dir)) {
    const text = await readFile(new URL(name, dir), 'utf8');
    const line = text.split('\n').findIndex((l) => banned.test(l));
    assert.equal(line, -1, `src/${name}:${line + 1} uses an HTML-parsing API`);
  }
});

const alarmWire = (machine, index, state, since, extra = {}) => ({
  maschinenId: machine, scrapIndex: index, state, metric: 'sum', value: 31.5, threshold: 30,
  since, timestamp: since, ...extra,
});

test('alarms: snapshot, frames, newest first, removal, and raises worth a notification', () => {
  const state = new DashboardState();
  state.apply({
    type: 'snapshot', aggregates: [],
    alarms: [alarmWire('A1', 1, 'raised', '2026-01-01T10:00:00Z'), alarmWire('B1', 1, 'cleared', '2026-01-01T11:00:00Z')],
    trends: [{ maschinenId: 'A1', scrapIndex: 1, intervalSeconds: 10, points: [{ t: '2026-01-01T10:00:00Z', sum: 2 }] }],
  });
  const signals = state.signals;
  assert.deepEqual(signals.raised().map((a) => a.machine), ['A1']);
  assert.deepEqual(signals.raisedNow, [], 'a snapshot never notifies');
  assert.equal(signals.trend('A1', 1).points[0].sum, 2);
  assert.ok(state.apply({ type: 'alarm', alarms: [alarmWire('B1', 1, 'raised', '2026-01-01T12:00:00Z')], removed: [] }));
  assert.deepEqual(signals.raised().map((a) => a.machine), ['B1', 'A1'], 'newest first');
  assert.deepEqual(signals.raisedNow.map((a) => a.machine), ['B1']);
  // The same raise again (a resync repeats it) is not news.
  signals.raisedNow.length = 0;
  state.apply({ type: 'alarm', alarms: [alarmWire('B1', 1, 'raised', '2026-01-01T12:00:00Z')], removed: [] });
  assert.deepEqual(signals.raisedNow, []);
  state.apply({ type: 'alarm', alarms: [], removed: [{ maschinenId: 'A1', scrapIndex: 1 }] });
  state.apply({ type: 'trend', trends: [], removed: [{ maschinenId: 'A1', scrapIndex: 1 }] });
  assert.equal(signals.alarm('A1', 1), null);
  assert.equal(signals.trend('A1', 1), null);
  // Unusable entries are counted, never thrown.
  state.apply({ type: 'alarm', alarms: [alarmWire('C1', 1, 'boiling', 'x'), null], removed: 'all' });
  assert.equal(state.toJSON().rejected, 3);
  assert.equal(state.apply({ type: 'trend' }), false);
});

test('alarm text and sparkline geometry', () => {
  const de = new Locale('de');
  const since = Date.parse('2026-01-01T10:00:00Z');
  const text = alarmText({ metric: 'avg', value: 3.25, threshold: 3, since }, de);
  assert.match(text, /^Mittel 3,25 über 3 seit \d\d:\d\d:\d\d$/);
  assert.match(alarmText({ metric: 'sum', value: null, threshold: 3, since }, new Locale('en')), /^Sum – above 3 since/);
  assert.equal(sparklinePoints([]), '');
  assert.equal(sparklinePoints([{ sum: 5 }]), '0,1 100,1', 'one sample: a flat line across');
  assert.equal(sparklinePoints([{ sum: 0 }, { sum: 0 }]), '0,23 100,23', 'all zero: the baseline');
  assert.equal(sparklinePoints([{ sum: 0 }, { sum: 5 }, { sum: 10 }]), '0,23 50,12 100,1');
});

const historyRow = (machine, index, start, sum, count, extra = {}) => ({
  maschinenId: machine, scrapIndex: index, shift: null, day: start.slice(0, 10),
  start: `${start}:00+01:00`, end: '', startUtc: new Date(`${start}:00+01:00`).toISOString(), endUtc: '',
  sum, count, avg: count ? sum / count : null, final: false, ...extra,
});

test('shift totals: rows parsed, malformed ones dropped; one entry per key', () => {
  const keys = parseCurrentShifts([
    { maschinenId: 'A1', scrapIndex: 1, current: historyRow('A1', 1, '2026-12-07T14:00', 7.75, 3, { shift: 'Spät' }), previous: null },
    { maschinenId: 'A1', scrapIndex: 2, current: { sum: 'x' }, previous: historyRow('A1', 2, '2026-12-07T06:00', 0, 0) },
    { maschinenId: 3, scrapIndex: 1 },
    null,
  ]);
  assert.equal(keys.size, 2);
  const [a1, a2] = [...keys.values()];
  assert.equal(a1.current.shift, 'Spät');
  assert.equal(a1.current.sum, 7.75);
  assert.equal(a1.previous, null);
  assert.equal(a2.current, null, 'a row with a bad sum is left out');
  assert.equal(a2.previous.avg, null);
  assert.equal(parseRow({ maschinenId: 'A1', scrapIndex: 1, sum: Infinity, count: 1 }), null);
  assert.equal(clockTime('2026-12-07T06:30:00+01:00'), '06:30');
});

test('shift view: hourly series per index in time order, table newest first, row states', () => {
  const rows = [
    historyRow('A1', 2, '2026-12-07T15:00', 4, 1),
    historyRow('A1', 1, '2026-12-07T14:00', 1.5, 2),
    historyRow('A1', 1, '2026-12-07T15:00', 2, 1),
    historyRow('A1', 2, '2026-12-07T14:00', 0, 0),
  ].map(parseRow);
  assert.deepEqual(hourlySeries(rows), {
    labels: ['14:00', '15:00'],
    series: [{ index: 1, data: [1.5, 2] }, { index: 2, data: [0, 4] }],
  });
  assert.deepEqual(tableOrder(rows).map((r) => `${clockTime(r.start)}/${r.index}`), ['15:00/1', '15:00/2', '14:00/1', '14:00/2']);
  const now = Date.parse('2026-12-07T14:30:00Z');
  assert.equal(rowState({ final: true, endUtc: '2026-12-07T15:00:00Z' }, now), 'final');
  assert.equal(rowState({ final: false, endUtc: '2026-12-07T15:00:00Z' }, now), 'running');
  assert.equal(rowState({ final: false, endUtc: '2026-12-07T14:00:00Z' }, now), 'provisional');
});

test('API requests: beside the page, the page token as a bearer header, the download name', () => {
  const page = { href: 'https://plant.example/dash/?token=s3cret&machines=A1#shifts/A1' };
  assert.equal(
    apiUrl(page, 'api/history.csv', { machines: 'A 1', step: 'shift', lang: 'de', index: null }),
    'https://plant.example/dash/api/history.csv?machines=A+1&step=shift&lang=de',
  );
  assert.deepEqual(apiHeaders(page), { Authorization: 'Bearer s3cret' });
  assert.deepEqual(apiHeaders({ href: 'http://gw:8000/' }), {});
  assert.equal(attachmentName('attachment; filename="scrap-shift-2026-12-01-2026-12-07.csv"', 'x.csv'), 'scrap-shift-2026-12-01-2026-12-07.csv');
  assert.equal(attachmentName(null, 'x.csv'), 'x.csv');
});
