// Draws the bar chart on an OffscreenCanvas in a worker, so Chart.js's layout and drawing
// (the most expensive thing the page does) never block the main thread. The page sends
// frames; each is acknowledged once drawn, so frames never queue up here.

// Served by the gateway from the npm package: works without internet access. The UMD build
// sets `globalThis.Chart` when imported as a module.
import '../vendor/chart.umd.js';
import { chartConfig, drawFrame } from './chart-config.js';

let chart = null;
const datasets = new Map();

self.addEventListener('message', ({ data: message }) => {
  switch (message.type) {
    case 'init': {
      const { canvas, width, height, devicePixelRatio, big } = message;
      canvas.width = Math.round(width * devicePixelRatio);
      canvas.height = Math.round(height * devicePixelRatio);
      chart = new globalThis.Chart(canvas, chartConfig({ big, offscreen: true, devicePixelRatio }));
      chart.resize(width, height);
      break;
    }
    case 'resize':
      if (!chart) break;
      chart.options.devicePixelRatio = message.devicePixelRatio;
      chart.resize(message.width, message.height);
      break;
    case 'draw': {
      if (!chart) break;
      const ms = drawFrame(chart, message.frame, datasets);
      self.postMessage({ type: 'drawn', seq: message.seq, ms });
      break;
    }
    default:
      break;
  }
});
