// The map: an SVG of the shaped graph at the layout's positions. Every node and edge
// carries its name as text (`<text>`, `<title>`, `aria-label`), so screen readers and
// tests read what the map shows. Nodes are reachable with Tab, the arrow keys move to the
// nearest node that way, Enter selects, Escape clears; the wheel or +/− zoom, dragging
// the background pans, 0 fits the graph to the view.

import { s } from './dom.js';
import { bytes, count, ms, pct, ppDelta, relDelta, rps, errorRatio } from './format.js';
import { health } from './health.js';
import { matches } from './graph.js';

/** Room kept free at the bottom of the map for the legend, in pixels. */
const LEGEND_ROOM = 80;

/** The closest a fit zooms in: a small graph is not blown up until its names crowd. */
const MAX_FIT_ZOOM = 1.4;

/** The zoom from which edge labels show (farther, they would only blur the map). */
const LABELS_FROM_ZOOM = 0.8;

/** Up to this many edges, each gets a wide invisible outline that is easier to click. */
const HIT_PATHS_UP_TO = 600;

const RADIUS = { service: 14, namespace: 24, unknown: 12, user: 12, database: 13, external: 12 };

function shape(kind) {
  switch (kind) {
    case 'namespace':
      return s('rect', { class: 'shape', x: -26, y: -17, width: 52, height: 34, rx: 8 });
    case 'unknown':
      return s('polygon', { class: 'shape', points: '0,-13 13,0 0,13 -13,0' });
    case 'user':
      return s('path', { class: 'shape', d: 'M-11,12 C-11,2 -6,-1 0,-1 C6,-1 11,2 11,12 Z M0,-3 A6,6 0 1,1 0.01,-3 Z' });
    case 'database':
      return s('path', { class: 'shape', d: 'M-11,-8 A11,4 0 0,1 11,-8 V8 A11,4 0 0,1 -11,8 Z M-11,-8 A11,4 0 0,0 11,-8' });
    case 'external':
      return s('polygon', { class: 'shape', points: '-12,0 -6,-11 6,-11 12,0 6,11 -6,11' });
    default:
      return s('circle', { class: 'shape', r: 14 });
  }
}

/** A small padlock at (x, y): the edge's calls are mutual TLS. */
function padlock(x, y) {
  return s(
    'g',
    { class: 'lock', transform: `translate(${x.toFixed(1)},${y.toFixed(1)})` },
    s('title', null, 'mTLS'),
    s('path', { class: 'shackle', d: 'M-2.5,-1 V-3 A2.5,2.5 0 0,1 2.5,-3 V-1' }),
    s('rect', { class: 'body', x: -3.5, y: -1, width: 7, height: 5.5, rx: 1 }),
  );
}

/** The label an edge shows for the chosen figure (with its change, when comparing). */
export function edgeLabel(e, label) {
  if (e.change === 'kept' && e.delta) {
    const d = e.delta;
    switch (label) {
      case 'rate':
        return `${rps(e.cpm)} ${relDelta(d.cpm.now, d.cpm.before)}`.trim();
      case 'errors':
        return `${pct(errorRatio(e))} ${ppDelta(d.errorRatio.now, d.errorRatio.before)}`.trim();
      case 'p99':
        return `${ms(e.p99_ms)} ${relDelta(d.p99.now, d.p99.before)}`.trim();
      default:
        break;
    }
  }
  switch (label) {
    case 'rate':
      return rps(e.cpm);
    case 'errors':
      return pct(errorRatio(e));
    case 'p50':
      return ms(e.p50_ms);
    case 'p95':
      return ms(e.p95_ms);
    case 'p99':
      return ms(e.p99_ms);
    case 'bytes':
      return bytes((e.bytes_sent ?? 0) + (e.bytes_received ?? 0));
    default:
      return '';
  }
}

