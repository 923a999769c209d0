// Health of a node or edge from its figures and the user's thresholds (Kiali's defaults:
// degraded above 0 % errors, failing above 10 %; a p99 above an optional target degrades).
// Pure: no DOM.

import { pct, ms } from './format.js';

/**
 * `{level, reason}`: level `ok`, `warn`, `crit`, or `idle` (no calls to judge by).
 * `m` has `calls`, `errors`, `p99_ms`; `t` has `errWarn`, `errCrit` (percent) and
 * `p99Target` (ms or null).
 */
export function health(m, t) {
  if (!m || !m.calls) return { level: 'idle', reason: 'no inbound calls in the window' };
  const ratio = m.errors / m.calls;
  const reasons = [];
  let level = 'ok';
  if (ratio * 100 > t.errCrit) {
    level = 'crit';
    reasons.push(`errors ${pct(ratio)} > ${t.errCrit}%`);
  } else if (ratio * 100 > t.errWarn) {
    level = 'warn';
    reasons.push(`errors ${pct(ratio)} > ${t.errWarn}%`);
  }
  if (t.p99Target !== null && m.p99_ms !== null && m.p99_ms !== undefined && m.p99_ms > t.p99Target) {
    if (level === 'ok') level = 'warn';
    reasons.push(`p99 ${ms(m.p99_ms)} > ${ms(t.p99Target)}`);
  }
  if (reasons.length === 0) reasons.push(`errors ${pct(ratio)}`);
  return { level, reason: reasons.join('; ') };
}
