// The page under load: 500 keys each updating 10 times a second, published as retained
// aggregates straight to the gateway's topic, with every key's shift totals from a
// historian (minute buckets published straight to its topic) shown on the cards and asked
// for again during the load. The main thread must never block for more than 100 ms (long
// tasks measured with a PerformanceObserver), and the page must keep up.

import assert from 'node:assert/strict';
import os from 'node:os';
import { after, before, test } from 'node:test';

import { Stack, launchBrowser, makeAggregate, openDashboard, waitFor } from './support/stack.mjs';

const MACHINES = 50;
const INDICES = 10;
const UPDATES_PER_SECOND = 10;
const SECONDS = 10;
const LONG_TASK_LIMIT_MS = 100;
const ATTEMPTS = 3;

let stack;
let browser;

before(async () => {
  browser = await launchBrowser();
  // No ingest: the load goes to the aggregate topics directly, as ingest would publish them.
  // Shifts around the clock, so that every key has a running shift whenever the test runs.
  const shifts = [{ name: 'Tag', start: '06:00', end: '18:00' }, { name: 'Nacht', start: '18:00', end: '06:00' }];
  stack = await Stack.start({ ingest: false, historian: { shifts } });
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

const keys = [];
for (let m = 1; m <= MACHINES; m++) {
  for (let i = 1; i <= INDICES; i++) keys.push([`M${m}`, i]);
}

/** Every key's aggregate for round `round`: sum = round + index, exact and checkable. */
function publishRound(round) {
  const time = new Date();
  for (const [machine, index] of keys) {
    const values = [round, index];
    // QoS 0: 5000 messages a second, as fast as the broker takes them.
    stack.publisher.client.publish(
      `aggregates/${machine}/${index}`,
      JSON.stringify(makeAggregate(machine, index, values, time)),
      { qos: 0, retain: true },
    );
  }
}

/** Every key's bucket of one minute, as ingest sends it: the shift total is `base + index`. */
const BUCKET_MINUTE = new Date(Math.floor(Date.now() / 60_000) * 60_000).toISOString();
async function publishBuckets(base) {
  const minute = BUCKET_MINUTE;
  await Promise.all(keys.map(([machine, index]) => {
    const sum = base + index;
    const bucket = { maschinenId: machine, scrapIndex: index, minute, sum, count: 1, min: sum, max: sum, revision: Date.now() + base, final: false };
    return stack.publisher.client.publishAsync(`history/${machine}/${index}`, JSON.stringify(bucket), { qos: 1 });
  }));
}

/** Waits until every card shows the shift total `base + index`. */
function waitForShiftTotals(page, base) {
  return waitFor(`shift totals ${base} + index on every card`, async () =>
    page.evaluate((base) => {
      const format = new Intl.NumberFormat('de-DE', { maximumFractionDigits: 2 });
      const cards = window.__scrapPulse.cards();
      return cards.length > 0 && cards.every((c) => c.shiftNow === format.format(base + c.index));
    }, base), { timeoutMs: 60_000 });
}

/**
 * One measured period: resets the page's records, publishes `SECONDS` of rounds, waits until
 * the page shows the last one, and returns the figures.
 */
async function measure(page, firstRound) {
  await page.evaluate(() => {
    window.__longTasks = [];
    window.__scrapPulse.resetMaxima();
    window.__frames = 0;
    if (!window.__counting) {
      window.__counting = true;
      const count = () => {
        window.__frames += 1;
        requestAnimationFrame(count);
      };
      requestAnimationFrame(count);
    }
  });
  const before = await page.evaluate(() => window.__scrapPulse.stats());

  const rounds = SECONDS * UPDATES_PER_SECOND;
  const last = firstRound + rounds - 1;
  // Halfway through, every key's shift total changes and the page asks for them at once.
  const shiftBase = 1000 * firstRound;
  let shiftsAsked = null;
  const start = performance.now();
  for (let n = 0; n < rounds; n++) {
    if (n === rounds / 2) {
      shiftsAsked = publishBuckets(shiftBase).then(() =>
        waitFor('the historian to hold the new totals', async () => {
          const answer = await (await fetch(`${stack.historian.url}/api/shifts/current?machines=M1`)).json();
          return answer.every((k) => k.current?.sum === shiftBase + k.scrapIndex);
        })).then(() => page.evaluate(() => window.__scrapPulse.refreshShifts()));
    }
    publishRound(firstRound + n);
    // Pace the publisher on the wall clock so the rate stays 10/s whatever one round costs.
    const due = start + ((n + 1) * 1000) / UPDATES_PER_SECOND;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - performance.now())));
  }
  const publishSeconds = (performance.now() - start) / 1000;
  const animationFrames = await page.evaluate(() => window.__frames);

  // The page must end on the last round everywhere: sum = round + index.
  await waitFor(
    'the last round on every card',
    async () =>
      page.evaluate((last) => {
        const cards = window.__scrapPulse.cards();
        return cards.length > 0 && cards.every((c) => c.sum === String(last + c.index));
      }, last),
    { timeoutMs: 30_000 },
  );
  await shiftsAsked;
  await waitForShiftTotals(page, shiftBase);
  const chart = await waitFor('the last round in the chart', async () => {
    const c = await page.evaluate(() => window.__scrapPulse.chart());
    return c.datasets.every((d) => d.data.every((v) => v === last + d.index)) ? c : null;
  });
  assert.equal(chart.labels.length, MACHINES);

  const result = await page.evaluate(() => ({ longTasks: window.__longTasks, stats: window.__scrapPulse.stats() }));
  const durations = result.longTasks.map((l) => Math.round(l.duration));
  return {
    messages: rounds * keys.length,
    publishSeconds: Number(publishSeconds.toFixed(2)),
    framesReceived: result.stats.frames - before.frames,
    renders: result.stats.renders - before.renders,
    chartDraws: result.stats.chartDraws - before.chartDraws,
    animationFramesPerSecond: Number((animationFrames / publishSeconds).toFixed(1)),
    longTasks: durations.length,
    longTaskMaxMs: durations.length ? Math.max(...durations) : 0,
    longTaskTotalMs: durations.reduce((a, b) => a + b, 0),
    renderJsMaxMs: Number(result.stats.renderMsMax.toFixed(1)),
    chartDrawMaxMs: Number(result.stats.chartMsMax.toFixed(1)),
    chartDrawnIn: result.stats.chartWhere,
    loadAverage1m: Number(os.loadavg()[0].toFixed(2)),
    nextRound: last + 1,
  };
}

