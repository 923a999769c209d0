// The side panel (a service, a collapsed namespace or an edge) and the service page. The
// figures over the whole window come with the topology; series, instances, endpoints and
// each side's view of an edge are read when the panel opens.

import { get } from './api.js';
import { chart, slot, sparkline } from './charts.js';
import { h } from './dom.js';
import { count, ms, num, pct, ppDelta, relDelta, rps, time } from './format.js';
import { edgesOf } from './graph.js';
import { step } from './windows.js';

function figure(label, value, extra, key) {
  return h('div', { class: 'figure', 'data-figure': key }, h('dt', null, label), h('dd', null, value, extra ? h('span', { class: 'delta' }, ' ', extra) : null));
}

/** The figures of a summary: calls, errors, success rate, rpm, p50/p95/p99, apdex. */
export function figures(m, delta = null) {
  return h(
    'dl',
    { class: 'figures' },
    figure('Calls', count(m.calls), null, 'calls'),
    figure('Errors', count(m.errors), delta ? ppDelta(delta.errorRatio.now, delta.errorRatio.before) : null, 'errors'),
    figure('Success', pct(m.success_rate), null, 'success'),
    figure('Rate', num(m.cpm) + ' rpm', delta ? relDelta(delta.cpm.now, delta.cpm.before) : null, 'rpm'),
    figure('p50', ms(m.p50_ms), null, 'p50'),
    figure('p95', ms(m.p95_ms), null, 'p95'),
    figure('p99', ms(m.p99_ms), delta ? relDelta(delta.p99.now, delta.p99.before) : null, 'p99'),
    figure('Apdex', m.apdex === null || m.apdex === undefined ? '—' : m.apdex.toFixed(2), null, 'apdex'),
  );
}

function failed(el, e) {
  if (e.name === 'AbortError') return;
  el.replaceChildren(h('p', { class: 'inline-error', role: 'alert' }, `Could not load: ${e.message}`));
}

function table(headers, rows, caption) {
  return h(
    'table',
    { class: 'list' },
    caption ? h('caption', null, caption) : null,
    h('thead', null, h('tr', null, headers.map((x, i) => h('th', { scope: 'col', class: i ? 'num' : null }, x)))),
    h('tbody', null, rows),
  );
}

function row(name, m, onClick) {
  const first = onClick ? h('button', { type: 'button', class: 'link', onclick: onClick }, name) : name;
  return h('tr', null, h('td', { class: 'name' }, first), h('td', { class: 'num' }, count(m.calls)), h('td', { class: 'num' }, count(m.errors)), h('td', { class: 'num' }, ms(m.p99_ms)));
}

function edgeList(title, list, names, ctx, other) {
  if (list.length === 0) return h('p', { class: 'muted' }, `No ${title.toLowerCase()}.`);
  const sorted = [...list].sort((a, b) => b.calls - a.calls);
  return table(
    [title, 'Calls', 'Errors', 'p99'],
    sorted.map((e) => row(`${names.get(e[other]) ?? e[other]} (${e.protocol})`, e, () => ctx.selectEdge(e))),
  );
}

/**
 * A box that says "Loading…" until `promise` (an API read) settles, then holds what
 * `show(box, answer)` puts in it, or the error.
 */
function later(cls, promise, show) {
  const box = h('div', { class: cls }, h('p', { class: 'muted' }, 'Loading…'));
  promise.then((answer) => show(box, answer)).catch((e) => failed(box, e));
  return box;
}

function seriesParams(ctx, extra) {
  return { ...extra, start: ctx.window.start, end: ctx.window.end, step: step(ctx.window, 60) };
}

function sparklines(ctx, params) {
  const read = get('/api/v1/timeseries', seriesParams(ctx, { ...params, metrics: 'calls,errors,p99_ms' }), ctx.signal);
  return later('sparks', read, (box, answer) => {
    box.replaceChildren();
    for (const [metric, label] of [
      ['calls', 'Calls'],
      ['errors', 'Errors'],
      ['p99_ms', 'p99'],
    ]) {
      const el = slot('spark');
      box.append(h('div', { class: 'spark-row' }, h('span', null, label), el));
      sparkline(el, answer, metric);
    }
  });
}

/** The window's bounds as API parameters. */
function windowParams(ctx) {
  return { start: ctx.window.start, end: ctx.window.end };
}

