// The bar chart: machines along the x axis (natural order), one dataset per scrap index,
// showing sums or averages. Chart.js draws on a canvas, so ids cannot inject markup. Redraws
// are throttled: a wall screen gains nothing from 60 chart updates a second.

import { chartConfig, drawFrame } from './chart-config.js';

/** Distinct colours that read well on the dark background, keyed by scrap index. */
const PALETTE = [
  '#4e9cf5', '#f5a524', '#3ecf8e', '#ef5d6b', '#b184f5',
  '#f57ad2', '#43d1d9', '#c9d14a', '#f58c52', '#8aa4c8',
];

export function colourFor(index) {
  if (index < PALETTE.length) return PALETTE[index];
  // Beyond the palette, spread hues by the golden angle so neighbours still differ.
  return `hsl(${(index * 137.508) % 360} 70% 62%)`;
}

/** Builds the chart's labels and per-index series from the state (pure, for tests too). */
export function chartData(state, mode) {
  const labels = state.machineOrder.slice();
  const series = state.allIndices.map((index) => ({
    index,
    data: labels.map((machine) => {
      const a = state.get(machine, index);
      if (!a) return null;
      return mode === 'avg' ? a.avg : a.sum;
    }),
  }));
  return { labels, series };
}

/**
 * The chart as the page sees it: it turns the state into frames (labels and one series per
 * scrap index) and hands them to a renderer at most every `minIntervalMs`, and never while the
 * previous frame is still being drawn. The renderer is Chart.js in a worker on an
 * OffscreenCanvas where the browser has one, else Chart.js on the page.
 */
export class ScrapChart {
  constructor(canvas, locale, { minIntervalMs = 250, allowWorker = true } = {}) {
    this.mode = 'sum';
    this.locale = locale;
    this.minIntervalMs = minIntervalMs;
    this.lastDraw = -Infinity;
    this.lastDrawMs = 0;
    this.timer = null;
    this.waitingForVisible = false;
    this.state = null;
    this.seq = 0;
    this.inFlight = null;
    this.wanted = false;
    this.urgent = false;
    /** The last frame drawn (what the chart shows), for tests and the console. */
    this.shown = { labels: [], datasets: [] };
    this.draws = 0;
    this.drawMsMax = 0;
    this.canvas = canvas;
    // Readable from a few metres on a wall screen, still compact on a phone.
    const big = globalThis.innerWidth >= 1200;
    if (allowWorker && typeof canvas.transferControlToOffscreen === 'function' && typeof Worker === 'function') {
      this.where = 'worker';
      this.#startWorker(canvas, big);
    } else {
      this.#startInline(canvas, big);
    }
    this.#applyTexts();
  }

