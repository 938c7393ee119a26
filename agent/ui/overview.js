// rmds dashboard: the overview page (#/).
//
// This node (id, epoch, NATS, store size from /v1/resources/current), the peers
// (/v1/nodes: online/offline, last seen, memberships, pending), the topology as a
// picture and a table (/v1/topology), and throughput and backlog over the last hour
// (/v1/stats?period=1h&granularity=1m). The app refreshes it every 2 s; each part is
// fetched on its own, so one failing call (or NATS being down) leaves the rest
// working, and a part is rebuilt only when its data changed.

import { get } from "./api.js";
import {
  h, fill, section, table, errorLine, same, text,
  fmtAgo, fmtBytes, fmtNum, fmtMemberships, fmtTime, fmtMs,
} from "./dom.js";
import { lineChart, topology } from "./charts.js";

async function settle(p) {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    return { ok: false, error: err };
  }
}

/** The series, or (when the agent refuses 1h/1m, e.g. a short stats.retention) the counters and why. */
async function stats() {
  try {
    return { stats: await get("/v1/stats?period=1h&granularity=1m"), seriesError: null };
  } catch (err) {
    if (err.status !== 400) throw err;
    return { stats: await get("/v1/stats"), seriesError: err };
  }
}

function kv(label, value, testid) {
  return h("div", { class: "kv" }, h("span", { class: "k" }, label), h("span", { class: "v", testid }, value));
}

function nodeCard(health, nodes, res, st) {
  const self = nodes && nodes.ok ? (nodes.value.nodes || []).find((n) => n.self) : null;
  const resources = res && res.ok ? res.value : null;
  const counters = st && st.ok ? st.value.stats : null;
  const db = resources ? resources.db_bytes : null;
  const wal = resources ? resources.wal_bytes : null;
  const total = db === null && wal === null ? null : (db || 0) + (wal || 0);
  const natsOk = health && health.nats === "connected";
  const kicked = (health && health.kicked) || (self && self.kicked);
  return section("This node", "node-card",
    h("div", { class: "kv-grid" },
      kv("Node", text(health ? health.node_id : self ? self.node_id : null), "node-id"),
      kv("Epoch", text(self ? self.epoch : null), "node-epoch"),
      kv("NATS", h("span", { class: natsOk ? "badge ok" : "badge bad", testid: "nats-state" }, health ? text(health.nats) : "unknown")),
      kv("NATS auth", text(health ? health.nats_auth : null)),
      health && health.nats_error ? kv("NATS error", text(health.nats_error)) : null,
      kicked ? kv("Kicked", text(kicked), "node-kicked") : null,
      kv("Store size", total === null ? "—" : fmtBytes(total), "store-size"),
      kv("Database / WAL", resources ? `${fmtBytes(db)} / ${fmtBytes(wal)}` : "—"),
      kv("Memory (RSS)", resources ? fmtBytes(resources.rss_bytes) : "—"),
      kv("CPU", resources && resources.cpu_percent !== null && resources.cpu_percent !== undefined ? `${resources.cpu_percent.toFixed(1)} %` : "—"),
      kv("Disk free", resources ? fmtBytes(resources.disk_free_bytes) : "—"),
      kv("Published", counters ? fmtNum(counters.published) : "—", "stat-published"),
      kv("Delivered", counters ? fmtNum(counters.delivered) : "—", "stat-delivered"),
      kv("Pending", counters ? fmtNum(counters.pending_messages) : "—", "stat-pending"),
      kv("Peers online", counters ? fmtNum(counters.peers_online) : "—"),
      kv("Uptime", counters ? `${fmtNum(Math.floor(counters.uptime_seconds || 0))} s` : "—")),
    res && !res.ok ? errorLine(res.error) : null,
    st && !st.ok ? errorLine(st.error) : null);
}

/** The newest bucket that had samples: per-receiver backlog from this node. */
function lastReceivers(series) {
  const buckets = (series && series.buckets) || [];
  for (let i = buckets.length - 1; i >= 0; i--) {
    if (buckets[i].samples > 0) return buckets[i].receivers || {};
  }
  return {};
}

function peersCard(nodes, st) {
  if (!nodes.ok) return section("Peers", "peers-card", errorLine(nodes.error));
  const backlog = st && st.ok ? lastReceivers(st.value.stats.series) : {};
  const peers = (nodes.value.nodes || []).filter((n) => !n.self);
  const rows = peers.map((p) => h("tr", { testid: "peer-row", "data-node": p.node_id, class: p.online ? "" : "offline" },
    h("td", null, text(p.node_id)),
    h("td", null, h("span", { testid: "peer-state", class: p.online ? "badge ok" : "badge bad" }, p.online ? "online" : "offline")),
    h("td", { title: p.last_seen ? fmtTime(p.last_seen) : "" }, fmtAgo(p.last_seen_ago_seconds)),
    h("td", { class: "num", testid: "peer-pending" }, fmtNum(p.pending)),
    h("td", { class: "num", testid: "peer-backlog" }, backlog[p.node_id] ? fmtNum(backlog[p.node_id].backlog) : "0"),
    h("td", { class: "num", testid: "peer-oldest" },
      backlog[p.node_id] && backlog[p.node_id].oldest_age_seconds > 0 ? fmtMs(Math.round(backlog[p.node_id].oldest_age_seconds * 1000)) : "—"),
    h("td", null, fmtMemberships(p.memberships)),
    h("td", { class: "mono" }, text(p.api)),
    h("td", null, p.kicked ? text(p.kicked) : "")));
  return section("Peers", "peers-card",
    peers.length === 0
      ? h("p", { class: "empty" }, "No peer known yet.")
      : table(["Node", "State", "Last seen", "Pending (reported)", "Backlog from here", "Oldest waiting", "Memberships", "API", "Kicked"], rows, { testid: "peers-table" }));
}

