// Renders the README's picture of the dashboard (docs/dashboard.png) from the real stack:
// readings go through Mosquitto and ingest like a machine's would. One key's readings are
// published almost a window ago, so it shows the greyed empty-window state once they expire.
//
//   cargo build -p ingest -p gateway && npm run screenshot --prefix frontend [-- out.png]

import path from 'node:path';

import { REPO_DIR, Stack, launchBrowser, openDashboard, waitFor } from '../tests/support/stack.mjs';

const out = path.resolve(process.argv[2] ?? path.join(REPO_DIR, 'docs', 'dashboard.png'));
const stack = await Stack.start();
let browser;
try {
  // A fixed pseudo-random sequence: the picture only changes when the page does.
  let seed = 7;
  const next = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const now = Date.now();
  for (const machine of ['A1', 'A2', 'A10', 'B1', 'C1']) {
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

  browser = await launchBrowser({ viewport: { width: 1600, height: 900 } });
  const page = await openDashboard(browser, stack.url);
  await waitFor('all cards', async () => (await page.evaluate(() => window.__scrapPulse.cards().length)) === 15);
  await waitFor('chart drawn', async () => (await page.evaluate(() => window.__scrapPulse.chart().labels.length)) === 5);
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser?.close();
  await stack.stop();
}
