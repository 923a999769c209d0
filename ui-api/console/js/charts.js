// Charts over time with the vendored uPlot (the page's global `uPlot`): sparklines in the
// side panel, full charts on a service's page. Series come from
// `/api/v1/timeseries?metrics=…` (columns over every step, `null` where nothing).

import { h } from './dom.js';
import { ms, num } from './format.js';

const COLOURS = {
  calls: '#3d7bd9',
  cpm: '#3d7bd9',
  errors: '#d9453d',
  p50_ms: '#4aa564',
  p95_ms: '#d99a3d',
  p99_ms: '#9b59b6',
};

const LABELS = { calls: 'calls', cpm: 'calls/min', errors: 'errors', p50_ms: 'p50', p95_ms: 'p95', p99_ms: 'p99' };

/** Charts on the page: uPlot listens on `window`, so a chart taken off the page must be destroyed. */
const live = new Set();

function make(opts, data, el) {
  if (!globalThis.uPlot || !el.isConnected) return null;
  const plot = new globalThis.uPlot(opts, data, el);
  live.add(plot);
  return plot;
}

/** Destroys the charts no longer on the page (call after replacing what held them). */
export function sweep() {
  for (const plot of live) {
    if (!plot.root.isConnected) {
      plot.destroy();
      live.delete(plot);
    }
  }
}

function columns(answer, metrics) {
  const data = [answer.times];
  for (const m of metrics) {
    const col = answer.series.find((c) => c.metric === m);
    data.push(col ? col.values : answer.times.map(() => null));
  }
  return data;
}

/** A small chart of one metric without axes: `el` gets it, `title` names it for readers. */
export function sparkline(el, answer, metric, width = 240, height = 34) {
  const data = columns(answer, [metric]);
  const values = data[1].filter((v) => v !== null);
  const last = values.length ? values[values.length - 1] : null;
  el.setAttribute('role', 'img');
  el.setAttribute('aria-label', `${LABELS[metric] ?? metric} over the window, last ${metric.endsWith('_ms') ? ms(last) : num(last)}`);
  return make(
    {
      width,
      height,
      class: 'spark',
      legend: { show: false },
      cursor: { show: false },
      select: { show: false },
      axes: [{ show: false }, { show: false }],
      // from zero, with room above the peak, so a flat line at zero stays visible
      scales: { x: { time: true }, y: { range: (_, min, max) => [Math.min(0, min ?? 0), max > 0 ? max * 1.15 : 1] } },
      series: [{}, { stroke: COLOURS[metric] ?? '#555', width: 1.5, fill: (COLOURS[metric] ?? '#555') + '22', spanGaps: false }],
    },
    data,
    el,
  );
}

/** A full chart of several metrics sharing a y axis, with a legend. */
export function chart(el, answer, metrics, title, width, height = 200) {
  el.setAttribute('role', 'img');
  el.setAttribute('aria-label', title);
  const data = columns(answer, metrics);
  const isMs = metrics.every((m) => m.endsWith('_ms'));
  return make(
    {
      title,
      width,
      height,
      scales: { x: { time: true } },
      axes: [{}, { values: (_, ticks) => ticks.map((t) => (isMs ? ms(t) : num(t))), size: 60 }],
      series: [{}, ...metrics.map((m) => ({ label: LABELS[m] ?? m, stroke: COLOURS[m] ?? '#555', width: 1.5, value: (_, v) => (isMs ? ms(v) : num(v)) }))],
    },
    data,
    el,
  );
}

/** A placeholder element a chart goes into. */
export function slot(cls) {
  return h('div', { class: cls });
}
