// rmds chat demo page logic (served by `rmds-chat --web PORT` with index.html).
//
// Talks only to the server that served it:
//   WebSocket /ws         server -> page: hello | message | sent | error (JSON text frames)
//                         page -> server: {"type":"send","ref":N,"text":"..."}
//   GET /api/health       every 1 s: NATS banner
//   GET /api/nodes        every 2 s: peers list and the #/nodes table
//   GET /api/status/<id>  every 1 s for each own message not yet delivered
//   GET /api/stats, GET /api/topology   every 2 s while their view is shown
// Everything from the network is put on the page with textContent / setAttribute
// only (never innerHTML), so a message like <img src=x onerror=...> shows as text.
"use strict";

const $ = (sel) => document.querySelector(sel);
const SVG_NS = "http://www.w3.org/2000/svg";
const VIEWS = ["chat", "stats", "nodes", "topology"];
const DONE_OK = new Set(["delivered", "consumed"]);
const DONE_BAD = new Set(["expired", "dead", "dropped", "purged"]);

const st = {
  node: null,          // this node's id (from hello or /api/health)
  view: "chat",
  ws: null,
  everOpen: false,
  backoff: 500,        // ms before the next reconnect attempt
  nextRef: 1,          // ref of the next send frame
  outbox: [],          // send frames not yet written to the socket
  byRef: new Map(),    // ref -> own message waiting for its "sent" frame
  byId: new Map(),     // message id -> list item (dedupe)
  tracking: new Set(), // own messages whose status is polled
};

// ---- DOM helpers -----------------------------------------------------------

