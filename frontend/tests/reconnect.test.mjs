// A gateway restart: the page notices, backs off, reconnects to the new process on the same
// port and rebuilds its state from the new snapshot, which replaces what it held before.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Stack, launchBrowser, makeAggregate, openDashboard, waitFor } from './support/stack.mjs';

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
const socketOf = (page) => page.evaluate(() => window.__scrapPulse.socket().state);

test('after the gateway is killed and restarted the page reconnects and resyncs', { timeout: 90000 }, async () => {
  const page = await openDashboard(browser, stack.url);
  await stack.publisher.reading('M1', 1, 3);
  await stack.publisher.reading('M1', 1, 4);
  await stack.publisher.reading('M2', 2, 5);
  // A key that will be forgotten while the page cannot hear about it.
  await stack.publisher.aggregate(makeAggregate('GONE', 7, [1]));
  await waitFor('initial cards', async () => {
    const cards = await cardsOf(page);
    return cards.some((c) => c.machine === 'M1' && c.count === '2') && cards.some((c) => c.machine === 'GONE');
  });
  assert.equal(await socketOf(page), 'open');

  await stack.gateway.stop('SIGKILL');
  await waitFor('the page to notice the lost connection', async () => (await socketOf(page)) !== 'open');
  // The dimming comes with the next rendered frame, a moment after the socket's state changes.
  await waitFor('stale data to be dimmed', async () => page.evaluate(() => document.body.classList.contains('stale')));
  const offline = await page.locator('#status-ws').innerText();
  assert.match(offline, /getrennt|verbinde/);

  // What changes while the gateway is down must show after the reconnect: the snapshot is
  // the only way the page can learn it.
  await stack.publisher.reading('M1', 1, 10);
  await stack.publisher.clearAggregate('GONE', 7);
  await stack.publisher.awaitAggregate('M1', 1, (a) => a.count === 3);

  const port = stack.gateway.port;
  await stack.restartGateway('SIGKILL').catch((error) => {
    throw new Error(`${error.message}\n${stack.logs()}`);
  });
  assert.equal(stack.gateway.port, port);

  const cards = await waitFor('the page to reconnect and resync', async () => {
    if ((await socketOf(page)) !== 'open') return null;
    const cards = await cardsOf(page);
    const m1 = cards.find((c) => c.machine === 'M1' && c.index === 1);
    return m1?.count === '3' && !cards.some((c) => c.machine === 'GONE') ? cards : null;
  }, { timeoutMs: 30_000 });
  const m1 = cards.find((c) => c.machine === 'M1' && c.index === 1);
  assert.equal(m1.sum, '17');
  assert.equal(cards.find((c) => c.machine === 'M2').sum, '5');
  assert.equal(await page.evaluate(() => document.body.classList.contains('stale')), false);
  assert.match(await page.locator('#status-ws').innerText(), /verbunden/);
  await page.close();
});

test('a broker outage shows in the status line while the page stays connected', { timeout: 60000 }, async () => {
  const page = await openDashboard(browser, stack.url);
  await waitFor('broker connected', async () => /verbunden/.test(await page.locator('#status-broker').innerText()));
  await stack.mosquitto.stop();
  await waitFor('broker disconnected', async () => /getrennt/.test(await page.locator('#status-broker').innerText()), {
    timeoutMs: 30_000,
  });
  assert.equal(await page.locator('#dot-broker').getAttribute('data-level'), 'bad');
  // The gateway itself is fine: the page keeps its socket and its last known values.
  assert.equal(await socketOf(page), 'open');
  assert.ok((await cardsOf(page)).some((c) => c.machine === 'M1'));
  await page.close();
});
