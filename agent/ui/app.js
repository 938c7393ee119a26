// rmds dashboard: start-up, hash routing, the 2-second refresh loop, the NATS banner
// and the login area.
//
// Routes: #/ overview, #/channel/<name>, #/dead-letters, #/management. A page is
// {title, mount(el, ctx), refresh(health), unmount()}. One loop refreshes: GET
// /healthz (public: the banner and the header work even without credentials), then
// the current page; the next round starts 2 s after the previous one ended, so
// requests never overlap. Navigating or signing in starts a round at once.
// Login: username + password (POST /v1/auth/login, a JWT) or an API key; kept in
// sessionStorage by api.js. A 401 anywhere opens the login area.

import { get, login, useApiKey, logout, credential } from "./api.js";
import { h, fill, initDialog, showError, hideError, notice, describe, text } from "./dom.js";
import { overviewPage } from "./overview.js";
import { channelPage } from "./channel.js";
import { deadPage } from "./dead.js";
import { mgmtPage } from "./mgmt.js";

const PERIOD = 2000;

const $ = (id) => document.getElementById(id);

let page = null;
let timer = null;
let running = false;
let again = false;

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const parts = hash.split("/").filter(Boolean);
  if (parts[0] === "channel" && parts.length >= 2) {
    let name;
    try {
      name = decodeURIComponent(parts.slice(1).join("/"));
    } catch (_) {
      name = parts.slice(1).join("/");
    }
    return { nav: "overview", make: () => channelPage(name) };
  }
  if (parts[0] === "dead-letters") return { nav: "dead-letters", make: deadPage };
  if (parts[0] === "management") return { nav: "management", make: mgmtPage };
  return { nav: "overview", make: overviewPage };
}

function navigate() {
  if (page) {
    try { page.unmount(); } catch (_) { /* the old page is gone anyway */ }
  }
  const r = route();
  for (const a of document.querySelectorAll("nav a[data-nav]")) {
    if (a.dataset.nav === r.nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const main = $("main");
  fill(main);
  page = r.make();
  document.title = `${page.title} — rmds`;
  page.mount(main, { refreshNow });
  refreshNow();
}

// ---- the refresh loop -------------------------------------------------------------

function refreshNow() {
  if (running) {
    again = true;
    return;
  }
  clearTimeout(timer);
  timer = setTimeout(tick, 0);
}

function showHealth(health, err) {
  const banner = $("nats-banner");
  const down = $("agent-banner");
  if (err) {
    fill(down, `The agent does not answer: ${describe(err)}. Retrying every 2 s.`);
    down.hidden = false;
    return;
  }
  down.hidden = true;
  const connected = health && health.nats === "connected";
  if (connected) {
    banner.hidden = true;
  } else {
    fill(banner,
      h("strong", null, `NATS ${health ? text(health.nats) : "unknown"}`),
      ": this node cannot reach the bus. Publishes are still stored and wait in the outbox; peers look offline until it reconnects.",
      health && health.nats_error ? h("span", { class: "banner-detail" }, ` Reason: ${health.nats_error}`) : null);
    banner.hidden = false;
  }
  $("header-node").textContent = health ? `node ${health.node_id}` : "";
}

async function tick() {
  running = true;
  again = false;
  const current = page;
  try {
    let health = null;
    try {
      health = await get("/healthz");
      showHealth(health, null);
    } catch (err) {
      showHealth(null, err);
    }
    if (current && current === page) await current.refresh(health);
  } catch (err) {
    // A page bug must not stop the loop.
    console.error(err);
  } finally {
    running = false;
    clearTimeout(timer);
    timer = setTimeout(tick, again ? 0 : PERIOD);
  }
}

// ---- login ------------------------------------------------------------------------

function showLogin(message) {
  $("login").hidden = false;
  $("login-msg").textContent = message || "";
}

async function whoami() {
  const c = credential();
  const status = $("auth-status");
  $("logout").hidden = !c;
  if (!c) status.textContent = "not signed in";
  else status.textContent = c.kind === "key" ? "API key" : `signed in${c.user ? ` as ${c.user}` : ""}`;
  try {
    const w = await get("/v1/auth/whoami");
    if (w && w.principal) {
      status.textContent = `${w.principal.kind} ${w.principal.id} (${w.principal.role})`;
      $("login").hidden = true;
    } else if (w && w.auth === "disabled") {
      status.textContent = "authentication is off";
      $("login").hidden = true;
    }
  } catch (_) {
    // A 401 opens the login area by itself.
  }
}

function credentialChanged() {
  hideError();
  whoami();
  // Re-mount: the tap reconnects with the new credential.
  navigate();
}

function initLogin() {
  $("login-toggle").addEventListener("click", () => {
    const box = $("login");
    box.hidden = !box.hidden;
    if (!box.hidden) $("login-user").focus();
  });
  $("login-close").addEventListener("click", () => { $("login").hidden = true; });
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const user = $("login-user").value.trim();
    const pw = $("login-password").value;
    const btn = $("login-submit");
    if (!user || !pw) {
      $("login-msg").textContent = "Enter a username and a password.";
      return;
    }
    btn.disabled = true;
    try {
      await login(user, pw);
      $("login-password").value = "";
      $("login").hidden = true;
      $("login-msg").textContent = "";
      notice(`Signed in as ${user}.`);
      credentialChanged();
    } catch (err) {
      $("login-msg").textContent = describe(err);
      showError(err);
    } finally {
      btn.disabled = false;
    }
  });
  const saveKey = () => {
    const key = $("api-key").value.trim();
    if (!key) {
      $("login-msg").textContent = "Enter an API key.";
      return;
    }
    useApiKey(key);
    $("api-key").value = "";
    $("login").hidden = true;
    $("login-msg").textContent = "";
    notice("API key saved for this tab.");
    credentialChanged();
  };
  $("api-key-save").addEventListener("click", saveKey);
  $("api-key").addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      saveKey();
    }
  });
  $("logout").addEventListener("click", () => {
    logout();
    notice("Signed out.");
    credentialChanged();
  });
  window.addEventListener("rmds:unauthorized", (e) => {
    const err = e.detail;
    showLogin(`Sign in needed: ${err && err.message ? err.message : "the agent asks for credentials"}.`);
  });
}

function start() {
  initDialog();
  initLogin();
  whoami();
  window.addEventListener("hashchange", navigate);
  navigate();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
