// Wires the dashboard together: WebSocket frames go into the state, and one render per
// animation frame brings the cards, the status line and (throttled) the chart up to date.

import { AlarmNotifier, AlarmStrip, showAlarm, showTrend } from './alarm-view.js';
import { CardsView } from './cards.js';
import { ScrapChart } from './chart.js';
import { Connection, socketUrl } from './connection.js';
import { Locale, initialLanguage, storeLanguage, storedLanguage } from './i18n.js';
import { ShiftView } from './shift-view.js';
import { ShiftFeed } from './shifts.js';
import { DashboardState } from './state.js';

const $ = (id) => document.getElementById(id);

const state = new DashboardState();
let locale = new Locale(initialLanguage(storedLanguage(), navigator.languages ?? [navigator.language]));
const cards = new CardsView($('machines'), $('empty'), (card) => {
  showAlarm(card, state.signals.alarm(card.machine, card.index), locale);
  showTrend(card, state.signals.trend(card.machine, card.index));
  card.showShift(shifts.get(card.machine, card.index), locale);
});
/** Keys whose shift totals changed since the last render; null: none. */
let shiftsDirty = null;
const shifts = new ShiftFeed(location, {
  onChange(dirty) {
    shiftsDirty ??= new Set();
    for (const key of dirty) shiftsDirty.add(key);
    scheduleRender();
  },
});
const shiftView = new ShiftView($('shift-view'), { location, feed: shifts, machines: () => state.machineOrder });
shiftView.onMachine = (machine) => history.replaceState(null, '', `#shifts/${encodeURIComponent(machine)}`);
const strip = new AlarmStrip($('alarm-strip'), $('alarm-list'), scrollToCard);
const notifier = new AlarmNotifier($('notify'));
// `?chart=page` keeps Chart.js on the main thread (for comparison and for debugging).
const chart = new ScrapChart($('chart'), locale, { allowWorker: new URLSearchParams(location.search).get('chart') !== 'page' });

/** WebSocket state as last told by the connection. */
let socket = { state: 'connecting', retryAt: null };
let windowSeconds = 60;
let renderQueued = false;
let clockDirty = true;
let labelsDirty = true;
/** Counters for tests and the console: frames received, renders and their longest JS time. */
const stats = { frames: 0, renders: 0, renderMsMax: 0 };

/** Brings a card into view and flashes it (a click in the alarm strip). */
function scrollToCard(machine, index) {
  const card = cards.card(machine, index);
  if (!card) return;
  card.root.scrollIntoView({ block: 'center', behavior: 'smooth' });
  card.root.classList.remove('flash');
  // Restart the animation: reading layout in between makes the browser see a new start.
  void card.root.offsetWidth;
  card.root.classList.add('flash');
}

/** Applies changed alarms and trends to their cards and rebuilds the strip. */
function renderSignals(all) {
  const signals = state.signals;
  if (!all && signals.dirty.size === 0 && !signals.alarmsChanged) return;
  const keys = all ? cards.cards.keys() : signals.dirty;
  for (const key of keys) {
    const card = cards.cards.get(key);
    if (!card) continue;
    showAlarm(card, signals.alarm(card.machine, card.index), locale);
    showTrend(card, signals.trend(card.machine, card.index));
  }
  signals.dirty.clear();
  // Trends change every few seconds for every key; the strip only when an alarm does.
  if (all || signals.alarmsChanged) {
    signals.alarmsChanged = false;
    strip.render(signals.raised(), locale);
  }
  notifier.notify(signals.raisedNow.splice(0), locale);
}

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(render);
}