function nodeSummary(n, h) {
  const what = n.kind === 'namespace' ? `namespace ${n.name} (${n.members} services, collapsed)` : `${n.name} (${n.kind})`;
  const change = n.change && n.change !== 'kept' ? `, ${n.change}` : '';
  return `${what}: ${count(n.calls)} calls, ${count(n.errors)} errors, ${h.reason}${change}`;
}

function edgeSummary(e, names) {
  const change = e.change && e.change !== 'kept' ? `, ${e.change}` : '';
  return `${names.get(e.source) ?? e.source} → ${names.get(e.target) ?? e.target} (${e.protocol}${e.mtls ? ', mTLS' : ''}, ${e.telemetry}): ${count(e.calls)} calls, ${count(e.errors)} errors${change}`;
}

export class MapView {
  /** `container`: the (untransformed) box the map fills; sizes are read from it. */
  constructor(container, handlers) {
    this.container = container;
    this.handlers = handlers;
    this.view = { k: 1, x: 0, y: 0 };
    this.positions = new Map();
    this.fitted = false;
    this.svg = s(
      'svg',
      { class: 'map', role: 'group', 'aria-label': 'Service map', tabindex: '-1' },
      s(
        'defs',
        null,
        s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' })),
      ),
    );
    this.viewport = s('g', { class: 'viewport' });
    this.groupLayer = s('g', { class: 'groups' });
    this.edgeLayer = s('g', { class: 'edges' });
    this.nodeLayer = s('g', { class: 'nodes' });
    this.viewport.append(this.groupLayer, this.edgeLayer, this.nodeLayer);
    this.svg.append(this.viewport);
    container.append(this.svg);
    this.nodeById = new Map();
    this.edgeById = new Map();
    this.bindPanZoom();
    this.bindSelection();
    this.bindTooltips();
  }

