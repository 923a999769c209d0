import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AUTO_COLLAPSE_ABOVE, collapse, collapsedSet, focusOn, namespaceNodeId, shape } from '../js/graph.js';
import { defaults } from '../js/state.js';

function node(id, extra = {}) {
  const real = !['unknown', 'user', 'ext:443'].includes(id);
  return { id, name: id, real, kind: real ? 'service' : id === 'ext:443' ? 'external' : id, namespace: real ? id.split('.')[1] : null, calls: 10, errors: 1, cpm: 1, p99_ms: 5, ...extra };
}
function edge(s, t, protocol = 'http', extra = {}) {
  return { id: `${s}|${t}|${protocol}`, source: s, target: t, protocol, mtls: false, telemetry: 'mesh', calls: 4, errors: 1, cpm: 2, bytes_sent: 10, bytes_received: 20, mtls_calls: 0, p99_ms: 7, ...extra };
}

// a chain: unknown → gw.edge → a.x → b.x → c.y → d.y, and a.x → ext:443
const topo = {
  nodes: ['unknown', 'gw.edge', 'a.x', 'b.x', 'c.y', 'd.y', 'ext:443'].map((n) => node(n)),
  edges: [edge('unknown', 'gw.edge'), edge('gw.edge', 'a.x'), edge('a.x', 'b.x'), edge('b.x', 'c.y', 'grpc'), edge('c.y', 'd.y'), edge('a.x', 'ext:443')],
};

test('focus keeps what lies within depth, as the API does', () => {
  const one = focusOn(topo.nodes, topo.edges, 'b.x', 1);
  assert.deepEqual(one.edges.map((e) => e.id).sort(), ['a.x|b.x|http', 'b.x|c.y|grpc']);
  assert.deepEqual(one.nodes.map((n) => n.id).sort(), ['a.x', 'b.x', 'c.y']);
  const two = focusOn(topo.nodes, topo.edges, 'b.x', 2);
  assert.deepEqual(two.nodes.map((n) => n.id).sort(), ['a.x', 'b.x', 'c.y', 'd.y', 'ext:443', 'gw.edge']);
});

test('hiding virtual nodes drops them and their edges', () => {
  const g = shape(topo, { ...defaults(), hideVirtual: true });
  assert.ok(!g.nodes.some((n) => !n.real));
  assert.ok(!g.edges.some((e) => e.source === 'unknown' || e.target === 'ext:443'));
  assert.equal(g.hidden, 2);
});

test('collapsing a namespace sums its figures and merges its edges', () => {
  const g = collapse(topo.nodes, topo.edges, new Set(['x']));
  const ns = g.nodes.find((n) => n.id === namespaceNodeId('x'));
  assert.equal(ns.members, 2);
  assert.equal(ns.calls, 20);
  assert.equal(ns.errors, 2);
  assert.equal(ns.p99_ms, null, 'percentiles cannot be summed');
  const ids = g.edges.map((e) => e.id).sort();
  assert.deepEqual(ids, [' ns:x|c.y|grpc', ' ns:x|ext:443|http', 'c.y|d.y|http', 'gw.edge| ns:x|http', 'unknown|gw.edge|http'].sort());
  // a → b was inside the namespace: gone from the edges, its calls in the group's figures
  const total = (list) => list.reduce((s, e) => s + e.calls, 0);
  assert.equal(total(g.edges), total(topo.edges) - 4);
});

test('two edges into one collapsed namespace become one, summed', () => {
  const nodes = [node('a.x'), node('b.y'), node('c.y')];
  const edges = [edge('a.x', 'b.y'), edge('a.x', 'c.y', 'http', { calls: 6, errors: 0, mtls: true })];
  const g = collapse(nodes, edges, new Set(['y']));
  assert.equal(g.edges.length, 1);
  assert.equal(g.edges[0].calls, 10);
  assert.equal(g.edges[0].errors, 1);
  assert.equal(g.edges[0].mtls, true);
  assert.equal(g.edges[0].members, 2);
});

test('very large meshes start collapsed, but for the selection', () => {
  const many = Array.from({ length: AUTO_COLLAPSE_ABOVE + 1 }, (_, i) => node(`s${i}.ns${i % 7}`));
  const auto = collapsedSet({ ...defaults(), service: 's3.ns3' }, many);
  assert.equal(auto.size, 6);
  assert.ok(!auto.has('ns3'));
  assert.equal(collapsedSet(defaults(), many.slice(0, 10)).size, 0);
  assert.equal(collapsedSet({ ...defaults(), collapse: [] }, many).size, 0);
});

test('focus goes through virtual nodes, as the API does, before they are hidden', () => {
  // unknown → gw.edge: focusing gw.edge with depth 1 keeps a.x, and hiding virtual nodes then
  // drops unknown only
  const g = shape(topo, { ...defaults(), focus: 'gw.edge', depth: 1, hideVirtual: true });
  assert.equal(g.focused, true);
  assert.deepEqual(g.nodes.map((n) => n.id).sort(), ['a.x', 'gw.edge']);
});

test('a compared window is shaped as the current one was', () => {
  const now = shape(topo, { ...defaults(), focus: 'c.y', depth: 1 });
  assert.equal(now.focused, true);
  // the other window lacks the focused service: nothing of it is drawn (not everything)
  const other = { nodes: [node('a.x'), node('b.x')], edges: [edge('a.x', 'b.x')] };
  const before = shape(other, { ...defaults(), focus: 'c.y', depth: 1 }, { collapsed: now.collapsed, focusRequired: now.focused });
  assert.deepEqual(before.nodes, []);
  assert.deepEqual(before.edges, []);
  // and a focus missing from the current window is said, not applied
  const missing = shape(topo, { ...defaults(), focus: 'zzz.q' });
  assert.equal(missing.focused, false);
  assert.equal(missing.nodes.length, topo.nodes.length);
  // the same namespaces collapsed in both
  const both = shape(other, defaults(), { collapsed: new Set(['x']) });
  assert.deepEqual(both.nodes.map((n) => n.id), [namespaceNodeId('x')]);
});

test('focus drops an edge between two nodes at the edge of the depth, as the API does', () => {
  const nodes = [node('f.x'), node('a.x'), node('b.x')];
  const edges = [edge('f.x', 'a.x'), edge('f.x', 'b.x'), edge('a.x', 'b.x')];
  const g = focusOn(nodes, edges, 'f.x', 1);
  assert.deepEqual(g.edges.map((e) => e.id).sort(), ['f.x|a.x|http', 'f.x|b.x|http']);
  assert.equal(focusOn(nodes, edges, 'f.x', 2).edges.length, 3);
});

test('a compared window gets no focus when the current window has not the focused service', () => {
  const now = { nodes: [node('a.x'), node('b.x'), node('c.x')], edges: [edge('a.x', 'b.x'), edge('b.x', 'c.x')] };
  const before = { nodes: [node('gone.x'), ...now.nodes], edges: [edge('gone.x', 'a.x'), ...now.edges] };
  const state = { ...defaults(), focus: 'gone.x' };
  const cur = shape(now, state);
  assert.equal(cur.focused, false);
  const prev = shape(before, state, { collapsed: cur.collapsed, focusRequired: cur.focused });
  assert.equal(prev.nodes.length, 4, 'the whole other window, as the current one is whole');
});
