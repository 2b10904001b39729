// The bar chart: machines along the x axis (natural order), one dataset per scrap index,
// showing sums or averages. Chart.js draws on a canvas, so ids cannot inject markup. Redraws
// are throttled: a wall screen gains nothing from 60 chart updates a second.

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

export class ScrapChart {
  /**
   * `Chart` is the Chart.js constructor (the UMD build served by the gateway sets the
   * global); `minIntervalMs` caps how often the chart redraws.
   */
  constructor(Chart, canvas, locale, { minIntervalMs = 250 } = {}) {
    this.mode = 'sum';
    this.locale = locale;
    this.minIntervalMs = minIntervalMs;
    this.lastDraw = -Infinity;
    this.lastDrawMs = 0;
    this.timer = null;
    this.waitingForVisible = false;
    this.state = null;
    /** index -> Chart.js dataset object, reused so Chart.js keeps its per-dataset metadata */
    this.datasets = new Map();
    this.draws = 0;
    this.drawMsMax = 0;
    // Readable from a few metres on a wall screen, still compact on a phone.
    const big = globalThis.innerWidth >= 1200;
    const font = { size: big ? 15 : 12 };
    this.chart = new Chart(canvas, {
      type: 'bar',
      data: { labels: [], datasets: [] },
      options: {
        animation: false,
        // Our series are plain arrays in label order: Chart.js may skip its checks.
        normalized: true,
        responsive: true,
        maintainAspectRatio: false,
        locale: locale.tag,
        interaction: { mode: 'index', intersect: false },
        scales: {
          x: {
            ticks: {
              color: '#c9d1d9',
              font,
              // Ids are arbitrary: a long one must not squeeze the bars away.
              callback(value) {
                const text = String(this.getLabelForValue(value));
                return text.length > 16 ? `${text.slice(0, 15)}…` : text;
              },
            },
            grid: { color: 'rgba(255,255,255,0.06)' } },
          y: {
            beginAtZero: true,
            ticks: { color: '#c9d1d9', font },
            grid: { color: 'rgba(255,255,255,0.1)' },
          },
        },
        plugins: {
          legend: { labels: { color: '#e6edf3', boxWidth: 14, font } },
          title: { display: true, color: '#e6edf3', font: { size: big ? 19 : 15, weight: '600' }, text: '' },
          tooltip: {
            callbacks: {
              label: (item) => {
                const v = item.raw;
                const text = this.mode === 'avg' ? this.locale.avg(v) : this.locale.sum(v ?? 0);
                return `${item.dataset.label}: ${text}`;
              },
            },
          },
        },
      },
    });
    this.#applyTexts();
  }

  setMode(mode) {
    this.mode = mode === 'avg' ? 'avg' : 'sum';
    this.#applyTexts();
    this.refresh(this.state, true);
  }

  setLocale(locale) {
    this.locale = locale;
    this.chart.options.locale = locale.tag;
    for (const [index, dataset] of this.datasets) dataset.label = locale.t('index', { i: index });
    this.#applyTexts();
    this.refresh(this.state, true);
  }

  /** Asks for a redraw from `state`; it happens within `minIntervalMs` (or now, if `urgent`). */
  refresh(state, urgent = false) {
    if (!state) return;
    this.state = state;
    if (this.timer !== null) return;
    // A slow machine gets fewer redraws: the chart takes at most about a tenth of the main
    // thread, whatever the draw costs there.
    const interval = Math.max(this.minIntervalMs, 10 * this.lastDrawMs);
    const wait = urgent ? 0 : Math.max(0, this.lastDraw + interval - performance.now());
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
      // Its own task, not the cards' animation frame: each stays well short of a long task.
      this.#draw();
    }, wait);
  }

  #applyTexts() {
    const title = this.locale.t(this.mode === 'avg' ? 'chartTitleAvg' : 'chartTitleSum');
    this.chart.options.plugins.title.text = title;
    this.chart.canvas.setAttribute('aria-label', title);
  }

  #draw() {
    const started = performance.now();
    this.lastDraw = started;
    const { labels, series } = chartData(this.state, this.mode);
    const datasets = series.map(({ index, data }) => {
      let dataset = this.datasets.get(index);
      if (!dataset) {
        dataset = {
          label: this.locale.t('index', { i: index }),
          backgroundColor: colourFor(index),
          borderWidth: 0,
          borderRadius: 3,
          scrapIndex: index,
          data,
        };
        this.datasets.set(index, dataset);
      }
      dataset.data = data;
      return dataset;
    });
    for (const index of this.datasets.keys()) {
      if (!this.state.indexUse.has(index)) this.datasets.delete(index);
    }
    this.chart.data.labels = labels;
    this.chart.data.datasets = datasets;
    this.chart.update('none');
    this.draws += 1;
    this.lastDrawMs = performance.now() - started;
    this.drawMsMax = Math.max(this.drawMsMax, this.lastDrawMs);
  }

  /** What the chart holds (for tests and debugging). */
  snapshot() {
    return {
      mode: this.mode,
      labels: this.chart.data.labels.slice(),
      datasets: this.chart.data.datasets.map((d) => ({ label: d.label, index: d.scrapIndex, data: d.data.slice() })),
      draws: this.draws,
    };
  }
}
