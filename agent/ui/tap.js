// rmds dashboard: the live tap of one channel (WebSocket /v1/ws/tap?channel=&last_n=50).
//
// Frames: {"type":"tap",...} once, then {"type":"event","history"?:true,"event":
// {seq, at, kind, channel?, id?, peer?, detail?}}; {"type":"error","code","message"}
// when the agent ends it (e.g. slow_consumer). The list (data-testid="tap-list",
// rows "tap-event") shows the newest first, at most 500, filtered by kind (select
// "tap-kind", or "kind:NAME" in the text) and a case-insensitive substring
// ("tap-filter"). Pause ("tap-pause") freezes the list: new events are buffered (up
// to 1000, then dropped and counted) and shown on Resume ("tap-resume"); the marker
// "tap-paused" is visible meanwhile. The socket reconnects after 2 s when it closes.

import { openTap } from "./api.js";
import { h, fill, fmtClock, fmtTime } from "./dom.js";

const KINDS = [
  "published", "enqueued", "sent", "retried", "acked", "received", "consumed",
  "expired", "dead_lettered", "dropped", "circuit", "peer_up", "peer_down", "kicked", "purged",
];
const KEEP = 500;
const BUFFER = 1000;

function haystack(e) {
  return [e.kind, e.channel, e.id, e.peer, e.detail === undefined ? "" : JSON.stringify(e.detail)]
    .filter((x) => x !== undefined && x !== null)
    .join(" ")
    .toLowerCase();
}