function topologyCard(topo, nodes) {
  if (!topo.ok) return section("Channels and topology", "topology-card", errorLine(topo.error));
  const t = topo.value;
  const self = nodes.ok ? (nodes.value.nodes || []).find((n) => n.self) : null;
  const own = (self && self.memberships) || {};
  const online = (id) => t.nodes && t.nodes[id] && t.nodes[id].online;
  const who = (ids) => (ids || []).map((id, i) => [i ? ", " : "", h("span", { class: online(id) ? "" : "muted" }, id + (online(id) ? "" : " (offline)"))]);
  const names = Object.keys(t.channels || {}).sort();
  const rows = names.map((c) => h("tr", { testid: "channel-row", "data-channel": c },
    h("td", null, h("a", { href: `#/channel/${encodeURIComponent(c)}`, testid: "channel-link", "data-channel": c }, c)),
    h("td", null, text(own[c] || null)),
    h("td", { testid: "channel-writers", "data-count": (t.channels[c].writers || []).length }, `${(t.channels[c].writers || []).length}: `, who(t.channels[c].writers)),
    h("td", { testid: "channel-readers", "data-count": (t.channels[c].readers || []).length }, `${(t.channels[c].readers || []).length}: `, who(t.channels[c].readers))));
  return section("Channels and topology", "topology-card",
    topology(t),
    names.length === 0
      ? h("p", { class: "empty" }, "No channel known yet.")
      : table(["Channel", "This node's role", "Writers", "Readers"], rows, { testid: "channels-table" }));
}

function chartsCard(st) {
  if (!st.ok) return section("Last hour", "charts-card", errorLine(st.error));
  const series = st.value.stats.series;
  if (!series) {
    return section("Last hour", "charts-card",
      st.value.seriesError ? errorLine(st.value.seriesError) : h("p", { class: "empty" }, "No history."));
  }
  const buckets = series.buckets || [];
  const times = buckets.map((b) => b.start_ms);
  const unit = series.granularity === "1m" ? "per minute" : `per ${series.granularity}`;
  const counter = (name) => buckets.map((b) => (b.counters && typeof b.counters[name] === "number" ? b.counters[name] : 0));
  const gauge = (name) => buckets.map((b) => (typeof b[name] === "number" ? b[name] : null));
  return section("Last hour", "charts-card",
    h("div", { class: "charts" },
      h("div", { class: "chart-box" },
        h("h3", null, `Throughput (${unit})`),
        lineChart({
          testid: "chart-throughput",
          title: `Published and delivered messages ${unit}, last ${series.period}`,
          times,
          unit,
          series: [{ name: "published", values: counter("published") }, { name: "delivered", values: counter("delivered") }],
        })),
      h("div", { class: "chart-box" },
        h("h3", null, "Backlog (pending deliveries)"),
        lineChart({
          testid: "chart-backlog",
          title: `Backlog at the end of each bucket and its maximum, last ${series.period}`,
          times,
          series: [{ name: "backlog", values: gauge("backlog") }, { name: "backlog max", values: gauge("backlog_max") }],
        }))),
    h("p", { class: "hint" },
      `${fmtNum(series.samples)} samples (one every ${series.sample_interval_seconds} s)` +
      `${series.restarts ? `, ${series.restarts} restart(s)` : ""}; totals: published ${fmtNum((series.totals || {}).published)}, delivered ${fmtNum((series.totals || {}).delivered)}.`));
}

export function overviewPage() {
  let root = null;
  let active = false;
  const cache = {};
  const slots = {};

  function put(key, data, build) {
    if (same(cache, key, data)) return;
    fill(slots[key], build());
  }

  return {
    title: "Overview",
    mount(el) {
      root = el;
      active = true;
      for (const k of ["node", "peers", "topology", "charts"]) slots[k] = h("div", { class: "slot" });
      fill(root, h("div", { class: "overview" }, slots.node, slots.peers, slots.topology, slots.charts));
    },
    async refresh(health) {
      const [nodes, topo, st, res] = await Promise.all([
        settle(get("/v1/nodes")),
        settle(get("/v1/topology")),
        settle(stats()),
        settle(get("/v1/resources/current")),
      ]);
      if (!active) return;
      const resSmall = res.ok ? { db: res.value.db_bytes, wal: res.value.wal_bytes, rss: res.value.rss_bytes, cpu: res.value.cpu_percent, disk: res.value.disk_free_bytes } : res;
      const stSmall = st.ok ? Object.assign({}, st.value.stats, { series: null }) : st;
      put("node", [health, nodes.ok ? (nodes.value.nodes || []).find((n) => n.self) : nodes, resSmall, stSmall],
        () => nodeCard(health, nodes, res, st));
      const recv = st.ok ? lastReceivers(st.value.stats.series) : null;
      put("peers", [nodes.ok ? nodes.value : String(nodes.error && nodes.error.message), recv], () => peersCard(nodes, st));
      put("topology", [topo.ok ? topo.value : String(topo.error && topo.error.message), nodes.ok ? (nodes.value.nodes || []).filter((n) => n.self) : null],
        () => topologyCard(topo, nodes));
      put("charts", [st.ok ? st.value.stats.series && st.value.stats.series.buckets : String(st.error && st.error.message), st.ok && st.value.seriesError ? st.value.seriesError.message : null],
        () => chartsCard(st));
    },
    unmount() {
      active = false;
      root = null;
    },
  };
}
