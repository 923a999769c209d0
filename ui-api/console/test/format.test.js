import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bytes, count, errorRatio, ms, num, pct, ppDelta, relDelta, rps, span } from '../js/format.js';

test('num shortens counts and rates', () => {
  assert.equal(num(0), '0');
  assert.equal(num(950), '950');
  assert.equal(num(1234), '1.2k');
  assert.equal(num(34_567), '35k');
  assert.equal(num(5_600_000), '5.6M');
  assert.equal(num(2e9), '2G');
  assert.equal(num(12.345), '12.3');
  assert.equal(num(0.0421), '0.042');
  assert.equal(num(null), '—');
  assert.equal(num(NaN), '—');
});

test('count keeps every digit', () => {
  assert.equal(count(1234567), '1\u202f234\u202f567');
  assert.equal(count(12), '12');
  assert.equal(count(null), '—');
});

test('pct tells 99.99 % from 100 %', () => {
  assert.equal(pct(1), '100%');
  assert.equal(pct(0), '0%');
  assert.equal(pct(0.99999), '99.99%');
  assert.equal(pct(0.00001), '<0.01%');
  assert.equal(pct(0.0123), '1.23%');
  assert.equal(pct(0.5), '50.0%');
  assert.equal(pct(null), '—');
});

test('errorRatio needs calls', () => {
  assert.equal(errorRatio({ calls: 0, errors: 0 }), null);
  assert.equal(errorRatio({ calls: 4, errors: 1 }), 0.25);
});

test('ms picks a unit', () => {
  assert.equal(ms(0.42), '0.42 ms');
  assert.equal(ms(3.25), '3.3 ms');
  assert.equal(ms(12.4), '12 ms');
  assert.equal(ms(1300), '1.3 s');
  assert.equal(ms(45_000), '45 s');
  assert.equal(ms(120_000), '2.0 min');
  assert.equal(ms(undefined), '—');
});

test('bytes in binary units', () => {
  assert.equal(bytes(512), '512 B');
  assert.equal(bytes(1536), '1.5 KiB');
  assert.equal(bytes(20 * 1024 * 1024), '20.0 MiB');
  assert.equal(bytes(300 * 1024 ** 3), '300 GiB');
});

test('rps from calls per minute', () => {
  assert.equal(rps(120), '2/s');
  assert.equal(rps(3), '0.05/s');
});

test('deltas', () => {
  assert.equal(relDelta(112, 100), '+12%');
  assert.equal(relDelta(60, 100), '\u221240%');
  assert.equal(relDelta(5, 0), 'new');
  assert.equal(relDelta(0, 0), '');
  assert.equal(relDelta(100.2, 100), '±0%');
  assert.equal(relDelta(null, 3), '');
  assert.equal(ppDelta(0.025, 0.01), '+1.50 pp');
  assert.equal(ppDelta(0.0, 0.2), '\u221220.0 pp');
  assert.equal(ppDelta(null, 0.1), '');
});

test('span words', () => {
  assert.equal(span(900), '15m');
  assert.equal(span(3600), '1h');
  assert.equal(span(6 * 3600 + 1800), '6h 30m');
  assert.equal(span(7 * 86400), '7d');
  assert.equal(span(0), '0m');
});
