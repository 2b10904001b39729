// The real stack for the browser tests: a Mosquitto on a free port, the `ingest` and
// `gateway` binaries from target/debug (and, for the shift totals, `historian` on a SQLite
// file of its own), an MQTT client to publish with, and headless
// Chromium (Debian's) driven by playwright-core. No mocks: what the page shows went through
// the same broker and services as in production.
//
// Every process started here is stopped by `Stack.stop()`, and killed on exit if a test
// crashed before that.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import mqtt from 'mqtt';
import { chromium } from 'playwright-core';

export const FRONTEND_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REPO_DIR = path.resolve(FRONTEND_DIR, '..');
export const ARTIFACTS_DIR = path.join(REPO_DIR, 'artifacts');
const TARGET_DIR = process.env.CARGO_TARGET_DIR
  ? path.resolve(REPO_DIR, process.env.CARGO_TARGET_DIR)
  : path.join(REPO_DIR, 'target');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Every child still running, so a crashed test does not leave processes behind. */
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => process.exit(130));
}

let uniqueCounter = 0;
/** A name no other test process uses at the same time (MQTT client ids must be unique). */
export function uniqueId(prefix) {
  uniqueCounter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${uniqueCounter}`;
}

/**
 * Polls `check` until it returns a truthy value, and returns that value; throws naming
 * `what` (and the last error, if `check` threw) after `timeoutMs`.
 */
export async function waitFor(what, check, { timeoutMs = 15_000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const detail = lastError ? `: last error ${lastError.message ?? lastError}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** A port nobody listened on a moment ago (the caller retries if it is taken meanwhile). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function httpStatus(url) {
  const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
  await response.arrayBuffer();
  return response.status;
}

/** Finds `name` on PATH, or throws with how to install it. */
function requireTool(name, hint) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  for (const dir of ['/usr/sbin', '/usr/local/sbin', '/sbin']) {
    if (existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  throw new Error(`${name} not found on PATH: ${hint}`);
}

function requireBinary(name) {
  const file = path.join(TARGET_DIR, 'debug', name);
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: run cargo build -p ingest -p gateway -p historian first`);
  }
  return file;
}

/** A child process with its recent output kept for failure messages. */
class Service {
  constructor(name, command, args, env = {}) {
    this.name = name;
    this.command = command;
    this.args = args;
    this.log = [];
    this.child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', ...env },
    });
    running.add(this.child);
    const keep = (chunk) => {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        this.log.push(line);
        if (this.log.length > 200) this.log.shift();
      }
    };
    this.child.stdout.on('data', keep);
    this.child.stderr.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        running.delete(this.child);
        this.exitStatus = { code, signal };
        resolve(this.exitStatus);
      });
    });
  }

  get alive() {
    return this.exitStatus === undefined;
  }

  /** The last lines it printed, for an assertion message. */
  tail(lines = 40) {
    return `--- ${this.name} (${this.alive ? 'running' : `exited ${JSON.stringify(this.exitStatus)}`}) ---\n${this.log
      .slice(-lines)
      .join('\n')}`;
  }

  /** Waits for `check`, failing early (with the log) if the process dies meanwhile. */
  async ready(what, check, timeoutMs = 20_000) {
    try {
      await waitFor(what, async () => {
        if (!this.alive) throw new Error(`${this.name} exited before it was ready`);
        return check();
      }, { timeoutMs, intervalMs: 100 });
    } catch (error) {
      throw new Error(`${error.message}\n${this.tail()}`);
    }
  }

  /** Sends `signal` and waits for the exit (SIGKILL after `timeoutMs`). */
  async stop(signal = 'SIGTERM', timeoutMs = 10_000) {
    if (!this.alive) return this.exitStatus;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const status = await this.exited;
    clearTimeout(timer);
    return status;
  }
}

/** Mosquitto on a free port in its own temp dir (no persistence: each test starts clean). */
export async function startMosquitto() {
  const binary = requireTool('mosquitto', 'apt-get install mosquitto mosquitto-clients');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'scrap-pulse-fe-mosquitto-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const config = path.join(dir, 'mosquitto.conf');
    writeFileSync(config, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
    const service = new Service('mosquitto', binary, ['-c', config]);
    try {
      await service.ready(`mosquitto on port ${port}`, () => canConnect(port), 10_000);
      service.port = port;
      service.dir = dir;
      return service;
    } catch (error) {
      await service.stop('SIGKILL');
      if (attempt >= 4) throw error; // port taken between freePort() and bind, five times
    }
  }
}

/**
 * `target/debug/ingest` against the broker, ready once its /health says so; `windowSeconds`
 * and further flags (`args`, e.g. `--config` with `[[alarm]]` rules) for tests that need them.
 */
export async function startIngest(mqttPort, { windowSeconds = 60, args = [] } = {}) {
  const binary = requireBinary('ingest');
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const service = new Service('ingest', binary, [
      '--mqtt-host', '127.0.0.1',
      '--mqtt-port', String(mqttPort),
      '--listen', `127.0.0.1:${port}`,
      '--window-seconds', String(windowSeconds),
      '--mqtt-client-id', uniqueId('fe-ingest'),
      ...args,
    ]);
    try {
      await service.ready('ingest /health 200', async () => (await httpStatus(`http://127.0.0.1:${port}/health`)) === 200);
      service.port = port;
      return service;
    } catch (error) {
      await service.stop('SIGKILL');
      if (attempt >= 2 || !service.log.some((l) => /address already in use/i.test(l))) throw error;
    }
  }
}

