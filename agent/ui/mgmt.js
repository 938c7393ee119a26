// rmds dashboard: management across nodes (#/management).
//
// Kick a node from every channel (POST /v1/nodes/{id}/kick), kick it from one channel
// (POST /v1/nodes/{id}/channels/{ch}/kick), purge outboxes (POST /v1/purge
// {"what","scope"}). Each asks in the in-page dialog first, then shows the per-node
// answer (applied / failed / not_answered) in the result table ("mgmt-result", rows
// "mgmt-result-row" with data-node and data-outcome). Below: the audit log
// (GET /v1/audit), refreshed with the page.

import { get, post, seg } from "./api.js";
import {
  h, fill, section, table, errorLine, same, text, confirmDialog, busy, notice, fmtTime,
} from "./dom.js";

async function settle(p) {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    return { ok: false, error: err };
  }
}

/**
 * Keeps a select's (or datalist's) options in line with [value, label] pairs, in
 * place: an option that stays is the same element (a click on it never goes stale)
 * and the chosen value is kept.
 */
function syncOptions(select, options) {
  const want = JSON.stringify(options);
  if (select.dataset.options === want) return;
  select.dataset.options = want;
  const chosen = select.value;
  const existing = new Map([...select.children].map((o) => [o.value, o]));
  options.forEach(([value, label], i) => {
    let o = existing.get(value);
    if (o) {
      existing.delete(value);
      if (o.textContent !== label) o.textContent = label;
    } else {
      o = h("option", { value }, label);
    }
    const at = select.children[i];
    if (at !== o) select.insertBefore(o, at || null);
  });
  for (const o of existing.values()) o.remove();
  if (chosen !== undefined && options.some(([v]) => v === chosen)) select.value = chosen;
}

