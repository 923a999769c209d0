import { test } from 'node:test';
import assert from 'node:assert/strict';
import { health } from '../js/health.js';

const kiali = { errWarn: 0, errCrit: 10, p99Target: null };

test("Kiali's defaults: any error degrades, above 10 % fails", () => {
  assert.equal(health({ calls: 100, errors: 0, p99_ms: 5 }, kiali).level, 'ok');
  assert.equal(health({ calls: 100, errors: 1, p99_ms: 5 }, kiali).level, 'warn');
  assert.equal(health({ calls: 100, errors: 10, p99_ms: 5 }, kiali).level, 'warn');
  assert.equal(health({ calls: 100, errors: 11, p99_ms: 5 }, kiali).level, 'crit');
  assert.equal(health({ calls: 0, errors: 0 }, kiali).level, 'idle');
});

test('a p99 target degrades, and the reason says which', () => {
  const h = health({ calls: 10, errors: 0, p99_ms: 300 }, { ...kiali, p99Target: 250 });
  assert.equal(h.level, 'warn');
  assert.match(h.reason, /p99 300 ms > 250 ms/);
  const both = health({ calls: 10, errors: 5, p99_ms: 300 }, { ...kiali, p99Target: 250 });
  assert.equal(both.level, 'crit');
  assert.match(both.reason, /errors 50.0% > 10%; p99/);
});
