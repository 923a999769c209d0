// The view state and its URL form. Everything a user sees is decided by this state, and
// the URL holds all of it, so a link opens the same view. Pure: no DOM.

import { PRESETS, REFRESH } from './windows.js';

export const VIEWS = ['map', 'services', 'service'];
export const LABELS = ['rate', 'errors', 'p50', 'p95', 'p99', 'bytes', 'none'];
export const SORTS = ['name', 'namespace', 'calls', 'cpm', 'errors', 'error_ratio', 'p50_ms', 'p95_ms', 'p99_ms', 'apdex'];
export const ENDPOINT_SORTS = ['calls', 'errors', 'p99'];

/** The state of a fresh console. */
export function defaults() {
  return {
    view: 'map',
    window: '15m',
    start: null,
    end: null,
    refresh: 'off',
    service: null,
    edge: null,
    focus: null,
    depth: 1,
    label: 'rate',
    q: '',
    hideVirtual: false,
    collapse: null, // null: automatic (namespaces collapse in very large meshes); [] none
    compare: null, // null: off; 'previous'; a unix time the other window starts at
    sort: 'calls',
    desc: true,
    endpoints: 'calls',
    errWarn: 0, // percent of calls failed above which a node is degraded
    errCrit: 10, // … and failing
    p99Target: null, // ms; a p99 above it degrades a node
  };
}

const MAX_NAME = 1024;

function name(v) {
  if (v === null || v === '' || v.length > MAX_NAME) return null;
  return v;
}

function number(v, min, max) {
  if (v === null || v === '' || !/^-?\d+(\.\d+)?$/.test(v)) return null;
  const n = Number(v);
  return n >= min && n <= max ? n : null;
}

function oneOf(v, list) {
  return list.includes(v) ? v : null;
}

/**
 * The state a query string names. Values that are not understood are ignored (the
 * default stands) and listed in `problems`, so the console can say so.
 */
export function parse(search) {
  const p = new URLSearchParams(search);
  const s = defaults();
  const problems = [];
  const take = (key, value, set) => {
    if (!p.has(key)) return;
    if (value === null) problems.push(`${key}=${p.get(key)}`);
    else set(value);
  };
  take('view', oneOf(p.get('view'), VIEWS), (v) => (s.view = v));
  take('window', oneOf(p.get('window'), [...PRESETS.map(([n]) => n), 'custom']), (v) => (s.window = v));
  take('start', number(p.get('start'), 0, 253402300799), (v) => (s.start = v));
  take('end', number(p.get('end'), 0, 253402300799), (v) => (s.end = v));
  if (s.start !== null && s.end !== null && !p.has('window')) s.window = 'custom';
  if (s.window === 'custom' && (s.start === null || s.end === null || s.start >= s.end)) {
    problems.push('window=custom needs start < end');
    s.window = '15m';
    s.start = s.end = null;
  }
  if (s.window !== 'custom') {
    if (s.start !== null || s.end !== null) problems.push(`start and end with window=${s.window}`);
    s.start = s.end = null;
  }
  take('refresh', oneOf(p.get('refresh'), REFRESH.map(([n]) => n)), (v) => (s.refresh = v));
  take('service', name(p.get('service')), (v) => (s.service = v));
  take('edge', name(p.get('edge')), (v) => (s.edge = v));
  take('focus', name(p.get('focus')), (v) => (s.focus = v));
  take('depth', number(p.get('depth'), 1, 10), (v) => (s.depth = Math.floor(v)));
  take('label', oneOf(p.get('label'), LABELS), (v) => (s.label = v));
  if (p.has('q')) s.q = (p.get('q') ?? '').slice(0, MAX_NAME);
  take('virtual', oneOf(p.get('virtual'), ['show', 'hide']), (v) => (s.hideVirtual = v === 'hide'));
  if (p.has('collapse')) s.collapse = p.getAll('collapse').filter((v) => v !== '' && v.length <= MAX_NAME);
  take('compare', p.get('compare') === 'previous' ? 'previous' : number(p.get('compare'), 0, 253402300799), (v) => (s.compare = v));
  take('sort', oneOf(p.get('sort'), SORTS), (v) => (s.sort = v));
  take('order', oneOf(p.get('order'), ['asc', 'desc']), (v) => (s.desc = v === 'desc'));
  take('endpoints', oneOf(p.get('endpoints'), ENDPOINT_SORTS), (v) => (s.endpoints = v));
  take('err_warn', number(p.get('err_warn'), 0, 100), (v) => (s.errWarn = v));
  take('err_crit', number(p.get('err_crit'), 0, 100), (v) => (s.errCrit = v));
  take('p99_target', number(p.get('p99_target'), 0, 3_600_000), (v) => (s.p99Target = v));
  if (s.view === 'service' && s.service === null) {
    problems.push('view=service needs service');
    s.view = 'map';
  }
  return { state: s, problems };
}

/** The query string of a state: only what differs from the defaults, in a fixed order. */
export function serialize(s) {
  const d = defaults();
  const p = new URLSearchParams();
  if (s.view !== d.view) p.set('view', s.view);
  if (s.window !== d.window) p.set('window', s.window);
  if (s.window === 'custom') {
    p.set('start', String(s.start));
    p.set('end', String(s.end));
  }
  if (s.refresh !== d.refresh) p.set('refresh', s.refresh);
  if (s.service !== null) p.set('service', s.service);
  if (s.edge !== null) p.set('edge', s.edge);
  if (s.focus !== null) {
    p.set('focus', s.focus);
    if (s.depth !== d.depth) p.set('depth', String(s.depth));
  }
  if (s.label !== d.label) p.set('label', s.label);
  if (s.q !== '') p.set('q', s.q);
  if (s.hideVirtual) p.set('virtual', 'hide');
  if (s.collapse !== null) {
    if (s.collapse.length === 0) p.append('collapse', '');
    for (const ns of s.collapse) p.append('collapse', ns);
  }
  if (s.compare !== null) p.set('compare', String(s.compare));
  if (s.sort !== d.sort) p.set('sort', s.sort);
  if (s.desc !== d.desc) p.set('order', s.desc ? 'desc' : 'asc');
  if (s.endpoints !== d.endpoints) p.set('endpoints', s.endpoints);
  if (s.errWarn !== d.errWarn) p.set('err_warn', String(s.errWarn));
  if (s.errCrit !== d.errCrit) p.set('err_crit', String(s.errCrit));
  if (s.p99Target !== null) p.set('p99_target', String(s.p99Target));
  const q = p.toString();
  return q === '' ? '' : '?' + q;
}

/** An edge's id as the API gives it: `client|server|protocol`. */
export function edgeId(client, server, protocol) {
  return `${client}|${server}|${protocol}`;
}

/**
 * The parts of an edge id. Service names may hold `|`, protocols never do, so the
 * protocol is after the last `|`; client and server are split where the id's edge list
 * says (`known`), else at the first `|`.
 */
export function splitEdgeId(id, known = []) {
  const hit = known.find((e) => e.id === id);
  if (hit) return { client: hit.source, server: hit.target, protocol: hit.protocol };
  const last = id.lastIndexOf('|');
  const first = id.indexOf('|');
  if (first < 0 || last === first) return null;
  return { client: id.slice(0, first), server: id.slice(first + 1, last), protocol: id.slice(last + 1) };
}
