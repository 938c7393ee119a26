// rmds dashboard: DOM helpers shared by every page.
//
// Everything the dashboard shows is built here with document.createElement /
// createElementNS and textContent: no HTML string is ever parsed (no innerHTML), so
// message payloads and every string from the API are shown as text only. Also: number,
// byte and time formatting, the error toast, the notice line, and the in-page confirm
// dialog (buttons data-testid="confirm-yes" / "confirm-no") used instead of
// window.confirm so that browser tests can click it.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Appends children (nodes, strings, numbers, arrays; null/false skipped) to el. */
function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

/** Sets attributes: class, testid (data-testid), on<event> functions, others as-is. */
function setAttrs(el, attrs) {
  if (!attrs) return el;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.setAttribute("class", Array.isArray(v) ? v.filter(Boolean).join(" ") : v);
    else if (k === "testid") el.setAttribute("data-testid", v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value" && "value" in el) el.value = v;
    else if (k === "checked" || k === "disabled" || k === "selected") el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  return el;
}

/** An HTML element: h("td", {class: "num"}, "3"). Strings become text nodes. */
export function h(tag, attrs, ...children) {
  // Children first, so that a select's value can name one of its options.
  return setAttrs(append(document.createElement(tag), children), attrs);
}

/** An SVG element in the SVG namespace; text children become text nodes. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "testid") el.setAttribute("data-testid", v);
      else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, String(v));
    }
  }
  return append(el, children);
}

/** Replaces el's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Text of a value: objects as compact JSON, null as an em dash. */
export function text(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export function fmtNum(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  return Number(n).toLocaleString("en-US");
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Milliseconds since the epoch (or an RFC 3339 string) as local date and time. */
export function fmtTime(t) {
  if (t === null || t === undefined || t === "") return "—";
  const d = new Date(typeof t === "number" ? t : String(t));
  if (Number.isNaN(d.getTime())) return String(t);
  const pad = (x, n = 2) => String(x).padStart(n, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Only the clock part (HH:MM:SS.mmm), for the tap. */
export function fmtClock(t) {
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  const pad = (x, n = 2) => String(x).padStart(n, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function fmtAgo(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  const v = Number(seconds);
  if (v < 60) return `${v} s ago`;
  if (v < 3600) return `${Math.floor(v / 60)} min ${v % 60} s ago`;
  if (v < 86400) return `${Math.floor(v / 3600)} h ${Math.floor((v % 3600) / 60)} min ago`;
  return `${Math.floor(v / 86400)} d ago`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${+(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${+(ms / 60000).toFixed(1)} min`;
  if (ms < 86400000) return `${+(ms / 3600000).toFixed(1)} h`;
  return `${+(ms / 86400000).toFixed(1)} d`;
}

/** "chat (rw), orders (reader)" from {"chat":"rw","orders":"reader"}. */
export function fmtMemberships(m) {
  const entries = Object.entries(m || {});
  if (entries.length === 0) return "none";
  return entries.map(([c, r]) => `${c} (${r})`).join(", ");
}

/** A section with a heading and a body element. */
export function section(title, testid, ...children) {
  return h("section", { class: "card", testid }, h("h2", null, title), ...children);
}

/** A table: headers (strings) and rows (tr elements). */
export function table(headers, rows, attrs) {
  return h("div", { class: "table-wrap" },
    h("table", attrs || null,
      h("thead", null, h("tr", null, headers.map((x) => h("th", null, x)))),
      h("tbody", null, rows)));
}

/** An inline error for a section (code and message of an API error). */
export function errorLine(err) {
  return h("p", { class: "inline-error", testid: "section-error" }, describe(err));
}

export function describe(err) {
  if (!err) return "";
  if (err.code) return `${err.code}: ${err.message}${err.status ? ` (HTTP ${err.status})` : ""}`;
  return String(err.message || err);
}

// ---- toast and notice -------------------------------------------------------------

let toastTimer = null;

/** Shows an error (code and message) in the toast, data-testid="error". */
export function showError(err) {
  const toast = document.getElementById("toast");
  const msg = document.getElementById("toast-text");
  if (!toast || !msg) return;
  msg.textContent = describe(err);
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, 10000);
}

export function hideError() {
  const toast = document.getElementById("toast");
  if (toast) toast.hidden = true;
}

let noticeTimer = null;

/** A short success line, data-testid="notice". */
export function notice(message) {
  const el = document.getElementById("notice");
  if (!el) return;
  // A success makes an earlier error stale.
  hideError();
  el.textContent = message;
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { el.hidden = true; }, 6000);
}

// ---- confirm dialog ---------------------------------------------------------------

let pending = null;

function closeDialog(answer) {
  const dlg = document.getElementById("confirm");
  if (dlg) dlg.hidden = true;
  if (pending) {
    const p = pending;
    pending = null;
    p.resolve(answer);
  }
}

/**
 * Asks in the page's dialog. opts: {title, text, extra (a node), yes (button label),
 * danger}. Resolves true (confirm-yes) or false (confirm-no, Escape, another dialog).
 */
export function confirmDialog(opts) {
  const dlg = document.getElementById("confirm");
  if (pending) closeDialog(false);
  fill(document.getElementById("confirm-title"), opts.title || "Are you sure?");
  fill(document.getElementById("confirm-text"), opts.text || "");
  fill(document.getElementById("confirm-extra"), opts.extra || null);
  const yes = document.getElementById("confirm-yes");
  yes.textContent = opts.yes || "Confirm";
  yes.className = opts.danger === false ? "primary" : "danger";
  dlg.hidden = false;
  document.getElementById("confirm-no").focus();
  return new Promise((resolve) => { pending = { resolve }; });
}

export function initDialog() {
  document.getElementById("confirm-yes").addEventListener("click", () => closeDialog(true));
  document.getElementById("confirm-no").addEventListener("click", () => closeDialog(false));
  document.getElementById("confirm").addEventListener("click", (e) => {
    if (e.target && e.target.id === "confirm") closeDialog(false);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && pending) closeDialog(false);
  });
  document.getElementById("toast-close").addEventListener("click", hideError);
}

/** Runs an action from a button: disables it meanwhile, reports errors in the toast. */
export async function busy(button, fn) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/** A key of the data for "render only when something changed". */
export function same(cache, key, data) {
  const k = JSON.stringify(data === undefined ? null : data);
  if (cache[key] === k) return true;
  cache[key] = k;
  return false;
}
