// The dashboard against the real stack: readings published over MQTT go through ingest and
// the gateway into the page, and the cards and the chart must show exactly their sums.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ARTIFACTS_DIR, Stack, launchBrowser, makeAggregate, openDashboard, waitFor } from './support/stack.mjs';

let stack;
let browser;

before(async () => {
  browser = await launchBrowser();
  stack = await Stack.start();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

const cardsOf = (page) => page.evaluate(() => window.__scrapPulse.cards());
const chartOf = (page) => page.evaluate(() => window.__scrapPulse.chart());
const sumText = (value, tag = 'de-DE') => new Intl.NumberFormat(tag, { maximumFractionDigits: 2 }).format(value);
const avgText = (value, tag = 'de-DE') =>
  new Intl.NumberFormat(tag, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(value);

/** Waits until the page's cards satisfy `check` (given the cards), with the logs on failure. */
async function waitForCards(page, what, check, timeoutMs = 15_000) {
  try {
    return await waitFor(what, async () => {
      const cards = await cardsOf(page);
      return check(cards) ? cards : null;
    }, { timeoutMs });
  } catch (error) {
    error.message += `\ncards: ${JSON.stringify(await cardsOf(page).catch(() => null))}\n${stack.logs()}`;
    throw error;
  }
}

test('cards and chart show the exact sums of the readings published', { timeout: 60000 }, async () => {
  const page = await openDashboard(browser, stack.url);
  // Quarter steps are exact in binary, so any summation order gives the same sum.
  const plan = {
    A10: { 1: [1.25, 2.5, 3], 2: [4.75] },
    A2: { 1: [5, 0.25], 3: [1.5, 1.5, 1.5, 2.25] },
    B1: { 2: [1000.5, 234.25] },
  };
  const expected = [];
  for (const [machine, indices] of Object.entries(plan)) {
    for (const [index, values] of Object.entries(indices)) {
      for (const value of values) await stack.publisher.reading(machine, Number(index), value);
      const sum = values.reduce((a, b) => a + b, 0);
      expected.push({ machine, index: Number(index), sum, count: values.length, avg: sum / values.length });
    }
  }

  const cards = await waitForCards(page, 'cards with every reading counted', (cards) =>
    expected.every((e) => cards.some((c) => c.machine === e.machine && c.index === e.index && c.count === String(e.count))),
  );

  // Natural order: A2 before A10; indices ascending within a machine.
  assert.deepEqual(
    cards.map((c) => `${c.machine}/${c.index}`),
    ['A2/1', 'A2/3', 'A10/1', 'A10/2', 'B1/2'],
  );
  const state = await page.evaluate(() => window.__scrapPulse.state());
  for (const e of expected) {
    const card = cards.find((c) => c.machine === e.machine && c.index === e.index);
    const held = state.aggregates.find((a) => a.machine === e.machine && a.index === e.index);
    assert.equal(held.sum, e.sum, `${e.machine}/${e.index} sum in the page state`);
    assert.equal(card.sum, sumText(e.sum), `${e.machine}/${e.index} sum on the card`);
    assert.equal(card.avg, avgText(e.avg), `${e.machine}/${e.index} average on the card`);
    assert.equal(card.machineText, e.machine);
    assert.equal(card.empty, false);
    assert.match(card.age, /^vor \d+/);
  }
  assert.equal(cards.find((c) => c.machine === 'B1').sum, '1.234,75', 'German grouping and decimal comma');

  // The chart redraws on a throttle: wait for it, then compare series with the exact sums.
  const chart = await waitFor('chart to show every sum', async () => {
    const chart = await chartOf(page);
    const ok = expected.every((e) => chart.datasets.find((d) => d.index === e.index)?.data[chart.labels.indexOf(e.machine)] === e.sum);
    return ok ? chart : null;
  });
  assert.deepEqual(chart.labels, ['A2', 'A10', 'B1']);
  assert.deepEqual(chart.datasets.map((d) => d.index), [1, 2, 3]);
  assert.deepEqual(chart.datasets.map((d) => d.data), [
    [5.25, 6.75, null],
    [null, 4.75, 1234.75],
    [6.75, null, null],
  ]);

  // The averages toggle switches the chart's series to the exact averages.
  await page.getByRole('button', { name: 'Durchschnitte' }).click();
  const avgChart = await waitFor('chart in average mode', async () => {
    const c = await chartOf(page);
    return c.mode === 'avg' && c.datasets[0].data[1] === 6.75 / 3 ? c : null;
  });
  assert.deepEqual(avgChart.datasets[2].data, [6.75 / 4, null, null]);
  await page.getByRole('button', { name: 'Summen' }).click();

  // Updates rewrite the existing card in place: the element stays, its text changes.
  const a2 = await page.evaluateHandle(() => document.querySelector('.card'));
  await stack.publisher.reading('A2', 1, 0.5);
  await waitFor('A2/1 to show the new sum', async () => (await cardsOf(page))[0].sum === '5,75');
  assert.equal(await a2.evaluate((el) => el.isConnected && el === document.querySelector('.card')), true);
  await a2.dispose();

  // Status line: everything up.
  await waitFor('status line all up', async () => {
    const text = await page.locator('#status').innerText();
    return /Verbindung\s+verbunden/.test(text) && /Broker\s+verbunden/.test(text) && /Ingest\s+online/.test(text);
  });
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('the chart is drawn off the main thread, and the in-page fallback shows the same', { timeout: 60000 }, async () => {
  const sums = async (page) => {
    const chart = await waitFor('chart drawn', async () => {
      const c = await chartOf(page);
      return c.labels.includes('B1') ? c : null;
    });
    return { where: chart.where, labels: chart.labels, data: chart.datasets.map((d) => d.data) };
  };
  const worker = await openDashboard(browser, stack.url);
  const fallback = await openDashboard(browser, `${stack.url}?chart=page`);
  const a = await sums(worker);
  const b = await sums(fallback);
  assert.equal(a.where, 'worker');
  assert.equal(b.where, 'page');
  assert.deepEqual(b.labels, a.labels);
  assert.deepEqual(b.data, a.data);
  // Both canvases really have pixels on them (a chart that failed to draw stays blank).
  for (const page of [worker, fallback]) {
    const png = await page.locator('#chart').screenshot();
    assert.ok(png.length > 5000, `chart screenshot of ${png.length} bytes looks blank`);
    assert.deepEqual(page.problems, []);
    await page.close();
  }
});

test('?machines= in the page address shows only those machines', { timeout: 60000 }, async () => {
  const page = await openDashboard(browser, `${stack.url}?machines=A10,B1`);
  const cards = await waitForCards(page, 'filtered cards', (cards) => cards.some((c) => c.machine === 'B1'));
  assert.deepEqual([...new Set(cards.map((c) => c.machine))], ['A10', 'B1']);
  await page.close();
});

test('a machine id made of HTML is shown as text and runs nothing', { timeout: 60000 }, async () => {
  const page = await openDashboard(browser, stack.url);
  const evil = ['<img src=x onerror=window.__pwned=1>', '<svg onload=window.__pwned=2>'];
  for (const machine of evil) await stack.publisher.reading(machine, 1, 2);
  await waitForCards(page, 'the HTML-named machines', (cards) => evil.every((m) => cards.some((c) => c.machine === m)));
  for (const machine of evil) {
    await page.getByText(machine, { exact: true }).first().waitFor({ state: 'visible', timeout: 5000 });
  }
  // Let the chart draw its labels too, then check that no markup was created from data.
  await waitFor('chart with the HTML-named machines', async () => {
    const labels = (await chartOf(page)).labels;
    return evil.every((m) => labels.includes(m));
  });
  const found = await page.evaluate(() => ({
    pwned: window.__pwned,
    imgs: document.querySelectorAll('img, svg').length,
  }));
  assert.deepEqual(found, { pwned: undefined, imgs: 0 });
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('an empty window shows 0 and a dash, greyed; a cleared key disappears', { timeout: 60000 }, async () => {
  const page = await openDashboard(browser, stack.url);
  // Straight to the aggregate topic: an empty window takes 60 s to reach through ingest.
  await stack.publisher.aggregate(makeAggregate('E1', 4, []));
  await stack.publisher.aggregate(makeAggregate('E1', 5, [2, 3]));
  const cards = await waitForCards(page, 'the empty-window card', (cards) => cards.some((c) => c.machine === 'E1' && c.index === 4));
  const empty = cards.find((c) => c.machine === 'E1' && c.index === 4);
  assert.deepEqual({ sum: empty.sum, avg: empty.avg, count: empty.count, empty: empty.empty }, { sum: '0', avg: '–', count: '0', empty: true });
  const opacity = await page.evaluate(() => {
    const card = [...document.querySelectorAll('.card.empty')][0];
    return Number(getComputedStyle(card).opacity);
  });
  assert.ok(opacity < 0.8, `empty card is greyed (opacity ${opacity})`);

  await stack.publisher.clearAggregate('E1', 4);
  await waitForCards(page, 'E1/4 to go', (cards) => !cards.some((c) => c.machine === 'E1' && c.index === 4) && cards.some((c) => c.machine === 'E1'));
  await stack.publisher.clearAggregate('E1', 5);
  await waitForCards(page, 'machine E1 to go', (cards) => !cards.some((c) => c.machine === 'E1'));
  assert.equal(await page.getByText('E1', { exact: true }).count(), 0, 'machine heading removed with its last card');
  await waitFor('E1 to leave the chart', async () => !(await chartOf(page)).labels.includes('E1'));
  await page.close();
});

test('ingest going offline shows in the status line', { timeout: 60000 }, async () => {
  const page = await openDashboard(browser, stack.url);
  await waitFor('ingest online', async () => /online/.test(await page.locator('#status-ingest').innerText()));
  // The retained liveness message is what ingest's last will publishes.
  const status = (online) => JSON.stringify({ online, startedAt: new Date().toISOString() });
  await stack.publisher.client.publishAsync('status/ingest', status(false), { qos: 1, retain: true });
  await waitFor('ingest offline', async () => /offline/.test(await page.locator('#status-ingest').innerText()));
  assert.equal(await page.locator('#dot-ingest').getAttribute('data-level'), 'bad');
  await stack.publisher.client.publishAsync('status/ingest', status(true), { qos: 1, retain: true });
  await waitFor('ingest online again', async () => /online/.test(await page.locator('#status-ingest').innerText()));
  await page.close();
});

test('ingest shards show as online of expected', { timeout: 60000 }, async () => {
  const page = await openDashboard(browser, stack.url);
  await waitFor('ingest online', async () => /online/.test(await page.locator('#status-ingest').innerText()));
  const shard = (k, online) => JSON.stringify({ online, shard: k, shardCount: 3, startedAt: new Date().toISOString() });
  const publish = (k, payload) => stack.publisher.client.publishAsync(`status/ingest/${k}`, payload, { qos: 1, retain: true });
  try {
    await publish(0, shard(0, true));
    await publish(1, shard(1, true));
    await waitFor('ingest 2/3', async () => /^2\/3 Shards online$/.test(await page.locator('#status-ingest').innerText()));
    assert.equal(await page.locator('#dot-ingest').getAttribute('data-level'), 'warn');
    await publish(2, shard(2, true));
    await waitFor('ingest 3/3', async () => /^3\/3 Shards online$/.test(await page.locator('#status-ingest').innerText()));
    assert.equal(await page.locator('#dot-ingest').getAttribute('data-level'), 'ok');
  } finally {
    // Cleared shard statuses leave the single ingest's status for the tests that follow.
    for (const k of [0, 1, 2]) await publish(k, '');
  }
  await waitFor('single ingest again', async () => /^online$/.test(await page.locator('#status-ingest').innerText()));
  await page.close();
});

test('English from the browser language, the switch changes it and the choice sticks', { timeout: 60000 }, async () => {
  const english = await launchBrowser({ locale: 'en-US' });
  try {
    const page = await openDashboard(english, stack.url);
    await waitForCards(page, 'cards in English', (cards) => cards.some((c) => c.machine === 'A10' && c.index === 1 && c.avg === '2.25'));
    assert.equal(await page.locator('h1').innerText(), 'Scrap live');
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');

    await page.getByRole('button', { name: 'DE', exact: true }).click();
    await waitForCards(page, 'cards in German', (cards) => cards.some((c) => c.machine === 'A10' && c.index === 1 && c.avg === '2,25'));
    assert.equal(await page.locator('h1').innerText(), 'Ausschuss live');
    assert.ok(await page.getByText('Mittel', { exact: true }).first().isVisible());

    await page.reload();
    await waitForCards(page, 'German after reload', (cards) => cards.some((c) => c.avg === '2,25'));
    assert.equal(await page.evaluate(() => window.__scrapPulse.language()), 'de');
    assert.deepEqual(page.problems, []);
  } finally {
    await english.close();
  }
});

test('screenshots at wall-screen and phone sizes', { timeout: 90000 }, async () => {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  for (const [name, viewport, locale] of [
    ['dashboard-1920x1080.png', { width: 1920, height: 1080 }, 'de-DE'],
    // A common office-monitor width, in English, whose "6 s ago" once ended in an ellipsis.
    ['dashboard-en-1400x900.png', { width: 1400, height: 900 }, 'en-US'],
    ['dashboard-390x844.png', { width: 390, height: 844 }, 'de-DE'],
  ]) {
    const context = await launchBrowser({ viewport, locale });
    try {
      const page = await openDashboard(context, stack.url);
      await waitForCards(page, 'cards', (cards) => cards.length >= 5);
      await waitFor('chart drawn', async () => (await chartOf(page)).labels.length >= 3);
      // Nothing may stick out sideways: a phone must not scroll horizontally.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${name}: page is ${overflow}px wider than the viewport`);
      // No card text may be cut: an ellipsis hides the one thing the card says about time.
      await waitFor('card ages shown', async () => page.evaluate(() =>
        [...document.querySelectorAll('.card-age')].some((el) => el.textContent !== '')));
      const cut = await page.evaluate(() => [...document.querySelectorAll('.card-age, .card-index, .fact .label')]
        .filter((el) => el.textContent !== '' && el.scrollWidth > el.clientWidth)
        .map((el) => `${el.className} "${el.textContent}" ${el.scrollWidth}px in ${el.clientWidth}px`));
      assert.deepEqual(cut, [], `${name}: cut texts`);
      const file = path.join(ARTIFACTS_DIR, name);
      await page.screenshot({ path: file, fullPage: viewport.width < 600 });
    } finally {
      await context.close();
    }
  }
});
