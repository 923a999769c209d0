// Time windows: the presets, the window a view state names, the window "compare" diffs
// against, and a chart step for a window. Pure: times are unix seconds.

/** The preset windows, in the picker's order. */
export const PRESETS = [
  ['5m', 300],
  ['15m', 900],
  ['1h', 3600],
  ['6h', 21600],
  ['24h', 86400],
  ['7d', 604800],
];

export function presetSeconds(name) {
  const p = PRESETS.find(([n]) => n === name);
  return p ? p[1] : null;
}

/**
 * The window `{start, end}` a state names at server time `now`: a preset ends now, a
 * custom window is the state's own start and end.
 */
export function range(state, now) {
  if (state.window === 'custom' && state.start !== null && state.end !== null) {
    return { start: state.start, end: state.end };
  }
  const len = presetSeconds(state.window) ?? 900;
  const end = Math.floor(now);
  return { start: end - len, end };
}

/**
 * The window "compare" diffs against: the previous period of the same length, or the
 * same length starting at a chosen time; `null` when compare is off.
 */
export function compareRange(state, current) {
  const len = current.end - current.start;
  if (state.compare === 'previous') return { start: current.start - len, end: current.start };
  if (typeof state.compare === 'number') return { start: state.compare, end: state.compare + len };
  return null;
}

/**
 * A chart step (a multiple of 60 s) giving at most `points` points over the window, and
 * at least one minute.
 */
export function step(window, points = 120) {
  const len = Math.max(60, window.end - window.start);
  const minutes = Math.ceil(len / 60 / points);
  const nice = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440];
  const m = nice.find((n) => n >= minutes) ?? minutes;
  return m * 60;
}

/** The auto-refresh choices and their periods in milliseconds (`off`: none). */
export const REFRESH = [
  ['off', 0],
  ['10s', 10_000],
  ['30s', 30_000],
  ['1m', 60_000],
];

export function refreshMillis(name) {
  const r = REFRESH.find(([n]) => n === name);
  return r ? r[1] : 0;
}