/**
 * `target/debug/historian` on a SQLite file in a temp dir, ready once its /health is 200
 * (broker connected, subscribed, store open). `shifts` are `[[shift]]` rules
 * (`{name, start, end, weekdays?, machines?}`), written to its settings file with the plant
 * zone; `args` are further flags.
 */
export async function startHistorian(mqttPort, { timezone = 'UTC', dayStart = '00:00', shifts = [], args = [] } = {}) {
  const binary = requireBinary('historian');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'scrap-pulse-fe-historian-'));
  const quote = (text) => JSON.stringify(String(text));
  const lines = ['[plant]', `timezone = ${quote(timezone)}`, `day_start = ${quote(dayStart)}`, ''];
  for (const rule of shifts) {
    lines.push('[[shift]]', `name = ${quote(rule.name)}`, `start = ${quote(rule.start)}`, `end = ${quote(rule.end)}`);
    if (rule.weekdays) lines.push(`weekdays = [${rule.weekdays.map(quote).join(', ')}]`);
    if (rule.machines) lines.push(`machines = [${rule.machines.map(quote).join(', ')}]`);
    lines.push('');
  }
  const config = path.join(dir, 'historian.toml');
  writeFileSync(config, lines.join('\n'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const service = new Service('historian', binary, [
      '--config', config,
      '--mqtt-host', '127.0.0.1',
      '--mqtt-port', String(mqttPort),
      '--mqtt-client-id', uniqueId('fe-historian'),
      '--listen', `127.0.0.1:${port}`,
      '--store-url', `sqlite://${path.join(dir, 'historian.db')}`,
      ...args,
    ]);
    try {
      await service.ready('historian /health 200', async () => (await httpStatus(`http://127.0.0.1:${port}/health`)) === 200);
      service.port = port;
      service.url = `http://127.0.0.1:${port}`;
      service.dir = dir;
      return service;
    } catch (error) {
      await service.stop('SIGKILL');
      if (attempt >= 2 || !service.log.some((l) => /address already in use/i.test(l))) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    }
  }
}

/**
 * `target/debug/gateway` serving this frontend, ready once /api/health is 200 (broker
 * connected). `port` reuses a port (a restart); otherwise a free one is picked. `historyUrl`
 * points it at a historian, `authToken` sets its bearer token.
 */
