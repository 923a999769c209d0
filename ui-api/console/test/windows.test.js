import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareRange, range, refreshMillis, step } from '../js/windows.js';
import { defaults } from '../js/state.js';

test('a preset ends now', () => {
  assert.deepEqual(range({ ...defaults(), window: '1h' }, 10_000.7), { start: 6400, end: 10_000 });
  assert.deepEqual(range({ ...defaults(), window: '7d' }, 1_000_000), { start: 1_000_000 - 604_800, end: 1_000_000 });
});

test('a custom window is its own', () => {
  assert.deepEqual(range({ ...defaults(), window: 'custom', start: 5, end: 65 }, 1e9), { start: 5, end: 65 });
});

test('compare: the previous period, or a chosen start', () => {
  const w = { start: 1000, end: 1600 };
  assert.equal(compareRange({ ...defaults() }, w), null);
  assert.deepEqual(compareRange({ ...defaults(), compare: 'previous' }, w), { start: 400, end: 1000 });
  assert.deepEqual(compareRange({ ...defaults(), compare: 100 }, w), { start: 100, end: 700 });
});

test('steps are whole minutes and keep the points bounded', () => {
  assert.equal(step({ start: 0, end: 900 }, 60), 60);
  assert.equal(step({ start: 0, end: 86400 }, 60), 1800);
  assert.equal(step({ start: 0, end: 7 * 86400 }, 120), 2 * 3600);
  for (const len of [60, 300, 3600, 21600, 86400, 604800]) {
    const s = step({ start: 0, end: len }, 100);
    assert.equal(s % 60, 0);
    assert.ok(len / s <= 100, `${len}: ${s}`);
  }
});

test('refresh periods', () => {
  assert.equal(refreshMillis('off'), 0);
  assert.equal(refreshMillis('30s'), 30_000);
  assert.equal(refreshMillis('bogus'), 0);
});