test(`${keys.length} keys x ${UPDATES_PER_SECOND} updates/s: no main-thread task over ${LONG_TASK_LIMIT_MS} ms`, { timeout: 180_000 }, async (t) => {
  await publishBuckets(0);
  const page = await openDashboard(browser, stack.url);
  const shiftRequests = [];
  page.on('request', (request) => {
    if (request.url().includes('/api/shifts/current')) shiftRequests.push(request.url());
  });
  publishRound(0);
  await waitFor(`${keys.length} cards`, async () => (await page.evaluate(() => window.__scrapPulse.cards().length)) === keys.length, {
    timeoutMs: 30_000,
  });
  await page.evaluate(() => window.__scrapPulse.refreshShifts());
  await waitForShiftTotals(page, 0);
  const cdp = await page.context().newCDPSession(page);
  const heapMiB = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    const { usedSize } = await cdp.send('Runtime.getHeapUsage');
    return Number((usedSize / 2 ** 20).toFixed(1));
  };
  const heapBefore = await heapMiB();
  // Long tasks are wall-clock time: on a 2-core machine another process's burst (a compiler,
  // say) stretches the page's tasks too. So a period may be measured again, up to
  // ATTEMPTS times in all; a page that really blocks fails every one of them.
  const attempts = [];
  let round = 1;
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const figures = await measure(page, round);
    round = figures.nextRound;
    delete figures.nextRound;
    attempts.push(figures);
    t.diagnostic(`load figures (attempt ${attempt}): ${JSON.stringify(figures)}`);
    if (figures.longTaskMaxMs <= LONG_TASK_LIMIT_MS) break;
  }
  // A wall screen runs for weeks: the heap after the load should be what it was before.
  t.diagnostic(`JS heap after GC: ${heapBefore} MiB before the load, ${await heapMiB()} MiB after`);
  await cdp.detach();
  const best = Math.min(...attempts.map((a) => a.longTaskMaxMs));
  assert.ok(
    best <= LONG_TASK_LIMIT_MS,
    `a main-thread task over ${LONG_TASK_LIMIT_MS} ms in every one of ${attempts.length} periods: ${JSON.stringify(attempts)}`,
  );
  // One request for all keys per round (the 20 s poll and the test's own asks; the first,
  // made while the page loaded, came before the listener).
  const polls = await page.evaluate(() => window.__scrapPulse.shifts().polls);
  assert.ok(shiftRequests.length >= 2 && shiftRequests.length <= polls, `${shiftRequests.length} requests for ${polls} rounds`);
  assert.ok(shiftRequests.every((url) => url.endsWith('/api/shifts/current')), 'never one request per key');
  assert.deepEqual(page.problems, []);
  await page.close();
});
