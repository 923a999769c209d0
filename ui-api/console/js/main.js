// The console's controller: reads the view state from the URL, loads the window's
// topology (and the compared window's) from the API, and draws the map, the services
// table or a service's page, with the side panel of the selection. Every change of the
// view goes through `set`, which writes the URL, so the address always holds the view.

import { ApiError, get, setToken, validToken } from './api.js';
import { diff } from './compare.js';
import { h, fill } from './dom.js';
import { span, time } from './format.js';
import { collapsedSet, namespaces, shape, matches } from './graph.js';
import { layout } from './layout.js';
import { MapView } from './map.js';
import { edgePanel, nodePanel } from './panel.js';
import { sweep } from './charts.js';
import { emptyState } from './setup.js';
import { parse, serialize, splitEdgeId } from './state.js';
import { servicesTable } from './table.js';
import { PRESETS, REFRESH, compareRange, range, refreshMillis } from './windows.js';

const $ = (id) => document.getElementById(id);

const app = {
  state: null,
  status: null,
  clockOffset: 0,
  window: null,
  topology: null,
  previous: null,
  positions: new Map(),
  graph: null,
  timer: null,
  loading: null,
  panelKey: null,
  notice: null,
  loadedAt: null,
  drawn: false,
};

const FETCHING = ['window', 'start', 'end', 'compare'];

/** How soon an empty recent window is read again when auto-refresh is off. */
const EMPTY_RETRY_MS = 5000;

/** Seconds the browser's clock may be off the server's before a window is read again. */
const CLOCK_SKEW = 5;

/** Changes the view: `patch` over the state, the URL written (a new history entry unless `replace`). */
function set(patch, { replace = false } = {}) {
  const before = app.state;
  app.notice = null;
  const next = { ...before, ...patch };
  if ('service' in patch && patch.service !== before.service && !('edge' in patch)) next.edge = null;
  if ('edge' in patch && patch.edge !== null && !('service' in patch)) next.service = null;
  if (next.view === 'service' && next.service === null) next.view = 'map';
  app.state = next;
  const url = location.pathname + serialize(next);
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  if ('refresh' in patch) schedule();
  if (FETCHING.some((k) => k in patch && patch[k] !== before[k])) load();
  else render();
}

function banner(message, { retry = false } = {}) {
  const el = $('banner');
  if (message === null) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  fill(el, h('span', null, message), retry ? h('button', { type: 'button', onclick: () => load() }, 'Retry') : null);
  el.hidden = false;
}

function askToken(message) {
  const dialog = $('token-dialog');
  $('token-message').textContent = message;
  if (dialog.open) return;
  $('token-input').value = '';
  dialog.showModal();
  $('token-input').focus();
}

/** The banner while the console waits for a token, with a way back to the prompt. */
function waitingForToken(message) {
  // No refresh while waiting: each would be refused (and counted) again.
  app.waitingToken = true;
  clearInterval(app.timer);
  fill($('banner'), h('span', null, message), h('button', { type: 'button', onclick: () => askToken('Enter a read token for this meshscope.') }, 'Enter token'));
  $('banner').hidden = false;
}

function failed(e) {
  if (e instanceof ApiError && e.needsToken) {
    waitingForToken('Waiting for a token: reads need one on this server.');
    askToken(`This meshscope needs a read token (${e.message}).`);
    return;
  }
  if (e instanceof ApiError && e.status === 403) {
    waitingForToken(`Token refused: ${e.message}.`);
    askToken(`The token was refused (${e.message}).`);
    return;
  }
  const what = e instanceof ApiError && e.status ? `${e.message} (HTTP ${e.status})` : e.message;
  banner(`Could not load the view: ${what}`, { retry: true });
  if (!app.topology) $('status-line').textContent = 'No data loaded.';
}

async function loadStatus() {
  const before = Date.now() / 1000;
  const status = await get('/api/v1/status');
  const after = Date.now() / 1000;
  app.status = status;
  app.clockOffset = status.now - (before + after) / 2;
}

