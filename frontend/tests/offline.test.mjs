// A machine whose Sparkplug edge node or device died: ingest keeps its window and publishes
// the aggregate with `offline: true`. The page must say "offline" on its cards in words (not
// only by a colour), keep the figures, and drop the marker when an online aggregate comes.
// The aggregates go straight to the gateway's topic, so no ingest runs here.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Stack, launchBrowser, makeAggregate, openDashboard, waitFor } from './support/stack.mjs';

let stack;
let browser;

before(async () => {
  browser = await launchBrowser();
  stack = await Stack.start({ ingest: false });
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

const cardsOf = (page) => page.evaluate(() => window.__scrapPulse.cards());

/** Waits until S1/1's card satisfies `check`, and returns it; the logs on failure. */
async function waitForS1(page, what, check) {
  try {
    return await waitFor(what, async () => {
      const card = (await cardsOf(page)).find((c) => c.machine === 'S1' && c.index === 1);
      return card && check(card) ? card : null;
    });
  } catch (error) {
    error.message += `\ncards: ${JSON.stringify(await cardsOf(page).catch(() => null))}\n${stack.logs()}`;
    throw error;
  }
}

/** S1/1's aggregate of one unchanging window, stamped `secondsLater` after the start. */
const start = Date.now();
const s1 = (secondsLater, extra = {}) => ({
  ...makeAggregate('S1', 1, [2, 3], new Date(start + secondsLater * 1000)),
  ...extra,
});

test('an offline aggregate marks its card "offline"; an online one takes the marker away', { timeout: 60000 }, async () => {
  await stack.publisher.aggregate(s1(0));
  await stack.publisher.aggregate(makeAggregate('S2', 1, [1]));
  const page = await openDashboard(browser, stack.url);
  const online = await waitForS1(page, 'S1/1 online', (c) => c.sum === '5');
  assert.deepEqual({ offline: online.offline, text: online.offlineText }, { offline: false, text: '' });
  const badge = page.locator('.card.offline .card-offline');
  assert.equal(await badge.count(), 0);

  // The death certificate: same window, the flag set.
  await stack.publisher.aggregate(s1(1, { offline: true }));
  const dead = await waitForS1(page, 'S1/1 offline', (c) => c.offline);
  assert.deepEqual(
    { sum: dead.sum, count: dead.count, text: dead.offlineText },
    { sum: '5', count: '2', text: 'offline' },
    'the window is kept, and the card says offline',
  );
  await badge.waitFor({ state: 'visible', timeout: 5000 });
  assert.equal(await badge.innerText(), 'OFFLINE', 'shown in capitals by the stylesheet');
  assert.equal(await badge.count(), 1, 'only the offline key is marked');
  // Cards fade (a 0.3 s opacity transition): wait for the muted look rather than sample it.
  const muted = () => Number(getComputedStyle(document.querySelector('.card.offline')).opacity) < 0.8;
  await page.waitForFunction(muted, null, { timeout: 5000 }).catch(async () => {
    const opacity = await page.evaluate(() => getComputedStyle(document.querySelector('.card.offline')).opacity);
    assert.fail(`offline card is not muted (opacity ${opacity})`);
  });
  assert.equal((await cardsOf(page)).find((c) => c.machine === 'S2').offline, false);

  // A page opened now starts from the snapshot, offline already.
  const late = await openDashboard(browser, stack.url);
  await waitForS1(late, 'S1/1 offline in a new page', (c) => c.offline && c.offlineText === 'offline');

  // The birth: the same window again, no flag.
  await stack.publisher.aggregate(s1(2));
  for (const p of [page, late]) {
    const born = await waitForS1(p, 'S1/1 online again', (c) => !c.offline);
    assert.deepEqual({ sum: born.sum, text: born.offlineText }, { sum: '5', text: '' });
    assert.equal(await p.locator('.card-offline:visible').count(), 0, 'no badge left');
    assert.deepEqual(p.problems, []);
    await p.close();
  }
});