function endpointsTable(ctx, name) {
  const read = get(`/api/v1/services/${encodeURIComponent(name)}/endpoints`, windowParams(ctx), ctx.signal);
  return later(null, read, (box, answer) => {
    const by = ctx.state.endpoints;
    const key = { calls: (m) => m.calls, errors: (m) => m.errors, p99: (m) => m.p99_ms ?? -1 }[by];
    const list = [...answer.endpoints].sort((a, b) => key(b) - key(a) || (a.name < b.name ? -1 : 1));
    const picker = h(
      'label',
      { class: 'inline' },
      'Top by ',
      h(
        'select',
        { 'aria-label': 'Sort endpoints by', onchange: (ev) => ctx.set({ endpoints: ev.target.value }) },
        ['calls', 'errors', 'p99'].map((v) => h('option', { value: v, selected: v === by }, v)),
      ),
    );
    box.replaceChildren(
      h('div', { class: 'section-head' }, h('h3', null, `Endpoints (${list.length})`), picker),
      list.length ? table(['Endpoint', 'Calls', 'Errors', 'p99'], list.slice(0, ctx.full ? 50 : 10).map((e) => row(e.name, e))) : h('p', { class: 'muted' }, 'No endpoints.'),
    );
  });
}

function instancesTable(ctx, name) {
  const read = get(`/api/v1/services/${encodeURIComponent(name)}/instances`, windowParams(ctx), ctx.signal);
  return later(null, read, (box, answer) => {
    const list = [...answer.instances].sort((a, b) => b.calls - a.calls);
    box.replaceChildren(h('h3', null, `Instances (${list.length})`), list.length ? table(['Instance', 'Calls', 'Errors', 'p99'], list.map((i) => row(i.name || 'unknown', i))) : h('p', { class: 'muted' }, 'No instances reported.'));
  });
}

function fullCharts(ctx, params) {
  const read = get('/api/v1/timeseries', seriesParams(ctx, { ...params, metrics: 'calls,errors,p50_ms,p95_ms,p99_ms' }), ctx.signal);
  return later('charts', read, (box, answer) => {
    const width = Math.max(320, Math.min(900, box.clientWidth || 800));
    const a = slot('chart');
    const b = slot('chart');
    box.replaceChildren(a, b);
    chart(a, answer, ['calls', 'errors'], `Calls and errors per ${step(ctx.window, 60) / 60} min`, width);
    chart(b, answer, ['p50_ms', 'p95_ms', 'p99_ms'], 'Latency', width);
  });
}

/**
 * The panel (or, with `ctx.full`, the page) of node `n`. `ctx`: `window`, `state`,
 * `graph` (drawn), `names`, `full`, and the actions `set`, `selectEdge`, `close`.
 */
export function nodePanel(n, ctx) {
  const { inbound, outbound } = edgesOf(ctx.graph.edges, n.id);
  const head = h(
    'header',
    null,
    h('h2', { id: 'panel-title' }, n.name),
    h('p', { class: 'kind' }, n.kind === 'namespace' ? `namespace, ${n.members} services collapsed` : n.kind + (n.namespace ? ` in ${n.namespace}` : ''), n.change && n.change !== 'kept' ? h('span', { class: 'badge change-' + n.change }, n.change) : null),
    h(
      'div',
      { class: 'actions' },
      n.kind === 'namespace'
        ? h('button', { type: 'button', onclick: () => ctx.expand(n.namespace) }, 'Expand')
        : [
            h('button', { type: 'button', onclick: () => ctx.set({ focus: n.id }) }, 'Focus'),
            ctx.full ? h('button', { type: 'button', onclick: () => ctx.set({ view: 'map' }) }, 'Back to map') : h('button', { type: 'button', onclick: () => ctx.set({ view: 'service' }) }, 'Service page'),
          ],
      ctx.full ? null : h('button', { type: 'button', class: 'close', 'aria-label': 'Close panel', onclick: ctx.close }, '×'),
    ),
  );
  const over = n.change === 'removed' ? `Inbound, in the compared window only (from ${time(ctx.compareWindow.start)})` : 'Inbound, over the window';
  const parts = [head, h('h3', null, over), figures(n, n.delta)];
  if (n.kind !== 'namespace' && n.change !== 'removed') {
    if (ctx.full) parts.push(fullCharts(ctx, { entity: 'service', service: n.id }));
    else parts.push(sparklines(ctx, { entity: 'service', service: n.id }));
    if (n.real) parts.push(instancesTable(ctx, n.id));
    parts.push(endpointsTable(ctx, n.id));
  }
  parts.push(h('h3', null, `Inbound edges (${inbound.length})`), edgeList('From', inbound, ctx.names, ctx, 'source'));
  parts.push(h('h3', null, `Outbound edges (${outbound.length})`), edgeList('To', outbound, ctx.names, ctx, 'target'));
  return h('div', { class: 'panel-body', 'data-node': n.id }, parts);
}

