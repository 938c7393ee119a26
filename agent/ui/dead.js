// rmds dashboard: dead letters (#/dead-letters).
//
// - The sender's dead letters (GET /v1/dead-letters): deliveries this node gave up,
//   one row per message and receiver ("dead-row" data-id data-receiver). Inspect
//   (GET /v1/dead-letters/{id}) shows the reason, the attempts and their send
//   times, and the message's status per receiver. Redrive (POST
//   /v1/dead-letters/{id}/redrive?receiver=R) and delete (DELETE ...?receiver=R).
// - For each channel this node reads, each consumer group's dead letters (GET
//   /v1/channels/{ch}/groups/{g}/dead-letters; rows "group-dead-row" data-id).
//   Inspect shows the message content as text ("dead-message"), deliveries, reason
//   and last error; redrive and delete.
// Every redrive and delete asks in the in-page dialog, then shows the answer
// ("dead-answer").

import { get, post, del, seg } from "./api.js";
import {
  h, fill, section, table, errorLine, same, text, confirmDialog, busy, notice,
  fmtNum, fmtTime,
} from "./dom.js";

async function settle(p) {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    return { ok: false, error: err };
  }
}

/** A message's data as text: strings as they are, JSON pretty-printed, binary as base64. */
export function messageText(m) {
  if (!m) return "";
  if (typeof m.data_base64 === "string") return m.data_base64;
  if (typeof m.data === "string") return m.data;
  if (m.data === undefined) return "";
  return JSON.stringify(m.data, null, 2);
}

function fields(pairs) {
  return h("dl", { class: "fields" }, pairs.filter(Boolean).map(([k, v, testid]) => [h("dt", null, k), h("dd", { testid }, v)]));
}

/** Channels this node reads (its memberships other than writer). */
async function readChannels() {
  const nodes = await get("/v1/nodes");
  const self = (nodes.nodes || []).find((n) => n.self);
  return Object.entries((self && self.memberships) || {})
    .filter(([, role]) => role !== "writer")
    .map(([c]) => c)
    .sort();
}

async function groupDeadLetters() {
  const channels = await readChannels();
  return Promise.all(channels.map(async (ch) => {
    const groups = await settle(get(`/v1/channels/${seg(ch)}/groups`));
    if (!groups.ok) return { channel: ch, error: groups.error, groups: [] };
    const list = await Promise.all((groups.value.groups || []).map(async (g) => {
      const d = await settle(get(`/v1/channels/${seg(ch)}/groups/${seg(g.name)}/dead-letters`));
      return d.ok ? { name: g.name, rows: d.value.dead_letters || [] } : { name: g.name, error: d.error, rows: [] };
    }));
    return { channel: ch, groups: list };
  }));
}