  /** Fallback: Chart.js on the page, loaded only now (the worker path never needs it here). */
  #startInline(canvas, big) {
    this.where = 'loading';
    import('../vendor/chart.umd.js')
      .then(() => {
        this.inline = new globalThis.Chart(canvas, chartConfig({ big, offscreen: false }));
        this.inlineDatasets = new Map();
        this.where = 'page';
        this.inFlight = null;
        this.refresh(this.state, true);
      })
      .catch((error) => {
        this.where = 'none';
        console.error('scrap-pulse: Chart.js did not load; the chart stays empty', error);
      });
  }

  #startWorker(canvas, big) {
    const box = canvas.parentElement;
    const size = () => ({
      width: Math.max(1, box.clientWidth),
      height: Math.max(1, box.clientHeight),
      devicePixelRatio: globalThis.devicePixelRatio || 1,
    });
    const offscreen = canvas.transferControlToOffscreen();
    const worker = new Worker(new URL('./chart-worker.js', import.meta.url), { type: 'module' });
    this.worker = worker;
    const resizes = new ResizeObserver(() => worker.postMessage({ type: 'resize', ...size() }));
    worker.addEventListener('error', (event) => {
      // The canvas belongs to the dead worker now: draw on a fresh one, on the page.
      console.warn('scrap-pulse: chart worker failed, drawing on the page instead', event.message ?? event);
      event.preventDefault();
      resizes.disconnect();
      worker.terminate();
      this.worker = null;
      const fresh = canvas.cloneNode(false);
      canvas.replaceWith(fresh);
      this.canvas = fresh;
      this.#startInline(fresh, big);
    });
    worker.addEventListener('message', ({ data }) => {
      if (data?.type === 'drawn' && this.inFlight?.seq === data.seq) this.#drawn(this.inFlight.frame, data.ms);
    });
    worker.postMessage({ type: 'init', canvas: offscreen, big, ...size() }, [offscreen]);
    resizes.observe(box);
  }

  setMode(mode) {
    this.mode = mode === 'avg' ? 'avg' : 'sum';
    this.#applyTexts();
    this.refresh(this.state, true);
  }

  setLocale(locale) {
    this.locale = locale;
    this.#applyTexts();
    this.refresh(this.state, true);
  }

  /** Asks for a redraw from `state`; it happens within `minIntervalMs` (or now, if `urgent`). */
  refresh(state, urgent = false) {
    if (!state || this.where === 'none') return;
    this.state = state;
    if (this.where === 'loading') return; // drawn once Chart.js is there
    this.state = state;
    this.wanted = true;
    if (urgent) this.urgent = true;
    // One frame at a time: the acknowledgement of the one in flight schedules the next. A
    // frame unanswered for 10 s is given up, so a stuck worker cannot freeze the chart for good.
    if (this.inFlight !== null && performance.now() - this.inFlight.sentAt > 10_000) this.inFlight = null;
    if (this.timer !== null || this.inFlight !== null) return;
    // A slow machine gets fewer redraws: drawing takes at most about a tenth of the time.
    const interval = Math.max(this.minIntervalMs, 10 * this.lastDrawMs);
    const wait = this.urgent ? 0 : Math.max(0, this.lastDraw + interval - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      // A hidden tab draws nothing; it catches up once it is shown again.
      if (document.hidden) {
        if (!this.waitingForVisible) {
          this.waitingForVisible = true;
          document.addEventListener('visibilitychange', () => {
            this.waitingForVisible = false;
            this.refresh(this.state, true);
          }, { once: true });
        }
        return;
      }
      this.urgent = false;
      this.wanted = false;
      this.#send();
    }, wait);
  }

  #applyTexts() {
    this.title = this.locale.t(this.mode === 'avg' ? 'chartTitleAvg' : 'chartTitleSum');
    this.canvas.setAttribute('aria-label', this.title);
  }

  #send() {
    const { labels, series } = chartData(this.state, this.mode);
    const frame = {
      labels,
      datasets: series.map(({ index, data }) => ({
        index,
        label: this.locale.t('index', { i: index }),
        colour: colourFor(index),
        data,
      })),
      title: this.title,
      localeTag: this.locale.tag,
    };
    this.seq += 1;
    this.inFlight = { seq: this.seq, frame, sentAt: performance.now() };
    this.lastDraw = performance.now();
    if (this.worker) {
      this.worker.postMessage({ type: 'draw', seq: this.seq, frame });
    } else {
      this.#drawn(frame, drawFrame(this.inline, frame, this.inlineDatasets));
    }
  }

  #drawn(frame, ms) {
    this.inFlight = null;
    this.shown = frame;
    this.draws += 1;
    this.lastDrawMs = ms;
    this.drawMsMax = Math.max(this.drawMsMax, ms);
    // Changes that came in while this frame was drawn are drawn next.
    if (this.wanted) this.refresh(this.state);
  }

  /** What the chart shows (for tests and debugging). */
  snapshot() {
    return {
      mode: this.mode,
      where: this.where,
      labels: this.shown.labels.slice(),
      datasets: this.shown.datasets.map((d) => ({ label: d.label, index: d.index, data: d.data.slice() })),
      draws: this.draws,
    };
  }
}
