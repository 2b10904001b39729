// Shift totals against the real stack with a historian: readings go through Mosquitto,
// ingest's minute buckets and the historian's SQLite store, and the cards, the shift view's
// chart and table, and the CSV download must show exactly their sums. The shift rules are
// made at start so that a shift began at the last whole minute: readings stamped just
// before it (ingest's window is 10 minutes here) count for the last shift.

import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { Stack, launchBrowser, openDashboard, startGateway, startHistorian, waitFor } from './support/stack.mjs';

const ZONE = 'Europe/Berlin';
const TOKEN = 'shift-token-for-tests-5c1';
const HOUR = 3_600_000;

/** The last whole minute, and shifts of 8 h each: the last one ended then, the next begins. */
const boundary = Math.floor(Date.now() / 60_000) * 60_000;
const local = (ms) =>
  new Intl.DateTimeFormat('en-GB', { timeZone: ZONE, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(ms);
const SHIFTS = [
  { name: 'Früh', start: local(boundary - 8 * HOUR), end: local(boundary) },
  { name: 'Spät', start: local(boundary), end: local(boundary + 8 * HOUR) },
  { name: 'Nacht', start: local(boundary + 8 * HOUR), end: local(boundary + 16 * HOUR) },
];

/** Readings: [machine, index, value, ms before the boundary (null: now, in the current shift)]. */
const READINGS = [
  ['A1', 1, 2.5, 30_000],
  ['A1', 1, 1.25, 20_000],
  ['A1', 1, 4, null],
  ['A1', 1, 0.5, null],
  ['A1', 1, 3.25, null],
  ['A1', 2, 10, null],
  ['B1', 1, 1.5, null],
];
const totals = (machine, index, before) =>
  READINGS.filter(([m, i, , t]) => m === machine && i === index && (t !== null) === before).reduce((a, [, , v]) => a + v, 0);

let stack;
let browser;

before(async () => {
  browser = await launchBrowser();
  stack = await Stack.start({
    // A long window, so that readings stamped before the boundary are still accepted; buckets
    // sent every second, so that the totals are there soon.
    ingest: { windowSeconds: 600, args: ['--history-interval-seconds', '1'] },
    historian: { timezone: ZONE, shifts: SHIFTS },
  });
  for (const [machine, index, value, ago] of READINGS) {
    const extra = ago === null ? {} : { timestamp: new Date(boundary - ago).toISOString() };
    await stack.publisher.reading(machine, index, value, extra);
  }
  // Every reading stored: the historian's own answer holds the sums.
  try {
    await waitFor('the historian to hold every reading', async () => {
      const keys = await (await fetch(`${stack.historian.url}/api/shifts/current`)).json();
      const count = keys.reduce((n, k) => n + (k.current?.count ?? 0) + (k.previous?.count ?? 0), 0);
      return count === READINGS.length;
    }, { timeoutMs: 30_000 });
  } catch (error) {
    error.message += `\n${stack.logs()}`;
    throw error;
  }
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

const sumText = (value, tag = 'de-DE') => new Intl.NumberFormat(tag, { maximumFractionDigits: 2 }).format(value);
const cardsOf = (page) => page.evaluate(() => window.__scrapPulse.cards());
const viewOf = (page) => page.evaluate(() => window.__scrapPulse.shiftView());

/** The gateway's JSON answer for `path` (with the token when given). */
async function api(base, path, token = null) {
  const response = await fetch(new URL(path, base), { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  assert.equal(response.status, 200, `${path}: ${response.status}`);
  return response.json();
}

/** Waits until every card shows its key's shift totals as published. */
async function waitForShiftCards(page, tag = 'de-DE') {
  const expected = [
    ['A1', 1, totals('A1', 1, false), totals('A1', 1, true)],
    ['A1', 2, totals('A1', 2, false), 0],
    ['B1', 1, totals('B1', 1, false), 0],
  ];
  try {
    // Polled every 20 s: the first answer may predate the last reading.
    return await waitFor('shift totals on every card', async () => {
      const cards = await cardsOf(page);
      return expected.every(([m, i, now, last]) =>
        cards.some((c) => c.machine === m && c.index === i && c.shiftNow === sumText(now, tag) && c.shiftLast === sumText(last, tag)),
      ) ? cards : null;
    }, { timeoutMs: 45_000 });
  } catch (error) {
    error.message += `\ncards: ${JSON.stringify(await cardsOf(page).catch(() => null))}\n${stack.logs()}`;
    throw error;
  }
}

/** Opens the shift view of `machine` by its controls, and waits for its rows. */
async function openShiftView(page, machine, viewName = 'Schichten') {
  await page.getByRole('button', { name: viewName, exact: true }).click();
  await page.getByRole('combobox').selectOption(machine);
  return waitFor(`shift view of ${machine}`, async () => {
    const view = await viewOf(page);
    return view.visible && view.machine === machine && view.period && view.rows.length > 1 && view.chart.labels.length > 0 ? view : null;
  });
}

/** Clicks the CSV button and returns the file's name and text. */
async function downloadCsv(page, name) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name }).click()]);
  const file = await download.path();
  return { name: download.suggestedFilename(), text: readFileSync(file, 'utf8') };
}

test('cards show this shift\'s and the last shift\'s exact totals', { timeout: 90_000 }, async () => {
  const page = await openDashboard(browser, stack.url);
  await waitForShiftCards(page);
  const shifts = await page.evaluate(() => window.__scrapPulse.shifts());
  assert.equal(shifts.available, true);
  const a1 = shifts.keys.find((k) => k.machine === 'A1' && k.index === 1);
  assert.equal(a1.current.shift, 'Spät');
  assert.equal(a1.previous.shift, 'Früh');
  assert.equal(a1.current.sum, totals('A1', 1, false));
  assert.equal(a1.previous.sum, totals('A1', 1, true));

  // English: the same totals, English formats and labels.
  await page.getByRole('button', { name: 'EN', exact: true }).click();
  await waitFor('English card labels', async () => (await page.locator('.card').first().innerText()).includes('This shift'));
  const card = await page.locator('.card').first().innerText();
  assert.match(card, /Last shift/);
  // The choice is stored in the browser profile the other tests share.
  await page.getByRole('button', { name: 'DE', exact: true }).click();
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('the shift view: the current shift by hour, the last 7 days by shift, as the API answers', { timeout: 90_000 }, async () => {
  const page = await openDashboard(browser, stack.url);
  await waitForShiftCards(page);
  const view = await openShiftView(page, 'A1');
  assert.equal(await page.locator('#live-view').isVisible(), false, 'the live view steps aside');
  assert.equal(view.period.shift, 'Spät');
  assert.equal(view.period.running, true);
  assert.match(await page.locator('#shift-period').innerText(), new RegExp(`^Laufende Schicht Spät, .*, ${SHIFTS[1].start}–${SHIFTS[1].end}$`));

  // The chart: every hour the shift touches, one series per index, the API's hourly sums.
  const hours = await api(stack.url, `api/history?machines=A1&step=hour&from=${encodeURIComponent(view.period.startUtc)}&to=${encodeURIComponent(view.period.endUtc)}`);
  const onTheHour = boundary % HOUR === 0;
  assert.equal(view.chart.labels.length, onTheHour ? 8 : 9);
  assert.equal(view.chart.labels[0], hours[0].start.slice(11, 16));
  assert.deepEqual(view.chart.datasets.map((d) => d.index), [1, 2]);
  for (const dataset of view.chart.datasets) {
    const expected = view.chart.labels.map((label) => hours.find((h) => h.scrapIndex === dataset.index && h.start.slice(11, 16) === label)?.sum ?? 0);
    assert.deepEqual(dataset.data, expected, `index ${dataset.index} by hour`);
  }
  // The readings stamped before the boundary fall in its hour unless it is a whole hour.
  const index1 = view.chart.datasets[0].data.reduce((a, b) => a + b, 0);
  assert.equal(index1, totals('A1', 1, false) + (onTheHour ? 0 : totals('A1', 1, true)));
  assert.equal(view.chart.datasets[1].data.reduce((a, b) => a + b, 0), 10);
  const png = await page.locator('#shift-chart').screenshot();
  assert.ok(png.length > 5000, `shift chart screenshot of ${png.length} bytes looks blank`);

  // The table: the API's shift rows, newest first, formatted.
  const rows = await api(stack.url, 'api/history?machines=A1&step=shift');
  assert.equal(view.rows.length, rows.length);
  const running = view.rows.filter((r) => r[6] === 'läuft');
  assert.deepEqual(running.map((r) => [r[1], r[2], r[3], r[4]]), [
    [`Spät ${SHIFTS[1].start}–${SHIFTS[1].end}`, '1', sumText(totals('A1', 1, false)), '3'],
    [`Spät ${SHIFTS[1].start}–${SHIFTS[1].end}`, '2', '10', '1'],
  ]);
  assert.deepEqual(view.rows.slice(0, 2), running, 'the running shift first');
  const last = view.rows.find((r) => r[1].startsWith('Früh') && r[2] === '1');
  // Ended a moment ago: its last minutes are not final until ingest's window has passed.
  assert.deepEqual([last[3], last[4], last[5], last[6]], ['3,75', '2', '1,88', 'vorläufig']);
  const shown = view.rows.map((r) => r[3]).sort();
  const answered = rows.map((r) => sumText(r.sum)).sort();
  assert.deepEqual(shown, answered, 'every row of the API in the table');
  // Accessible structure: column headers, a row header per row.
  assert.equal(await page.locator('#shift-view thead th[scope="col"]').count(), 7);
  assert.equal(await page.locator('#shift-view tbody th[scope="row"]').count(), rows.length);
  assert.equal(await page.getByRole('combobox', { name: 'Maschine' }).count(), 1);

  // The address names the view: a reload opens it again, on the same machine.
  assert.match(page.url(), /#shifts\/A1$/);
  await page.reload();
  await waitFor('shift view after reload', async () => {
    const v = await viewOf(page);
    return v.visible && v.machine === 'A1' && v.rows.length === rows.length;
  }, { timeoutMs: 30_000 });
  // And back to the live view.
  await page.getByRole('button', { name: 'Live' }).click();
  assert.equal(await page.locator('#live-view').isVisible(), true);
  assert.equal(await page.locator('#shift-view').isVisible(), false);
  assert.deepEqual(page.problems, []);
  await page.close();
});

/** The CSV's data rows (no header), split. */
const csvRows = (text, sep) => text.replace(/^\uFEFF/, '').trim().split('\r\n').slice(1).map((line) => line.split(sep));

test('the CSV download: the table\'s rows, German with semicolons and decimal commas, English with commas', { timeout: 90_000 }, async () => {
  const page = await openDashboard(browser, stack.url);
  await waitForShiftCards(page);
  await openShiftView(page, 'A1');
  const rows = await api(stack.url, 'api/history?machines=A1&step=shift');

  const de = await downloadCsv(page, 'CSV herunterladen');
  assert.match(de.name, /^scrap-shift-.*\.csv$/);
  assert.ok(de.text.startsWith('\uFEFFMaschine;Ausschussindex;Schicht;Tag;'), de.text.slice(0, 80));
  const deRows = csvRows(de.text, ';');
  assert.equal(deRows.length, rows.length);
  const spaet = deRows.findLast((r) => r[2] === 'Spät' && r[1] === '1');
  assert.equal(spaet[0], 'A1');
  assert.equal(spaet[8], ZONE);
  assert.equal(spaet[9], '7,75');
  assert.equal(spaet[10], '3');
  assert.equal(deRows.find((r) => r[2] === 'Früh' && r[1] === '1' && r[10] === '2')[11], '1,875');

  await page.getByRole('button', { name: 'EN', exact: true }).click();
  await waitFor('English view', async () => (await viewOf(page)).csvHref.includes('lang=en'));
  const en = await downloadCsv(page, 'Download CSV');
  assert.ok(en.text.startsWith('machine,scrap_index,shift,day,'), en.text.slice(0, 80));
  const enRows = csvRows(en.text, ',');
  assert.equal(enRows.length, rows.length);
  assert.equal(enRows.findLast((r) => r[2] === 'Spät' && r[1] === '1')[9], '7.75');
  assert.match(await page.locator('#shift-period').innerText(), /^Current shift Spät, /);
  await page.getByRole('button', { name: 'DE', exact: true }).click();
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('with the gateway\'s token: totals, shift view and CSV download work; without it the API refuses', { timeout: 90_000 }, async () => {
  const gateway = await startGateway(stack.mosquitto.port, null, { historyUrl: stack.historian.url, authToken: TOKEN });
  try {
    const unauthorised = await fetch(new URL('api/history.csv?machines=A1&step=shift', gateway.url));
    assert.equal(unauthorised.status, 401);
    const page = await openDashboard(browser, `${gateway.url}?token=${TOKEN}`);
    await waitForShiftCards(page);
    const view = await openShiftView(page, 'A1');
    const rows = await api(gateway.url, 'api/history?machines=A1&step=shift', TOKEN);
    assert.equal(view.rows.length, rows.length);
    const de = await downloadCsv(page, 'CSV herunterladen');
    assert.equal(csvRows(de.text, ';').length, rows.length);
    assert.ok(csvRows(de.text, ';').some((r) => r[2] === 'Spät' && r[9] === '7,75'));
    assert.deepEqual(page.problems, []);
    await page.close();
  } finally {
    await gateway.stop();
  }
});

test('without a historian the page shows no shift parts and no errors', { timeout: 60_000 }, async () => {
  const gateway = await startGateway(stack.mosquitto.port);
  try {
    const page = await openDashboard(browser, `${gateway.url}#shifts/A1`);
    await waitFor('cards', async () => (await cardsOf(page)).some((c) => c.machine === 'A1'));
    await waitFor('the shift totals asked about', async () => (await page.evaluate(() => window.__scrapPulse.shifts())).polls >= 1);
    // The answer is in: give the page a render to show anything it would show.
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    const shifts = await page.evaluate(() => window.__scrapPulse.shifts());
    assert.equal(shifts.available, false);
    assert.ok((await cardsOf(page)).every((c) => c.shiftNow === null && c.shiftLast === null));
    assert.equal(await page.locator('.card-shifts:visible').count(), 0);
    assert.equal(await page.locator('#view-switch').isVisible(), false);
    assert.equal(await page.locator('#shift-view').isVisible(), false, '#shifts in the address is ignored');
    assert.equal(await page.locator('#live-view').isVisible(), true);
    assert.deepEqual(page.problems, []);
    await page.close();
  } finally {
    await gateway.stop();
  }
});

test('a historian without shift rules: no shift parts, nothing in the console but the browser\'s 404 line', { timeout: 60_000 }, async () => {
  const historian = await startHistorian(stack.mosquitto.port, { timezone: ZONE });
  const gateway = await startGateway(stack.mosquitto.port, null, { historyUrl: historian.url });
  try {
    const page = await openDashboard(browser, gateway.url);
    await waitFor('cards', async () => (await cardsOf(page)).some((c) => c.machine === 'A1'));
    await waitFor('the shift totals asked about', async () => (await page.evaluate(() => window.__scrapPulse.shifts())).polls >= 1);
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    assert.equal((await page.evaluate(() => window.__scrapPulse.shifts())).available, false);
    assert.ok((await cardsOf(page)).every((c) => c.shiftNow === null));
    assert.equal(await page.locator('#view-switch').isVisible(), false);
    // The browser itself logs the 404 (the page asks again only every 10 minutes); the page
    // adds nothing of its own.
    assert.deepEqual(page.problems, ['console.error: Failed to load resource: the server responded with a status of 404 (Not Found)']);
    await page.close();
  } finally {
    await gateway.stop();
    await historian.stop();
    rmSync(historian.dir, { recursive: true, force: true });
  }
});
