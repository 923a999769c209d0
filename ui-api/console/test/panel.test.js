import { test } from 'node:test';
import assert from 'node:assert/strict';
import { grafanaEdgeUrl } from '../js/panel.js';

test("an edge links to Grafana's edge dashboard over the same window", () => {
  const url = new URL(grafanaEdgeUrl('https://grafana.example.com/g', 'a&b.x', 'c d.y', { start: 100, end: 400 }));
  assert.equal(url.origin + url.pathname, 'https://grafana.example.com/g/d/meshscope-edge/meshscope-edge');
  assert.equal(url.searchParams.get('var-client'), 'a&b.x');
  assert.equal(url.searchParams.get('var-server'), 'c d.y');
  assert.equal(url.searchParams.get('from'), '100000');
  assert.equal(url.searchParams.get('to'), '400000');
});
