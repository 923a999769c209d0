// The graph the map draws, shaped from a topology answer and the view state: virtual
// nodes hidden or not, a focus with a depth, namespaces collapsed into one node each,
// search matches. Pure: no DOM.

/** Meshes with more nodes than this start with their namespaces collapsed. */
export const AUTO_COLLAPSE_ABOVE = 1500;

/** The id of a collapsed namespace's node (no service name starts with a space). */
export function namespaceNodeId(ns) {
  return ' ns:' + ns;
}

/** Whether `name` matches the search `q` (case-insensitive substring; empty matches nothing). */
export function matches(name, q) {
  return q !== '' && name.toLowerCase().includes(q.toLowerCase());
}

/**
 * Nodes and edges within `depth` hops of `focus` (edges either way), as the API's
 * `service=…&depth=…` gives them: an edge is kept when one of its ends is nearer than
 * `depth`.
 */
export function focusOn(nodes, edges, focus, depth) {
  const adjacent = new Map();
  const link = (a, b) => {
    if (!adjacent.has(a)) adjacent.set(a, []);
    adjacent.get(a).push(b);
  };
  for (const e of edges) {
    link(e.source, e.target);
    link(e.target, e.source);
  }
  const dist = new Map([[focus, 0]]);
  const queue = [focus];
  while (queue.length) {
    const n = queue.shift();
    const d = dist.get(n);
    if (d >= depth) continue;
    for (const m of adjacent.get(n) ?? []) {
      if (!dist.has(m)) {
        dist.set(m, d + 1);
        queue.push(m);
      }
    }
  }
  const kept = edges.filter((e) => {
    const a = dist.get(e.source);
    const b = dist.get(e.target);
    return a !== undefined && b !== undefined && Math.min(a, b) < depth;
  });
  const ids = new Set([focus]);
  for (const e of kept) {
    ids.add(e.source);
    ids.add(e.target);
  }
  return { nodes: nodes.filter((n) => ids.has(n.id)), edges: kept };
}

