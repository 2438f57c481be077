// mailharness console: a client of the serve's control API (under /api) and its event
// stream (/api/events). Data is only ever put in the page as text (textContent), never as
// markup; a captured message's HTML goes into a sandboxed frame that may run nothing.
"use strict";

const state = {
  facts: null, sessions: [], messages: [], users: [], switches: {},
  quotaFull: new Set(), view: "overview", session: null, message: null, messagePart: "text", mailboxUser: null,
};

// --- small helpers ---------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const $ = (id) => document.getElementById(id);

// A field the person is editing keeps what they typed: refreshes from the server (which
// arrive whenever anything happens) only set fields that are not "dirty". A field becomes
// dirty on input and clean again once its form is applied.
function setValue(field, value) {
  if (field.dataset.dirty !== "1") field.value = value === null || value === undefined ? "" : String(value);
}
function clean(form) {
  for (const field of form.querySelectorAll("[data-dirty]")) delete field.dataset.dirty;
}
document.addEventListener("input", (event) => {
  if (event.target.matches("input, select")) event.target.dataset.dirty = "1";
});
const sameKeys = (node, keys) => node.dataset.keys === keys.join("\n");

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const reply = await fetch("/api" + path, init);
  const type = reply.headers.get("Content-Type") || "";
  const data = type.startsWith("application/json") ? await reply.json() : await reply.text();
  if (!reply.ok) {
    const message = (data && data.error) || String(data);
    if (reply.status === 401) showError("Not signed in: open the console URL that serve printed (with ?token=).");
    else showError(`${method} ${path}: ${message}`);
    throw new Error(message);
  }
  showError("");
  return data;
}
const change = (method, path, body) => api(method, path, body === undefined ? {} : body);

// Refreshes coalesce: a burst of events reads each resource once.
const pending = new Map();
function soon(key, fn) {
  if (pending.has(key)) return;
  pending.set(key, setTimeout(() => { pending.delete(key); fn().catch(() => {}); }, 60));
}

