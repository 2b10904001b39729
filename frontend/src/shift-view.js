// The shift view: for one machine, an hourly bar chart of its current shift (the last one
// when none is running) and a table of its last seven plant days by shift, with the same rows
// as a CSV download. Times are plant time, as the historian answers them. Data is fetched
// only while the view is shown; the chart is Chart.js on the page (it redraws every 20 s at
// most, so a worker would gain nothing).

import { apiGet, apiHeaders, apiUrl, attachmentName } from './api.js';
import { colourFor } from './chart.js';
import { chartConfig, drawFrame } from './chart-config.js';
import { clockTime, hourlySeries, parseRow, rowState, tableOrder } from './shifts.js';
import { naturalCompare } from './state.js';

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The period the chart shows for a machine's feed entries: the running shift, else the last. */
export function chartPeriod(entries) {
  const current = entries.find((e) => e.current)?.current;
  if (current) return { row: current, running: true };
  const previous = entries.find((e) => e.previous)?.previous;
  return previous ? { row: previous, running: false } : null;
}

export class ShiftView {
  constructor(root, { location, feed, machines }) {
    this.root = root;
    this.location = location;
    this.feed = feed;
    /** The machines the live view knows (the select also lists the feed's). */
    this.liveMachines = machines;
    this.select = root.querySelector('#shift-machine');
    this.periodText = root.querySelector('#shift-period');
    this.errorText = root.querySelector('#shift-error');
    this.canvas = root.querySelector('#shift-chart');
    this.tbody = root.querySelector('#shift-rows');
    this.csvLink = root.querySelector('#shift-csv');
    this.locale = null;
    this.machine = null;
    this.period = null;
    this.error = null;
    this.visible = false;
    this.seq = 0;
    this.chart = null;
    this.chartLoading = null;
    this.datasets = new Map();
    /** What is shown, for tests and the console. */
    this.shown = { machine: null, period: null, chart: { labels: [], datasets: [] }, rows: [], error: null, updates: 0 };
    this.hourRows = [];
    this.shiftRows = [];
    this.select.addEventListener('change', () => {
      this.machine = this.select.value;
      this.onMachine?.(this.machine);
      this.refresh();
    });
    this.csvLink.addEventListener('click', (event) => {
      event.preventDefault();
      this.#download();
    });
  }

  setLocale(locale) {
    this.locale = locale;
    this.#updateCsvLink();
    if (this.visible) this.#render();
  }

  /** Shows the view for `machine` (null: keep the one selected, or the first). */
  show(machine) {
    this.visible = true;
    this.root.hidden = false;
    if (machine) this.machine = machine;
    this.syncMachines();
    this.refresh();
  }

  hide() {
    this.visible = false;
    this.root.hidden = true;
  }

  /** Rebuilds the machine list when it changed; picks a machine if none is chosen. */
  syncMachines() {
    const all = [...new Set([...this.feed.machines, ...this.liveMachines()])].sort(naturalCompare);
    if (this.machine && !all.includes(this.machine)) all.push(this.machine);
    const current = [...this.select.options].map((o) => o.value);
    if (current.length !== all.length || current.some((m, i) => m !== all[i])) {
      this.select.replaceChildren(...all.map((m) => {
        const option = el('option', null, m);
        option.value = m;
        return option;
      }));
    }
    if (!this.machine && all.length > 0) this.machine = all[0];
    if (this.machine && this.select.value !== this.machine) this.select.value = this.machine;
    this.#updateCsvLink();
  }

  /** Fetches the chart's and the table's rows for the selected machine and shows them. */
  async refresh() {
    if (!this.visible || !this.machine) {
      if (this.visible) this.#render();
      return;
    }
    const seq = ++this.seq;
    const machine = this.machine;
    const period = chartPeriod(this.feed.ofMachine(machine));
    const requests = [apiGet(this.location, apiUrl(this.location, 'api/history', { machines: machine, step: 'shift' }))];
    if (period) {
      const range = { machines: machine, from: period.row.startUtc, to: period.row.endUtc, step: 'hour' };
      requests.push(apiGet(this.location, apiUrl(this.location, 'api/history', range)));
    }
    let error = null;
    let shiftRows = [];
    let hourRows = [];
    try {
      const responses = await Promise.all(requests);
      const bad = responses.find((r) => !r.ok);
      if (bad) {
        error = String(bad.status);
        await Promise.all(responses.map((r) => r.body?.cancel()));
      } else {
        const [shifts, hours] = await Promise.all(responses.map((r) => r.json()));
        shiftRows = (Array.isArray(shifts) ? shifts : []).map(parseRow).filter(Boolean);
        hourRows = (Array.isArray(hours) ? hours : []).map(parseRow).filter(Boolean);
      }
    } catch (e) {
      error = e?.name === 'TimeoutError' ? 'timeout' : 'network';
    }
    if (seq !== this.seq) return; // a newer request (another machine) has started
    this.period = period;
    this.error = error;
    // On an error the last rows stay, but only those of the machine now selected.
    if (!error || machine !== this.shown.machine) {
      this.shiftRows = tableOrder(shiftRows);
      this.hourRows = hourRows;
    }
    await this.#render();
  }

