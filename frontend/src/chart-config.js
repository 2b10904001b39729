// The Chart.js configuration and the one way the chart is updated, shared by the chart worker
// (OffscreenCanvas, off the main thread) and the in-page fallback. No DOM use here.

/**
 * Chart.js config for the bar chart. `big` picks wall-screen font sizes; `offscreen` drops
 * what needs DOM events (hover, tooltips) and lets us size the canvas ourselves.
 */
export function chartConfig({ big, offscreen, devicePixelRatio = 1 }) {
  const font = { size: big ? 15 : 12 };
  return {
    type: 'bar',
    data: { labels: [], datasets: [] },
    options: {
      animation: false,
      // Our series are plain arrays in label order: Chart.js may skip its checks.
      normalized: true,
      responsive: !offscreen,
      maintainAspectRatio: false,
      devicePixelRatio,
      events: offscreen ? [] : undefined,
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
          grid: { color: 'rgba(255,255,255,0.06)' },
        },
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
          enabled: !offscreen,
          callbacks: {
            label(item) {
              const format = new Intl.NumberFormat(item.chart.options.locale, { maximumFractionDigits: 2 });
              return `${item.dataset.label}: ${item.raw === null ? '–' : format.format(item.raw)}`;
            },
          },
        },
      },
    },
  };
}

/**
 * Puts `frame` ({labels, datasets: [{index, label, colour, data}], title, localeTag}) into
 * `chart` and redraws it without animation. Dataset objects are reused per scrap index so
 * Chart.js keeps its per-dataset state. Returns the milliseconds the update took.
 */
export function drawFrame(chart, frame, cache) {
  const started = performance.now();
  chart.options.locale = frame.localeTag;
  chart.options.plugins.title.text = frame.title;
  const keep = new Set();
  chart.data.datasets = frame.datasets.map(({ index, label, colour, data }) => {
    keep.add(index);
    let dataset = cache.get(index);
    if (!dataset) {
      dataset = { scrapIndex: index, backgroundColor: colour, borderWidth: 0, borderRadius: 3 };
      cache.set(index, dataset);
    }
    dataset.label = label;
    dataset.data = data;
    return dataset;
  });
  for (const index of cache.keys()) if (!keep.has(index)) cache.delete(index);
  chart.data.labels = frame.labels;
  chart.update('none');
  return performance.now() - started;
}
