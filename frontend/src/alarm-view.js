// The alarm views: the red state of a card with its threshold and since-when, the strip of
// raised alarms at the top (newest first; a click scrolls to the card), each card's trend as
// a canvas sparkline, and the optional browser notification. Everything is built with DOM
// APIs and wire values go in as text or canvas coordinates only, never as markup.

import { colourFor } from './chart.js';

/** Sparkline box in its own units; the canvas has SPARK_SCALE pixels per unit. */
const SPARK_W = 100;
const SPARK_H = 24;
/** A fixed backing size (CSS stretches it to the card): no layout read per draw. */
const SPARK_SCALE = 2;
/** Line colour on a red (alarm) card: the page's text colour. */
const ALARM_LINE = '#e6edf3';

const round = (v) => Math.round(v * 100) / 100;

/** The sparkline through `points` (oldest first) as [x, y] in the box, the largest sum on top. */
export function sparklineCoords(points) {
  if (points.length === 0) return [];
  const max = Math.max(...points.map((p) => p.sum), 0);
  const y = (sum) => round(max > 0 ? SPARK_H - 1 - (sum / max) * (SPARK_H - 2) : SPARK_H - 1);
  const last = points.length - 1;
  // One sample: a flat line across, so a new key shows its level at once.
  if (last === 0) return [[0, y(points[0].sum)], [SPARK_W, y(points[0].sum)]];
  return points.map((p, i) => [round((i / last) * SPARK_W), y(p.sum)]);
}

/** The coordinates as "x,y x,y" (what the card reports to tests). */
export function sparklinePoints(points) {
  return sparklineCoords(points).map(([x, y]) => `${x},${y}`).join(' ');
}

/** The alarm line of a card or the strip: "Summe 31,5 > 30 seit 12:00:05". */
export function alarmText(alarm, locale) {
  const metric = locale.t(alarm.metric === 'avg' ? 'avg' : 'sum');
  const value = alarm.value === null ? '–' : locale.sum(alarm.value);
  return locale.t('alarmLine', { metric, value, threshold: locale.sum(alarm.threshold), since: locale.time(alarm.since) });
}

/** Adds the alarm line and the sparkline to a card (cards.js calls this once per card). */
export function decorateCard(card) {
  const line = document.createElement('div');
  line.className = 'card-alarm';
  line.hidden = true;
  const text = document.createTextNode('');
  line.append(text);
  const canvas = document.createElement('canvas');
  canvas.className = 'spark';
  canvas.width = SPARK_W * SPARK_SCALE;
  canvas.height = SPARK_H * SPARK_SCALE;
  canvas.setAttribute('aria-hidden', 'true');
  card.root.append(line, canvas);
  card.alarmLine = line;
  card.alarmText = text;
  card.spark = canvas;
  card.sparkPoints = '';
  card.sparkCoords = [];
  card.sparkColour = '';
  card.alarm = null;
  card.trend = null;
}

function drawSpark(card) {
  const colour = card.alarm ? ALARM_LINE : colourFor(card.index);
  const ctx = card.spark.getContext('2d');
  card.sparkColour = colour;
  ctx.clearRect(0, 0, card.spark.width, card.spark.height);
  if (card.sparkCoords.length === 0 || !ctx) return;
  ctx.save();
  ctx.scale(SPARK_SCALE, SPARK_SCALE);
  ctx.strokeStyle = colour;
  ctx.lineWidth = 1.5;
  ctx.lineJoin = 'round';
  ctx.beginPath();
  card.sparkCoords.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y)));
  ctx.stroke();
  ctx.restore();
}

/** Shows `alarm` (raised, or `null`/cleared) on `card`. */
export function showAlarm(card, alarm, locale) {
  const raised = alarm?.raised ? alarm : null;
  card.alarm = raised;
  card.root.classList.toggle('alarm', raised !== null);
  card.alarmLine.hidden = raised === null;
  const text = raised ? alarmText(raised, locale) : '';
  if (card.alarmText.data !== text) card.alarmText.data = text;
  if ((raised ? ALARM_LINE : colourFor(card.index)) !== card.sparkColour && card.sparkCoords.length) drawSpark(card);
}

/** Draws `trend` (or nothing) as the card's sparkline. */
export function showTrend(card, trend) {
  card.trend = trend;
  const coords = trend ? sparklineCoords(trend.points) : [];
  const points = coords.map(([x, y]) => `${x},${y}`).join(' ');
  if (points === card.sparkPoints) return;
  card.sparkPoints = points;
  card.sparkCoords = coords;
  drawSpark(card);
}

/** The strip of raised alarms above the chart. */
export class AlarmStrip {
  constructor(root, list, onPick) {
    this.root = root;
    this.list = list;
    this.onPick = onPick;
    /** What the strip shows, for tests: [{machine, index, text}] newest first. */
    this.shown = [];
  }

  /** Rebuilds the strip from the raised alarms (few: rebuilding is cheaper than diffing). */
  render(raised, locale) {
    const items = raised.map((alarm) => {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      const name = document.createElement('span');
      name.className = 'alarm-key';
      name.textContent = `${alarm.machine} · ${locale.t('index', { i: alarm.index })}`;
      const text = document.createElement('span');
      text.className = 'alarm-text';
      text.textContent = alarmText(alarm, locale);
      button.append(name, text);
      button.addEventListener('click', () => this.onPick(alarm.machine, alarm.index));
      li.append(button);
      return li;
    });
    this.list.replaceChildren(...items);
    this.root.hidden = items.length === 0;
    this.shown = raised.map((a, i) => ({ machine: a.machine, index: a.index, text: items[i].textContent }));
  }
}

/**
 * Browser notifications on raise, opt-in: permission is asked only when the operator clicks
 * the button (browsers ignore or penalise a request on load), and nothing is sent otherwise.
 */
export class AlarmNotifier {
  constructor(button) {
    this.button = button;
    this.supported = typeof Notification !== 'undefined';
    button.parentElement.hidden = !this.supported;
    button.addEventListener('click', () => this.#ask());
    this.#reflect();
  }

  async #ask() {
    if (!this.supported) return;
    // Asked on every click: a browser that already decided answers at once without a prompt.
    try {
      await Notification.requestPermission();
    } catch {
      // An old callback-only implementation or a blocked prompt: stay off.
    }
    this.#reflect();
  }

  #reflect() {
    if (!this.supported) return;
    this.button.setAttribute('aria-pressed', String(Notification.permission === 'granted'));
  }

  /** Notifies about newly raised alarms when allowed (title and body are plain text). */
  notify(alarms, locale) {
    if (!this.supported || Notification.permission !== 'granted') return;
    for (const alarm of alarms) {
      try {
        new Notification(locale.t('alarmNotice', { machine: alarm.machine, i: alarm.index }), {
          body: alarmText(alarm, locale),
          tag: `scrap-pulse:${alarm.machine}:${alarm.index}`,
        });
      } catch {
        // Some browsers only allow notifications from a service worker: nothing to do.
      }
    }
  }
}