/** Loads the window (and the compared one) and draws. */
async function load() {
  if (app.loading) app.loading.abort();
  const ctl = new AbortController();
  app.loading = ctl;
  app.loadingSince = Date.now();
  clearTimeout(app.emptyRetry);
  try {
    // The server's clock places the window; the first load asks for the server's status
    // beside the topology and trusts the browser's clock unless the two disagree.
    const status = app.status ? null : loadStatus();
    const offsetUsed = app.clockOffset;
    const now = Date.now() / 1000 + offsetUsed;
    const w = range(app.state, now);
    const other = compareRange(app.state, w);
    const [topology, previous] = await Promise.all([
      get('/api/v1/topology', { start: w.start, end: w.end }, ctl.signal),
      other ? get('/api/v1/topology', { start: other.start, end: other.end }, ctl.signal) : null,
      status,
    ]);
    if (ctl.signal.aborted) return;
    if (status && app.state.window !== 'custom' && Math.abs(app.clockOffset - offsetUsed) > CLOCK_SKEW) {
      app.loading = null;
      load();
      return;
    }
    if (!app.topology) performance.mark('meshscope:topology-loaded');
    app.window = w;
    app.compareWindow = other;
    app.topology = topology;
    app.previous = previous;
    app.loadedAt = Date.now();
    app.panelKey = null;
    banner(app.notice);
    render();
  } catch (e) {
    if (e.name === 'AbortError' || ctl.signal.aborted) return;
    failed(e);
  } finally {
    if (app.loading === ctl) app.loading = null;
  }
}

function schedule() {
  clearInterval(app.timer);
  const every = refreshMillis(app.state.refresh);
  // A tick while a read is still running skips it (a slow read is not cut off by the
  // next), unless that read has hung for two periods.
  if (every > 0 && !app.waitingToken) app.timer = setInterval(() => (app.loading && Date.now() - app.loadingSince < 2 * every) || load(), every);
}

let mapView = null;

function thresholds() {
  const s = app.state;
  return { errWarn: s.errWarn, errCrit: s.errCrit, p99Target: s.p99Target };
}

function syncControls() {
  const s = app.state;
  $('window').value = s.window;
  $('custom-range').hidden = s.window !== 'custom';
  $('refresh').value = s.refresh;
  $('label').value = s.label;
  if (document.activeElement !== $('search')) $('search').value = s.q;
  $('hide-virtual').checked = s.hideVirtual;
  $('compare').value = s.compare === null ? 'off' : s.compare === 'previous' ? 'previous' : 'time';
  $('compare-at').hidden = typeof s.compare !== 'number';
  $('err-warn').value = s.errWarn;
  $('err-crit').value = s.errCrit;
  $('p99-target').value = s.p99Target ?? '';
  for (const [view, id] of [
    ['map', 'tab-map'],
    ['services', 'tab-services'],
  ]) {
    $(id).setAttribute('aria-current', s.view === view || (view === 'map' && s.view === 'service') ? 'page' : 'false');
  }
  if (s.window === 'custom') {
    $('start').value = localInput(s.start);
    $('end').value = localInput(s.end);
  }
  if (typeof s.compare === 'number') $('compare-at').value = localInput(s.compare);
}

