import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sortRows } from '../js/table.js';
import { edgeLabel } from '../js/map.js';
import { defaults } from '../js/state.js';

const rows = [
  { name: 'b.x', namespace: 'x', calls: 5, errors: 1, cpm: 1, p99_ms: 30 },
  { name: 'a.y', namespace: 'y', calls: 9, errors: 0, cpm: 2, p99_ms: null },
  { name: 'c.x', namespace: 'x', calls: 5, errors: 3, cpm: 1, p99_ms: 10 },
];

test('the table sorts by a column, ties by name, and filters by search', () => {
  assert.deepEqual(sortRows(rows, defaults()).map((r) => r.name), ['a.y', 'b.x', 'c.x']);
  assert.deepEqual(sortRows(rows, { ...defaults(), sort: 'name', desc: false }).map((r) => r.name), ['a.y', 'b.x', 'c.x']);
  assert.deepEqual(sortRows(rows, { ...defaults(), sort: 'error_ratio' }).map((r) => r.name), ['c.x', 'b.x', 'a.y']);
  assert.deepEqual(sortRows(rows, { ...defaults(), sort: 'p99_ms', desc: false }).map((r) => r.name), ['a.y', 'c.x', 'b.x']);
  assert.deepEqual(sortRows(rows, { ...defaults(), q: '.X' }).map((r) => r.name), ['b.x', 'c.x']);
});

test('edge labels show the chosen figure, and its change when comparing', () => {
  const e = { cpm: 120, calls: 100, errors: 5, p50_ms: 2, p95_ms: 9, p99_ms: 12, bytes_sent: 1024, bytes_received: 1024 };
  assert.equal(edgeLabel(e, 'rate'), '2/s');
  assert.equal(edgeLabel(e, 'errors'), '5.00%');
  assert.equal(edgeLabel(e, 'p99'), '12 ms');
  assert.equal(edgeLabel(e, 'bytes'), '2.0 KiB');
  assert.equal(edgeLabel(e, 'none'), '');
  const kept = { ...e, change: 'kept', delta: { cpm: { now: 120, before: 60 }, errorRatio: { now: 0.05, before: 0.05 }, p99: { now: 12, before: 24 } } };
  assert.equal(edgeLabel(kept, 'rate'), '2/s +100%');
  assert.equal(edgeLabel(kept, 'errors'), '5.00% ±0 pp');
  assert.equal(edgeLabel(kept, 'p99'), '12 ms \u221250%');
});