function render() {
  const started = performance.now();
  renderQueued = false;
  stats.renders += 1;
  const now = Date.now();
  const relabel = labelsDirty;
  if (labelsDirty) {
    labelsDirty = false;
    applyStaticTexts();
    cards.relabel(locale, now);
    chart.setLocale(locale);
    shiftView.setLocale(locale);
  }
  const dataChanged = state.dirty.size > 0;
  if (dataChanged) {
    for (const key of state.dirty) {
      const split = key.indexOf('\u0000');
      const a = state.get(key.slice(0, split), Number(key.slice(split + 1)));
      if (a?.windowSeconds && a.windowSeconds !== windowSeconds) {
        windowSeconds = a.windowSeconds;
        renderSubtitle();
      }
      break; // one window length for the whole pipeline: sampling one changed key is enough
    }
    cards.render(state, locale, now);
    chart.refresh(state);
  }
  // After the cards: a card made by this render already shows its alarm (onCreate).
  renderSignals(relabel);
  if (shiftsDirty !== null) {
    cards.showShifts(shifts, locale, shiftsDirty);
    shiftsDirty = null;
    $('view-switch').hidden = !shifts.available;
    applyRoute();
    if (shiftView.visible) {
      shiftView.syncMachines();
      shiftView.refresh();
    }
  }
  if (clockDirty) {
    clockDirty = false;
    cards.tick(locale, now);
  }
  renderStatus(now);
  stats.renderMsMax = Math.max(stats.renderMsMax, performance.now() - started);
}

function setText(id, text) {
  const node = $(id);
  if (node.textContent !== text) node.textContent = text;
}

function setLevel(id, level) {
  const node = $(id);
  if (node.dataset.level !== level) node.dataset.level = level;
}

function renderStatus(now) {
  if (socket.state === 'open') {
    setText('status-ws', locale.t('wsOpen'));
    setLevel('dot-ws', 'ok');
  } else if (socket.state === 'closed' && socket.retryAt !== null) {
    const s = Math.max(0, Math.ceil((socket.retryAt - now) / 1000));
    setText('status-ws', locale.t('wsClosed', { s }));
    setLevel('dot-ws', 'bad');
  } else {
    setText('status-ws', locale.t('wsConnecting'));
    setLevel('dot-ws', 'warn');
  }
  const mqtt = state.mqtt;
  const brokerLevel = mqtt === null ? 'unknown' : mqtt === 'connected' ? 'ok' : /connecting/.test(mqtt) ? 'warn' : 'bad';
  const brokerText = { unknown: 'unknown', ok: 'brokerUp', warn: 'wsConnecting', bad: 'brokerDown' }[brokerLevel];
  setText('status-broker', locale.t(brokerText));
  setLevel('dot-broker', brokerLevel);
  const ingest = state.ingestOnline;
  const shards = state.ingestShards;
  if (shards) {
    // Shards: "3/3"; some shards down is a warning, all down an error.
    setText('status-ingest', locale.t('ingestShards', shards));
    setLevel('dot-ingest', ingest ? 'ok' : shards.online > 0 ? 'warn' : 'bad');
  } else {
    setText('status-ingest', ingest === null ? locale.t('unknown') : ingest ? locale.t('ingestOnline') : locale.t('ingestOffline'));
    setLevel('dot-ingest', ingest === null ? 'unknown' : ingest ? 'ok' : 'bad');
  }
  setText(
    'status-last',
    state.lastUpdate === null ? locale.t('never') : `${locale.time(state.lastUpdate)} (${locale.age(now - state.lastUpdate)})`,
  );
  document.body.classList.toggle('stale', socket.state !== 'open');
}

function renderSubtitle() {
  setText('subtitle', locale.t('subtitle', { s: windowSeconds }));
}

function applyStaticTexts() {
  document.documentElement.lang = locale.lang;
  document.title = `${locale.t('title')} · scrap-pulse`;
  for (const node of document.querySelectorAll('header [data-i18n], #status [data-i18n], #empty[data-i18n], #alarm-strip [data-i18n], #shift-view [data-i18n]')) {
    node.textContent = locale.t(node.dataset.i18n);
  }
  for (const node of document.querySelectorAll('[data-i18n-label]')) {
    node.setAttribute('aria-label', locale.t(node.dataset.i18nLabel));
  }
  for (const button of document.querySelectorAll('[data-lang]')) {
    button.setAttribute('aria-pressed', String(button.dataset.lang === locale.lang));
  }
  renderSubtitle();
}