  /** One listener for all nodes and one for all edges (thousands of each in a large mesh). */
  bindSelection() {
    this.nodeLayer.addEventListener('click', (ev) => {
      const n = this.nodeById.get(ev.target.closest('.node')?.dataset.id);
      if (!n) return;
      ev.stopPropagation();
      this.handlers.onSelectNode(n);
    });
    this.nodeLayer.addEventListener('keydown', (ev) => {
      const n = this.nodeById.get(ev.target.closest('.node')?.dataset.id);
      if (!n) return;
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        this.handlers.onSelectNode(n);
      } else if (ev.key === 'Escape') {
        this.handlers.onClear();
      } else if (ev.key.startsWith('Arrow')) {
        ev.preventDefault();
        const next = this.nearest(n.id, ev.key);
        if (next) {
          this.focusNode(next);
          this.centreIfHidden(next);
        }
      } else {
        this.zoomKeys(ev);
      }
    });
    this.edgeLayer.addEventListener('click', (ev) => {
      const e = this.edgeById.get(ev.target.closest('.edge')?.dataset.id);
      if (!e) return;
      ev.stopPropagation();
      this.handlers.onSelectEdge(e);
    });
    this.edgeLayer.addEventListener('keydown', (ev) => {
      const e = this.edgeById.get(ev.target.closest('.edge')?.dataset.id);
      if (!e) return;
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        this.handlers.onSelectEdge(e);
      } else if (ev.key === 'Escape') {
        this.handlers.onClear();
      }
    });
  }

  /**
   * Tooltips: a `<title>` made from the element's `aria-label` when the pointer first
   * rests on it (thousands of them up front would cost the first drawing).
   */
  bindTooltips() {
    this.svg.addEventListener('pointerover', (ev) => {
      const g = ev.target.closest?.('.node, .edge');
      if (!g || g.querySelector(':scope > title')) return;
      g.prepend(s('title', null, g.getAttribute('aria-label')));
    });
  }

  bindPanZoom() {
    let drag = null;
    this.svg.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0 || ev.target.closest('.node, .edge, .ns-label')) return;
      drag = { x: ev.clientX, y: ev.clientY, vx: this.view.x, vy: this.view.y, moved: false };
      this.svg.setPointerCapture(ev.pointerId);
    });
    this.svg.addEventListener('pointermove', (ev) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      this.view.x = drag.vx + dx;
      this.view.y = drag.vy + dy;
      this.apply();
    });
    this.svg.addEventListener('pointerup', (ev) => {
      if (drag && !drag.moved && !ev.target.closest('.node, .edge, .ns-label')) this.handlers.onClear();
      drag = null;
    });
    this.svg.addEventListener(
      'wheel',
      (ev) => {
        ev.preventDefault();
        const r = this.container.getBoundingClientRect();
        this.zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
      },
      { passive: false },
    );
    this.svg.addEventListener('keydown', (ev) => {
      if (ev.target.closest('.node')) return;
      this.zoomKeys(ev);
    });
  }

  zoomKeys(ev) {
    if (ev.key === '+' || ev.key === '=') this.zoomBy(1.25);
    else if (ev.key === '-' || ev.key === '_') this.zoomBy(0.8);
    else if (ev.key === '0') this.fit();
    else return false;
    ev.preventDefault();
    return true;
  }

  zoomAt(f, cx, cy) {
    const k = Math.min(8, Math.max(0.05, this.view.k * f));
    const g = k / this.view.k;
    this.view.x = cx - (cx - this.view.x) * g;
    this.view.y = cy - (cy - this.view.y) * g;
    this.view.k = k;
    this.apply();
  }

  zoomBy(f) {
    const r = this.container.getBoundingClientRect();
    this.zoomAt(f, r.width / 2, r.height / 2);
  }

  /**
   * Shows the current view. While the user pans or zooms, only the whole picture moves (a
   * CSS transform of the drawing, which the browser composites without redrawing thousands
   * of shapes); once they pause, the view is committed to the drawing itself.
   */
  apply() {
    const c = this.committed;
    if (!c) {
      this.commit();
      return;
    }
    const g = this.view.k / c.k;
    const dx = this.view.x - c.x * g;
    const dy = this.view.y - c.y * g;
    this.svg.style.transform = `translate(${dx.toFixed(1)}px,${dy.toFixed(1)}px) scale(${g.toFixed(4)})`;
    clearTimeout(this.settle);
    this.settle = setTimeout(() => this.commit(), 150);
  }

  commit() {
    clearTimeout(this.settle);
    const { k, x, y } = this.view;
    this.svg.style.transform = '';
    this.viewport.setAttribute('transform', `translate(${x.toFixed(1)},${y.toFixed(1)}) scale(${k.toFixed(4)})`);
    this.svg.classList.toggle('labels-off', k < LABELS_FROM_ZOOM);
    this.committed = { ...this.view };
    // A large graph drawn from afar has no edge labels yet: draw again with them.
    if (!this.hits && k >= LABELS_FROM_ZOOM && this.last && !this.last.labelled) this.render(...this.last.args);
  }

  /** Fits the drawn graph into the view. */
  fit() {
    const v = this.fitView();
    if (!v) return;
    this.view = v;
    this.commit();
  }

  /** The view that fits the graph at `this.positions` into the box, or `null`. */
  fitView() {
    const pts = [...this.positions.values()];
    const r = this.container.getBoundingClientRect();
    if (pts.length === 0 || r.width === 0) return null;
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const p of pts) {
      x0 = Math.min(x0, p.x);
      x1 = Math.max(x1, p.x);
      y0 = Math.min(y0, p.y);
      y1 = Math.max(y1, p.y);
    }
    [x0, x1, y0, y1] = [x0 - 60, x1 + 60, y0 - 50, y1 + 50];
    // The legend covers the bottom of the box: the graph fits above it.
    const height = Math.max(r.height - LEGEND_ROOM, r.height / 2);
    const k = Math.min(MAX_FIT_ZOOM, r.width / (x1 - x0), height / (y1 - y0));
    return { k, x: r.width / 2 - ((x0 + x1) / 2) * k, y: height / 2 - ((y0 + y1) / 2) * k };
  }

  /** Centres node `id` in the view. */
  centre(id) {
    const p = this.positions.get(id);
    if (!p) return;
    const r = this.container.getBoundingClientRect();
    this.view.x = r.width / 2 - p.x * this.view.k;
    this.view.y = r.height / 2 - p.y * this.view.k;
    this.apply();
  }

  /** The node nearest `from` in an arrow key's direction. */
  nearest(from, key) {
    const p = this.positions.get(from);
    if (!p) return null;
    const dir = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[key];
    let best = null;
    let bestScore = Infinity;
    for (const [id, q] of this.positions) {
      if (id === from || !this.drawn.has(id)) continue;
      const dx = q.x - p.x;
      const dy = q.y - p.y;
      const along = dx * dir[0] + dy * dir[1];
      if (along <= 0) continue;
      const across = Math.abs(dx * dir[1] - dy * dir[0]);
      const score = along + 2 * across;
      if (score < bestScore) {
        bestScore = score;
        best = id;
      }
    }
    return best;
  }

  /**
   * Draws `graph` (`{nodes, edges}`, nodes and edges maybe marked by compare) at
   * `positions`. `opts`: `label`, `service` and `edge` (the selection), `q` (search),
   * `thresholds`.
   */
  render(graph, positions, opts) {
    // What has the keyboard focus, to give it back once redrawn.
    const held = document.activeElement?.closest?.('.node, .edge, .ns-label');
    const focused = held ? { cls: held.classList.contains('node') ? 'node' : held.classList.contains('edge') ? 'edge' : 'ns-label', key: held.dataset.id ?? held.dataset.ns } : null;
    this.positions = positions;
    if (!this.fitted) {
      // The first drawing fits the graph: known before drawing, so labels are made or not for it.
      this.fitted = true;
      this.view = this.fitView() ?? this.view;
    }
    this.last = { args: [graph, positions, opts], labelled: graph.edges.length <= HIT_PATHS_UP_TO || this.view.k >= LABELS_FROM_ZOOM };
    this.nodeById = new Map(graph.nodes.map((n) => [n.id, n]));
    this.edgeById = new Map(graph.edges.map((e) => [e.id, e]));
    this.hits = graph.edges.length <= HIT_PATHS_UP_TO;
    this.drawn = new Set(graph.nodes.map((n) => n.id));
    const names = new Map(graph.nodes.map((n) => [n.id, n.name]));
    const selected = opts.service;
    const near = new Set();
    if (selected) {
      for (const e of graph.edges) {
        if (e.source === selected) near.add(e.target);
        if (e.target === selected) near.add(e.source);
      }
    }
    // Parallel edges between two nodes (two protocols, or both directions) are curved apart.
    const pairs = new Map();
    for (const e of graph.edges) {
      const key = e.source < e.target ? `${e.source}\u0000${e.target}` : `${e.target}\u0000${e.source}`;
      if (!pairs.has(key)) pairs.set(key, []);
      pairs.get(key).push(e);
    }
    const edgeEls = [];
    for (const list of pairs.values()) {
      list.forEach((e, i) => {
        const a = positions.get(e.source);
        const b = positions.get(e.target);
        if (!a || !b) return;
        const forward = e.source < e.target ? 1 : -1;
        const offset = list.length === 1 ? 0 : (i - (list.length - 1) / 2) * 26 * forward;
        edgeEls.push(this.edge(e, a, b, offset, names, opts, selected));
      });
    }
    const nodeEls = graph.nodes.map((n) => this.node(n, positions.get(n.id), opts, selected, near));
    this.groupLayer.replaceChildren(...this.groups(graph.nodes, positions));
    this.edgeLayer.replaceChildren(...edgeEls.filter(Boolean));
    this.nodeLayer.replaceChildren(...nodeEls.filter(Boolean));
    this.svg.classList.toggle('has-selection', Boolean(selected || opts.edge));
    this.svg.classList.toggle('searching', opts.q !== '');
    this.commit();
    if (focused) this.refocus(focused);
  }

  /**
   * A box behind each namespace's services, named, when the map shows more than one
   * namespace; its name collapses it.
   */
  groups(nodes, positions) {
    const boxes = new Map();
    for (const n of nodes) {
      if (n.kind === 'namespace' || n.namespace === null || n.namespace === undefined) continue;
      const p = positions.get(n.id);
      if (!p) continue;
      const b = boxes.get(n.namespace) ?? { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity, n: 0 };
      b.x0 = Math.min(b.x0, p.x);
      b.y0 = Math.min(b.y0, p.y);
      b.x1 = Math.max(b.x1, p.x);
      b.y1 = Math.max(b.y1, p.y);
      b.n += 1;
      boxes.set(n.namespace, b);
    }
    const namespacesShown = new Set(nodes.filter((n) => n.namespace !== null && n.namespace !== undefined).map((n) => n.namespace));
    if (namespacesShown.size < 2) return [];
    const out = [];
    for (const [ns, b] of [...boxes.entries()].sort((a, c) => (a[0] < c[0] ? -1 : 1))) {
      const pad = 34;
      const x = b.x0 - pad;
      const y = b.y0 - pad - 8;
      const label = s('text', { class: 'ns-label', x: x + 8, y: y + 14, 'data-ns': ns, role: 'button', 'aria-label': `Collapse namespace ${ns}` }, s('title', null, `namespace ${ns}: ${b.n} services shown; click to collapse`), ns);
      label.setAttribute('tabindex', '0');
      label.addEventListener('click', (ev) => {
        ev.stopPropagation();
        this.handlers.onCollapse?.(ns);
      });
      label.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          this.handlers.onCollapse?.(ns);
        }
      });
      out.push(s('g', { class: 'ns-box', 'data-ns': ns }, s('rect', { x, y, width: b.x1 - b.x0 + 2 * pad, height: b.y1 - b.y0 + 2 * pad + 22, rx: 14 }), label));
    }
    return out;
  }

  /** Gives the keyboard focus back to the element of that kind and key, if drawn. */
  refocus({ cls, key }) {
    const layer = cls === 'node' ? this.nodeLayer : cls === 'edge' ? this.edgeLayer : this.groupLayer;
    for (const el of layer.querySelectorAll('.' + cls)) {
      if ((el.dataset.id ?? el.dataset.ns) === key) {
        el.focus({ preventScroll: true });
        return;
      }
    }
  }

  focusNode(id) {
    for (const el of this.nodeLayer.children) {
      if (el.dataset.id === id) {
        el.focus({ preventScroll: true });
        return true;
      }
    }
    return false;
  }

  node(n, p, opts, selected, near) {
    if (!p) return null;
    const h = health(n, opts.thresholds);
    const cls = [
      'node',
      'kind-' + n.kind,
      'h-' + h.level,
      n.change ? 'change-' + n.change : null,
      n.id === selected ? 'selected' : null,
      near.has(n.id) ? 'near' : null,
      matches(n.name, opts.q) ? 'match' : null,
    ];
    const summary = nodeSummary(n, h);
    const g = s(
      'g',
      { class: cls, transform: `translate(${p.x},${p.y})`, tabindex: '0', role: 'button', 'aria-label': summary, 'data-id': n.id },
      shape(n.kind),
      n.kind === 'namespace' ? s('text', { class: 'count', y: 4 }, String(n.members)) : null,
      s('text', { class: 'name', y: (RADIUS[n.kind] ?? 14) + 13 }, n.name),
    );
    return g;
  }

  centreIfHidden(id) {
    const p = this.positions.get(id);
    const r = this.container.getBoundingClientRect();
    const x = p.x * this.view.k + this.view.x;
    const y = p.y * this.view.k + this.view.y;
    if (x < 20 || y < 20 || x > r.width - 20 || y > r.height - 20) this.centre(id);
  }

  /**
   * Where an edge goes: its path `d`, where its label sits, and where its padlock does
   * (none on a loop). A service calling itself gets a loop above its node; parallel edges
   * are curved apart by `offset`.
   */
  geometry(e, a, b, offset) {
    if (e.source === e.target) {
      const r = RADIUS[this.kindOf(e.source)] ?? 14;
      const [x, y] = [a.x, a.y - r];
      const d = `M${(x - 6).toFixed(1)},${y.toFixed(1)} C${(x - 30).toFixed(1)},${(y - 42).toFixed(1)} ${(x + 30).toFixed(1)},${(y - 42).toFixed(1)} ${(x + 6).toFixed(1)},${(y - 2).toFixed(1)}`;
      return { d, label: [x, y - 36], lock: null, loop: true };
    }
    const ra = RADIUS[this.kindOf(e.source)] ?? 14;
    const rb = (RADIUS[this.kindOf(e.target)] ?? 14) + 3;
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const len = Math.hypot(dx, dy) || 1;
    const [ux, uy] = [dx / len, dy / len];
    const [nx, ny] = [-uy, ux];
    const cx = (a.x + b.x) / 2 + nx * offset * 2;
    const cy = (a.y + b.y) / 2 + ny * offset * 2;
    const start = [a.x + ux * ra + nx * offset * 0.6, a.y + uy * ra + ny * offset * 0.6];
    const end = [b.x - ux * rb + nx * offset * 0.6, b.y - uy * rb + ny * offset * 0.6];
    const d = offset === 0 ? `M${start[0].toFixed(1)},${start[1].toFixed(1)} L${end[0].toFixed(1)},${end[1].toFixed(1)}` : `M${start[0].toFixed(1)},${start[1].toFixed(1)} Q${cx.toFixed(1)},${cy.toFixed(1)} ${end[0].toFixed(1)},${end[1].toFixed(1)}`;
    const mid = offset === 0 ? [(a.x + b.x) / 2, (a.y + b.y) / 2] : [(a.x + b.x) / 2 + nx * offset, (a.y + b.y) / 2 + ny * offset];
    return { d, label: [mid[0], mid[1] - 4], lock: [mid[0], mid[1] + 8], loop: false };
  }

  edge(e, a, b, offset, names, opts, selected) {
    const { d, label: at, lock, loop } = this.geometry(e, a, b, offset);
    const h = health(e, opts.thresholds);
    const summary = edgeSummary(e, names);
    const label = edgeLabel(e, opts.label);
    const cls = [
      'edge',
      loop ? 'loop' : null,
      'proto-' + e.protocol,
      'tel-' + e.telemetry,
      'h-' + h.level,
      e.change ? 'change-' + e.change : null,
      e.id === opts.edge ? 'selected' : null,
      !loop && selected && (e.source === selected || e.target === selected) ? 'near' : null,
    ];
    return s(
      'g',
      { class: cls, role: this.hits ? 'button' : 'img', tabindex: this.hits ? '0' : null, 'aria-label': summary, 'data-id': e.id },
      this.hits ? s('path', { class: 'hit', d }) : null,
      s('path', { class: 'line', d, 'marker-end': 'url(#arrow)' }),
      label && this.labelsNow(e, opts) ? s('text', { class: 'label', x: at[0].toFixed(1), y: at[1].toFixed(1) }, label) : null,
      e.mtls && lock ? padlock(lock[0], lock[1]) : null,
    );
  }

  /**
   * Whether an edge's label is made with the drawing: always in graphs small enough to
   * have them clickable, else only once the view is close enough to show labels (until
   * then they would be hidden anyway), and for the selection.
   */
  labelsNow(e, opts) {
    return this.hits || this.view.k >= LABELS_FROM_ZOOM || e.id === opts.edge || (opts.service !== null && (e.source === opts.service || e.target === opts.service));
  }

  kindOf(id) {
    return this.nodeById.get(id)?.kind ?? 'service';
  }
}