export function createTap(channel) {
  let ws = null;
  let running = false;
  let retry = null;
  let paused = false;
  let dropped = 0;
  const events = []; // oldest first
  const buffer = [];
  const seen = new Set();

  const kind = h("select", { testid: "tap-kind", "aria-label": "event kind" },
    h("option", { value: "" }, "every kind"),
    KINDS.map((k) => h("option", { value: k }, k)));
  const filter = h("input", { type: "search", testid: "tap-filter", placeholder: "filter: text or kind:NAME", "aria-label": "filter events" });
  const pauseBtn = h("button", { testid: "tap-pause" }, "Pause");
  const resumeBtn = h("button", { testid: "tap-resume", disabled: true }, "Resume");
  const clearBtn = h("button", { testid: "tap-clear", class: "secondary" }, "Clear");
  const status = h("span", { class: "badge", testid: "tap-status" }, "connecting");
  const pausedMark = h("span", { class: "badge warn", testid: "tap-paused", hidden: true }, "paused");
  const count = h("span", { class: "muted", testid: "tap-count" }, "");
  const list = h("ol", { class: "tap-list", testid: "tap-list", "aria-live": "off" });

  function matcher() {
    const raw = filter.value.trim().toLowerCase();
    let k = kind.value;
    const words = [];
    for (const w of raw.split(/\s+/).filter(Boolean)) {
      if (w.startsWith("kind:")) k = w.slice(5);
      else words.push(w);
    }
    return (e) => {
      if (k && String(e.kind) !== k) return false;
      if (words.length === 0) return true;
      const hay = haystack(e);
      return words.every((w) => hay.includes(w));
    };
  }

  function row(e, history) {
    return h("li", {
      class: ["tap-event", `kind-${e.kind}`, history ? "history" : ""],
      testid: "tap-event",
      "data-kind": e.kind,
      "data-seq": e.seq,
      "data-id": e.id || null,
    },
    h("span", { class: "tap-time", title: fmtTime(e.at) }, fmtClock(e.at)),
    h("span", { class: "tap-kind" }, String(e.kind)),
    h("span", { class: "tap-what" },
      e.id ? h("span", { class: "mono" }, e.id) : null,
      e.peer ? h("span", null, ` peer ${e.peer}`) : null,
      e.channel && e.channel !== channel ? h("span", null, ` channel ${e.channel}`) : null,
      e.detail !== undefined && e.detail !== null ? h("span", { class: "tap-detail mono" }, ` ${JSON.stringify(e.detail)}`) : null));
  }

  function updateCount() {
    const shown = list.childElementCount;
    let t = `${shown} shown of ${events.length}`;
    if (paused) t += `, ${buffer.length} buffered`;
    if (dropped) t += `, ${dropped} dropped while paused`;
    count.textContent = t;
  }

  function render() {
    const m = matcher();
    const rows = [];
    for (let i = events.length - 1; i >= 0 && rows.length < KEEP; i--) {
      if (m(events[i].e)) rows.push(row(events[i].e, events[i].history));
    }
    fill(list, rows);
    if (rows.length === 0) list.appendChild(h("li", { class: "empty", testid: "tap-empty" }, events.length ? "No event matches the filter." : "Waiting for events…"));
    updateCount();
  }

  function add(e, history) {
    const key = `${e.seq}:${e.at}`;
    if (seen.has(key)) return;
    seen.add(key);
    events.push({ e, history });
    while (events.length > KEEP) {
      const old = events.shift();
      seen.delete(`${old.e.seq}:${old.e.at}`);
    }
    if (matcher()(e)) {
      const empty = list.querySelector("[data-testid=tap-empty]");
      if (empty) empty.remove();
      list.insertBefore(row(e, history), list.firstChild);
      while (list.childElementCount > KEEP) list.lastChild.remove();
    }
  }

  function onEvent(e, history) {
    if (!e || typeof e !== "object") return;
    if (paused) {
      if (buffer.length < BUFFER) buffer.push({ e, history });
      else dropped++;
      updateCount();
      return;
    }
    add(e, history);
    updateCount();
  }

  function setStatus(label, cls) {
    status.textContent = label;
    status.className = `badge ${cls || ""}`;
  }

  function connect() {
    if (!running) return;
    setStatus("connecting", "");
    let socket;
    try {
      socket = openTap(channel, 50);
    } catch (err) {
      setStatus(`cannot open: ${err.message}`, "bad");
      retry = setTimeout(connect, 2000);
      return;
    }
    ws = socket;
    socket.addEventListener("open", () => { if (ws === socket) setStatus("live", "ok"); });
    socket.addEventListener("message", (m) => {
      if (ws !== socket) return;
      let f;
      try {
        f = JSON.parse(m.data);
      } catch (_) {
        return;
      }
      if (f.type === "event") onEvent(f.event, f.history === true);
      else if (f.type === "error") setStatus(`${f.code}: ${f.message}`, "bad");
      else if (f.type === "tap") setStatus(`live (${f.history || 0} recent)`, "ok");
    });
    socket.addEventListener("close", (ev) => {
      if (ws !== socket) return;
      ws = null;
      if (!running) return;
      setStatus(`closed${ev.code ? ` (${ev.code})` : ""}, reconnecting`, "bad");
      retry = setTimeout(connect, 2000);
    });
  }

  pauseBtn.addEventListener("click", () => {
    paused = true;
    pausedMark.hidden = false;
    pauseBtn.disabled = true;
    resumeBtn.disabled = false;
    updateCount();
  });
  resumeBtn.addEventListener("click", () => {
    paused = false;
    pausedMark.hidden = true;
    pauseBtn.disabled = false;
    resumeBtn.disabled = true;
    const b = buffer.splice(0, buffer.length);
    for (const x of b) add(x.e, x.history);
    dropped = 0;
    render();
  });
  clearBtn.addEventListener("click", () => {
    events.length = 0;
    seen.clear();
    buffer.length = 0;
    dropped = 0;
    render();
  });
  filter.addEventListener("input", render);
  kind.addEventListener("change", render);

  const node = h("section", { class: "card", testid: "tap" },
    h("h2", null, "Live tap ", status, " ", pausedMark),
    h("div", { class: "toolbar" },
      kind, filter, pauseBtn, resumeBtn, clearBtn, count),
    list);
  render();

  return {
    node,
    start() {
      running = true;
      connect();
    },
    stop() {
      running = false;
      clearTimeout(retry);
      if (ws) {
        const s = ws;
        ws = null;
        try { s.close(1000, "page left"); } catch (_) { /* closing anyway */ }
      }
    },
  };
}