// --- views -----------------------------------------------------------------------------------
function showView(name) {
  state.view = name;
  for (const tab of document.querySelectorAll(".tab")) {
    if (tab.dataset.view === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== "view-" + name;
  if (name === "mailboxes") loadMailboxes().catch(() => {});
  history.replaceState(null, "", "#" + name);
}

async function loadFacts() {
  const facts = await api("GET", "/status");
  state.facts = facts;
  $("scenario-name").textContent = facts.scenario;
  document.title = `${facts.scenario} · mailharness console`;
  $("server-does").textContent = facts.server_does;
  $("client-sees").textContent = facts.client_sees;
  $("cert").textContent = facts.cert;
  const select = $("scenario-select");
  if (select.options.length) setValue(select, facts.scenario);
  $("listeners").tBodies[0].replaceChildren(...facts.endpoints.map((e) => el("tr", {},
    el("td", { text: e.protocol.toUpperCase() }), el("td", { text: e.security }),
    el("td", { class: "mono", text: e.host.includes(":") ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}` }))));
  $("cas").replaceChildren(...Object.keys(facts.cas).map((name) => el("li", {},
    el("a", { href: `/api/ui/ca/${encodeURIComponent(name)}`, download: `${name}.pem` }, `${name}.pem`),
    name === "harness" ? " (signs the server certificate)" : "")));
  renderFronts(facts.faults || {});
}

async function loadScenarios() {
  const list = await api("GET", "/ui/scenarios");
  $("scenario-select").replaceChildren(...list.map((s) => el("option", { value: s.name, text: `${s.name} (${s.family})` })));
  if (state.facts) setValue($("scenario-select"), state.facts.scenario);
}

async function loadUsers() {
  const users = await api("GET", "/users");
  state.users = users;
  $("users").tBodies[0].replaceChildren(...users.map((u) => el("tr", {},
    el("td", { class: "mono", text: u.login }), el("td", { class: "mono", text: u.address }),
    el("td", { class: "mono", text: u.password }), el("td", { class: "mono", text: u.app_password || "—" }),
    el("td", { text: u.disabled ? "disabled" : "active" }))));
  const select = $("mb-user");
  const chosen = state.mailboxUser || (users[0] && users[0].login);
  if (!sameKeys(select, users.map((u) => u.login))) {
    select.replaceChildren(...users.map((u) => el("option", { value: u.login, text: u.login })));
    select.dataset.keys = users.map((u) => u.login).join("\n");
    if (chosen) select.value = chosen;
  }
  renderUserSwitches(users);
}

// --- sessions ----------------------------------------------------------------------------------
function outcomeClass(outcome) {
  return outcome === "login ok" ? "outcome-ok" : outcome === "open" ? "" : "outcome-bad";
}

async function loadSessions() {
  state.sessions = await api("GET", "/ui/sessions");
  renderSessions();
  if (state.session !== null) loadTranscript(state.session).catch(() => {});
}

function renderSessions() {
  const protocol = $("f-protocol").value, user = $("f-user").value.trim().toLowerCase(), outcome = $("f-outcome").value;
  const shown = state.sessions.filter((s) => (!protocol || s.protocol === protocol)
    && (!user || s.users.some((u) => u.toLowerCase().includes(user)))
    && (!outcome || s.outcome === outcome)).reverse();
  $("count-sessions").textContent = state.sessions.length;
  $("no-sessions").hidden = shown.length > 0;
  $("sessions").tBodies[0].replaceChildren(...shown.map((s) => el("tr",
    { class: s.id === state.session ? "selected" : null, "data-session": s.id, "data-outcome": s.outcome },
    el("td", {}, el("button", { type: "button", class: "link", onclick: () => loadTranscript(s.id), "aria-label": `Session ${s.id} transcript` }, `#${s.id}`)),
    el("td", { text: s.protocol.toUpperCase() }),
    el("td", { class: "mono", text: s.users.join(", ") || "—" }),
    el("td", { text: s.tls_version || "none" }),
    el("td", { class: outcomeClass(s.outcome), text: s.outcome }),
    el("td", { class: "reason", text: s.reason || "" }))));
}

async function loadTranscript(id) {
  const t = await api("GET", `/sessions/${id}`);
  const changed = state.session !== id;
  state.session = id;
  for (const row of $("sessions").tBodies[0].rows) row.classList.toggle("selected", row.dataset.session === String(id));
  const lines = t.lines.map((line) => el("div", { class: "line-" + line.direction },
    `${line.elapsed.toFixed(3).padStart(8)} ${{ client: "C", server: "S", event: "*" }[line.direction]}: ${line.text}`));
  $("transcript").replaceChildren(
    el("h3", {}, `${t.protocol.toUpperCase()} session #${t.id}`),
    el("p", { class: "hint" }, `from ${t.peer} on ${t.listener} · TLS: ${t.tls_version || "none"}`),
    el("pre", { id: "transcript-text", tabindex: "0", "aria-label": "Transcript lines" }, lines));
  if (changed) $("transcript").scrollIntoView({ block: "nearest" });
}

// --- captured mail -----------------------------------------------------------------------------
async function loadMessages() {
  state.messages = await api("GET", "/messages");
  $("count-mail").textContent = state.messages.length;
  $("no-mail").hidden = state.messages.length > 0;
  $("messages").tBodies[0].replaceChildren(...[...state.messages].reverse().map((m) => el("tr",
    { class: m.index === state.message ? "selected" : null, "data-message": m.index },
    el("td", { text: m.index }),
    el("td", { class: "mono", text: m.mail_from }),
    el("td", { class: "mono", text: m.rcpt_tos.join(", ") }),
    el("td", {}, el("button", { type: "button", class: "link", onclick: () => loadMessage(m.index) }, m.subject || "(no subject)")),
    el("td", { class: "mono", text: m.login || "—" }))));
}

async function loadMessage(index) {
  const m = await api("GET", `/ui/messages/${index}`);
  state.message = index;
  for (const row of $("messages").tBodies[0].rows) row.classList.toggle("selected", row.dataset.message === String(index));
  const parts = [["text", "Text"], ["html", "HTML"], ["headers", "Headers"], ["raw", "Raw source"], ["attachments", `Attachments (${m.attachments.length})`]];
  if (!m.html && state.messagePart === "html") state.messagePart = "text";
  const body = el("div", { id: "message-part" });
  const buttons = parts.map(([key, label]) => el("button", {
    type: "button", "aria-pressed": String(key === state.messagePart), disabled: key === "html" && !m.html,
    onclick: () => { state.messagePart = key; loadMessage(index).catch(() => {}); },
  }, label));
  $("message").replaceChildren(
    el("h3", {}, m.subject || "(no subject)"),
    el("dl", { class: "headers" },
      el("dt", {}, "From"), el("dd", { class: "mono" }, m.mail_from),
      el("dt", {}, "To"), el("dd", { class: "mono" }, m.rcpt_tos.join(", ")),
      el("dt", {}, "Login"), el("dd", { class: "mono" }, m.login || "—"),
      el("dt", {}, "TLS"), el("dd", {}, m.tls_version || "none"),
      el("dt", {}, "Received"), el("dd", {}, m.received_at)),
    el("div", { class: "subtabs", role: "group", "aria-label": "Message part" }, buttons), body);
  const part = state.messagePart;
  if (part === "text") body.append(el("pre", { tabindex: "0" }, m.text ?? "(no text part)"));
  else if (part === "html") body.append(htmlFrame(m.html));
  else if (part === "headers") body.append(el("dl", { class: "headers" }, m.headers.map(([k, v]) => [el("dt", {}, k), el("dd", { class: "mono" }, v)])));
  else if (part === "raw") {
    const raw = await api("GET", `/ui/messages/${index}/raw`);
    body.append(el("p", {}, el("a", { href: `/api/ui/messages/${index}/raw`, download: `${m.queue_id}.eml` }, "Download .eml")),
      el("pre", { tabindex: "0", id: "raw-source" }, raw));
  } else {
    body.append(m.attachments.length ? el("ul", { class: "links" }, m.attachments.map((a) => el("li", {},
      el("a", { href: `/api/ui/messages/${index}/attachments/${a.index}`, download: a.filename }, a.filename),
      ` (${a.content_type}, ${a.size} bytes)`))) : el("p", { class: "empty" }, "No attachments."));
  }
}

// The message's own HTML, shown with no permission at all: sandbox="" (no scripts, no
// forms, no top navigation, an opaque origin) and a policy inside that forbids scripts too.
function htmlFrame(html) {
  const policy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:";
  const frame = el("iframe", { class: "html-body", sandbox: "", title: "HTML body (sandboxed, no scripts)", referrerpolicy: "no-referrer" });
  frame.srcdoc = `<!doctype html><meta http-equiv="Content-Security-Policy" content="${policy}">` + html;
  return frame;
}

// --- mailboxes ---------------------------------------------------------------------------------
async function loadMailboxes() {
  const login = $("mb-user").value;
  if (!login) return;
  state.mailboxUser = login;
  let data;
  try { data = await api("GET", `/mailboxes/${encodeURI(login)}`); } catch (error) {
    $("mailboxes").replaceChildren(el("p", { class: "empty" }, error.message));
    showError("");
    return;
  }
  $("mailboxes").replaceChildren(...data.mailboxes.map((box) => el("details", { open: box.messages.length > 0 || box.name === "INBOX" },
    el("summary", {}, `${box.name}${box.special_use ? " " + box.special_use : ""} — ${box.messages.length} message(s)`),
    box.messages.length ? el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, ["UID", "Subject", "Flags", "Size"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, box.messages.map((m) => el("tr", {},
        el("td", {}, m.uid), el("td", {}, m.subject || "(no subject)"),
        el("td", { class: "mono" }, m.flags.join(" ")), el("td", {}, m.size)))))) : null)));
}

// --- switches ----------------------------------------------------------------------------------
async function loadSwitches() {
  const switches = await api("GET", "/ui/switches");
  state.switches = switches;
  $("sw-outage").setAttribute("aria-pressed", String(switches.auth_outage));
  let maintenance = false;
  for (const protocol of ["imap", "smtp"]) {
    const reply = await fetch(`/api/settings/${protocol}`, { credentials: "same-origin" });
    if (!reply.ok) continue; // not served
    const settings = await reply.json();
    maintenance = maintenance || Boolean(settings.maintenance);
    if (protocol === "smtp") {
      setValue($("rs-count"), settings.send_rate ? settings.send_rate.count : "");
      if (settings.send_rate) setValue($("rs-per"), settings.send_rate.per_seconds);
    }
  }
  $("sw-maintenance").setAttribute("aria-pressed", String(maintenance));
  setValue($("rl-count"), switches.login_rate ? switches.login_rate.count : "");
  if (switches.login_rate) setValue($("rl-per"), switches.login_rate.per_seconds);
}

function renderFronts(faults) {
  state.faults = faults;
  const names = Object.keys(faults);
  const box = $("fronts");
  if (!names.length) {
    box.replaceChildren(el("p", { class: "hint" }, "No listener is fronted: serve with --fronts all to switch latency, bandwidth, refusals here."));
    box.dataset.keys = "";
    return;
  }
  if (!sameKeys(box, names)) {
    box.replaceChildren(...names.map(frontForm));
    box.dataset.keys = names.join("\n");
  }
  for (const name of names) {
    const slug = name.replace(/\W/g, "-");
    const latency = faults[name].find((f) => f.kind === "latency");
    const bandwidth = faults[name].find((f) => f.kind === "bandwidth");
    setValue($("lat-" + slug), latency ? latency.ms : "");
    setValue($("bw-" + slug), bandwidth ? bandwidth.bytes_per_second : "");
    $("faults-" + slug).textContent = faults[name].map((f) => f.kind).join(", ") || "no faults";
  }
}

function frontForm(name) {
  const slug = name.replace(/\W/g, "-");
  const put = (faults) => change("PUT", `/faults/${name}`, { faults });
  const form = el("form", { class: "row", onsubmit: (event) => {
    event.preventDefault();
    // Latency and bandwidth are set here; the listener's other faults stay.
    const ms = Number($("lat-" + slug).value), rate = Number($("bw-" + slug).value);
    const kept = state.faults[name].filter((f) => f.kind !== "latency" && f.kind !== "bandwidth");
    if (ms > 0) kept.push({ kind: "latency", ms });
    if (rate > 0) kept.push({ kind: "bandwidth", bytes_per_second: rate });
    put(kept).then(() => { clean(form); return refreshState(); }, () => {});
  } },
  el("span", { class: "mono front-name" }, name),
  el("label", { for: "lat-" + slug }, "latency ms"),
  el("input", { id: "lat-" + slug, type: "number", min: "0" }),
  el("label", { for: "bw-" + slug }, "bytes/s"),
  el("input", { id: "bw-" + slug, type: "number", min: "0" }),
  el("button", { type: "submit" }, "Apply"),
  el("button", { type: "button", onclick: () => put([{ kind: "refuse" }]).then(refreshState, () => {}) }, "Refuse"),
  el("button", { type: "button", onclick: () => change("DELETE", `/faults/${name}`).then(() => { clean(form); return refreshState(); }, () => {}) }, "Clear"),
  el("span", { class: "hint", id: "faults-" + slug }));
  return form;
}

function renderUserSwitches(users) {
  const box = $("user-switches");
  const logins = users.map((u) => u.login);
  if (!sameKeys(box, logins)) {
    box.replaceChildren(...logins.map(userRow));
    box.dataset.keys = logins.join("\n");
  }
  for (const u of users) {
    const slug = u.login.replace(/\W/g, "-");
    $("dis-" + slug).setAttribute("aria-pressed", String(Boolean(u.disabled)));
    $("quota-" + slug).setAttribute("aria-pressed", String(state.quotaFull.has(u.login)));
    setValue($("pw-" + slug), u.password);
  }
}

function userRow(login) {
  const slug = login.replace(/\W/g, "-");
  const path = `/users/${encodeURI(login)}`;
  const current = () => state.users.find((u) => u.login === login) || {};
  const form = el("form", { class: "row", onsubmit: (event) => {
    event.preventDefault();
    change("PATCH", path, { password: $("pw-" + slug).value }).then(() => { clean(form); return refreshState(); }, () => {});
  } }, el("label", { for: "pw-" + slug }, "password"), el("input", { id: "pw-" + slug, class: "mono" }),
    el("button", { type: "submit" }, "Change password"));
  return el("div", { class: "row", "data-user": login },
    el("strong", { class: "mono" }, login),
    el("button", { type: "button", class: "toggle", id: "dis-" + slug,
      onclick: () => change("PATCH", path, { disabled: !current().disabled }).then(refreshState, () => {}) }, "Account disabled"),
    el("button", { type: "button", class: "toggle", id: "quota-" + slug,
      onclick: () => {
        const full = !state.quotaFull.has(login);
        change("PUT", `${path}/quota`, full ? { storage_bytes: 1, messages: 1 } : { storage_bytes: null, messages: null })
          .then(() => { if (full) state.quotaFull.add(login); else state.quotaFull.delete(login); return refreshState(); }, () => {});
      } }, "Quota full"),
    form);
}

async function refreshState() {
  await Promise.all([loadFacts(), loadUsers(), loadSwitches()]);
  if (state.view === "mailboxes") await loadMailboxes();
}

async function refreshAll() {
  await Promise.all([refreshState(), loadSessions(), loadMessages()]);
}

// --- live updates --------------------------------------------------------------------------------
function listen() {
  const live = $("live");
  const source = new EventSource("/api/events");
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "disconnected, retrying…"; live.className = "live off"; };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.kind === "hello") {
      live.textContent = "live"; live.className = "live on";
      soon("all", refreshAll);
    } else if (event.kind === "session") {
      soon("sessions", loadSessions);
      if (state.view === "mailboxes") soon("mailboxes", loadMailboxes); // APPEND, EXPUNGE...
    } else if (event.kind === "message") {
      soon("messages", loadMessages);
      if (state.view === "mailboxes") soon("mailboxes", loadMailboxes);
    } else soon("all", refreshAll);
  };
}

