import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaults, parse, serialize, splitEdgeId } from '../js/state.js';

test('a fresh console has an empty address', () => {
  assert.equal(serialize(defaults()), '');
  assert.deepEqual(parse('').state, defaults());
});

test('the issue example opens a service over an hour', () => {
  const { state, problems } = parse('?window=1h&service=reviews.default');
  assert.deepEqual(problems, []);
  assert.equal(state.window, '1h');
  assert.equal(state.service, 'reviews.default');
  assert.equal(serialize(state), '?window=1h&service=reviews.default');
});

test('every field round-trips', () => {
  const s = {
    ...defaults(),
    view: 'service',
    window: 'custom',
    start: 1796280000,
    end: 1796283600,
    refresh: '30s',
    service: 'a|b.ns',
    focus: 'productpage.default',
    depth: 3,
    label: 'p99',
    q: 'rev iews&x=1',
    hideVirtual: true,
    collapse: ['default', 'shop,with comma'],
    compare: 1796190000,
    sort: 'p99_ms',
    desc: false,
    endpoints: 'errors',
    errWarn: 1.5,
    errCrit: 20,
    p99Target: 250,
  };
  const back = parse(serialize(s));
  assert.deepEqual(back.problems, []);
  assert.deepEqual(back.state, s);
  // an edge selection and "previous" too
  const e = { ...defaults(), edge: 'a.x|b.y|grpc', compare: 'previous', collapse: [] };
  assert.deepEqual(parse(serialize(e)).state, e);
});

test('start and end alone mean a custom window', () => {
  const { state } = parse('?start=100&end=200');
  assert.equal(state.window, 'custom');
  assert.equal(state.start, 100);
});

test('values it does not understand are named and ignored', () => {
  const { state, problems } = parse('?window=3y&depth=99&label=<b>&view=service&start=5&end=1&window=custom');
  assert.equal(state.window, '15m');
  assert.equal(state.depth, 1);
  assert.equal(state.label, 'rate');
  assert.equal(state.view, 'map');
  assert.ok(problems.includes('window=3y'), problems.join());
  assert.ok(problems.includes('depth=99'));
  assert.ok(problems.includes('label=<b>'));
  assert.ok(problems.some((p) => p.startsWith('view=service')));
});

test('names longer than 1 KiB are refused', () => {
  const { state, problems } = parse('?service=' + 'x'.repeat(2000));
  assert.equal(state.service, null);
  assert.equal(problems.length, 1);
});

test('edge ids split at the protocol and the known ends', () => {
  assert.deepEqual(splitEdgeId('a.x|b.y|http'), { client: 'a.x', server: 'b.y', protocol: 'http' });
  const known = [{ id: 'a|b|c|tcp', source: 'a|b', target: 'c', protocol: 'tcp' }];
  assert.deepEqual(splitEdgeId('a|b|c|tcp', known), { client: 'a|b', server: 'c', protocol: 'tcp' });
  assert.equal(splitEdgeId('nothing'), null);
});

test('start and end beside a preset window are named and dropped', () => {
  const { state, problems } = parse('?window=1h&start=5&end=10');
  assert.equal(state.window, '1h');
  assert.equal(state.start, null);
  assert.ok(problems.some((p) => p.startsWith('start and end')), problems.join());
});
