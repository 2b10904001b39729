// Alarms and trends in the dashboard against the real stack: readings published over MQTT
// make ingest raise an alarm, which the gateway relays to the right card and the strip; the
// alarm clears when the window empties, and each card draws its trend. A second part
// publishes retained alarm and trend messages directly, for what readings cannot easily
// produce (machine ids with markup, several alarms in order, removal).

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ARTIFACTS_DIR, Stack, launchBrowser, makeAggregate, openDashboard, waitFor } from './support/stack.mjs';

const WINDOW_SECONDS = 5;
let stack;
let browser;
let configDir;

before(async () => {
  configDir = mkdtempSync(path.join(os.tmpdir(), 'scrap-pulse-fe-alarms-'));
  const config = path.join(configDir, 'ingest.toml');
  writeFileSync(config, '[[alarm]]\nmachine = "AL1"\nindex = 1\nsum_above = 10.0\nclear_below = 5.0\n');
  browser = await launchBrowser();
  stack = await Stack.start({
    ingest: { windowSeconds: WINDOW_SECONDS, args: ['--config', config, '--trend-interval-seconds', '1'] },
  });
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

const cardsOf = (page) => page.evaluate(() => window.__scrapPulse.cards());
const stripOf = (page) => page.evaluate(() => window.__scrapPulse.alarmStrip());
const cardOf = async (page, machine, index) => (await cardsOf(page)).find((c) => c.machine === machine && c.index === index);

/** Waits for `check(card)` on the card of (machine, index), with the page and logs on failure. */
async function waitForCard(page, machine, index, what, check, opts = {}) {
  try {
    return await waitFor(what, async () => {
      const card = await cardOf(page, machine, index);
      return card && check(card) ? card : null;
    }, { intervalMs: 20, ...opts });
  } catch (error) {
    error.message += `\ncard: ${JSON.stringify(await cardOf(page, machine, index).catch(() => null))}`
      + `\nstrip: ${JSON.stringify(await stripOf(page).catch(() => null))}\n${stack.logs()}`;
    throw error;
  }
}

/** The y values of a sparkline's `points` attribute. */
const sparkYs = (points) => points.split(' ').filter(Boolean).map((p) => Number(p.split(',')[1]));

test('an alarm raised by readings shows on its card and in the strip within a second, then clears', { timeout: 60000 }, async (t) => {
  const page = await openDashboard(browser, stack.url);
  await stack.publisher.reading('AL1', 1, 4);
  await stack.publisher.reading('AL1', 1, 4);
  // A neighbour without a rule: it must stay calm.
  await stack.publisher.reading('AL1', 2, 50);
  await waitForCard(page, 'AL1', 1, 'AL1/1 with two readings', (c) => c.count === '2');
  let card = await cardOf(page, 'AL1', 1);
  assert.equal(card.alarm, false, 'sum 8 is below the threshold');

  const started = Date.now();
  await stack.publisher.reading('AL1', 1, 4);
  card = await waitForCard(page, 'AL1', 1, 'AL1/1 red', (c) => c.alarm, { timeoutMs: 5000 });
  const strip = await stripOf(page);
  const elapsed = Date.now() - started;
  t.diagnostic(`alarm on the card and in the strip ${elapsed} ms after the reading`);
  assert.ok(elapsed < 1000, `alarm shown ${elapsed} ms after the reading that crossed the threshold`);
  assert.deepEqual(strip.map((a) => `${a.machine}/${a.index}`), ['AL1/1']);
  assert.match(card.alarmText, /^Summe 12 über 10 seit \d\d:\d\d:\d\d$/);
  assert.match(strip[0].text, /^AL1 · Index 1Summe 12 über 10 seit/);
  assert.equal((await cardOf(page, 'AL1', 2)).alarm, false, 'only the key the rule names');
  const background = await page.evaluate(() => getComputedStyle(document.querySelector('.card.alarm')).backgroundColor);
  assert.notEqual(background, await page.evaluate(() => getComputedStyle(document.querySelector('.card:not(.alarm)')).backgroundColor));
  assert.equal(await page.locator('#alarm-strip').isVisible(), true);

  // Ingest samples the trend every second: the sparkline follows the window's sum.
  card = await waitForCard(page, 'AL1', 1, 'a sparkline with a few samples', (c) => sparkYs(c.spark).length >= 3);
  assert.ok(sparkYs(card.spark).every((y) => y >= 0 && y <= 24), card.spark);
  // Drawn, not only computed: the card's canvas has painted pixels.
  const painted = await page.evaluate(() => {
    const group = [...document.querySelectorAll('.machine')].find((g) => g.querySelector('.machine-name').textContent === 'AL1');
    const canvas = group.querySelector('.card canvas.spark');
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n += 1;
    return n;
  });
  assert.ok(painted > 50, `sparkline pixels painted: ${painted}`);

  // No new readings: the window empties, and the alarm clears without any input.
  await waitForCard(page, 'AL1', 1, 'AL1/1 cleared by expiry', (c) => !c.alarm && c.count === '0', {
    timeoutMs: (WINDOW_SECONDS + 10) * 1000,
  });
  assert.deepEqual(await stripOf(page), []);
  assert.equal(await page.locator('#alarm-strip').isVisible(), false);
  // The trend now ends at zero: its last point sits on the baseline.
  card = await waitForCard(page, 'AL1', 1, 'trend down to zero', (c) => sparkYs(c.spark).at(-1) === 23);
  assert.deepEqual(page.problems, []);
  await page.close();
});

const markup = '<img src=x onerror="window.pwned=1">';

function alarm(machine, index, state, since, value = 31.5) {
  return {
    maschinenId: machine, scrapIndex: index, state, metric: 'sum', value, threshold: 30,
    since, timestamp: since,
  };
}

test('relayed alarms: markup as text, newest first, click scrolls to the card, removal, language', { timeout: 60000 }, async () => {
  const { client } = stack.publisher;
  const retain = (topic, payload) => client.publishAsync(topic, payload === '' ? '' : JSON.stringify(payload), { qos: 1, retain: true });
  // Many cards, so that a card far down the page must be scrolled to.
  for (let i = 0; i < 40; i++) await stack.publisher.aggregate(makeAggregate(`F${i}`, 1, [1]));
  await stack.publisher.aggregate(makeAggregate(markup, 0, [40]));
  await stack.publisher.aggregate(makeAggregate('Z9', 2, [35]));
  await retain('alarms/Z9/2', alarm('Z9', 2, 'raised', '2026-01-01T10:00:00.000Z'));
  await retain(`alarms/${markup}/0`, alarm(markup, 0, 'raised', '2026-01-01T11:00:00.000Z', 40));
  await retain(`trends/${markup}/0`, {
    maschinenId: markup, scrapIndex: 0, intervalSeconds: 10,
    points: [0, 10, 20, 40].map((sum, i) => ({ t: `2026-01-01T11:00:${i}0.000Z`, sum })),
  });

  const page = await openDashboard(browser, stack.url);
  const strip = await waitFor('two alarms in the strip', async () => {
    const shown = await stripOf(page);
    return shown.length === 2 ? shown : null;
  });
  assert.deepEqual(strip.map((a) => a.machine), [markup, 'Z9'], 'newest first');
  assert.ok(strip[0].text.startsWith(`${markup} · Index 0`), strip[0].text);
  const card = await waitForCard(page, markup, 0, 'the markup card red', (c) => c.alarm && c.spark !== '');
  assert.equal(card.machineText, markup);
  assert.deepEqual(sparkYs(card.spark), [23, 17.5, 12, 1], 'scaled to the largest sum');
  const found = await page.evaluate(() => ({ pwned: window.pwned, imgs: document.querySelectorAll('img').length }));
  assert.deepEqual(found, { pwned: undefined, imgs: 0 });
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'dashboard-alarms.png') });

  // A click in the strip brings the card into view.
  await page.locator('#alarm-list button').nth(1).click();
  await waitFor('Z9/2 in view', async () => page.evaluate(() => {
    const node = [...document.querySelectorAll('.card.alarm')].find((c) => c.closest('.machine').querySelector('.machine-name').textContent === 'Z9');
    const box = node?.getBoundingClientRect();
    return box && box.top >= 0 && box.bottom <= window.innerHeight;
  }));

  // The language switch rewrites the alarm texts.
  await page.getByRole('button', { name: 'EN', exact: true }).click();
  await waitForCard(page, 'Z9', 2, 'English alarm text', (c) => /^Sum 31.5 above 30 since/.test(c.alarmText));
  assert.equal(await page.locator('#alarm-strip h2').innerText(), 'Alarms');
  await page.getByRole('button', { name: 'DE', exact: true }).click();

  // Cleared, then forgotten (empty retained payload): the strip and the cards follow.
  await retain('alarms/Z9/2', alarm('Z9', 2, 'cleared', '2026-01-01T10:05:00.000Z', 20));
  await waitForCard(page, 'Z9', 2, 'Z9/2 calm', (c) => !c.alarm && c.alarmText === '');
  await retain(`alarms/${markup}/0`, '');
  await retain(`trends/${markup}/0`, '');
  await waitForCard(page, markup, 0, 'markup card calm, no trend', (c) => !c.alarm && c.spark === '');
  assert.deepEqual(await stripOf(page), []);
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('notification permission is asked only on a click, never on load', { timeout: 30000 }, async () => {
  const context = await launchBrowser();
  try {
    const page = await context.newPage();
    await page.addInitScript(() => {
      window.__asked = 0;
      Notification.requestPermission = async () => {
        window.__asked += 1;
        return 'denied';
      };
    });
    await page.goto(stack.url);
    await waitFor('the page connected', async () => (await page.evaluate(() => window.__scrapPulse?.socket().state)) === 'open');
    assert.equal(await page.evaluate(() => window.__asked), 0);
    await page.locator('#notify').click();
    await waitFor('asked once', async () => (await page.evaluate(() => window.__asked)) === 1);
  } finally {
    await context.close();
  }
});
