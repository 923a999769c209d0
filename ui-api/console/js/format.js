// Number, ratio, duration and byte formatting for the console. Pure: no DOM.

const DASH = '—';

/** A count or rate, short: 950, 1.2k, 34k, 5.6M. `null`/`undefined`/NaN → an em dash. */
export function num(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return DASH;
  const a = Math.abs(v);
  if (a >= 1e9) return trim(v / 1e9) + 'G';
  if (a >= 1e6) return trim(v / 1e6) + 'M';
  if (a >= 1e4) return Math.round(v / 1e3) + 'k';
  if (a >= 1e3) return trim(v / 1e3) + 'k';
  if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
  if (a >= 10) return v.toFixed(1);
  if (a === 0) return '0';
  return v.toPrecision(2).replace(/\.?0+$/, '');
}

function trim(v) {
  return v.toFixed(1).replace(/\.0$/, '');
}

/** An exact integer with thousands separators: 1 234 567 (thin spaces, any locale). */
export function count(v) {
  if (v === null || v === undefined) return DASH;
  return String(Math.round(v)).replace(/\B(?=(\d{3})+(?!\d))/g, '\u202f');
}

/** A ratio 0..1 as a percentage with enough digits to tell 99.9 % from 100 %. */
export function pct(ratio) {
  if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return DASH;
  const p = ratio * 100;
  if (p === 0 || p === 100) return p + '%';
  if (p > 99.99 && p < 100) return '99.99%';
  if (p < 0.01 && p > 0) return '<0.01%';
  return (p >= 10 ? p.toFixed(1) : p.toFixed(2)) + '%';
}

/** Error percentage of a summary: errors/calls, `null` without calls. */
export function errorRatio(m) {
  if (!m || !m.calls) return null;
  return m.errors / m.calls;
}

/** Milliseconds: 0.42 ms, 12 ms, 1.3 s, 2.0 min. */
export function ms(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return DASH;
  if (v >= 60_000) return (v / 60_000).toFixed(1) + ' min';
  if (v >= 1000) return (v / 1000).toFixed(v >= 10_000 ? 0 : 1) + ' s';
  if (v >= 10) return Math.round(v) + ' ms';
  if (v >= 1) return v.toFixed(1) + ' ms';
  return v.toFixed(2) + ' ms';
}

/** Bytes in binary units: 512 B, 1.5 KiB, 20 MiB. */
export function bytes(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1024 && i < units.length - 1) {
    x /= 1024;
    i += 1;
  }
  return (i === 0 ? String(Math.round(x)) : x.toFixed(x >= 100 ? 0 : 1)) + ' ' + units[i];
}

/** Requests per second from calls per minute. */
export function rps(cpm) {
  if (cpm === null || cpm === undefined) return DASH;
  return num(cpm / 60) + '/s';
}

/**
 * A change from `before` to `now` as a signed relative percentage: "+12%", "−40%",
 * "new" when there was nothing before, "" when both are empty or equal.
 */
export function relDelta(now, before) {
  if (now === null || now === undefined || before === null || before === undefined) return '';
  if (before === 0) return now === 0 ? '' : 'new';
  const d = ((now - before) / before) * 100;
  if (Math.abs(d) < 0.5) return '±0%';
  return (d > 0 ? '+' : '\u2212') + num(Math.abs(d)) + '%';
}

/** A change of a percentage in points: "+1.5 pp", "−0.20 pp". */
export function ppDelta(nowRatio, beforeRatio) {
  if (nowRatio === null || beforeRatio === null || nowRatio === undefined || beforeRatio === undefined) return '';
  const d = (nowRatio - beforeRatio) * 100;
  if (Math.abs(d) < 0.005) return '±0 pp';
  return (d > 0 ? '+' : '\u2212') + (Math.abs(d) >= 10 ? Math.abs(d).toFixed(1) : Math.abs(d).toFixed(2)) + ' pp';
}

/** A unix time (seconds) as local "YYYY-MM-DD HH:MM". */
export function time(unix) {
  const d = new Date(unix * 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** A duration in seconds as "15m", "1h", "6h 30m", "7d". */
export function span(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const parts = [];
  if (d) parts.push(d + 'd');
  if (h) parts.push(h + 'h');
  if (m || parts.length === 0) parts.push(m + 'm');
  return parts.join(' ');
}