function setLanguage(lang) {
  if (lang === locale.lang) return;
  locale = new Locale(lang);
  storeLanguage(locale.lang);
  labelsDirty = true;
  scheduleRender();
}

function setChartMode(mode) {
  for (const button of document.querySelectorAll('[data-mode]')) {
    button.setAttribute('aria-pressed', String(button.dataset.mode === mode));
  }
  chart.setMode(mode);
}

for (const button of document.querySelectorAll('[data-lang]')) {
  button.addEventListener('click', () => setLanguage(button.dataset.lang));
}

/**
 * The view the address asks for: `#shifts` or `#shifts/A1` the shift view (once the gateway
 * has shift totals), anything else the live view.
 */
function applyRoute() {
  const match = /^#shifts(?:\/(.*))?$/.exec(location.hash);
  const wantShifts = match !== null && shifts.available;
  for (const button of document.querySelectorAll('[data-view]')) {
    button.setAttribute('aria-pressed', String(button.dataset.view === (wantShifts ? 'shifts' : 'live')));
  }
  $('live-view').hidden = wantShifts;
  if (wantShifts) {
    let machine = null;
    try {
      machine = match[1] ? decodeURIComponent(match[1]) : null;
    } catch {
      // A mangled address: keep the machine selected before.
    }
    if (!shiftView.visible || (machine && machine !== shiftView.machine)) shiftView.show(machine);
  } else if (shiftView.visible) {
    shiftView.hide();
  }
}

for (const button of document.querySelectorAll('[data-view]')) {
  button.addEventListener('click', () => {
    const machine = shiftView.machine;
    const hash = button.dataset.view === 'shifts' ? `#shifts${machine ? `/${encodeURIComponent(machine)}` : ''}` : '';
    history.replaceState(null, '', `${location.pathname}${location.search}${hash}`);
    applyRoute();
  });
}
window.addEventListener('hashchange', applyRoute);
for (const button of document.querySelectorAll('[data-mode]')) {
  button.addEventListener('click', () => setChartMode(button.dataset.mode));
}

const connection = new Connection(socketUrl(location), {
  healthUrl: new URL('api/health', location.href).href,
  onFrame(frame) {
    stats.frames += 1;
    state.apply(frame);
    scheduleRender();
  },
  onState(next) {
    socket = next;
    if (next.state !== 'open') state.markUnknown();
    scheduleRender();
  },
});

// Ages, the retry countdown and "last data" tick once a second, data or not.
setInterval(() => {
  clockDirty = true;
  scheduleRender();
}, 1000);

connection.start();
shifts.start();
scheduleRender();

/** Read-only view for tests and for an operator poking at the console. */
window.__scrapPulse = {
  state: () => state.toJSON(),
  cards: () => cards.snapshot(),
  /** The alarm strip as shown, newest first. */
  alarmStrip: () => strip.shown.map((a) => ({ ...a })),
  chart: () => chart.snapshot(),
  socket: () => ({ ...socket }),
  stats: () => ({ ...stats, rejected: state.rejected, chartDraws: chart.draws, chartMsMax: chart.drawMsMax, chartWhere: chart.where }),
  /** Starts the maxima afresh (a test measures a steady state, not the page load). */
  resetMaxima() {
    stats.renderMsMax = 0;
    chart.drawMsMax = 0;
  },
  language: () => locale.lang,
  /** The shift totals as held: whether there are any, and every key's current and last shift. */
  shifts: () => ({ available: shifts.available, polls: shifts.polls, keys: structuredClone([...shifts.keys.values()]) }),
  shiftView: () => shiftView.snapshot(),
  /** Asks for the shift totals now, and brings the shift view up to date. */
  async refreshShifts() {
    await shifts.refresh();
    await shiftView.refresh();
  },
};