  async #render() {
    const locale = this.locale;
    const period = this.period ?? null;
    const t = (key, vars) => locale.t(key, vars);
    this.errorText.hidden = !this.error;
    this.errorText.textContent = this.error ? t('shiftError', { status: this.error }) : '';
    if (period) {
      const row = period.row;
      const vars = { shift: row.shift ?? '', day: locale.day(row.day), from: clockTime(row.start), to: clockTime(row.end) };
      this.periodText.textContent = t(period.running ? 'shiftCurrent' : 'shiftPrevious', vars);
    } else {
      this.periodText.textContent = t('shiftNone');
    }
    this.#renderTable();
    await this.#renderChart(period);
    this.shown = {
      machine: this.machine,
      period: period ? { ...period.row, running: period.running } : null,
      chart: this.shown.chart,
      rows: [...this.tbody.rows].map((tr) => [...tr.cells].map((c) => c.textContent)),
      error: this.error,
      updates: this.shown.updates + 1,
    };
  }

  #renderTable() {
    const locale = this.locale;
    const now = Date.now();
    const rows = this.shiftRows.map((row) => {
      const tr = el('tr');
      tr.dataset.state = rowState(row, now);
      const shift = `${row.shift ?? ''} ${clockTime(row.start)}–${clockTime(row.end)}`.trim();
      const cells = [
        [locale.day(row.day), ''],
        [shift, ''],
        [locale.count(row.index), 'num'],
        [locale.sum(row.sum), 'num'],
        [locale.count(row.count), 'num'],
        [locale.avg(row.avg), 'num'],
        [locale.t({ final: 'stateFinal', running: 'stateRunning', provisional: 'stateProvisional' }[tr.dataset.state]), 'state'],
      ];
      cells.forEach(([text, className], i) => {
        const cell = el(i === 0 ? 'th' : 'td', className || null, text);
        if (i === 0) cell.scope = 'row';
        tr.append(cell);
      });
      return tr;
    });
    if (rows.length === 0) {
      const tr = el('tr', 'no-rows');
      const td = el('td', null, locale.t('noRows'));
      td.colSpan = 7;
      tr.append(td);
      rows.push(tr);
    }
    this.tbody.replaceChildren(...rows);
  }

  async #renderChart(period) {
    const { labels, series } = hourlySeries(period ? this.hourRows : []);
    const row = period?.row;
    const frame = {
      labels,
      datasets: series.map(({ index, data }) => ({ index, label: this.locale.t('index', { i: index }), colour: colourFor(index), data })),
      title: row ? this.locale.t('shiftChartTitle', { shift: row.shift ?? '', day: this.locale.day(row.day) }) : '',
      localeTag: this.locale.tag,
    };
    this.canvas.setAttribute('aria-label', frame.title || this.locale.t('shiftNone'));
    const chart = await this.#chart();
    if (chart) drawFrame(chart, frame, this.datasets);
    this.shown.chart = { labels: frame.labels, title: frame.title, datasets: frame.datasets.map((d) => ({ index: d.index, label: d.label, data: d.data })) };
  }

  /** Chart.js on the page, loaded when the view is first shown. */
  #chart() {
    if (this.chart) return Promise.resolve(this.chart);
    this.chartLoading ??= import('../vendor/chart.umd.js')
      .then(() => {
        this.chart = new globalThis.Chart(this.canvas, chartConfig({ big: globalThis.innerWidth >= 1200, offscreen: false }));
        return this.chart;
      })
      .catch((error) => {
        console.error('scrap-pulse: Chart.js did not load; the shift chart stays empty', error);
        return null;
      });
    return this.chartLoading;
  }

  /** The CSV of the table's rows, in the page's language's dialect. */
  csvUrl() {
    if (!this.machine || !this.locale) return null;
    return apiUrl(this.location, 'api/history.csv', { machines: this.machine, step: 'shift', lang: this.locale.lang });
  }

  #updateCsvLink() {
    const url = this.csvUrl();
    if (url) this.csvLink.href = url;
  }

  /**
   * Fetches the CSV (with the token as a header, which a plain link cannot send) and saves it
   * under the name the historian gave it.
   */
  async #download() {
    const url = this.csvUrl();
    if (!url) return;
    try {
      const response = await fetch(url, { headers: apiHeaders(this.location), cache: 'no-store' });
      if (!response.ok) {
        await response.body?.cancel();
        this.error = String(response.status);
        this.errorText.hidden = false;
        this.errorText.textContent = this.locale.t('shiftError', { status: this.error });
        return;
      }
      const blob = await response.blob();
      const name = attachmentName(response.headers.get('Content-Disposition'), `scrap-${this.machine}.csv`);
      const link = el('a');
      link.href = URL.createObjectURL(blob);
      link.download = name;
      link.hidden = true;
      document.body.append(link);
      link.click();
      link.remove();
      // The download has its own copy once it started.
      setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    } catch {
      this.errorText.hidden = false;
      this.errorText.textContent = this.locale.t('shiftError', { status: 'network' });
    }
  }

  snapshot() {
    return structuredClone({ ...this.shown, visible: this.visible, csvHref: this.csvLink.href });
  }
}
