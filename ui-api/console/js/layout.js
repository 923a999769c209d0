// Where each node of the map goes. A force layout (the vendored d3-force) run a fixed
// number of ticks from a fixed start, so the same graph always gets the same picture:
// nodes start around their namespace's centre (namespaces on a spiral), nodes placed
// before stay where they were (the layout stays put between refreshes) and new ones start
// beside a neighbour. No DOM; `d3` is passed in (the page's global, or the test's).

/** A deterministic random source (a linear congruential generator). */
export function lcg(seed = 1) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(1664525, s) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/**
 * Ticks to run for `n` nodes to place: fewer for large graphs, whose start already puts
 * neighbours together (a tick of 1 000 nodes costs about 10 ms).
 */
export function ticksFor(n) {
  if (n <= 200) return 300;
  if (n <= 500) return 120;
  return 24;
}

/** Ticks at the end of a large layout that also keep nodes from overlapping. */
const COLLIDE_TICKS = 4;

/**
 * `nodes` in breadth-first order over `neighbours`, each component from its best
 * connected node (ties by id): consecutive nodes are mostly neighbours, so placing them in
 * this order on a sunflower starts linked nodes close together.
 */
export function bfsOrder(nodes, neighbours) {
  const degree = (n) => (neighbours.get(n.id) ?? []).length;
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const starts = [...nodes].sort((a, b) => degree(b) - degree(a) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const seen = new Set();
  const out = [];
  for (const s of starts) {
    if (seen.has(s.id)) continue;
    seen.add(s.id);
    const queue = [s];
    for (let i = 0; i < queue.length; i++) {
      const n = queue[i];
      out.push(n);
      for (const m of neighbours.get(n.id) ?? []) {
        const next = byId.get(m);
        if (next && !seen.has(m)) {
          seen.add(m);
          queue.push(next);
        }
      }
    }
  }
  return out;
}

/** The group a node starts in: its namespace, or its kind for virtual nodes. */
export function groupOf(n) {
  if (n.namespace !== null && n.namespace !== undefined) return 'ns:' + n.namespace;
  return 'kind:' + n.kind;
}

/**
 * Group centres on a spiral, largest groups first, spaced by their size, so that groups
 * start apart and the layout has less to untangle.
 */
export function groupCentres(nodes) {
  const sizes = new Map();
  for (const n of nodes) sizes.set(groupOf(n), (sizes.get(groupOf(n)) ?? 0) + 1);
  const order = [...sizes.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const centres = new Map();
  let r = 0;
  let angle = 0;
  for (const [g, size] of order) {
    const radius = 30 * Math.sqrt(size) + 40;
    if (centres.size === 0) {
      centres.set(g, { x: 0, y: 0 });
      r = radius;
      continue;
    }
    r += radius * 0.35;
    angle += (2 * radius) / Math.max(r, 1);
    centres.set(g, { x: r * Math.cos(angle), y: r * Math.sin(angle) });
    r += radius * 0.35;
  }
  return centres;
}

/**
 * Positions `Map(id → {x, y})` for `nodes` and `edges` (by node id). `previous` holds the
 * positions of the last drawing: those nodes keep them.
 */
export function layout(nodes, edges, previous = new Map(), d3 = globalThis.d3) {
  const centres = groupCentres(nodes);
  const ids = new Set(nodes.map((n) => n.id));
  const neighbours = new Map();
  for (const e of edges) {
    if (!ids.has(e.source) || !ids.has(e.target)) continue;
    if (!neighbours.has(e.source)) neighbours.set(e.source, []);
    if (!neighbours.has(e.target)) neighbours.set(e.target, []);
    neighbours.get(e.source).push(e.target);
    neighbours.get(e.target).push(e.source);
  }
  const rand = lcg(nodes.length + 7 * edges.length);
  // Slots on each group's sunflower, given in breadth-first order within the group.
  const slot = new Map();
  const groups = new Map();
  for (const n of nodes) {
    if (previous.has(n.id)) continue;
    const g = groupOf(n);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(n);
  }
  for (const members of groups.values()) bfsOrder(members, neighbours).forEach((n, i) => slot.set(n.id, i));
  let fresh = 0;
  const sim = nodes.map((n) => {
    const old = previous.get(n.id);
    if (old) return { id: n.id, x: old.x, y: old.y, fx: old.x, fy: old.y, group: groupOf(n) };
    fresh += 1;
    const placed = (neighbours.get(n.id) ?? []).map((m) => previous.get(m)).find(Boolean);
    if (placed) {
      return { id: n.id, x: placed.x + (rand() - 0.5) * 60, y: placed.y + (rand() - 0.5) * 60, group: groupOf(n) };
    }
    const g = groupOf(n);
    const c = centres.get(g);
    const i = slot.get(n.id);
    // a sunflower around the group's centre
    const rr = 22 * Math.sqrt(i + 0.5);
    const a = i * 2.399963;
    return { id: n.id, x: c.x + rr * Math.cos(a), y: c.y + rr * Math.sin(a), group: g };
  });
  if (fresh > 0 && d3 && d3.forceSimulation) {
    const links = edges
      .filter((e) => ids.has(e.source) && ids.has(e.target) && e.source !== e.target)
      .map((e) => ({ source: e.source, target: e.target }));
    const simulation = d3
      .forceSimulation(sim)
      .randomSource(lcg(42))
      .force('link', d3.forceLink(links).id((d) => d.id).distance(70).strength(0.15))
      .force('charge', d3.forceManyBody().strength(-160).theta(fresh > 500 ? 1.2 : 0.9).distanceMax(600))
      .force('x', d3.forceX((d) => centres.get(d.group).x).strength(0.06))
      .force('y', d3.forceY((d) => centres.get(d.group).y).strength(0.06))
      .stop();
    // A tick costs for every node, placed or not: a few new nodes on a large map get
    // the large map's ticks.
    const ticks = ticksFor(nodes.length);
    // Small graphs keep nodes apart all along; large ones only at the end (it costs as
    // much as the charge).
    const late = ticks > 100 ? 0 : COLLIDE_TICKS;
    if (late === 0) simulation.force('collide', d3.forceCollide(20));
    simulation.tick(ticks - late);
    if (late > 0) {
      simulation.force('collide', d3.forceCollide(20));
      simulation.tick(late);
    }
  }
  const out = new Map();
  for (const d of sim) out.set(d.id, { x: Math.round(d.x * 10) / 10, y: Math.round(d.y * 10) / 10 });
  return out;
}
