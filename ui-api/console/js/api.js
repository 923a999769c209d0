// The console's only source: the public JSON API on this origin, with the session's token
// when reads need one (kept in sessionStorage: it is gone when the tab closes).

const TOKEN_KEY = 'meshscope.token';

/** An API answer that was not a success, or a request that got no answer. */
export class ApiError extends Error {
  constructor(status, message, path) {
    super(message);
    this.status = status; // 0: no answer (network, server down)
    this.path = path;
  }

  /** The server wants a token (none given, or the one given is wrong). */
  get needsToken() {
    return this.status === 401;
  }
}

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** Whether `t` can be sent as a bearer token (visible ASCII only, as HTTP headers need). */
export function validToken(t) {
  return /^[\x21-\x7e]+$/.test(t);
}

export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lives only as long as this page
  }
  memoryToken = t || null;
}

let memoryToken = null;

/** GET `path` with `params` (values `null`/`undefined` left out); resolves to the JSON. */
export async function get(path, params = {}, signal = undefined) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined) qs.set(k, String(v));
  }
  const url = qs.toString() ? `${path}?${qs}` : path;
  const headers = { Accept: 'application/json' };
  const t = token() ?? memoryToken;
  if (t) headers.Authorization = 'Bearer ' + t;
  let res;
  try {
    res = await fetch(url, { headers, signal, credentials: 'omit', cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'meshscope did not answer (is it running?)', path);
  }
  let body = null;
  try {
    body = await res.json();
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    body = null;
  }
  if (!res.ok) {
    const message = body && typeof body.error === 'string' ? body.error : `HTTP ${res.status}`;
    throw new ApiError(res.status, message, path);
  }
  if (body === null) throw new ApiError(res.status, 'the answer was not JSON', path);
  return body;
}