export async function startGateway(mqttPort, port = null, { historyUrl = null, authToken = null } = {}) {
  const binary = requireBinary('gateway');
  const extra = [];
  if (historyUrl) extra.push('--history-url', historyUrl);
  if (authToken) extra.push('--http-auth-token', authToken);
  for (let attempt = 0; ; attempt++) {
    const listen = port ?? (await freePort());
    const service = new Service('gateway', binary, [
      '--http-static-dir', FRONTEND_DIR,
      '--listen', `127.0.0.1:${listen}`,
      '--mqtt-host', '127.0.0.1',
      '--mqtt-port', String(mqttPort),
      ...extra,
    ]);
    try {
      await service.ready('gateway /api/health 200', async () => (await httpStatus(`http://127.0.0.1:${listen}/api/health`)) === 200);
      service.port = listen;
      service.url = `http://127.0.0.1:${listen}/`;
      return service;
    } catch (error) {
      await service.stop('SIGKILL');
      const taken = service.log.some((l) => /address already in use/i.test(l));
      // A fixed port (restart) may still be held a moment by the old process: retry it too.
      if (attempt >= 4 || !taken) throw error;
      if (port !== null) await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/** An MQTT client for the test's own publishing; every publish waits for the broker's ack. */
export async function connectPublisher(mqttPort) {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
    clientId: uniqueId('fe-test-pub'),
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
  return {
    client,
    /** One reading on `machines/{machine}/scrap`, in the contract's JSON. */
    reading(machine, index, value, extra = {}) {
      const payload = JSON.stringify({ machineId: machine, scrapIndex: index, value, ...extra });
      return client.publishAsync(`machines/${machine}/scrap`, payload, { qos: 1 });
    },
    /** A retained aggregate, straight to the gateway's topic (bypassing ingest). */
    aggregate(aggregate, { qos = 1 } = {}) {
      const topic = `aggregates/${aggregate.maschinenId}/${aggregate.scrapIndex}`;
      return client.publishAsync(topic, JSON.stringify(aggregate), { qos, retain: true });
    },
    /** Clears a retained aggregate, as ingest does for a forgotten key. */
    clearAggregate(machine, index) {
      return client.publishAsync(`aggregates/${machine}/${index}`, '', { qos: 1, retain: true });
    },
    /**
     * Resolves with the aggregate on `aggregates/{machine}/{index}` once `check` accepts it
     * (retained messages arrive on subscribe, so nothing published earlier is missed).
     */
    async awaitAggregate(machine, index, check, timeoutMs = 15_000) {
      const topic = `aggregates/${machine}/${index}`;
      const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
        clientId: uniqueId('fe-test-watch'),
        clean: true,
        reconnectPeriod: 0,
      });
      try {
        return await new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${topic}`)), timeoutMs);
          watcher.on('message', (t, payload) => {
            if (t !== topic || payload.length === 0) return;
            const aggregate = JSON.parse(payload.toString());
            if (check(aggregate)) {
              clearTimeout(timer);
              resolve(aggregate);
            }
          });
          watcher.subscribeAsync(topic, { qos: 1 }).catch(reject);
        });
      } finally {
        await watcher.endAsync();
      }
    },
    end: () => client.endAsync(),
  };
}

/** An aggregate as ingest would publish it, for tests that publish aggregates directly. */
export function makeAggregate(machine, index, values, time = new Date()) {
  const sum = values.reduce((a, b) => a + b, 0);
  return {
    maschinenId: machine,
    scrapIndex: index,
    sumLast60s: sum,
    avgLast60s: values.length ? sum / values.length : null,
    count: values.length,
    windowSeconds: 60,
    timestamp: time.toISOString(),
  };
}

/**
 * Debian's Chromium, headless, in a new empty profile. Fails with the install command when
 * it is missing: a browser test that cannot run must not pass.
 */
export async function launchBrowser({ viewport = { width: 1920, height: 1080 }, locale = 'de-DE' } = {}) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Chromium (Debian: sudo apt-get install chromium; `
      + 'Ubuntu, where that package is a snap: sudo snap install chromium, then CHROMIUM_PATH=/snap/bin/chromium), '
      + 'or point CHROMIUM_PATH at any Chromium or Chrome binary');
  }
  const profile = mkdtempSync(path.join(os.tmpdir(), 'scrap-pulse-fe-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    locale,
  });
  const close = context.close.bind(context);
  context.close = async () => {
    await close();
    rmSync(profile, { recursive: true, force: true });
  };
  return context;
}

/** Opens a page that records console errors, page errors and long tasks from the start. */
export async function openDashboard(context, url) {
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (error) => page.problems.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') page.problems.push(`console.error: ${message.text()}`);
  });
  await page.addInitScript(() => {
    window.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        window.__longTasks.push({ start: entry.startTime, duration: entry.duration });
      }
    }).observe({ type: 'longtask', buffered: true });
  });
  await page.goto(url);
  return page;
}

/** Everything one test file needs, started in order and stopped in reverse. */
export class Stack {
  /**
   * `ingest`: `false` for none, or the options of `startIngest`. `historian`: the options of
   * `startHistorian` to start one and point the gateway at it. `gateway`: `{authToken}`.
   */
  static async start({ ingest = true, historian = null, gateway = {} } = {}) {
    const stack = new Stack();
    try {
      stack.mosquitto = await startMosquitto();
      if (historian) stack.historian = await startHistorian(stack.mosquitto.port, historian);
      if (ingest) stack.ingest = await startIngest(stack.mosquitto.port, ingest === true ? {} : ingest);
      stack.gatewayOptions = { historyUrl: stack.historian?.url ?? null, ...gateway };
      stack.gateway = await startGateway(stack.mosquitto.port, null, stack.gatewayOptions);
      stack.publisher = await connectPublisher(stack.mosquitto.port);
    } catch (error) {
      await stack.stop();
      throw error;
    }
    return stack;
  }

  get url() {
    return this.gateway.url;
  }

  /** Kills the gateway (as a crash would) and starts a new one on the same port. */
  async restartGateway(signal = 'SIGKILL') {
    const port = this.gateway.port;
    await this.gateway.stop(signal);
    this.gateway = await startGateway(this.mosquitto.port, port, this.gatewayOptions);
  }

  /** The services' recent logs, for assertion messages. */
  logs() {
    return [this.gateway, this.historian, this.ingest, this.mosquitto].filter(Boolean).map((s) => s.tail()).join('\n');
  }

  async stop() {
    await this.publisher?.end().catch(() => {});
    for (const service of [this.gateway, this.ingest, this.historian, this.mosquitto]) {
      if (service) await service.stop();
    }
    for (const service of [this.historian, this.mosquitto]) {
      if (service?.dir) rmSync(service.dir, { recursive: true, force: true });
    }
  }
}