// el("li", {class: "x", "data-id": id}, child, "text", ...): attributes via
// setAttribute, string children as text nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  setAttrs(e, attrs);
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  setAttrs(e, attrs);
  if (text !== undefined) e.textContent = String(text);
  return e;
}
function setAttrs(e, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : String(v));
  }
}
function fillBody(table, rows) {
  $(table).tBodies[0].replaceChildren(...rows);
}
const pad = (n) => String(n).padStart(2, "0");
function hhmmss(d) {
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function ago(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}
// Runs fn now and then ms after each run ends (no overlapping requests).
function every(ms, fn) {
  const tick = async () => {
    try { await fn(); } catch (e) { /* try again next time */ }
    setTimeout(tick, ms);
  };
  tick();
}

// ---- messages --------------------------------------------------------------

function addMessage({ id, sender, text, time, own }) {
  const list = $(".messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const d = time ? new Date(time) : new Date();
  const ok = !Number.isNaN(d.getTime());
  const li = el("li", { "data-testid": "msg", "data-id": id, "data-sender": sender, class: own ? "msg own" : "msg" },
    el("span", { "data-testid": "msg-sender", class: "sender" }, sender),
    el("time", { "data-testid": "msg-time", datetime: ok ? d.toISOString() : null }, ok ? hhmmss(d) : String(time)),
    el("span", { "data-testid": "msg-text", class: "text" }, text));
  if (own) li.append(el("span", { "data-testid": "msg-state", class: "state" }));
  list.append(li);
  if (atBottom || own) list.scrollTop = list.scrollHeight;
  return li;
}

function setMsgState(m, state, title) {
  m.state = state;
  const s = m.li.querySelector('[data-testid="msg-state"]');
  s.textContent = state;
  s.dataset.state = state;
  if (title) s.title = title; else s.removeAttribute("title");
}

function send(text) {
  const ref = st.nextRef++;
  const m = { ref, id: null, li: addMessage({ id: `local-${ref}`, sender: st.node || "", text, own: true }) };
  setMsgState(m, "sending");
  st.byRef.set(ref, m);
  st.outbox.push({ type: "send", ref, text });
  flush();
}

function flush() {
  const ws = st.ws;
  while (ws && ws.readyState === WebSocket.OPEN && st.outbox.length) {
    const f = st.outbox.shift();
    ws.send(JSON.stringify(f));
    const m = st.byRef.get(f.ref);
    if (m) m.transmitted = true;
  }
}

// The state of an own message from GET /api/status/<id>.
function applyStatus(m, s) {
  const rs = Array.isArray(s.receivers) ? s.receivers : [];
  const states = rs.map((r) => String(r.state));
  let state;
  if (!rs.length || states.some((x) => !DONE_OK.has(x) && !DONE_BAD.has(x))) state = "queued";
  else if (states.every((x) => DONE_OK.has(x))) state = "delivered";
  else state = states.find((x) => DONE_BAD.has(x)); // finished, but not everywhere
  if (state !== "queued") st.tracking.delete(m);
  setMsgState(m, state, rs.map((r) => `${r.receiver}: ${r.state}`).join(", ") || (m.unrouted ? "no receiver yet" : ""));
}

async function pollStatuses() {
  await Promise.all([...st.tracking].map(async (m) => {
    try { applyStatus(m, await getJSON(`/api/status/${encodeURIComponent(m.id)}`)); } catch (e) { /* next time */ }
  }));
}

function showError(text) {
  const e = $(".chat-error");
  e.textContent = text;
  e.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { e.hidden = true; }, 8000);
}

function setNode(node) {
  if (!node || node === st.node) return;
  st.node = node;
  $('[data-testid="node-name"]').textContent = node;
  document.title = `rmds chat: ${node}`;
  for (const li of document.querySelectorAll('li.own[data-sender=""]')) {
    li.dataset.sender = node;
    li.querySelector(".sender").textContent = node;
  }
}

// ---- WebSocket -------------------------------------------------------------

function onFrame(f) {
  switch (f.type) {
    case "hello":
      setNode(f.node);
      $('[data-testid="channel-name"]').textContent = f.channel ? `#${f.channel}` : "";
      break;
    case "message":
      if (!f.id || st.byId.has(f.id)) break;
      st.byId.set(f.id, addMessage({ id: f.id, sender: String(f.sender), text: String(f.text ?? ""), time: f.time }));
      break;
    case "sent": {
      const m = st.byRef.get(f.ref);
      if (!m) break;
      st.byRef.delete(f.ref);
      m.id = f.id;
      m.unrouted = !!f.unrouted;
      m.li.dataset.id = f.id;
      st.byId.set(f.id, m.li);
      const to = Array.isArray(f.receivers) ? f.receivers : [];
      setMsgState(m, "queued", to.length ? `to ${to.join(", ")}` : "no receiver yet");
      st.tracking.add(m);
      break;
    }
    case "error": {
      const m = f.ref !== null && f.ref !== undefined ? st.byRef.get(f.ref) : null;
      if (m) {
        st.byRef.delete(f.ref);
        setMsgState(m, "failed", f.message);
      } else {
        showError(String(f.message));
      }
      break;
    }
  }
}

function setWsState(state, text) {
  const e = $('[data-testid="ws-state"]');
  e.dataset.state = state;
  e.textContent = text;
}

function connect() {
  setWsState(st.everOpen ? "reconnecting" : "connecting", st.everOpen ? "reconnecting…" : "connecting…");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws`);
  st.ws = ws;
  ws.addEventListener("open", () => {
    st.everOpen = true;
    st.backoff = 500;
    setWsState("connected", "connected");
    flush();
  });
  ws.addEventListener("message", (ev) => {
    let f;
    try { f = JSON.parse(ev.data); } catch (e) { return; }
    if (f && typeof f === "object") onFrame(f);
  });
  ws.addEventListener("close", () => {
    if (st.ws !== ws) return;
    st.ws = null;
    // Written but never answered: the server may or may not have taken them.
    for (const [ref, m] of st.byRef) {
      if (m.transmitted) {
        st.byRef.delete(ref);
        setMsgState(m, "unconfirmed", "the connection closed before the server answered");
      }
    }
    setWsState("reconnecting", "reconnecting…");
    setTimeout(connect, st.backoff + Math.random() * 250);
    st.backoff = Math.min(st.backoff * 2, 10000);
  });
}

// ---- health, peers, views --------------------------------------------------

async function pollHealth() {
  const h = await getJSON("/api/health");
  setNode(h.node);
  const up = h.nats === "connected";
  const banner = $('[data-testid="nats-banner"]');
  banner.hidden = up;
  if (!up) banner.querySelector(".detail").textContent = ` (${h.nats}${h.nats_error ? `: ${h.nats_error}` : ""})`;
}

const liveness = (n) => (n.online ? "online" : "offline");
const channelsOf = (n) => Object.entries(n.memberships || {}).map(([c, r]) => `${c}: ${r}`).join(", ");

function renderPeers(nodes) {
  const ul = $(".peers");
  const old = new Map([...ul.children].map((li) => [li.dataset.node, li]));
  ul.replaceChildren(...nodes.map((n) => {
    let li = old.get(n.node_id);
    if (!li) {
      li = el("li", { "data-testid": "peer", "data-node": n.node_id },
        el("span", { class: "peer-name" }, n.node_id),
        n.self ? el("span", { class: "you" }, "(you)") : null,
        el("span", { "data-testid": "peer-state", class: "peer-state" }));
      if (n.self) li.dataset.self = "true";
    }
    const s = liveness(n);
    const stateEl = li.querySelector('[data-testid="peer-state"]');
    if (stateEl.textContent !== s) stateEl.textContent = s;
    li.className = `peer ${s}`;
    li.dataset.state = s;
    li.title = n.self ? "this node" : `last seen ${ago(n.last_seen_ago_seconds)}`;
    return li;
  }));
}

function renderNodesTable(nodes) {
  fillBody('[data-testid="nodes-table"]', nodes.map((n) =>
    el("tr", { "data-testid": "node-row", "data-node": n.node_id, class: liveness(n) },
      el("td", {}, n.node_id, n.self ? " (you)" : ""),
      el("td", { class: "state" }, liveness(n)),
      el("td", {}, n.self ? "—" : ago(n.last_seen_ago_seconds)),
      el("td", {}, channelsOf(n)))));
}

async function pollNodes() {
  const r = await getJSON("/api/nodes");
  const nodes = (Array.isArray(r.nodes) ? r.nodes : [])
    .slice()
    .sort((a, b) => (b.self ? 1 : 0) - (a.self ? 1 : 0) || String(a.node_id).localeCompare(String(b.node_id)));
  renderPeers(nodes);
  renderNodesTable(nodes);
}

// Nested objects become dotted keys: {"a":{"b":1}} -> a.b = 1.
function flatten(obj, prefix, out) {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
    else out.push([key, typeof v === "object" ? JSON.stringify(v) : String(v)]);
  }
  return out;
}

async function pollStats() {
  if (st.view !== "stats") return;
  const s = await getJSON("/api/stats");
  fillBody('[data-testid="stats-table"]', flatten(s || {}, "", []).map(([k, v]) =>
    el("tr", { "data-testid": "stat-row", "data-key": k },
      el("td", { "data-testid": "stat-key" }, k),
      el("td", { "data-testid": "stat-value", class: "num" }, v))));
}

async function pollTopology() {
  if (st.view !== "topology") return;
  const t = await getJSON("/api/topology");
  const nodes = t.nodes || {};
  const channels = t.channels || {};
  const names = new Set(Object.keys(nodes));
  for (const c of Object.values(channels)) for (const n of [...(c.readers || []), ...(c.writers || [])]) names.add(n);
  const all = [...names].sort();
  const state = (n) => (nodes[n] ? liveness(nodes[n]) : "unknown");
  fillBody('[data-testid="topology-nodes"]', all.map((n) =>
    el("tr", { "data-testid": "topo-node", "data-node": n, class: state(n) },
      el("td", {}, n, nodes[n] && nodes[n].self ? " (you)" : ""), el("td", { class: "state" }, state(n)))));
  fillBody('[data-testid="topology-channels"]', Object.entries(channels).map(([c, v]) =>
    el("tr", { "data-testid": "topo-channel", "data-channel": c },
      el("td", {}, c), el("td", {}, (v.readers || []).join(", ")), el("td", {}, (v.writers || []).join(", ")))));
  drawTopology(all, nodes, channels);
}

// Nodes on an outer circle, channels in the middle, one line per membership.
function drawTopology(names, nodes, channels) {
  const pic = $('[data-testid="topology-svg"]');
  const at = (i, count, r) => {
    const a = (2 * Math.PI * i) / Math.max(count, 1) - Math.PI / 2;
    return count === 1 && r < 100 ? [180, 180] : [180 + r * Math.cos(a), 180 + r * Math.sin(a)];
  };
  const pos = new Map(names.map((n, i) => [n, at(i, names.length, 140)]));
  const chans = Object.keys(channels);
  const edges = [], marks = [];
  chans.forEach((c, i) => {
    const [x, y] = at(i, chans.length, 50);
    const readers = new Set(channels[c].readers || []), writers = new Set(channels[c].writers || []);
    for (const n of new Set([...readers, ...writers])) {
      const [nx, ny] = pos.get(n);
      const kind = readers.has(n) && writers.has(n) ? "rw" : writers.has(n) ? "writer" : "reader";
      edges.push(svg("line", { x1: nx, y1: ny, x2: x, y2: y, class: `edge ${kind}` }));
    }
    marks.push(svg("rect", { x: x - 28, y: y - 11, width: 56, height: 22, rx: 4, class: "channel" }),
      svg("text", { x, y: y + 4, class: "label" }, c));
  });
  for (const [n, [x, y]] of pos) {
    const info = nodes[n] || {};
    marks.push(svg("circle", { cx: x, cy: y, r: 16, class: `node ${info.online ? "online" : "offline"}${info.self ? " self" : ""}` }),
      svg("text", { x, y: y + 30, class: "label" }, n));
  }
  pic.replaceChildren(...edges, ...marks);
}

function route() {
  const m = /^#\/(\w+)/.exec(location.hash);
  st.view = m && VIEWS.includes(m[1]) ? m[1] : "chat";
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== st.view;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === st.view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (st.view === "stats") pollStats().catch(() => {});
  if (st.view === "topology") pollTopology().catch(() => {});
  if (st.view === "chat") $('[data-testid="chat-input"]').focus();
}

// ---- start -----------------------------------------------------------------

function start() {
  const input = $('[data-testid="chat-input"]');
  $(".compose").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    send(text);
    input.focus();
  });
  window.addEventListener("hashchange", route);
  route();
  connect();
  every(1000, pollHealth);
  every(2000, pollNodes);
  every(1000, pollStatuses);
  every(2000, pollStats);
  every(2000, pollTopology);
}

start();
