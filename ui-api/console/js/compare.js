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
  const prevNodes = new Map(previous.nodes.map((n) => [n.id, n]));
  const prevEdges = new Map(previous.edges.map((e) => [e.id, e]));
  const curNodeIds = new Set(current.nodes.map((n) => n.id));
  const curEdgeIds = new Set(current.edges.map((e) => e.id));
  const summary = { nodesAdded: 0, nodesRemoved: 0, edgesAdded: 0, edgesRemoved: 0 };
  const nodes = current.nodes.map((n) => {
    const before = prevNodes.get(n.id);
    if (!before) {
      summary.nodesAdded += 1;
      return { ...n, change: 'added' };
    }
    return { ...n, change: 'kept', delta: delta(n, before) };
  });
  for (const n of previous.nodes) {
    if (!curNodeIds.has(n.id)) {
      summary.nodesRemoved += 1;
      nodes.push({ ...n, change: 'removed' });
    }
  }
  const edges = current.edges.map((e) => {
    const before = prevEdges.get(e.id);
    if (!before) {
      summary.edgesAdded += 1;
      return { ...e, change: 'added' };
    }
    return { ...e, change: 'kept', delta: delta(e, before) };
  });
  for (const e of previous.edges) {
    if (!curEdgeIds.has(e.id)) {
      summary.edgesRemoved += 1;
      edges.push({ ...e, change: 'removed' });
    }
  }
  return { nodes, edges, summary };
}
