import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { groupCentres, layout, ticksFor } from '../js/layout.js';

// The vendored d3-force, loaded as the page loads it (classic scripts defining `d3`).
function d3() {
  const ctx = vm.createContext({ setTimeout, clearTimeout, setInterval, clearInterval, performance });
  for (const f of ['d3-dispatch', 'd3-quadtree', 'd3-timer', 'd3-force']) {
    vm.runInContext(readFileSync(new URL(`../vendor/${f}.min.js`, import.meta.url), 'utf8'), ctx);
  }
  return ctx.d3;
}

function mesh(services, namespaces) {
  const nodes = Array.from({ length: services }, (_, i) => ({ id: `s${i}.ns${i % namespaces}`, kind: 'service', namespace: `ns${i % namespaces}` }));
  const edges = nodes.slice(1).map((x, i) => ({ source: nodes[Math.floor(i / 2)].id, target: x.id }));
  return { nodes, edges };
}

test('the same graph gets the same picture', () => {
  const { nodes, edges } = mesh(60, 3);
  const a = layout(nodes, edges, new Map(), d3());
  const b = layout(nodes, edges, new Map(), d3());
  assert.deepEqual([...a], [...b]);
  for (const p of a.values()) assert.ok(Number.isFinite(p.x) && Number.isFinite(p.y));
});

test('nodes placed before stay put; a new one starts beside a neighbour', () => {
  const { nodes, edges } = mesh(30, 2);
  const first = layout(nodes, edges, new Map(), d3());
  const more = [...nodes, { id: 'new.ns0', kind: 'service', namespace: 'ns0' }];
  const moreEdges = [...edges, { source: nodes[5].id, target: 'new.ns0' }];
  const second = layout(more, moreEdges, first, d3());
  for (const n of nodes) assert.deepEqual(second.get(n.id), first.get(n.id), n.id);
  const p = second.get('new.ns0');
  const q = first.get(nodes[5].id);
  assert.ok(Math.hypot(p.x - q.x, p.y - q.y) < 300, `${JSON.stringify(p)} far from ${JSON.stringify(q)}`);
});

test('nodes do not pile up: no two share a spot', () => {
  const { nodes, edges } = mesh(200, 5);
  const pos = layout(nodes, edges, new Map(), d3());
  const pts = [...pos.values()];
  let close = 0;
  for (let i = 0; i < pts.length; i++) for (let j = i + 1; j < pts.length; j++) if (Math.hypot(pts[i].x - pts[j].x, pts[i].y - pts[j].y) < 5) close += 1;
  assert.equal(close, 0);
});

test('group centres are apart and ticks shrink with size', () => {
  const { nodes } = mesh(100, 4);
  const c = [...groupCentres(nodes).values()];
  assert.equal(c.length, 4);
  for (let i = 0; i < c.length; i++) for (let j = i + 1; j < c.length; j++) assert.ok(Math.hypot(c[i].x - c[j].x, c[i].y - c[j].y) > 50);
  assert.equal(ticksFor(100), 300);
  assert.ok(ticksFor(1000) < ticksFor(300));
  assert.ok(ticksFor(100000) >= 20);
});