export function mgmtPage() {
  let active = false;
  const cache = {};
  const slots = {};
  let result = null;
  let refreshNow = () => {};
  let me = null;

  const node = h("select", { testid: "kick-node", id: "kick-node" });
  const channel = h("input", { testid: "kick-channel", id: "kick-channel", list: "known-channels", placeholder: "channel", autocomplete: "off" });
  const channels = h("datalist", { id: "known-channels" });
  const what = h("select", { testid: "purge-what", id: "purge-what" },
    h("option", { value: "queued" }, "queued (drop undelivered messages)"),
    h("option", { value: "sent" }, "sent (records of delivered messages)"),
    h("option", { value: "all" }, "all (both)"));
  const scope = h("select", { testid: "purge-scope", id: "purge-scope" },
    h("option", { value: "self" }, "this node"),
    h("option", { value: "all" }, "every node"));
  const kickBtn = h("button", { testid: "kick-button", class: "danger" }, "Kick from every channel");
  const kickChBtn = h("button", { testid: "kick-channel-button", class: "danger" }, "Kick from channel");
  const purgeBtn = h("button", { testid: "purge-button", class: "danger" }, "Purge");

  function showResult() {
    if (!result) {
      fill(slots.result, null);
      return;
    }
    const out = result.out || {};
    const rows = [];
    for (const a of out.applied || []) rows.push(["applied", a.node, a.detail]);
    for (const a of out.failed || []) rows.push(["failed", a.node, a.detail]);
    for (const a of out.not_answered || []) rows.push(["not_answered", a.node, a.online ? "online, did not answer in time" : "offline: sent again when it is back"]);
    fill(slots.result, section("Result", "mgmt-result-card",
      h("p", null, result.what, " — command ", h("span", { class: "mono", testid: "mgmt-command-id" }, text(out.id))),
      out.note ? h("p", { class: "warn-line", testid: "mgmt-note" }, text(out.note)) : null,
      table(["Node", "Outcome", "Detail"], rows.map(([outcome, n, detail]) => h("tr", { testid: "mgmt-result-row", "data-node": n, "data-outcome": outcome },
        h("td", null, text(n)),
        h("td", null, h("span", { class: `badge ${outcome === "applied" ? "ok" : outcome === "failed" ? "bad" : "warn"}`, testid: "mgmt-outcome" }, outcome.replace("_", " "))),
        h("td", null, text(detail)))), { testid: "mgmt-result" }),
      rows.length === 0 ? h("p", { class: "empty" }, "No node concerned answered.") : null,
      h("details", null, h("summary", null, "Command (JSON)"), h("pre", { class: "json" }, JSON.stringify(out.command, null, 2)))));
  }

  async function issue(button, opts) {
    const ok = await confirmDialog({ title: opts.title, text: opts.text, yes: opts.yes });
    if (!ok) return;
    await busy(button, async () => {
      const out = await post(opts.path, opts.body);
      result = { what: opts.what, out };
      showResult();
      notice(`${opts.what}: ${(out.applied || []).length} applied, ${(out.failed || []).length} failed, ${(out.not_answered || []).length} did not answer`);
      cache.audit = null;
      refreshNow();
    });
  }

  kickBtn.addEventListener("click", () => {
    const n = node.value;
    if (!n) return;
    issue(kickBtn, {
      title: `Kick ${n} from every channel?`,
      text: `Every agent removes ${n}'s memberships; ${n} leaves its channels and stays out until it joins again through its API.`,
      yes: "Kick",
      what: `Kick ${n}`,
      path: `/v1/nodes/${seg(n)}/kick`,
      body: {},
    });
  });
  kickChBtn.addEventListener("click", () => {
    const n = node.value;
    const c = channel.value.trim();
    if (!n || !c) {
      channel.focus();
      return;
    }
    issue(kickChBtn, {
      title: `Kick ${n} from ${c}?`,
      text: `Every agent removes ${n}'s membership of channel ${c}.`,
      yes: "Kick",
      what: `Kick ${n} from ${c}`,
      path: `/v1/nodes/${seg(n)}/channels/${seg(c)}/kick`,
      body: {},
    });
  });
  purgeBtn.addEventListener("click", () => {
    const w = what.value;
    const sc = scope.value;
    const where = sc === "self" ? "this node" : sc === "all" ? "every node" : `node ${sc}`;
    issue(purgeBtn, {
      title: `Purge ${w} on ${where}?`,
      text: w === "sent"
        ? `Deletes the records of delivered messages on ${where}: their receipts are gone afterwards.`
        : `Drops every message not yet acknowledged by its receiver on ${where} (receipts say purged)${w === "all" ? ", and deletes the records of delivered ones" : ""}. This cannot be undone.`,
      yes: "Purge",
      what: `Purge ${w} on ${where}`,
      path: "/v1/purge",
      body: { what: w, scope: sc },
    });
  });

  function auditCard(res) {
    if (!res.ok) return section("Audit log", "audit-card", errorLine(res.error));
    const rows = (res.value.audit || []).map((a) => h("tr", { testid: "audit-row", "data-id": a.id, "data-kind": a.kind },
      h("td", null, fmtTime(a.at)), h("td", null, text(a.kind)), h("td", null, text(a.issuer)),
      h("td", { class: "mono" }, text(a.command)), h("td", null, text(a.detail)), h("td", { class: "mono" }, text(a.id))));
    return section("Audit log", "audit-card",
      h("p", { class: "hint" }, "Management commands this node applied, newest first."),
      rows.length === 0 ? h("p", { class: "empty" }, "No command applied yet.")
        : table(["At", "Kind", "Issuer", "Command", "Detail", "Id"], rows, { testid: "audit-table" }));
  }

  return {
    title: "Management",
    mount(el, ctx) {
      active = true;
      refreshNow = ctx.refreshNow;
      for (const k of ["nodesError", "result", "audit"]) slots[k] = h("div", { class: "slot" });
      fill(el, h("div", { class: "mgmt-page" },
        section("Kick a node", "kick-card",
          h("div", { class: "form-row" }, h("label", { for: "kick-node" }, "Node"), node, kickBtn),
          h("div", { class: "form-row" }, h("label", { for: "kick-channel" }, "Channel"), channel, channels, kickChBtn,
            h("span", { class: "muted" }, "(the node chosen above)")),
          slots.nodesError,
          h("p", { class: "hint" }, "A kicked node is back only when it joins again (PUT /v1/channels/{ch} on its own API).")),
        section("Purge outboxes", "purge-card",
          h("div", { class: "form-row" }, h("label", { for: "purge-what" }, "What"), what),
          h("div", { class: "form-row" }, h("label", { for: "purge-scope" }, "Where"), scope, purgeBtn),
          h("p", { class: "hint" }, "Purges concern the sending side only; consumer groups' channel logs are untouched.")),
        slots.result,
        slots.audit));
      showResult();
    },
    async refresh() {
      const [nodes, topo, audit] = await Promise.all([
        settle(get("/v1/nodes")),
        settle(get("/v1/topology")),
        settle(get("/v1/audit")),
      ]);
      if (!active) return;
      if (nodes.ok) {
        const list = nodes.value.nodes || [];
        const self = list.find((n) => n.self);
        me = self ? self.node_id : me;
        // Labels do not carry liveness: the options change only when the node set does.
        const peers = list.filter((n) => !n.self).map((n) => [n.node_id, n.node_id]);
        syncOptions(node, peers.concat(self ? [[self.node_id, `${self.node_id} (this node)`]] : []));
        syncOptions(scope, [["self", `this node${me ? ` (${me})` : ""}`], ["all", "every node"]]
          .concat(peers.map(([id]) => [id, `node ${id}`])));
        fill(slots.nodesError, null);
      } else {
        fill(slots.nodesError, errorLine(nodes.error));
      }
      if (topo.ok) syncOptions(channels, Object.keys(topo.value.channels || {}).sort().map((c) => [c, c]));
      if (!same(cache, "audit", audit.ok ? audit.value : String(audit.error.message))) fill(slots.audit, auditCard(audit));
    },
    unmount() {
      active = false;
    },
  };
}