export function deadPage() {
  let active = false;
  const cache = {};
  const slots = {};
  let detail = null; // {key, build}
  let answer = null; // {what, text}
  let refreshNow = () => {};

  function showAnswer(what, value) {
    answer = { what, text: value === null || value === undefined ? "done (no content)" : JSON.stringify(value, null, 2) };
    fill(slots.answer, h("section", { class: "card answer", testid: "dead-answer" },
      h("h2", null, "Answer"), h("p", null, answer.what), h("pre", { class: "json" }, answer.text)));
  }

  function showDetail(node) {
    fill(slots.detail, node ? h("section", { class: "card detail", testid: "dead-detail" },
      h("button", { class: "small secondary close", testid: "dead-detail-close", onclick: () => { detail = null; showDetail(null); } }, "Close"),
      node) : null);
  }

  async function act(button, opts) {
    const ok = await confirmDialog({ title: opts.title, text: opts.text, yes: opts.yes });
    if (!ok) return;
    await busy(button, async () => {
      const res = await opts.run();
      showAnswer(opts.done, res);
      notice(opts.done);
      if (opts.deletes && detail && detail.key === opts.key) {
        detail = null;
        showDetail(null);
      }
      cache.sender = null;
      cache.groups = null;
      refreshNow();
    });
  }

  // ---- the sender's dead letters ---------------------------------------------------

  async function inspectSender(d, button) {
    await busy(button, async () => {
      const r = await get(`/v1/dead-letters/${seg(d.id)}`);
      detail = { key: `s:${d.id}:${d.receiver}` };
      const letters = (r.dead_letters || []).map((x) => h("div", { class: "dead-letter", testid: "dead-letter", "data-receiver": x.receiver },
        fields([
          ["Receiver", text(x.receiver)],
          ["Reason", text(x.reason), "dead-reason"],
          ["Attempts", fmtNum(x.attempts), "dead-attempts"],
          ["Stream sequence", fmtNum(x.seq)],
          ["Given up", fmtTime(x.dead_at)],
        ]),
        h("h4", null, "Send times of the last rounds"),
        (x.history || []).length
          ? h("ol", { class: "history", testid: "dead-history" }, x.history.map((t, i) => h("li", null,
            fmtTime(t), i ? h("span", { class: "muted" }, ` (+${((t - x.history[i - 1]) / 1000).toFixed(1)} s)`) : null)))
          : h("p", { class: "muted", testid: "dead-history" }, "no send recorded")));
      const st = r.message;
      const receipts = st && st.receivers ? table(["Receiver", "State", "Seq", "Attempts", "Queued", "Sent", "Done", "Reason"],
        st.receivers.map((x) => h("tr", null,
          h("td", null, text(x.receiver)), h("td", null, text(x.state)), h("td", { class: "num" }, text(x.seq)),
          h("td", { class: "num" }, text(x.attempts)), h("td", null, fmtTime(x.queued_at)), h("td", null, fmtTime(x.sent_at)),
          h("td", null, fmtTime(x.done_at)), h("td", null, text(x.reason))))) : h("p", { class: "muted" }, "no status (the message record is gone)");
      showDetail(h("div", null,
        h("h2", null, "Sender dead letter ", h("span", { class: "mono" }, d.id)),
        fields([
          ["Message", h("span", { class: "mono" }, text(r.id))],
          ["Channel", text(st ? st.channel : d.channel)],
          ["Created", st ? fmtTime(st.created_at) : "—"],
          ["Expires", st ? fmtTime(st.expires_at) : "—"],
        ]),
        letters,
        h("h3", null, "Status per receiver"),
        receipts,
        h("p", { class: "hint" }, "The sender keeps no payload copy in its dead-letter store; the receivers' groups hold the content.")));
    });
  }

  function senderCard(res) {
    if (!res.ok) return section("Sender dead letters", "sender-dead-card", errorLine(res.error));
    const rows = (res.value.dead_letters || []).map((d) => {
      const q = `?receiver=${seg(d.receiver)}`;
      const inspect = h("button", { class: "small", testid: "dead-inspect" }, "Inspect");
      const redrive = h("button", { class: "small", testid: "dead-redrive" }, "Redrive");
      const remove = h("button", { class: "small danger", testid: "dead-delete" }, "Delete");
      inspect.addEventListener("click", () => inspectSender(d, inspect));
      redrive.addEventListener("click", () => act(redrive, {
        title: "Redrive this dead letter?",
        text: `Queues message ${d.id} of channel ${d.channel} again for receiver ${d.receiver} (once more, at the end of its stream).`,
        yes: "Redrive",
        done: `Redrive of ${d.id} for ${d.receiver}`,
        run: () => post(`/v1/dead-letters/${seg(d.id)}/redrive${q}`, {}),
      }));
      remove.addEventListener("click", () => act(remove, {
        title: "Delete this dead letter?",
        text: `Deletes the dead letter of message ${d.id} for receiver ${d.receiver}. It cannot be redriven afterwards.`,
        yes: "Delete",
        done: `Deleted the dead letter of ${d.id} for ${d.receiver}`,
        deletes: true,
        key: `s:${d.id}:${d.receiver}`,
        run: () => del(`/v1/dead-letters/${seg(d.id)}${q}`),
      }));
      return h("tr", { testid: "dead-row", "data-id": d.id, "data-receiver": d.receiver },
        h("td", { class: "mono" }, text(d.id)), h("td", null, text(d.channel)), h("td", null, text(d.receiver)),
        h("td", { class: "num" }, fmtNum(d.seq)), h("td", null, text(d.reason)), h("td", { class: "num" }, fmtNum(d.attempts)),
        h("td", null, fmtTime(d.dead_at)), h("td", { class: "actions" }, inspect, redrive, remove));
    });
    return section("Sender dead letters", "sender-dead-card",
      h("p", { class: "hint" }, "Deliveries this node gave up (retries exhausted, or too large), per receiver."),
      rows.length === 0 ? h("p", { class: "empty", testid: "dead-empty" }, "No dead letter.")
        : table(["Message", "Channel", "Receiver", "Seq", "Reason", "Attempts", "Given up", ""], rows, { testid: "dead-table" }));
  }

  // ---- the consumer groups' dead letters -------------------------------------------

  async function inspectGroup(ch, g, d, button) {
    await busy(button, async () => {
      const r = await get(`/v1/channels/${seg(ch)}/groups/${seg(g)}/dead-letters/${seg(d.id)}`);
      detail = { key: `g:${ch}:${g}:${d.id}` };
      const dl = r.dead_letter || {};
      const m = r.message;
      showDetail(h("div", null,
        h("h2", null, `Dead letter of group ${g} (${ch}) `, h("span", { class: "mono" }, d.id)),
        fields([
          ["Offset", fmtNum(dl.offset)],
          ["State", text(dl.state)],
          ["Deliveries", fmtNum(dl.deliveries), "dead-deliveries"],
          ["Reason", text(dl.reason), "dead-reason"],
          ["Last error", text(dl.last_error), "dead-last-error"],
          ["Dead since", fmtTime(dl.dead_at)],
        ]),
        h("h3", null, "Message"),
        m ? [
          fields([
            ["Id", h("span", { class: "mono" }, text(m.id))],
            ["Sender", text(m.sender)],
            ["Created", fmtTime(m.created_at)],
            ["Content type", text(m.content_type), "dead-content-type"],
            ["Headers", text(m.headers)],
            typeof m.data_base64 === "string" ? ["Encoding", "binary, shown as base64"] : null,
          ]),
          h("pre", { class: "message", testid: "dead-message" }, messageText(m)),
        ] : h("p", { class: "muted", testid: "dead-message" }, "The message is no longer in the channel log.")));
    });
  }

  function groupsCard(res) {
    if (!res.ok) return section("Consumer group dead letters", "group-dead-card", errorLine(res.error));
    const blocks = [];
    for (const c of res.value) {
      if (c.error) blocks.push(h("h3", null, `Channel ${c.channel}`), errorLine(c.error));
      for (const g of c.groups) {
        const rows = g.rows.map((d) => {
          const base = `/v1/channels/${seg(c.channel)}/groups/${seg(g.name)}/dead-letters/${seg(d.id)}`;
          const inspect = h("button", { class: "small", testid: "dead-inspect" }, "Inspect");
          const redrive = h("button", { class: "small", testid: "dead-redrive" }, "Redrive");
          const remove = h("button", { class: "small danger", testid: "dead-delete" }, "Delete");
          inspect.addEventListener("click", () => inspectGroup(c.channel, g.name, d, inspect));
          redrive.addEventListener("click", () => act(redrive, {
            title: "Redrive this dead letter?",
            text: `Delivers message ${d.id} (offset ${d.offset}) to group ${g.name} of ${c.channel} once more.`,
            yes: "Redrive",
            done: `Redrive of ${d.id} in group ${g.name} of ${c.channel}`,
            run: () => post(`${base}/redrive`, {}),
          }));
          remove.addEventListener("click", () => act(remove, {
            title: "Delete this dead letter?",
            text: `Deletes dead letter ${d.id} (offset ${d.offset}) of group ${g.name} of ${c.channel}.`,
            yes: "Delete",
            done: `Deleted dead letter ${d.id} of group ${g.name} of ${c.channel}`,
            deletes: true,
            key: `g:${c.channel}:${g.name}:${d.id}`,
            run: () => del(base),
          }));
          return h("tr", { testid: "group-dead-row", "data-id": d.id, "data-channel": c.channel, "data-group": g.name },
            h("td", { class: "num" }, fmtNum(d.offset)), h("td", { class: "mono" }, text(d.id)), h("td", null, text(d.state)),
            h("td", { class: "num" }, fmtNum(d.deliveries)), h("td", null, text(d.reason)), h("td", null, text(d.last_error)),
            h("td", null, fmtTime(d.dead_at)), h("td", { class: "actions" }, inspect, redrive, remove));
        });
        blocks.push(h("div", { class: "group-dead", testid: "group-dead", "data-channel": c.channel, "data-group": g.name },
          h("h3", null, `Channel ${c.channel}, group ${g.name}`),
          g.error ? errorLine(g.error) : null,
          rows.length === 0 && !g.error ? h("p", { class: "empty" }, "No dead letter.")
            : table(["Offset", "Message", "State", "Deliveries", "Reason", "Last error", "Dead since", ""], rows)));
      }
    }
    return section("Consumer group dead letters", "group-dead-card",
      h("p", { class: "hint" }, "Messages a group on this node did not get acknowledged within max_deliveries, per channel this node reads."),
      blocks.length ? blocks : h("p", { class: "empty" }, "This node reads no channel with a consumer group."));
  }

  function put(key, data, build) {
    if (same(cache, key, data)) return;
    fill(slots[key], build());
  }

  return {
    title: "Dead letters",
    mount(el, ctx) {
      active = true;
      refreshNow = ctx.refreshNow;
      for (const k of ["answer", "detail", "sender", "groups"]) slots[k] = h("div", { class: "slot" });
      fill(el, h("div", { class: "dead-page" }, slots.answer, slots.detail, slots.sender, slots.groups));
    },
    async refresh() {
      const [sender, groups] = await Promise.all([
        settle(get("/v1/dead-letters")),
        settle(groupDeadLetters()),
      ]);
      if (!active) return;
      put("sender", sender.ok ? sender.value : String(sender.error.message), () => senderCard(sender));
      put("groups", groups.ok ? groups.value.map((c) => [c.channel, c.error && c.error.message, c.groups.map((g) => [g.name, g.error && g.error.message, g.rows])])
        : String(groups.error.message), () => groupsCard(groups));
    },
    unmount() {
      active = false;
    },
  };
}
