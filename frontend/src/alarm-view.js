// The alarm views: the red state of a card with its threshold and since-when, the strip of
// raised alarms at the top (newest first; a click scrolls to the card), each card's trend as
// an inline SVG sparkline, and the optional browser notification. Everything is built with
// DOM APIs and wire values go in as text or numeric attributes only, never as markup.

const SVG = 'http://www.w3.org/2000/svg';
/** Sparkline drawing box; the SVG scales it to the card's width. */
const SPARK_W = 100;
const SPARK_H = 24;

/** The `points` attribute of a sparkline through `points` (oldest first), scaled to the box. */
export function sparklinePoints(points) {
  if (points.length === 0) return '';
  const max = Math.max(...points.map((p) => p.sum), 0);
  const y = (sum) => (max > 0 ? SPARK_H - 1 - (sum / max) * (SPARK_H - 2) : SPARK_H - 1);
  const last = points.length - 1;
  const x = (i) => (last === 0 ? [0, SPARK_W] : [(i / last) * SPARK_W]);
  const out = [];
  points.forEach((p, i) => {
    for (const xi of x(i)) out.push(`${round(xi)},${round(y(p.sum))}`);
  });
  return out.join(' ');
}

const round = (v) => Math.round(v * 100) / 100;

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
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', `0 0 ${SPARK_W} ${SPARK_H}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('aria-hidden', 'true');
  const polyline = document.createElementNS(SVG, 'polyline');
  polyline.setAttribute('points', '');
  svg.append(polyline);
  card.root.append(line, svg);
  card.alarmLine = line;
  card.alarmText = text;
  card.spark = polyline;
  card.alarm = null;
  card.trend = null;
}

/** Shows `alarm` (raised, or `null`/cleared) on `card`. */
export function showAlarm(card, alarm, locale) {
  const raised = alarm?.raised ? alarm : null;
  card.alarm = raised;
  card.root.classList.toggle('alarm', raised !== null);
  card.alarmLine.hidden = raised === null;
  const text = raised ? alarmText(raised, locale) : '';
  if (card.alarmText.data !== text) card.alarmText.data = text;
}

/** Draws `trend` (or nothing) as the card's sparkline. */
export function showTrend(card, trend) {
  card.trend = trend;
  const points = trend ? sparklinePoints(trend.points) : '';
  if (card.spark.getAttribute('points') !== points) card.spark.setAttribute('points', points);
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
