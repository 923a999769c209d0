// "Compare": the graph of one window against another's. Nodes and edges only in the
// current window are `added`, only in the other `removed` (drawn, ghosted, so the map
// shows what went away), the rest `kept` with the change of their rate, error ratio and
// p99. Pure: no DOM.

import { errorRatio } from './format.js';

/** The change of one node's or edge's figures from `before` to `now`. */
export function delta(now, before) {
  const er = (m) => errorRatio(m);
  return {
    cpm: { now: now.cpm, before: before.cpm },
    errorRatio: { now: er(now), before: er(before) },
    p99: { now: now.p99_ms ?? null, before: before.p99_ms ?? null },
  };
}

/**
 * Diffs two shaped graphs (`{nodes, edges}`, ids as the API gives them). Returns the union
 * graph to draw: every node and edge carries `change` (`added`, `removed` or `kept`) and,
 * when kept, `delta` (see [`delta`]); `summary` counts each.
 */
export function diff(current, previous) {
  const nodes = mark(current.nodes, previous.nodes);
  const edges = mark(current.edges, previous.edges);
  const summary = {
    nodesAdded: nodes.added,
    nodesRemoved: nodes.removed,
    edgesAdded: edges.added,
    edgesRemoved: edges.removed,
  };
  return { nodes: nodes.list, edges: edges.list, summary };
}

/** The union of two lists of items with ids, each marked; and how many were added and removed. */
function mark(now, before) {
  const old = new Map(before.map((x) => [x.id, x]));
  const ids = new Set(now.map((x) => x.id));
  let added = 0;
  let removed = 0;
  const list = now.map((x) => {
    const was = old.get(x.id);
    if (!was) {
      added += 1;
      return { ...x, change: 'added' };
    }
    return { ...x, change: 'kept', delta: delta(x, was) };
  });
  for (const x of before) {
    if (!ids.has(x.id)) {
      removed += 1;
      list.push({ ...x, change: 'removed' });
    }
  }
  return { list, added, removed };
}
