// rmds dashboard: the agent's HTTP API and the tap WebSocket.
//
// - Credentials live in sessionStorage ("rmds.credential"): a JWT from
//   POST /v1/auth/login (sent as Authorization: Bearer, refreshed once with
//   POST /v1/auth/refresh when it is refused) or an API key (sent as X-API-Key).
// - Every POST/PUT carries Content-Type: application/json with a JSON body ("{}"
//   when there is none) and X-Rmds-Request, as the agent's cross-site guard wants.
// - Errors become ApiError {status, code, message} from {"error":{"code","message"}}.
// - A 401 fires the window event "rmds:unauthorized" (the page shows the login area).
// - The tap WebSocket cannot carry headers: the credential goes as the subprotocol
//   "rmds.auth.<base64url(credential), unpadded>" next to "rmds".

const KEY = "rmds.credential";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The stored credential: {kind: "bearer"|"key", value, refresh?, user?} or null. */
export function credential() {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const c = JSON.parse(raw);
    return c && typeof c.value === "string" && c.value ? c : null;
  } catch (_) {
    return null;
  }
}

export function setCredential(c) {
  try {
    if (c) sessionStorage.setItem(KEY, JSON.stringify(c));
    else sessionStorage.removeItem(KEY);
  } catch (_) {
    // Storage refused (private mode): the credential lasts as long as nothing reads it.
  }
  window.dispatchEvent(new CustomEvent("rmds:credential"));
}

function authHeaders(headers) {
  const c = credential();
  if (!c) return;
  if (c.kind === "key") headers["X-API-Key"] = c.value;
  else headers.Authorization = `Bearer ${c.value}`;
}

async function parse(res) {
  if (res.status === 204) return null;
  const body = await res.text();
  if (!body) return null;
  try {
    return JSON.parse(body);
  } catch (_) {
    return body;
  }
}

function errorOf(res, body) {
  const e = body && typeof body === "object" ? body.error : null;
  if (e && typeof e === "object") {
    return new ApiError(res.status, String(e.code || "error"), String(e.message || ""));
  }
  const msg = typeof body === "string" && body ? body.slice(0, 300) : res.statusText || "request failed";
  return new ApiError(res.status, `http_${res.status}`, msg);
}

async function send(method, path, body) {
  const headers = { Accept: "application/json" };
  authHeaders(headers);
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (method === "POST" || method === "PUT" || method === "PATCH") {
    headers["Content-Type"] = "application/json";
    headers["X-Rmds-Request"] = "1";
    init.body = JSON.stringify(body === undefined ? {} : body);
  } else if (method === "DELETE") {
    headers["X-Rmds-Request"] = "1";
  }
  try {
    return await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network", `the agent does not answer (${err && err.message ? err.message : err})`);
  }
}

let refreshing = null;

/** Trades the stored refresh token for new tokens; true when it worked. */
async function refreshToken() {
  const c = credential();
  if (!c || c.kind !== "bearer" || !c.refresh) return false;
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const res = await send("POST", "/v1/auth/refresh", { refresh_token: c.refresh });
        if (!res.ok) return false;
        const t = await parse(res);
        if (!t || !t.access_token) return false;
        setCredential({ kind: "bearer", value: t.access_token, refresh: t.refresh_token || c.refresh, user: c.user });
        return true;
      } catch (_) {
        return false;
      } finally {
        setTimeout(() => { refreshing = null; }, 0);
      }
    })();
  }
  return refreshing;
}

/**
 * Calls the API: api("GET", "/v1/nodes"), api("POST", "/v1/purge", {...}).
 * Resolves the parsed JSON (null for 204); rejects with ApiError.
 * opts.quiet401: do not fire rmds:unauthorized (the login call itself).
 */
export async function api(method, path, body, opts = {}) {
  let res = await send(method, path, body);
  if (res.status === 401 && !opts.quiet401 && (await refreshToken())) {
    res = await send(method, path, body);
  }
  const data = await parse(res);
  if (!res.ok) {
    const err = errorOf(res, data);
    if (res.status === 401 && !opts.quiet401) {
      window.dispatchEvent(new CustomEvent("rmds:unauthorized", { detail: err }));
    }
    throw err;
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
export const del = (path) => api("DELETE", path);

/** A path segment, percent-encoded (channel names may contain '/'). */
export const seg = (v) => encodeURIComponent(String(v));

/** POST /v1/auth/login; stores the tokens. */
export async function login(username, password) {
  const t = await api("POST", "/v1/auth/login", { username, password }, { quiet401: true });
  if (!t || typeof t.access_token !== "string") {
    throw new ApiError(0, "bad_answer", "the login answer has no access_token");
  }
  setCredential({ kind: "bearer", value: t.access_token, refresh: t.refresh_token || null, user: username });
  return t;
}

export function useApiKey(key) {
  setCredential({ kind: "key", value: key });
}

export function logout() {
  setCredential(null);
}

/** RFC 4648 URL-safe base64 of the UTF-8 of s, without padding. */
export function base64url(str) {
  const bytes = new TextEncoder().encode(str);
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Opens the tap of one channel (or every channel when channel is null). */
export function openTap(channel, lastN) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const q = new URLSearchParams();
  if (channel) q.set("channel", channel);
  if (lastN) q.set("last_n", String(lastN));
  const url = `${scheme}//${location.host}/v1/ws/tap?${q.toString()}`;
  const c = credential();
  const protocols = c ? ["rmds", `rmds.auth.${base64url(c.value)}`] : ["rmds"];
  return new WebSocket(url, protocols);
}
