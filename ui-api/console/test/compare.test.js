import { test } from 'node:test';
import assert from 'node:assert/strict';
import { diff } from '../js/compare.js';

const n = (id, calls = 10) => ({ id, name: id, calls, errors: 0, cpm: calls, p99_ms: 5 });
const e = (id, calls, errors = 0, p99 = 5) => ({ id, source: id.split('|')[0], target: id.split('|')[1], calls, errors, cpm: calls, p99_ms: p99 });

test('an edge in one window only is added or removed; the rest kept with deltas', () => {
  const now = { nodes: [n('a'), n('b'), n('c')], edges: [e('a|b|http', 200, 10, 8), e('b|c|http', 5)] };
  const before = { nodes: [n('a'), n('b'), n('d')], edges: [e('a|b|http', 100, 0, 4), e('b|d|grpc', 7)] };
  const d = diff(now, before);
  const by = (list) => Object.fromEntries(list.map((x) => [x.id, x.change]));
  assert.deepEqual(by(d.edges), { 'a|b|http': 'kept', 'b|c|http': 'added', 'b|d|grpc': 'removed' });
  assert.deepEqual(by(d.nodes), { a: 'kept', b: 'kept', c: 'added', d: 'removed' });
  assert.deepEqual(d.summary, { nodesAdded: 1, nodesRemoved: 1, edgesAdded: 1, edgesRemoved: 1 });
  const kept = d.edges.find((x) => x.id === 'a|b|http');
  assert.deepEqual(kept.delta.cpm, { now: 200, before: 100 });
  assert.deepEqual(kept.delta.errorRatio, { now: 0.05, before: 0 });
  assert.deepEqual(kept.delta.p99, { now: 8, before: 4 });
});

test('the same graph twice has no changes', () => {
  const g = { nodes: [n('a'), n('b')], edges: [e('a|b|http', 3)] };
  const d = diff(g, g);
  assert.deepEqual(d.summary, { nodesAdded: 0, nodesRemoved: 0, edgesAdded: 0, edgesRemoved: 0 });
  assert.ok(d.edges.every((x) => x.change === 'kept'));
});
