// Renders the README's pictures from the real stack: the dashboard (docs/dashboard.png) and
// the shift view (docs/shifts.png). Live readings go through Mosquitto and ingest like a
// machine's would; one key's readings are published almost a window ago, so it shows the
// greyed empty-window state once they expire. A week of history, which ingest could not
// accept any more, is published as minute buckets straight to the historian's topic, as
// ingest would have sent them, marked final.
//
//   cargo build -p ingest -p gateway -p historian && npm run screenshot --prefix frontend [-- DIR]

import path from 'node:path';

import { REPO_DIR, Stack, launchBrowser, openDashboard, waitFor } from '../tests/support/stack.mjs';

const outDir = path.resolve(process.argv[2] ?? path.join(REPO_DIR, 'docs'));
const MACHINES = ['A1', 'A2', 'A10', 'B1', 'C1'];
const stack = await Stack.start({
  historian: {
    timezone: 'Europe/Berlin',
    shifts: [
      { name: 'Früh', start: '06:00', end: '14:00' },
      { name: 'Spät', start: '14:00', end: '22:00' },
      { name: 'Nacht', start: '22:00', end: '06:00' },
    ],
  },
});
let browser;
try {
  // A fixed pseudo-random sequence: the pictures only change when the page does.
  let seed = 7;
  const next = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const now = Date.now();

  // History: one bucket per key and hour for the last seven days, up to the last minute
  // ingest has closed. Sent in steps the historian has stored: a stock Mosquitto (as the
  // tests run it) queues at most 1 000 messages for a subscriber and drops the rest.
  const HOUR = 3_600_000;
  let buckets = 0;
  const stored = async () => {
    const metrics = await (await fetch(`${stack.historian.url}/metrics`)).text();
    return Number(/^historian_messages_stored_total (\d+)/m.exec(metrics)?.[1] ?? 0);
  };
  for (const machine of MACHINES) {
    for (const index of [1, 2, 3]) {
      for (let hour = Math.floor(now / HOUR) * HOUR - 7 * 24 * HOUR; hour < now; hour += HOUR) {
        const minute = hour + 30 * 60_000;
        if (minute > now - 3 * 60_000) continue;
        const count = 1 + Math.floor(next() * 6);
        const values = Array.from({ length: count }, () => 1 + Math.floor(next() * 5));
        const sum = values.reduce((a, b) => a + b, 0);
        const bucket = {
          maschinenId: machine,
          scrapIndex: index,
          minute: new Date(minute).toISOString(),
          sum,
          count,
          min: Math.min(...values),
          max: Math.max(...values),
          revision: minute + 120_000,
          final: true,
        };
        await stack.publisher.client.publishAsync(`history/${machine}/${index}`, JSON.stringify(bucket), { qos: 1 });
        buckets += 1;
        if (buckets % 500 === 0) await waitFor(`the historian to store ${buckets} buckets`, async () => (await stored()) >= buckets);
      }
    }
  }

  for (const machine of MACHINES) {
    for (const index of [1, 2, 3]) {
      if (machine === 'C1' && index === 3) continue;
      const readings = 3 + Math.floor(next() * 9);
      for (let n = 0; n < readings; n++) {
        const value = 1 + Math.floor(next() * 5);
        const timestamp = new Date(now - Math.floor(next() * 40_000)).toISOString();
        await stack.publisher.reading(machine, index, value, { timestamp });
      }
    }
  }
  await stack.publisher.reading('C1', 3, 4, { timestamp: new Date(now - 57_000).toISOString() });
  await stack.publisher.awaitAggregate('C1', 3, (a) => a.count === 0, 20_000);
  await waitFor('the historian to store the week of buckets', async () => (await stored()) >= buckets);

  browser = await launchBrowser({ viewport: { width: 1600, height: 900 } });
  const page = await openDashboard(browser, stack.url);
  await waitFor('all cards', async () => (await page.evaluate(() => window.__scrapPulse.cards().length)) === 15);
  await waitFor('chart drawn', async () => (await page.evaluate(() => window.__scrapPulse.chart().labels.length)) === 5);
  await waitFor('shift totals on the cards', async () =>
    (await page.evaluate(() => window.__scrapPulse.cards())).every((c) => c.shiftNow !== null));
  await page.screenshot({ path: path.join(outDir, 'dashboard.png') });

  await page.evaluate(() => {
    location.hash = '#shifts/A1';
  });
  await waitFor('the shift view', async () => {
    const view = await page.evaluate(() => window.__scrapPulse.shiftView());
    return view.visible && view.rows.length > 1 && view.chart.labels.length > 0;
  });
  // One more frame, so that the chart's drawing is on the screen.
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  await page.screenshot({ path: path.join(outDir, 'shifts.png') });
  console.log(`wrote ${path.join(outDir, 'dashboard.png')} and ${path.join(outDir, 'shifts.png')}`);
} finally {
  await browser?.close();
  await stack.stop();
}