function sideRow(label, a, b, fmt) {
  return h('tr', null, h('th', { scope: 'row' }, label), h('td', { class: 'num' }, a ? fmt(a) : '—'), h('td', { class: 'num' }, b ? fmt(b) : '—'));
}

function sidesTable(edge) {
  const c = edge.client;
  const s = edge.server;
  return h(
    'table',
    { class: 'list sides' },
    h('caption', null, `${edge.protocol}: as each side reported it`),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, ''), h('th', { scope: 'col', class: 'num' }, 'Client'), h('th', { scope: 'col', class: 'num' }, 'Server'))),
    h(
      'tbody',
      null,
      sideRow('Calls', c, s, (m) => count(m.calls)),
      sideRow('Errors', c, s, (m) => count(m.errors)),
      sideRow('Success', c, s, (m) => pct(m.success_rate)),
      sideRow('Rate', c, s, (m) => rps(m.cpm)),
      sideRow('avg', c, s, (m) => ms(m.avg_ms)),
      sideRow('p50', c, s, (m) => ms(m.p50_ms)),
      sideRow('p75', c, s, (m) => ms(m.p75_ms)),
      sideRow('p90', c, s, (m) => ms(m.p90_ms)),
      sideRow('p95', c, s, (m) => ms(m.p95_ms)),
      sideRow('p99', c, s, (m) => ms(m.p99_ms)),
      sideRow('mTLS calls', c, s, (m) => count(m.mtls_calls)),
    ),
  );
}

/** The Grafana edge dashboard's address for an edge over the window. */
export function grafanaEdgeUrl(base, client, server, window) {
  const q = new URLSearchParams({ 'var-client': client, 'var-server': server, from: String(window.start * 1000), to: String(window.end * 1000) });
  return `${base}/d/meshscope-edge/meshscope-edge?${q}`;
}

/** The panel of edge `e` (drawn; a merged namespace edge has no sides to read). */
export function edgePanel(e, ctx) {
  const from = ctx.names.get(e.source) ?? e.source;
  const to = ctx.names.get(e.target) ?? e.target;
  const merged = e.members !== undefined;
  const head = h(
    'header',
    null,
    h('h2', { id: 'panel-title' }, `${from} → ${to}`),
    h('p', { class: 'kind' }, `${e.protocol}${e.mtls ? ', mTLS' : ''}, ${e.telemetry} telemetry`, merged ? `, ${e.members} edges merged` : null, e.change && e.change !== 'kept' ? h('span', { class: 'badge change-' + e.change }, e.change) : null),
    h(
      'div',
      { class: 'actions' },
      ctx.grafana && !merged ? h('a', { href: grafanaEdgeUrl(ctx.grafana, e.source, e.target, ctx.window), target: '_blank', rel: 'noopener noreferrer' }, 'Grafana edge dashboard') : null,
      h('button', { type: 'button', class: 'close', 'aria-label': 'Close panel', onclick: ctx.close }, '×'),
    ),
  );
  const counted = e.change === 'removed' ? `Counted in the compared window only (from ${time(ctx.compareWindow.start)})` : 'Counted (the server side when it reported)';
  const parts = [head, h('h3', null, counted), figures(e, e.delta)];
  if (!merged && e.change !== 'removed') {
    const read = get('/api/v1/edge', { client: e.source, server: e.target, protocol: e.protocol, ...windowParams(ctx) }, ctx.signal);
    parts.push(later(null, read, (box, answer) => box.replaceChildren(...(answer.edges.length ? answer.edges.map(sidesTable) : [h('p', { class: 'muted' }, 'No reports of this edge in the window.')]))));
    parts.push(h('h3', null, 'Over the window'), sparklines(ctx, { entity: 'edge', client: e.source, server: e.target, protocol: e.protocol }));
  }
  return h('div', { class: 'panel-body', 'data-edge': e.id }, parts);
}
