// rmds dashboard: one channel's page (#/channel/<name>).
//
// - Members (GET /v1/channels/{ch}) and the policy (GET /v1/channels/{ch}/policy):
//   each effective field with where it comes from: the channel's own policy, its
//   domain's (GET /v1/domains/{d}), or the default (the configuration file).
// - Consumer groups (GET /v1/channels/{ch}/groups): position (ack_floor, next_offset,
//   log_head), pending, in flight, dead letters, consumers; a Reset button per group
//   asks in the in-page dialog where to (earliest, latest, an offset) and POSTs
//   /v1/channels/{ch}/groups/{g}/reset.
// - The live tap (tap.js) of the channel.

import { get, post, seg } from "./api.js";
import {
  h, fill, section, table, errorLine, same, text, confirmDialog, busy, notice,
  fmtNum, fmtMs, fmtTime,
} from "./dom.js";
import { createTap } from "./tap.js";

async function settle(p) {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    return { ok: false, error: err };
  }
}

// Effective field -> path in a declared policy.
const FIELDS = [
  ["ttl", ["ttl"], "Default time to live"],
  ["max_messages_per_receiver", ["max_messages_per_receiver"], "Backlog limit per receiver"],
  ["overflow", ["overflow"], "When the backlog is full"],
  ["max_attempts", ["retry", "max_attempts"], "Send rounds before dead-lettering"],
  ["retry_initial", ["retry", "initial_delay"], "First retry backoff"],
  ["retry_factor", ["retry", "factor"], "Backoff growth"],
  ["retry_max", ["retry", "max_delay"], "Largest backoff"],
  ["compression", ["compression"], "Compression"],
  ["unrouted", ["unrouted"], "Messages while no reader is known"],
];
const BREAKER = [
  ["error_threshold", "Failed share that opens it"],
  ["min_requests", "Rounds before it may open"],
  ["success_threshold", "Probes that close it"],
  ["open_timeout", "Open time before a probe"],
];

function has(policy, path) {
  let v = policy;
  for (const p of path) {
    if (!v || typeof v !== "object" || !(p in v) || v[p] === null || v[p] === undefined) return false;
    v = v[p];
  }
  return true;
}

/** "channel", "domain <d>", "default" (or "domain or default" when the domain is unknown). */
function sourceOf(path, own, domainName, domainPolicy) {
  if (has(own, path)) return { cls: "src-channel", label: "channel" };
  if (domainName && domainName !== "default") {
    if (domainPolicy === undefined) return { cls: "src-domain", label: `domain ${domainName} or default` };
    if (has(domainPolicy, path)) return { cls: "src-domain", label: `domain ${domainName}` };
  }
  return { cls: "src-default", label: "default" };
}

function policyCard(pol, domainPolicy, domainError) {
  if (!pol.ok) return section("Policy", "policy-card", errorLine(pol.error));
  const p = pol.value;
  const own = p.policy || {};
  const eff = p.effective || {};
  const row = (key, label, value, src) => h("tr", { testid: "policy-row", "data-field": key },
    h("td", null, label, h("div", { class: "muted mono" }, key)),
    h("td", { class: "mono", testid: "policy-value" }, value),
    h("td", null, h("span", { class: `badge ${src.cls}`, testid: "policy-source" }, src.label)));
  const rows = FIELDS.map(([key, path, label]) => row(key, label, text(eff[key]), sourceOf(path, own, p.domain, domainPolicy)));
  const cb = eff.circuit_breaker;
  rows.push(row("circuit_breaker", "Circuit breaker", cb ? "on" : "off", sourceOf(["circuit_breaker"], own, p.domain, domainPolicy)));
  if (cb) {
    for (const [key, label] of BREAKER) {
      rows.push(row(`circuit_breaker.${key}`, label, text(cb[key]), sourceOf(["circuit_breaker", key], own, p.domain, domainPolicy)));
    }
  }
  return section("Policy", "policy-card",
    h("p", null, "Domain: ", h("strong", { testid: "policy-domain" }, text(p.domain)),
      ". Each value comes from the channel's own policy, else its domain's, else the agent's configuration (default)."),
    table(["Field", "Effective", "From"], rows, { testid: "policy-table" }),
    domainError ? errorLine(domainError) : null,
    h("details", null, h("summary", null, "Declared policies (JSON)"),
      h("pre", { class: "json" }, `channel: ${JSON.stringify(own, null, 2)}\n` +
        (domainPolicy !== undefined ? `domain ${p.domain}: ${JSON.stringify(domainPolicy, null, 2)}` : ""))));
}

function membersCard(name, info) {
  if (!info.ok) {
    return section(`Channel ${name}`, "channel-card",
      info.error.status === 404 ? h("p", { class: "empty" }, "No node is known to be a member of this channel.") : errorLine(info.error));
  }
  const c = info.value;
  const members = (c.members || []).map((m) => h("tr", { testid: "member-row", "data-node": m.node },
    h("td", null, text(m.node), m.self ? h("span", { class: "muted" }, " (this node)") : null),
    h("td", null, text(m.role)),
    h("td", null, h("span", { class: m.online ? "badge ok" : "badge bad" }, m.online ? "online" : "offline"))));
  return section(`Channel ${name}`, "channel-card",
    h("p", null, "This node's role: ", h("strong", { testid: "channel-role" }, c.role ? String(c.role) : "not a member")),
    table(["Member", "Role", "State"], members));
}

