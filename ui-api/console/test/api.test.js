import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validToken } from '../js/api.js';

test('tokens are visible ASCII, as an HTTP header needs', () => {
  assert.ok(validToken('console-reader-token'));
  assert.ok(validToken('a.b_c~D=9'));
  assert.ok(!validToken(''));
  assert.ok(!validToken('has space'));
  assert.ok(!validToken('zero\u200bwidth'));
  assert.ok(!validToken('é'));
});
