// The browser step of scripts/compose-smoke.sh: opens the dashboard the compose stack serves
// in Debian's headless Chromium and checks that it draws a card per key with the counts the
// simulator sent, and the chart with every machine and a canvas that has pixels on it.
//
//   node deploy/smoke-dashboard.mjs URL EXPECTED_JSON [SCREENSHOT_PNG]
//
// EXPECTED_JSON is a file with [{maschinenId, scrapIndex, sum, count}]. Uses playwright-core
// from frontend/node_modules (`npm ci --prefix frontend`); CHROMIUM_PATH overrides
// /usr/bin/chromium. Exits 1 with the reason on any failure.

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [url, expectedFile, screenshot] = process.argv.slice(2);
if (!url || !expectedFile) {
  console.error('usage: node deploy/smoke-dashboard.mjs URL EXPECTED_JSON [SCREENSHOT_PNG]');
  process.exit(2);
}
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (!existsSync(chromiumPath)) {
  console.error(`${chromiumPath} is missing: apt-get install chromium (or set CHROMIUM_PATH)`);
  process.exit(1);
}
// playwright-core is a dev dependency of the dashboard; resolve it from there.
const { chromium } = createRequire(path.join(repo, 'frontend', 'package.json'))('playwright-core');

const expected = JSON.parse(readFileSync(expectedFile, 'utf8'));
const machines = [...new Set(expected.map((k) => k.maschinenId))].sort();

/** Polls `probe` until it returns a truthy value; throws with the last seen value at the deadline. */
async function waitFor(what, probe, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last?.ok) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last seen: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 250)); // poll interval of a condition wait
  }
}

const profile = mkdtempSync(path.join(os.tmpdir(), 'scrap-pulse-smoke-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: chromiumPath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  viewport: { width: 1400, height: 900 },
  locale: 'en-US',
});
let status = 0;
try {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console.error: ${message.text()}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.url()}`);
  });
  await page.goto(url);

  await waitFor('a card per key with the counts sent', async () => {
    const cards = await page.evaluate(() => window.__scrapPulse?.cards() ?? null);
    const ok =
      cards?.length === expected.length &&
      expected.every((k) =>
        cards.some((c) => c.machine === k.maschinenId && c.index === k.scrapIndex && c.count === String(k.count)),
      );
    return { ok, cards };
  });
  await waitFor('the chart with every machine and sum', async () => {
    const chart = await page.evaluate(() => window.__scrapPulse?.chart() ?? null);
    const ok =
      chart?.draws > 0 &&
      machines.every((m) => chart.labels.includes(m)) &&
      expected.every((k) => {
        const data = chart.datasets.find((d) => d.index === k.scrapIndex)?.data;
        return Math.abs((data?.[chart.labels.indexOf(k.maschinenId)] ?? NaN) - k.sum) <= 1e-9 * Math.abs(k.sum);
      });
    return { ok, chart };
  });
  // A chart that failed to draw (say, Chart.js missing) leaves a blank canvas: a tiny PNG.
  const png = await page.locator('#chart').screenshot();
  if (png.length <= 5000) throw new Error(`the chart's screenshot has ${png.length} bytes: the canvas looks blank`);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  if (problems.length) throw new Error(`the page reported problems:\n  ${problems.join('\n  ')}`);
  console.log(`dashboard: ${expected.length} cards and the chart of ${machines.length} machines drawn`);
} catch (error) {
  console.error(`dashboard check failed: ${error.message}`);
  status = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(status);
