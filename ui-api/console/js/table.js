// The services table: every node of the window with its figures, sortable by any column
// (click a header, again to reverse), filtered by the search box.

import { h } from './dom.js';
import { count, errorRatio, ms, num, pct } from './format.js';
import { health } from './health.js';
import { matches } from './graph.js';

const COLUMNS = [
  ['name', 'Service', (n) => n.name, false],
  ['namespace', 'Namespace', (n) => n.namespace ?? '', false],
  ['calls', 'Calls', (n) => n.calls, true],
  ['cpm', 'rpm', (n) => n.cpm, true],
  ['errors', 'Errors', (n) => n.errors, true],
  ['error_ratio', 'Error %', (n) => errorRatio(n) ?? -1, true],
  ['p50_ms', 'p50', (n) => n.p50_ms ?? -1, true],
  ['p95_ms', 'p95', (n) => n.p95_ms ?? -1, true],
  ['p99_ms', 'p99', (n) => n.p99_ms ?? -1, true],
  ['apdex', 'Apdex', (n) => n.apdex ?? -1, true],
];

/** Rows sorted as the state says (ties by name), filtered by the search. */
export function sortRows(services, state) {
  const col = COLUMNS.find(([k]) => k === state.sort) ?? COLUMNS[2];
  const key = col[2];
  const dir = state.desc ? -1 : 1;
  const list = state.q === '' ? [...services] : services.filter((n) => matches(n.name, state.q));
  return list.sort((a, b) => {
    const x = key(a);
    const y = key(b);
    if (x < y) return -dir;
    if (x > y) return dir;
    return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  });
}

/** The table of `services` (the API's list) under `state`. */
export function servicesTable(services, state, ctx) {
  const rows = sortRows(services, state);
  const head = COLUMNS.map(([key, label, , numeric]) => {
    const sorted = state.sort === key;
    return h(
      'th',
      { scope: 'col', class: numeric ? 'num' : null, 'aria-sort': sorted ? (state.desc ? 'descending' : 'ascending') : 'none' },
      h('button', { type: 'button', class: 'sort', 'data-sort': key, onclick: () => ctx.set(sorted ? { desc: !state.desc } : { sort: key, desc: numeric }) }, label, sorted ? (state.desc ? ' ▾' : ' ▴') : ''),
    );
  });
  const body = rows.map((n) => {
    const hl = health(n, ctx.thresholds);
    return h(
      'tr',
      { 'data-service': n.name },
      h('td', { class: 'name' }, h('span', { class: 'dot h-' + hl.level, title: hl.reason }), h('button', { type: 'button', class: 'link', onclick: () => ctx.set({ view: 'service', service: n.name }) }, n.name), n.real ? null : h('span', { class: 'muted' }, ` (${n.kind})`)),
      h('td', null, n.namespace ?? ''),
      h('td', { class: 'num' }, count(n.calls)),
      h('td', { class: 'num' }, num(n.cpm)),
      h('td', { class: 'num' }, count(n.errors)),
      h('td', { class: 'num' }, pct(errorRatio(n))),
      h('td', { class: 'num' }, ms(n.p50_ms)),
      h('td', { class: 'num' }, ms(n.p95_ms)),
      h('td', { class: 'num' }, ms(n.p99_ms)),
      h('td', { class: 'num' }, n.apdex === null || n.apdex === undefined ? '—' : n.apdex.toFixed(2)),
    );
  });
  return h(
    'div',
    { class: 'table-wrap' },
    h('p', { class: 'muted' }, `${rows.length} of ${services.length} services${state.q ? ` matching “${state.q}”` : ''}`),
    h('table', { class: 'services' }, h('caption', { class: 'sr-only' }, 'Services over the window'), h('thead', null, h('tr', null, head)), h('tbody', null, body)),
  );
}