// --- wiring ----------------------------------------------------------------------------------------
function wire() {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  // Arrow keys move between the view tabs, as in a tab bar.
  $("main").previousElementSibling.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
    const tabs = [...document.querySelectorAll(".tab")];
    const at = tabs.indexOf(document.activeElement);
    if (at < 0) return;
    const next = tabs[(at + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    next.focus();
    event.preventDefault();
  });
  for (const id of ["f-protocol", "f-user", "f-outcome"]) $(id).addEventListener("input", renderSessions);
  $("session-filters").addEventListener("submit", (event) => event.preventDefault());
  $("mb-user").addEventListener("change", () => { clean($("mb-user").parentElement); loadMailboxes().catch(() => {}); });
  $("switcher").addEventListener("submit", (event) => {
    event.preventDefault();
    change("PUT", "/ui/scenario", { name: $("scenario-select").value }).then(() => { clean($("switcher")); return refreshAll(); }, () => {});
  });
  $("sw-outage").addEventListener("click", () => change("PUT", "/auth-outage",
    { on: $("sw-outage").getAttribute("aria-pressed") !== "true" }).then(refreshState, () => {}));
  $("sw-maintenance").addEventListener("click", () => change("PUT", "/maintenance",
    { on: $("sw-maintenance").getAttribute("aria-pressed") !== "true" }).then(refreshState, () => {}));
  $("sw-shutdown").addEventListener("click", () => change("POST", "/announce-shutdown").catch(() => {}));
  $("sw-reset").addEventListener("click", () => change("POST", "/reset").then(refreshAll, () => {}));
  $("rate-login").addEventListener("submit", (event) => {
    event.preventDefault();
    const count = $("rl-count").value;
    change("PUT", "/ui/login-rate", count ? { count: Number(count), per_seconds: Number($("rl-per").value) } : { count: null }).then(() => { clean($("rate-login")); return refreshState(); }, () => {});
  });
  $("rate-send").addEventListener("submit", (event) => {
    event.preventDefault();
    const count = $("rs-count").value;
    change("PATCH", "/settings/smtp", { send_rate: count ? { count: Number(count), per_seconds: Number($("rs-per").value) } : null }).then(() => { clean($("rate-send")); return refreshState(); }, () => {});
  });
  const start = location.hash.slice(1);
  showView(document.querySelector(`.tab[data-view="${start}"]`) ? start : "overview");
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  loadScenarios().catch(() => {});
  refreshAll().catch(() => {});
  listen();
});
