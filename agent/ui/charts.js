// rmds dashboard: SVG pictures, built element by element (no markup strings).
//
// - lineChart: a line chart of one or more series over time buckets (throughput and
//   backlog from GET /v1/stats?period=1h&granularity=1m). A null value leaves a gap
//   (a bucket without samples). Each bucket has an invisible hover strip whose
//   <title> shows its values.
// - topology: nodes as circles (top row), channels as boxes (bottom row), one line
//   per membership: writer (node -> channel), reader (channel -> node) or both.
//   Offline nodes and their lines are grey. A channel box links to its page.

import { h, s, fmtNum } from "./dom.js";

const W = 640;
const H = 200;
const M = { left: 52, right: 14, top: 14, bottom: 30 };

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * p >= v) return m * p;
  }
  return 10 * p;
}

function clock(ms) {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/**
 * opts: {testid, title, times: [ms], series: [{name, values: [number|null]}],
 * unit: "per minute"}. Returns a figure with the svg and an HTML legend.
 */
export function lineChart(opts) {
  const times = opts.times || [];
  const n = times.length;
  const all = [];
  for (const sr of opts.series) for (const v of sr.values) if (v !== null && v !== undefined) all.push(v);
  const ymax = niceMax(all.length ? Math.max(...all) : 0);
  const iw = W - M.left - M.right;
  const ih = H - M.top - M.bottom;
  const x = (i) => M.left + (n <= 1 ? iw / 2 : (i * iw) / (n - 1));
  const y = (v) => M.top + ih - (v / ymax) * ih;

  const svg = s("svg", {
    testid: opts.testid,
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": opts.title,
    "data-points": n,
  }, s("title", null, opts.title));

  // Grid and y labels.
  for (let k = 0; k <= 4; k++) {
    const v = (ymax * k) / 4;
    const gy = y(v);
    svg.appendChild(s("line", { class: "grid", x1: M.left, x2: W - M.right, y1: gy, y2: gy }));
    svg.appendChild(s("text", { class: "axis-label", x: M.left - 6, y: gy + 4, "text-anchor": "end" },
      Number.isInteger(v) ? fmtNum(v) : v.toFixed(1)));
  }
  // x labels: first, middle, last bucket.
  if (n > 0) {
    const marks = n === 1 ? [0] : [0, Math.floor((n - 1) / 2), n - 1];
    for (const i of marks) {
      const anchor = i === 0 ? "start" : i === n - 1 ? "end" : "middle";
      svg.appendChild(s("text", { class: "axis-label", x: x(i), y: H - 8, "text-anchor": anchor }, clock(times[i])));
    }
  }
  svg.appendChild(s("line", { class: "axis", x1: M.left, x2: W - M.right, y1: y(0), y2: y(0) }));

  // One path per series; null values break the line.
  opts.series.forEach((sr, si) => {
    let d = "";
    let open = false;
    const dots = [];
    sr.values.forEach((v, i) => {
      if (v === null || v === undefined) {
        open = false;
        return;
      }
      d += `${open ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      // A point with no neighbour would be invisible as a line: mark it.
      const prev = sr.values[i - 1];
      const next = sr.values[i + 1];
      if ((prev === null || prev === undefined) && (next === null || next === undefined)) dots.push(i);
      open = true;
    });
    if (d) svg.appendChild(s("path", { class: `line series-${si}`, d, "data-series": sr.name }));
    for (const i of dots) {
      svg.appendChild(s("circle", { class: `dot series-${si}`, cx: x(i), cy: y(sr.values[i]), r: 2.5 }));
    }
  });

  // Hover strips with the bucket's values.
  if (n > 0) {
    const step = n <= 1 ? iw : iw / (n - 1);
    for (let i = 0; i < n; i++) {
      const label = [clock(times[i])]
        .concat(opts.series.map((sr) => `${sr.name}: ${sr.values[i] === null || sr.values[i] === undefined ? "no sample" : fmtNum(sr.values[i])}`))
        .join("\n");
      svg.appendChild(s("rect", {
        class: "hover",
        x: Math.max(M.left, x(i) - step / 2),
        y: M.top,
        width: Math.max(1, Math.min(step, W - M.right - Math.max(M.left, x(i) - step / 2))),
        height: ih,
      }, s("title", null, label)));
    }
  } else {
    svg.appendChild(s("text", { class: "empty-label", x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data yet"));
  }

  const legend = h("div", { class: "legend" },
    opts.series.map((sr, si) => {
      const last = [...sr.values].reverse().find((v) => v !== null && v !== undefined);
      return h("span", { class: "legend-item" },
        h("span", { class: `swatch series-${si}` }),
        `${sr.name}${opts.unit ? ` (${opts.unit})` : ""}: last ${last === undefined ? "—" : fmtNum(last)}`);
    }));
  return h("figure", { class: "chart-figure" }, svg, legend);
}

function short(name, max) {
  return name.length > max ? `${name.slice(0, max - 1)}…` : name;
}

/**
 * topo: GET /v1/topology answer {node_id, nodes: {id: {online, self}},
 * channels: {name: {readers: [id], writers: [id]}}}.
 */
export function topology(topo) {
  const nodes = Object.assign({}, topo.nodes || {});
  const channels = topo.channels || {};
  // Members not (yet) in the node list still get a circle.
  for (const c of Object.values(channels)) {
    for (const id of (c.readers || []).concat(c.writers || [])) {
      if (!nodes[id]) nodes[id] = { online: false, self: false };
    }
  }
  const nodeIds = Object.keys(nodes).sort((a, b) => (nodes[b].self - nodes[a].self) || a.localeCompare(b));
  const chanIds = Object.keys(channels).sort();
  const NS = 130;
  const CS = 150;
  const width = Math.max(420, nodeIds.length * NS, chanIds.length * CS) + 40;
  const height = chanIds.length ? 290 : 130;
  const ny = 70;
  const cy = 230;
  const R = 22;
  const BW = 124;
  const BH = 34;
  const nx = {};
  nodeIds.forEach((id, i) => { nx[id] = (width - nodeIds.length * NS) / 2 + NS * (i + 0.5); });
  const cx = {};
  chanIds.forEach((c, i) => { cx[c] = (width - chanIds.length * CS) / 2 + CS * (i + 0.5); });

  const marker = (id, cls) => s("marker", {
    id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
    orient: "auto-start-reverse", markerUnits: "strokeWidth",
  }, s("path", { d: "M0,0 L10,5 L0,10 z", class: cls }));

  const svg = s("svg", {
    testid: "topology",
    class: "topology",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": "Nodes and channels: who writes and who reads",
  },
  s("title", null, "Topology: nodes (circles) and channels (boxes)"),
  s("defs", null,
    marker("arrow-writer", "arrowhead writer"),
    marker("arrow-reader", "arrowhead reader"),
    marker("arrow-rw", "arrowhead rw"),
    marker("arrow-offline", "arrowhead offline")));

  // Lines first, so circles and boxes cover their ends.
  const edges = s("g", { class: "edges" });
  for (const c of chanIds) {
    const readers = new Set(channels[c].readers || []);
    const writers = new Set(channels[c].writers || []);
    for (const id of new Set([...readers, ...writers])) {
      const role = readers.has(id) && writers.has(id) ? "rw" : readers.has(id) ? "reader" : "writer";
      const online = nodes[id] && nodes[id].online;
      const m = online ? `arrow-${role}` : "arrow-offline";
      const top = [nx[id], ny + R + 2];
      const bottom = [cx[c], cy - BH / 2 - 2];
      // Writers point at the channel, readers at the node; rw both ways.
      const [a, b] = role === "reader" ? [bottom, top] : [top, bottom];
      const mid = (a[1] + b[1]) / 2;
      const d = `M${a[0]},${a[1]} C${a[0]},${mid} ${b[0]},${mid} ${b[0]},${b[1]}`;
      edges.appendChild(s("path", {
        class: `edge ${role}${online ? "" : " offline"}`,
        d,
        "marker-end": `url(#${m})`,
        "marker-start": role === "rw" ? `url(#${m})` : null,
        "data-node": id,
        "data-channel": c,
        "data-role": role,
      }, s("title", null, `${id} ${role === "rw" ? "reads and writes" : role === "reader" ? "reads" : "writes"} ${c}${online ? "" : " (offline)"}`)));
    }
  }
  svg.appendChild(edges);

  for (const id of nodeIds) {
    const n = nodes[id];
    const cls = ["node", n.online ? "online" : "offline", n.self ? "self" : ""].filter(Boolean).join(" ");
    svg.appendChild(s("g", { class: cls, testid: "topology-node", "data-node": id, "data-state": n.online ? "online" : "offline" },
      s("title", null, `${id}${n.self ? " (this node)" : ""}: ${n.online ? "online" : "offline"}`),
      s("circle", { cx: nx[id], cy: ny, r: R }),
      s("text", { class: "node-label", x: nx[id], y: ny - R - 8, "text-anchor": "middle" }, short(id, 16)),
      s("text", { class: "node-state", x: nx[id], y: ny + 4, "text-anchor": "middle" }, n.self ? "self" : n.online ? "on" : "off")));
  }

  for (const c of chanIds) {
    const link = s("a", { href: `#/channel/${encodeURIComponent(c)}`, testid: "topology-channel", "data-channel": c },
      s("title", null, `channel ${c}: ${(channels[c].writers || []).length} writers, ${(channels[c].readers || []).length} readers`),
      s("rect", { class: "channel-box", x: cx[c] - BW / 2, y: cy - BH / 2, width: BW, height: BH, rx: 6 }),
      s("text", { class: "channel-label", x: cx[c], y: cy + 5, "text-anchor": "middle" }, short(c, 16)));
    svg.appendChild(link);
  }
  if (chanIds.length === 0) {
    svg.appendChild(s("text", { class: "empty-label", x: width / 2, y: 120, "text-anchor": "middle" }, "no channels yet"));
  }

  const legend = h("div", { class: "legend" },
    h("span", { class: "legend-item" }, h("span", { class: "swatch writer" }), "writes (node → channel)"),
    h("span", { class: "legend-item" }, h("span", { class: "swatch reader" }), "reads (channel → node)"),
    h("span", { class: "legend-item" }, h("span", { class: "swatch rw" }), "reads and writes"),
    h("span", { class: "legend-item" }, h("span", { class: "swatch offline" }), "offline"));
  return h("figure", { class: "topology-figure" }, h("div", { class: "svg-scroll" }, svg), legend);
}