/** The namespaces of a node list, sorted, with their node counts. */
export function namespaces(nodes) {
  const counts = new Map();
  for (const n of nodes) {
    if (n.namespace !== null && n.namespace !== undefined) counts.set(n.namespace, (counts.get(n.namespace) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/**
 * The namespaces to draw collapsed: the state's list, or, when the state leaves it to us
 * (`null`), every namespace of a mesh larger than [`AUTO_COLLAPSE_ABOVE`] but the ones
 * holding the selected or focused service.
 */
export function collapsedSet(state, nodes) {
  if (state.collapse !== null) return new Set(state.collapse);
  if (nodes.length <= AUTO_COLLAPSE_ABOVE) return new Set();
  const keepOpen = new Set();
  for (const n of nodes) {
    if (n.id === state.service || n.id === state.focus) keepOpen.add(n.namespace);
  }
  return new Set(namespaces(nodes).map(([ns]) => ns).filter((ns) => !keepOpen.has(ns)));
}

function addInto(sum, m) {
  sum.calls += m.calls ?? 0;
  sum.errors += m.errors ?? 0;
  sum.cpm += m.cpm ?? 0;
  sum.bytes_sent += m.bytes_sent ?? 0;
  sum.bytes_received += m.bytes_received ?? 0;
  sum.mtls_calls += m.mtls_calls ?? 0;
}

function emptySums() {
  return {
    calls: 0,
    errors: 0,
    cpm: 0,
    bytes_sent: 0,
    bytes_received: 0,
    mtls_calls: 0,
    success_rate: null,
    p50_ms: null,
    p95_ms: null,
    p99_ms: null,
    avg_ms: null,
    apdex: null,
  };
}

/**
 * Collapses the nodes of each namespace in `collapsed` into one node (kind `namespace`,
 * figures summed; percentiles cannot be summed and are left out). Edges between two
 * collapsed groups, or a group and a node, are merged per protocol; edges inside one group
 * are dropped (their calls are in the group's figures).
 */
export function collapse(nodes, edges, collapsed) {
  if (collapsed.size === 0) return { nodes, edges };
  const groupOf = new Map();
  const groups = new Map();
  const out = [];
  for (const n of nodes) {
    if (n.namespace !== null && n.namespace !== undefined && collapsed.has(n.namespace)) {
      const id = namespaceNodeId(n.namespace);
      groupOf.set(n.id, id);
      if (!groups.has(id)) {
        const g = { id, name: n.namespace, kind: 'namespace', namespace: n.namespace, real: true, members: 0, ...emptySums() };
        groups.set(id, g);
        out.push(g);
      }
      const g = groups.get(id);
      g.members += 1;
      addInto(g, n);
    } else {
      out.push(n);
    }
  }
  for (const g of groups.values()) g.success_rate = g.calls ? 1 - g.errors / g.calls : null;
  const merged = new Map();
  const kept = [];
  for (const e of edges) {
    const s = groupOf.get(e.source) ?? e.source;
    const t = groupOf.get(e.target) ?? e.target;
    if (s === e.source && t === e.target) {
      kept.push(e);
      continue;
    }
    if (s === t) continue;
    const id = `${s}|${t}|${e.protocol}`;
    if (!merged.has(id)) {
      merged.set(id, {
        id,
        source: s,
        target: t,
        protocol: e.protocol,
        mtls: false,
        telemetry: e.telemetry,
        detect_points: [],
        members: 0,
        ...emptySums(),
      });
    }
    const m = merged.get(id);
    m.members += 1;
    m.mtls = m.mtls || e.mtls;
    if (m.telemetry !== e.telemetry) m.telemetry = 'mixed';
    addInto(m, e);
  }
  for (const m of merged.values()) m.success_rate = m.calls ? 1 - m.errors / m.calls : null;
  return { nodes: out, edges: [...kept, ...merged.values()] };
}

/**
 * The graph to draw for a topology answer under a view state: the focus applied (as the
 * API's `service=…&depth=…` does, through virtual nodes too), then virtual nodes hidden
 * (with their edges) when asked, then namespaces collapsed. Returns `{nodes, edges,
 * collapsed, hidden, focused}`: `hidden` counts the nodes the focus and hiding left out,
 * `focused` whether the focus was in the window.
 *
 * `fixed` makes a second window (compare) shaped as the first was: `collapsed`, the
 * namespaces collapsed there, and `focusRequired`, the focus applied there (a window
 * without the focused service then shows nothing).
 */
export function shape(topology, state, fixed = {}) {
  let nodes = topology.nodes;
  let edges = topology.edges;
  const total = nodes.length;
  let focused = false;
  // A compared window follows the current one: no focus there when none applied here.
  if (state.focus !== null && fixed.focusRequired !== false) {
    if (nodes.some((n) => n.id === state.focus)) {
      ({ nodes, edges } = focusOn(nodes, edges, state.focus, state.depth));
      focused = true;
    } else if (fixed.focusRequired) {
      nodes = [];
      edges = [];
    }
  }
  if (state.hideVirtual) {
    const real = new Set(nodes.filter((n) => n.real || n.kind === 'namespace').map((n) => n.id));
    nodes = nodes.filter((n) => real.has(n.id));
    edges = edges.filter((e) => real.has(e.source) && real.has(e.target));
  }
  const hidden = total - nodes.length;
  const collapsed = fixed.collapsed ?? collapsedSet(state, topology.nodes);
  ({ nodes, edges } = collapse(nodes, edges, collapsed));
  return { nodes, edges, collapsed, hidden, focused };
}

/** The edges into and out of node `id`. */
export function edgesOf(edges, id) {
  return {
    inbound: edges.filter((e) => e.target === id),
    outbound: edges.filter((e) => e.source === id),
  };
}