function localInput(unix) {
  const d = new Date(unix * 1000 - new Date(unix * 1000).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

function fromLocalInput(v) {
  const t = new Date(v).getTime();
  return Number.isNaN(t) ? null : Math.floor(t / 1000);
}

function windowWords() {
  const s = app.state;
  if (s.window === 'custom') return `${time(s.start)} – ${time(s.end)}`;
  return 'the last ' + span(PRESETS.find(([n]) => n === s.window)[1]);
}

function namespaceMenu(all, collapsed) {
  const list = $('ns-list');
  if (all.length === 0) {
    fill(list, h('p', { class: 'muted' }, 'No namespaces in this window.'));
    return;
  }
  fill(
    list,
    all.map(([ns, n]) =>
      h(
        'label',
        { class: 'check' },
        h('input', {
          type: 'checkbox',
          checked: collapsed.has(ns),
          onchange: (ev) => {
            const next = new Set(collapsed);
            if (ev.target.checked) next.add(ns);
            else next.delete(ns);
            set({ collapse: [...next].sort() });
          },
        }),
        ` ${ns} (${n})`,
      ),
    ),
  );
}

/** The status line, written only when it changes (screen readers announce it). */
function statusLine(text) {
  if ($('status-line').textContent !== text) $('status-line').textContent = text;
}

function render() {
  const s = app.state;
  syncControls();
  if (!app.topology) return;
  const empty = app.topology.nodes.length === 0 && (!app.previous || app.previous.nodes.length === 0);
  $('empty').hidden = !empty;
  if (!empty) clearTimeout(app.emptyRetry);
  $('map-view').hidden = empty || s.view !== 'map';
  $('table-view').hidden = empty || s.view !== 'services';
  $('service-view').hidden = empty || s.view !== 'service';
  if (empty) {
    fill($('empty'), emptyState(app.status, windowWords(), location.hostname));
    // Without auto-refresh, look again soon: the first data is on its way.
    if (refreshMillis(s.refresh) === 0 && s.window !== 'custom') {
      clearTimeout(app.emptyRetry);
      app.emptyRetry = setTimeout(() => load(), EMPTY_RETRY_MS);
    }
    $('panel').hidden = true;
    statusLine(`No calls in this window · updated ${new Date(app.loadedAt).toLocaleTimeString()}`);
    return;
  }
  const shaped = shape(app.topology, s);
  let graph = shaped;
  let changes = '';
  if (app.previous) {
    const before = shape(app.previous, s, { collapsed: shaped.collapsed, focusRequired: shaped.focused });
    graph = diff(shaped, before);
    const c = graph.summary;
    changes = ` · compared with ${time(app.compareWindow.start)}: +${c.nodesAdded}/−${c.nodesRemoved} services, +${c.edgesAdded}/−${c.edgesRemoved} edges`;
  }
  app.graph = graph;
  const names = new Map(graph.nodes.map((n) => [n.id, n.name]));
  namespaceMenu(namespaces(app.topology.nodes), shaped.collapsed);
  $('focus-bar').hidden = s.focus === null;
  if (s.focus !== null) {
    $('focus-name').textContent = s.focus;
    $('depth').value = String(s.depth);
    $('focus-missing').hidden = shaped.focused;
  }
  const matched = s.q ? graph.nodes.filter((n) => matches(n.name, s.q)).length : null;
  statusLine(
    `${graph.nodes.length} nodes · ${graph.edges.length} edges` +
    (shaped.hidden ? ` · ${shaped.hidden} hidden` : '') +
    (shaped.collapsed.size ? ` · ${shaped.collapsed.size} namespaces collapsed` : '') +
    (matched !== null ? ` · ${matched} match “${s.q}”` : '') +
    ` · ${windowWords()}` +
    changes +
    ` · updated ${new Date(app.loadedAt).toLocaleTimeString()}`,
  );

  // The panel first: the map fits the room it leaves.
  renderPanel(graph, names);
  if (s.view === 'map') {
    const t0 = performance.now();
    const fresh = layout(graph.nodes, graph.edges, app.positions);
    for (const [id, p] of fresh) app.positions.set(id, p);
    const t1 = performance.now();
    mapView.render(graph, app.positions, { label: s.label, service: s.service, edge: s.edge, q: s.q, thresholds: thresholds() });
    if (!app.drawn) {
      // The first map on screen, for `meshscope bench console`: marked in the frame after it.
      app.drawn = true;
      const detail = { layoutMs: t1 - t0, drawMs: performance.now() - t1, nodes: graph.nodes.length, edges: graph.edges.length };
      requestAnimationFrame(() => setTimeout(() => performance.mark('meshscope:map-drawn', { detail })));
    }
  } else if (s.view === 'services') {
    // Every service, whatever the map collapses.
    const open = shape(app.topology, s, { collapsed: new Set() });
    const sortFocus = document.activeElement?.dataset?.sort ?? null;
    fill($('table-view'), servicesTable(open.nodes, s, { set, thresholds: thresholds() }));
    if (sortFocus) document.querySelector(`#table-view [data-sort="${sortFocus}"]`)?.focus();
  }
}

function panelCtx(graph, names, full) {
  return {
    window: app.window,
    state: app.state,
    graph,
    names,
    full,
    grafana: app.status?.grafana_url ?? null,
    compareWindow: app.compareWindow,
    signal: app.panelLoads?.signal,
    set,
    selectEdge: (e) => set({ edge: e.id, view: app.state.view === 'service' ? 'map' : app.state.view }),
    close: () => set({ service: null, edge: null }),
    expand: (ns) => collapseNamespace(ns, false, { service: null }),
  };
}

/** The window's whole graph (no focus, nothing collapsed) and its node names, for what the map does not draw. */
function openGraph(s) {
  const graph = shape(app.topology, { ...s, focus: null }, { collapsed: new Set() });
  return { graph, names: new Map(graph.nodes.map((n) => [n.id, n.name])) };
}

/** Collapses (or expands) namespace `ns`, the others staying as they are drawn now. */
function collapseNamespace(ns, collapsed, patch = {}) {
  const now = collapsedSet(app.state, app.topology?.nodes ?? []);
  if (collapsed) now.add(ns);
  else now.delete(ns);
  set({ ...patch, collapse: [...now].sort() });
}

function renderPanel(graph, names) {
  const s = app.state;
  const key = JSON.stringify([s.view, s.service, s.edge, s.endpoints, s.compare, app.loadedAt, s.hideVirtual, s.collapse, s.focus, s.depth]);
  if (key === app.panelKey) return;
  app.panelKey = key;
  // The previous panel's reads are no longer wanted, nor its charts.
  if (app.panelLoads) app.panelLoads.abort();
  app.panelLoads = new AbortController();
  const panel = $('panel');
  if (s.view === 'service') {
    panel.hidden = true;
    panel.replaceChildren();
    // The page lists every edge of the service, whatever the map collapses.
    const open = openGraph(s);
    const n = open.graph.nodes.find((x) => x.id === s.service);
    fill($('service-view'), n ? nodePanel(n, panelCtx(open.graph, open.names, true)) : h('p', { class: 'inline-error', role: 'alert' }, `No service “${s.service}” in this window.`));
    sweep();
    return;
  }
  $('service-view').replaceChildren();
  if (s.view !== 'map' || (s.service === null && s.edge === null)) {
    panel.hidden = true;
    panel.replaceChildren();
    sweep();
    return;
  }
  // What the map does not draw (collapsed, or outside the focus) is still in the window:
  // the panel then reads it from the whole window's graph.
  const pick = (key, id) => {
    const drawn = graph[key].find((x) => x.id === id);
    if (drawn) return drawn;
    const open = openGraph(s);
    const found = open.graph[key].find((x) => x.id === id);
    if (found) ({ graph, names } = open);
    return found;
  };
  let body;
  if (s.edge !== null) {
    const e = pick('edges', s.edge);
    const parts = splitEdgeId(s.edge, graph.edges);
    body = e ? edgePanel(e, panelCtx(graph, names, false)) : h('p', { class: 'inline-error', role: 'alert' }, parts ? `No edge ${parts.client} → ${parts.server} (${parts.protocol}) on the map in this window.` : 'No such edge.');
  } else {
    const n = pick('nodes', s.service);
    body = n ? nodePanel(n, panelCtx(graph, names, false)) : h('p', { class: 'inline-error', role: 'alert' }, `No service “${s.service}” on the map in this window.`);
  }
  fill(panel, body);
  panel.hidden = false;
  sweep();
}

function bindControls() {
  fill($('window'), PRESETS.map(([n]) => h('option', { value: n }, n)), h('option', { value: 'custom' }, 'custom'));
  fill($('refresh'), REFRESH.map(([n]) => h('option', { value: n }, n === 'off' ? 'off' : 'every ' + n)));
  $('window').addEventListener('change', (ev) => {
    const v = ev.target.value;
    if (v === 'custom') {
      const w = app.window ?? range(app.state, Date.now() / 1000 + app.clockOffset);
      set({ window: 'custom', start: w.start, end: w.end });
    } else set({ window: v, start: null, end: null });
  });
  $('custom-range').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const start = fromLocalInput($('start').value);
    const end = fromLocalInput($('end').value);
    if (start === null || end === null || start >= end) {
      banner('The custom window needs a start before its end.');
      return;
    }
    set({ window: 'custom', start, end });
  });
  $('refresh').addEventListener('change', (ev) => set({ refresh: ev.target.value }, { replace: true }));
  $('label').addEventListener('change', (ev) => set({ label: ev.target.value }, { replace: true }));
  $('search').addEventListener('input', (ev) => set({ q: ev.target.value }, { replace: true }));
  $('search').addEventListener('keydown', (ev) => {
    if (ev.key !== 'Enter' || !app.graph) return;
    const hit = app.graph.nodes.find((n) => matches(n.name, app.state.q));
    if (hit) {
      set({ service: hit.id, view: app.state.view === 'services' ? 'services' : 'map' });
      if (mapView && app.state.view === 'map') {
        mapView.centre(hit.id);
        mapView.focusNode(hit.id);
      }
    }
  });
  $('hide-virtual').addEventListener('change', (ev) => set({ hideVirtual: ev.target.checked }));
  $('compare').addEventListener('change', (ev) => {
    const v = ev.target.value;
    if (v === 'off') set({ compare: null });
    else if (v === 'previous') set({ compare: 'previous' });
    else {
      const w = app.window ?? range(app.state, Date.now() / 1000 + app.clockOffset);
      set({ compare: w.start - 86400 });
    }
  });
  $('compare-at').addEventListener('change', (ev) => {
    const t = fromLocalInput(ev.target.value);
    if (t !== null) set({ compare: t });
  });
  $('tab-map').addEventListener('click', (ev) => {
    ev.preventDefault();
    set({ view: 'map' });
  });
  $('tab-services').addEventListener('click', (ev) => {
    ev.preventDefault();
    set({ view: 'services' });
  });
  $('depth').addEventListener('change', (ev) => set({ depth: Number(ev.target.value) }));
  $('unfocus').addEventListener('click', () => set({ focus: null, depth: 1 }));
  $('ns-collapse-all').addEventListener('click', () => set({ collapse: namespaces(app.topology?.nodes ?? []).map(([ns]) => ns) }));
  $('ns-expand-all').addEventListener('click', () => set({ collapse: [] }));
  // Bounds as the address accepts them (state.js), so a link made here opens as it was.
  for (const [id, key, nullable, max] of [
    ['err-warn', 'errWarn', false, 100],
    ['err-crit', 'errCrit', false, 100],
    ['p99-target', 'p99Target', true, 3_600_000],
  ]) {
    $(id).addEventListener('change', (ev) => {
      const v = ev.target.value.trim();
      if (v === '' && nullable) set({ [key]: null }, { replace: true });
      else if (v !== '' && Number.isFinite(Number(v))) set({ [key]: Number(Math.min(max, Math.max(0, Number(v))).toFixed(4)) }, { replace: true });
      else syncControls();
    });
  }
  $('zoom-in').addEventListener('click', () => mapView.zoomBy(1.25));
  $('zoom-out').addEventListener('click', () => mapView.zoomBy(0.8));
  $('zoom-fit').addEventListener('click', () => mapView.fit());
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token-input').value.trim();
    if (!validToken(t)) {
      $('token-message').textContent = 'A token is visible ASCII characters only (no spaces); check what was pasted.';
      return;
    }
    setToken(t);
    app.waitingToken = false;
    $('token-dialog').close();
    banner(null);
    app.status = null;
    schedule();
    load();
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key === '/' && !['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement?.tagName)) {
      ev.preventDefault();
      $('search').focus();
    }
  });
  window.addEventListener('popstate', () => {
    const before = app.state;
    app.state = parse(location.search).state;
    schedule();
    if (FETCHING.some((k) => before[k] !== app.state[k])) load();
    else render();
  });
}

function start() {
  const { state, problems } = parse(location.search);
  app.state = state;
  bindControls();
  mapView = new MapView($('map'), {
    onSelectNode: (n) => set({ service: n.id, edge: null }),
    onSelectEdge: (e) => set({ edge: e.id, service: null }),
    onClear: () => {
      if (app.state.service !== null || app.state.edge !== null) set({ service: null, edge: null });
    },
    onCollapse: (ns) => collapseNamespace(ns, true),
  });
  // Said until the next change of view: what of the address was not understood.
  app.notice = problems.length ? `Ignored in the address: ${problems.join(', ')}` : null;
  banner(app.notice);
  syncControls();
  schedule();
  load();
}

start();