function resetExtra() {
  const start = h("select", { testid: "reset-start", id: "reset-start" },
    h("option", { value: "earliest" }, "earliest (replay everything kept)"),
    h("option", { value: "latest" }, "latest (skip the backlog)"),
    h("option", { value: "offset" }, "an offset"));
  const offset = h("input", { type: "number", min: "1", step: "1", testid: "reset-offset", id: "reset-offset", placeholder: "offset", disabled: true });
  start.addEventListener("change", () => { offset.disabled = start.value !== "offset"; });
  return {
    node: h("div", { class: "form-row" }, h("label", { for: "reset-start" }, "Move to"), start, offset),
    body() {
      if (start.value !== "offset") return { start: start.value };
      return { offset: Number(offset.value) };
    },
  };
}

export function channelPage(name) {
  let active = false;
  let tap = null;
  const cache = {};
  const slots = {};
  let lastReset = null;
  let refreshNow = () => {};

  async function reset(group, button) {
    const extra = resetExtra();
    const ok = await confirmDialog({
      title: `Reset group ${group.name}?`,
      text: `Moves the position of consumer group "${group.name}" of channel "${name}" (now: ack floor ${group.ack_floor}, next ${group.next_offset}, head ${group.log_head}). In-flight leases are forgotten; messages may be delivered again.`,
      extra: extra.node,
      yes: "Reset",
    });
    if (!ok) return;
    await busy(button, async () => {
      const body = extra.body();
      const info = await post(`/v1/channels/${seg(name)}/groups/${seg(group.name)}/reset`, body);
      lastReset = { group: group.name, body, info };
      notice(`Group ${group.name} reset: ack floor ${info && info.ack_floor}, next offset ${info && info.next_offset}.`);
      cache.groups = null;
      refreshNow();
    });
  }

  function groupsCard(groups) {
    if (!groups.ok) return section("Consumer groups", "groups-card", errorLine(groups.error));
    const list = groups.value.groups || [];
    const rows = list.map((g) => {
      const btn = h("button", { class: "small", testid: "group-reset", "data-group": g.name }, "Reset");
      btn.addEventListener("click", () => reset(g, btn));
      return h("tr", { testid: "group-row", "data-group": g.name },
        h("td", null, h("strong", null, text(g.name))),
        h("td", { class: "num", testid: "group-ack-floor" }, fmtNum(g.ack_floor)),
        h("td", { class: "num", testid: "group-next-offset" }, fmtNum(g.next_offset)),
        h("td", { class: "num", testid: "group-log-head" }, fmtNum(g.log_head)),
        h("td", { class: "num", testid: "group-pending" }, fmtNum(g.pending)),
        h("td", { class: "num", testid: "group-in-flight" }, fmtNum(g.in_flight)),
        h("td", { class: "num" }, g.dead_letters ? h("a", { href: "#/dead-letters" }, fmtNum(g.dead_letters)) : "0"),
        h("td", { testid: "group-consumers" }, (g.consumers || []).length ? g.consumers.join(", ") : h("span", { class: "muted" }, "none")),
        h("td", null, `ack wait ${fmtMs(g.ack_wait_ms)}, ${g.max_deliveries ? `${g.max_deliveries} deliveries` : "unlimited deliveries"}` +
          `${g.max_in_flight ? `, ${g.max_in_flight} in flight` : ""}${(g.backoff_ms || []).length ? `, backoff ${g.backoff_ms.map(fmtMs).join(" ")}` : ""}`),
        h("td", { title: fmtTime(g.created_at) }, fmtTime(g.last_active)),
        h("td", null, btn));
    });
    return section("Consumer groups", "groups-card",
      list.length === 0
        ? h("p", { class: "empty" }, "No consumer group on this node for this channel.")
        : table(["Group", "Ack floor", "Next", "Head", "Pending", "In flight", "Dead", "Consumers", "Settings", "Last active", ""], rows, { testid: "groups-table" }),
      lastReset ? h("p", { class: "hint", testid: "reset-result" },
        `Last reset: ${lastReset.group} to ${JSON.stringify(lastReset.body)} → ack floor ${text(lastReset.info && lastReset.info.ack_floor)}, next offset ${text(lastReset.info && lastReset.info.next_offset)}, pending ${text(lastReset.info && lastReset.info.pending)}.`) : null);
  }

  function put(key, data, build) {
    if (same(cache, key, data)) return;
    fill(slots[key], build());
  }

  return {
    title: `Channel ${name}`,
    mount(el, ctx) {
      active = true;
      refreshNow = ctx.refreshNow;
      for (const k of ["members", "policy", "groups", "tap"]) slots[k] = h("div", { class: "slot" });
      tap = createTap(name);
      fill(slots.tap, tap.node);
      fill(el, h("div", { class: "channel-page" },
        h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Overview"), " / channel ", h("strong", { testid: "channel-name" }, name)),
        slots.members, slots.policy, slots.groups, slots.tap));
      tap.start();
    },
    async refresh() {
      const ch = seg(name);
      const [info, pol, groups] = await Promise.all([
        settle(get(`/v1/channels/${ch}`)),
        settle(get(`/v1/channels/${ch}/policy`)),
        settle(get(`/v1/channels/${ch}/groups`)),
      ]);
      let domainPolicy;
      let domainError = null;
      if (pol.ok && pol.value.domain && pol.value.domain !== "default") {
        const d = await settle(get(`/v1/domains/${seg(pol.value.domain)}`));
        if (d.ok) domainPolicy = d.value.policy || {};
        else domainError = d.error;
      } else if (pol.ok) {
        domainPolicy = {};
      }
      if (!active) return;
      put("members", info.ok ? info.value : String(info.error.message), () => membersCard(name, info));
      put("policy", [pol.ok ? pol.value : String(pol.error.message), domainPolicy, domainError && domainError.message],
        () => policyCard(pol, domainPolicy, domainError));
      put("groups", [groups.ok ? groups.value : String(groups.error.message), lastReset], () => groupsCard(groups));
    },
    unmount() {
      active = false;
      if (tap) tap.stop();
      tap = null;
    },
  };
}
