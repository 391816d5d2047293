// varg-relay dashboard: one module, no dependencies, no build step.
// Every call goes to this relay's public API with the token the user signed in with (kept in
// sessionStorage, for this tab only), so the page shows and does only what that token may.
// Data is put in the page as text (never as HTML): receivers' answers are untrusted.

const TOKEN_KEY = "varg-relay-token";
const REFRESH_MS = 2000;
const API = new URL("../v1/", document.baseURI);

const STATUS_ICONS = {
  completed: "check", succeeded: "check", active: "check",
  failed: "cross", disabled: "cross", not_found: "question", cancelled: "slash", deleted: "slash",
  processing: "spin", pending: "clock", queued: "clock", done: "check", watch_expired: "clock",
  accepted: "check", unauthorized: "cross",
};
const ICON_PATHS = {
  check: "M3.5 8.5l3 3 6-7",
  cross: "M4 4l8 8M12 4l-8 8",
  slash: "M3.5 12.5l9-9M8 1.5a6.5 6.5 0 1 0 0 13a6.5 6.5 0 1 0 0-13",
  clock: "M8 1.5a6.5 6.5 0 1 0 0 13a6.5 6.5 0 1 0 0-13M8 4.5v4l2.5 1.5",
  spin: "M8 1.5a6.5 6.5 0 1 1-6.5 6.5M8 4.5a3.5 3.5 0 1 1-3.5 3.5",
  question: "M5.5 6a2.5 2.5 0 1 1 3.5 2.3c-.6.3-1 .8-1 1.5v.7M8 12.5v.5",
  dot: "M8 6a2 2 0 1 0 0 4a2 2 0 1 0 0-4",
};
const JOB_STATUSES = ["queued", "processing", "completed", "failed", "cancelled", "not_found",
  "watch_expired"];

// ---------------------------------------------------------------- small DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A table cell whose content is one box (on narrow screens the cell is a grid: label, box). */
function cell(tag, attrs, ...content) {
  return h(tag, attrs, h("div", {}, content));
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, value);
  for (const child of children) el.append(child);
  return el;
}

function icon(name) {
  return svg("svg", { class: "icon", viewBox: "0 0 16 16", "aria-hidden": "true", focusable: "false" },
    svg("path", { d: ICON_PATHS[name] || ICON_PATHS.dot }));
}

/** A status as icon + text + colour: never by colour alone. */
function badge(status) {
  const text = status || "not polled yet";
  return h("span", { class: `badge s-${status || "none"}` }, icon(STATUS_ICONS[status]), text);
}

function announce(text) {
  const region = document.getElementById("announce");
  region.textContent = "";
  setTimeout(() => { region.textContent = text; }, 50);
}

// ---------------------------------------------------------------- times

function ago(iso, bare) {
  if (!iso) return "—";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  if (bare) return span(Math.max(0, seconds));
  return seconds >= 0 ? `${span(seconds)} ago` : `in ${span(-seconds)}`;
}

function span(seconds) {
  if (seconds < 1) return "<1s";
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${Math.floor(seconds % 60)}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ${Math.floor(seconds % 3600 / 60)}m`;
  return `${Math.floor(seconds / 86400)}d ${Math.floor(seconds % 86400 / 3600)}h`;
}

/** A relative time that keeps itself current (see tick), with the exact time on hover. */
function when(iso, bare) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: new Date(iso).toLocaleString(),
    "data-ago": bare ? "bare" : "" }, ago(iso, bare));
}

function tick() {
  for (const el of document.querySelectorAll("time[data-ago]")) {
    const text = ago(el.getAttribute("datetime"), el.dataset.ago === "bare");
    if (el.textContent !== text) el.textContent = text;
  }
}

function localInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
  }
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path, options = {}) {
  const headers = { authorization: `Bearer ${options.token || token()}` };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(new URL(path, API), {
    method: options.method || "GET", headers, cache: "no-store",
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401 && !options.token) {
    signOut("The relay refused the token. Sign in again.");
    throw new ApiError(401, body);
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function query(params) {
  const found = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return found.length ? `?${new URLSearchParams(found)}` : "";
}

// ---------------------------------------------------------------- routing and live updates

const view = { generation: 0, timer: null, last: null, refresh: () => {} };
let moved = false; // true after the first navigation: headings take focus from then on

function route() {
  const hash = location.hash.startsWith("#/") ? location.hash.slice(2) : "jobs";
  const [path, search] = hash.split("?");
  const parts = path.split("/").map(decodeURIComponent);
  return { parts, params: new URLSearchParams(search || "") };
}

/** Start a page: `load` fetches its data, `draw` builds it; both run again every REFRESH_MS
 *  (while the tab is visible), and the page is redrawn only when the data changed. */
function page(title, load, draw) {
  clearTimeout(view.timer);
  const generation = ++view.generation;
  const takeFocus = moved; // not on the page first loaded: focus starts at its top
  view.last = null;
  document.title = `${title} · varg-relay`;
  const schedule = () => {
    clearTimeout(view.timer);
    view.timer = setTimeout(() => (document.hidden ? schedule() : run(false)), REFRESH_MS);
  };
  const run = async (first) => {
    try {
      const data = await load();
      if (generation !== view.generation) return;
      const text = JSON.stringify(data);
      if (first || text !== view.last) {
        view.last = text;
        redraw(draw(data), first && takeFocus);
      }
    } catch (error) {
      if (generation !== view.generation) return;
      if (first || !(error instanceof ApiError)) redraw(failure(title, error), first && takeFocus);
    }
    if (first) performance.mark("first-render");
    schedule();
  };
  view.refresh = () => { view.last = null; run(false); };
  run(true);
}

/** Replace the page's content, keeping focus on the control that had it (by data-key); on a
 *  new page (`focusHeading`), focus moves to its heading, so a screen reader hears it. */
function redraw(content, focusHeading) {
  const main = document.getElementById("main");
  const focused = document.activeElement && document.activeElement.dataset.key;
  main.replaceChildren(...[content].flat(Infinity).filter(Boolean));
  const again = focused && main.querySelector(`[data-key="${CSS.escape(focused)}"]`);
  const heading = main.querySelector("h1");
  if (heading) heading.tabIndex = -1;
  if (again) again.focus();
  else if (focusHeading && heading) heading.focus();
}

function failure(title, error) {
  const text = error instanceof ApiError && error.status === 404
    ? "Not found: nothing this token can see has that id."
    : `Could not load this page: ${error.message}`;
  return [h("h1", {}, title), h("p", { class: "error", role: "alert" }, text)];
}

function navigate() {
  if (!location.hash.startsWith("#/") && location.hash) return;
  for (const link of document.querySelectorAll("[data-nav]")) {
    const current = route().parts[0] === link.dataset.nav ||
      (link.dataset.nav === "jobs" && route().parts[0] === "subscriptions");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!token()) return signIn();
  document.getElementById("signout").hidden = false;
  const { parts, params } = route();
  if (parts[0] === "jobs" && parts[1]) jobPage(parts[1]);
  else if (parts[0] === "subscriptions" && parts[1]) subscriptionPage(parts[1]);
  else if (parts[0] === "failed") failedPage(params);
  else if (parts[0] === "upstream") upstreamPage();
  else jobsPage(params);
  moved = true;
}

// ---------------------------------------------------------------- sign in

function signIn(message) {
  clearTimeout(view.timer);
  view.generation++;
  document.title = "Sign in · varg-relay";
  document.getElementById("signout").hidden = true;
  const input = h("input", { id: "token", name: "token", type: "password", required: true,
    autocomplete: "off", spellcheck: "false", "aria-describedby": "token-help" });
  const error = h("p", { class: "error", role: "alert" }, message || "");
  const form = h("form", { class: "signin", onsubmit: async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    try {
      await api("jobs?limit=1", { token: value });
    } catch (failed) {
      error.textContent = failed.status === 401
        ? "That token is not accepted by this relay." : `Could not sign in: ${failed.message}`;
      input.focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, value);
    announce("Signed in");
    navigate();
  } },
  h("label", { for: "token" }, "API token"),
  input,
  h("p", { id: "token-help", class: "muted" },
    "One of the relay's RELAY_API_TOKENS. It stays in this browser tab and is sent only to this relay."),
  h("button", { type: "submit" }, "Sign in"),
  error);
  redraw([h("h1", {}, "Sign in"), form], false);
  input.focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  signIn(message);
}

// ---------------------------------------------------------------- jobs

function jobsPage(params) {
  const status = params.get("status") || "";
  const q = params.get("q") || "";
  let shown = 20;
  const load = () => api(`jobs${query({ status, q, limit: shown })}`);
  const setFilter = (next) => {
    const search = query({ status: next.status, q: next.q });
    location.hash = `#/jobs${search}`;
  };
  const filters = () => {
    const select = h("select", { id: "status", "data-key": "status", onchange: (e) =>
      setFilter({ status: e.target.value, q }) },
    h("option", { value: "" }, "Any status"),
    JOB_STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
    const search = h("input", { id: "q", type: "search", value: q, "data-key": "q",
      placeholder: "job id", autocomplete: "off", spellcheck: "false" });
    return h("form", { class: "filters", role: "search", "aria-label": "Filter jobs",
      onsubmit: (e) => { e.preventDefault(); setFilter({ status, q: search.value.trim() }); } },
    h("div", { class: "field" }, h("label", { for: "status" }, "Status"), select),
    h("div", { class: "field grow" }, h("label", { for: "q" }, "Search by job id"), search),
    h("button", { type: "submit", "data-key": "search" }, "Search"),
    (status || q) && h("a", { href: "#/jobs", class: "clear" }, "Clear filters"));
  };
  const draw = (found) => [
    h("h1", {}, "Jobs"),
    filters(),
    h("p", { class: "muted live" }, icon("spin"), " Live: updates every 2 seconds"),
    found.data.length ? jobsTable(found.data) : h("p", { class: "empty" },
      status || q ? "No job matches these filters." :
        "No jobs yet. Register one with POST /v1/subscriptions and it appears here."),
    found.next_cursor && h("button", { type: "button", class: "quiet", "data-key": "more",
      onclick: () => { shown = Math.min(100, shown + 20); view.refresh(); } },
    shown >= 100 ? "Showing the newest 100" : "Show more"),
  ];
  page(status || q ? "Jobs (filtered)" : "Jobs", load, draw);
}

function jobsTable(jobs) {
  return h("div", { class: "table-wrap" }, h("table", { class: "list" },
    h("caption", { class: "visually-hidden" }, "Jobs, newest subscription first"),
    h("thead", {}, h("tr", {}, ["Job", "Status", "Model", "Age", "Last poll", "Next poll",
      "Subscriptions"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, jobs.map((job) => h("tr", { "data-job": job.job_id },
      cell("th", { scope: "row", "data-label": "Job" },
        h("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}`, "data-key": `job:${job.job_id}`,
          class: "id" }, job.job_id)),
      cell("td", { "data-label": "Status" }, badge(job.status)),
      cell("td", { "data-label": "Model" }, job.model || "—"),
      cell("td", { "data-label": "Age" }, when(job.created_at, true)),
      cell("td", { "data-label": "Last poll" }, when(job.last_polled_at)),
      cell("td", { "data-label": "Next poll" }, job.watching ? when(job.next_poll_at) : "finished"),
      cell("td", { "data-label": "Subscriptions", class: "num" }, job.subscription_count))))));
}

// ---------------------------------------------------------------- one job

function jobPage(jobId) {
  const path = `jobs/${encodeURIComponent(jobId)}`;
  const load = async () => {
    const [job, events] = await Promise.all([api(path), api(`${path}/events`)]);
    return { job, events: events.data };
  };
  page(`Job ${jobId}`, load, ({ job, events }) => [
    h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / "),
    h("h1", {}, "Job ", h("span", { class: "id" }, job.job_id)),
    h("dl", { class: "facts" },
      fact("Status", badge(job.status)),
      fact("Model", (job.job && job.job.model) || "—"),
      fact("Created", when(job.job && job.job.created_at)),
      fact("Watching", job.watching ? "yes" : "no, finished"),
      fact("Polls", job.polls),
      fact("Last poll", when(job.last_polled_at)),
      fact("Next poll", job.watching ? when(job.next_poll_at) : "—")),
    h("h2", {}, "Timeline"),
    timelineList(job, events),
    h("h2", {}, "Subscriptions"),
    subscriptionsTable(job.subscriptions),
  ]);
}

function fact(label, value, wide) {
  return h("div", { class: wide ? "wide" : null }, h("dt", {}, label), h("dd", {}, value));
}

function timelineList(job, events) {
  const items = [
    ...job.subscriptions.map((s) => ({ at: s.created_at, kind: "subscribed", sub: s })),
    ...events.map((e) => ({ at: e.observed_at, kind: "status", event: e })),
  ].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  if (!items.length) return h("p", { class: "empty" }, "Nothing observed yet.");
  return h("ol", { class: "timeline" }, items.map((item) => item.kind === "subscribed"
    ? h("li", { class: "subscribed" },
      h("span", { class: "at" }, exact(item.at)),
      h("span", {}, "Subscribed ", subLink(item.sub.id), " → ", h("span", { class: "url" }, item.sub.url)))
    : h("li", { "data-status": item.event.status },
      h("span", { class: "at" }, exact(item.at)),
      h("span", {}, "Observed ", badge(item.event.status)),
      h("ul", { class: "webhooks" }, item.event.webhooks.map((w) => h("li", {},
        h("code", {}, w.id), " ", w.event_type, " to ", subLink(w.subscription_id), ": ",
        badge(w.status), ` (${w.attempts} attempt${w.attempts === 1 ? "" : "s"})`))))));
}

function exact(iso) {
  return h("time", { datetime: iso }, new Date(iso).toLocaleString());
}

function subLink(sid) {
  return h("a", { href: `#/subscriptions/${sid}`, class: "id", "data-key": `sub:${sid}` }, sid);
}

function subscriptionsTable(subs) {
  return h("div", { class: "table-wrap" }, h("table", { class: "list" },
    h("caption", { class: "visually-hidden" }, "This token's subscriptions of the job"),
    h("thead", {}, h("tr", {}, ["Subscription", "State", "Last status", "URL", "Created"]
      .map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, subs.map((s) => h("tr", {},
      cell("th", { scope: "row", "data-label": "Subscription" }, subLink(s.id)),
      cell("td", { "data-label": "State" }, badge(s.state)),
      cell("td", { "data-label": "Last status" }, s.last_status || "—"),
      cell("td", { "data-label": "URL", class: "url" }, s.url),
      cell("td", { "data-label": "Created" }, when(s.created_at)))))));
}

// ---------------------------------------------------------------- one subscription

function subscriptionPage(sid) {
  const load = async () => {
    const [sub, deliveries] = await Promise.all([api(`subscriptions/${sid}`),
      api(`subscriptions/${sid}/deliveries`)]);
    return { sub, deliveries: deliveries.data };
  };
  page(`Subscription ${sid}`, load, ({ sub, deliveries }) => [
    h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / ",
      h("a", { href: `#/jobs/${encodeURIComponent(sub.job_id)}`, class: "id" }, sub.job_id), " / "),
    h("h1", {}, "Subscription ", h("span", { class: "id" }, sub.id)),
    h("dl", { class: "facts" },
      fact("State", badge(sub.state)),
      fact("URL", h("span", { class: "url" }, sub.url), true),
      fact("Events", sub.events.length === 8 ? "all" : sub.events.join(", ")),
      fact("Last status", sub.last_status || "—"),
      fact("Created", when(sub.created_at)),
      fact("Metadata", h("code", { class: "json" }, JSON.stringify(sub.metadata)), true)),
    h("h2", {}, `Deliveries (${deliveries.length})`),
    deliveries.length ? deliveries.map((d) => deliveryCard(d, sub))
      : h("p", { class: "empty" }, "No webhook yet: the relay has not seen a status for this job."),
  ]);
}

function deliveryCard(d, sub) {
  return h("section", { class: "delivery", "aria-labelledby": `h-${d.id}`, "data-delivery": d.id },
    h("div", { class: "delivery-head" },
      h("h3", { id: `h-${d.id}` }, d.event_type, " ", badge(d.status)),
      redeliverButton(sub.id, d, sub.state === "deleted")),
    h("p", { class: "muted" }, "webhook-id ", h("code", {}, d.id), " · created ", when(d.created_at),
      d.next_attempt_at ? [" · next attempt ", when(d.next_attempt_at)] : null),
    attemptsTable(d.attempts));
}

function redeliverButton(sid, d, disabled) {
  return h("button", { type: "button", "data-key": `redeliver:${d.id}`, disabled,
    "aria-label": `Redeliver ${d.event_type} ${d.id}`,
    onclick: async (event) => {
      event.target.disabled = true;
      try {
        await api(`subscriptions/${sid}/deliveries/${d.id}/retry`, { method: "POST" });
        announce(`Redelivery of ${d.event_type} queued`);
      } catch (error) {
        announce(`Redeliver failed: ${error.message}`);
      }
      event.target.disabled = false;
      view.refresh();
    } }, "Redeliver");
}

function attemptsTable(attempts) {
  if (!attempts.length) return h("p", { class: "muted" }, "No attempt yet.");
  return h("div", { class: "table-wrap" }, h("table", { class: "list attempts" },
    h("caption", { class: "visually-hidden" }, "Attempts, oldest first"),
    h("thead", {}, h("tr", {}, ["#", "Time", "Status code", "Duration", "Error", "Response"]
      .map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, attempts.map((a, i) => h("tr", { "data-attempt": i + 1 },
      cell("td", { "data-label": "#", class: "num" }, i + 1),
      cell("td", { "data-label": "Time" }, exact(a.at)),
      cell("td", { "data-label": "Status code" }, codeBadge(a.status_code)),
      cell("td", { "data-label": "Duration", class: "num" }, `${a.duration_ms} ms`),
      cell("td", { "data-label": "Error" }, a.error || "—"),
      cell("td", { "data-label": "Response" }, snippet(a.response_body)))))));
}

function codeBadge(code) {
  if (code === null || code === undefined) {
    return h("span", { class: "badge s-failed" }, icon("cross"), "no answer");
  }
  const ok = code >= 200 && code < 300;
  return h("span", { class: `badge ${ok ? "s-succeeded" : "s-failed"}` },
    icon(ok ? "check" : "cross"), String(code));
}

function snippet(body) {
  if (!body) return h("span", { class: "muted" }, "—");
  if (body.length <= 80) return h("code", { class: "snippet" }, body);
  return h("details", {}, h("summary", {}, h("code", { class: "snippet" }, `${body.slice(0, 60)}…`)),
    h("pre", {}, body));
}

// ---------------------------------------------------------------- failed deliveries

function failedPage(params) {
  const asked = new Date(params.get("since") || NaN);
  const initial = isNaN(asked) ? new Date(Date.now() - 24 * 3600 * 1000) : asked;
  const since = initial.toISOString();
  const load = () => api(`deliveries${query({ status: "failed", since, limit: 100 })}`);
  const result = h("p", { class: "result", role: "status" });
  page("Failed deliveries", load, (found) => {
    const input = h("input", { id: "since", type: "datetime-local", value: localInput(initial),
      required: true, "data-key": "since" });
    const pick = () => new Date(input.value);
    const form = h("form", { class: "filters", "aria-label": "Failed deliveries since",
      onsubmit: (e) => { e.preventDefault(); location.hash = `#/failed?since=${pick().toISOString()}`; } },
    h("div", { class: "field" }, h("label", { for: "since" }, "Failed since (your local time)"), input),
    h("button", { type: "submit", "data-key": "show" }, "Show"),
    h("button", { type: "button", class: "primary", "data-key": "retry-all",
      disabled: !found.data.length, onclick: async () => {
        try {
          const done = await api("deliveries/retry", { method: "POST", body: { since } });
          result.textContent = `Queued ${done.queued} deliver${done.queued === 1 ? "y" : "ies"} ` +
            `on ${done.subscriptions} subscription${done.subscriptions === 1 ? "" : "s"}.`;
        } catch (error) {
          result.textContent = `Could not redeliver: ${error.message}`;
        }
        view.refresh();
      } }, `Redeliver all failed since ${initial.toLocaleString()}`));
    return [
      h("h1", {}, "Failed deliveries"),
      h("p", { class: "muted" }, "Webhooks whose retry schedule ran out, across every subscription of this token."),
      form, result,
      found.data.length ? failedTable(found.data) : h("p", { class: "empty" },
        "No failed delivery since then."),
      found.next_cursor && h("p", { class: "muted" }, "Showing the newest 100."),
    ];
  });
}

function failedTable(deliveries) {
  return h("div", { class: "table-wrap" }, h("table", { class: "list" },
    h("caption", { class: "visually-hidden" }, "Failed deliveries"),
    h("thead", {}, h("tr", {}, ["Event", "Job", "Subscription", "Created", "Last attempt", "Redeliver"]
      .map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, deliveries.map((d) => {
      const last = d.attempts[d.attempts.length - 1];
      const job = d.payload && d.payload.data ? d.payload.data.job_id : "";
      return h("tr", { "data-delivery": d.id },
        cell("th", { scope: "row", "data-label": "Event" }, d.event_type, " ", badge(d.status)),
        cell("td", { "data-label": "Job" }, h("a", { href: `#/jobs/${encodeURIComponent(job)}`, class: "id" }, job)),
        cell("td", { "data-label": "Subscription" }, subLink(d.subscription_id)),
        cell("td", { "data-label": "Created" }, when(d.created_at)),
        cell("td", { "data-label": "Last attempt" }, last
          ? [codeBadge(last.status_code), " ", when(last.at),
            last.error && h("span", { class: "detail" }, last.error)] : "none"),
        cell("td", { "data-label": "Redeliver" }, redeliverButton(d.subscription_id, d, false)));
    }))));
}

// ---------------------------------------------------------------- upstream health

function upstreamPage() {
  page("Upstream health", () => api("upstream"), (up) => {
    const perSecond = up.requests.map((b) => b.count / 5);
    return [
      h("h1", {}, "Upstream health"),
      h("p", { class: "muted" }, "The whole deployment's use of the Varg key (the same for every token); ",
        "what /metrics and /readyz report."),
      h("div", { class: "cards" },
        card("Budget used this minute",
          `${up.requests_last_minute} of ${up.budget_per_minute} requests`,
          gauge(up.requests_last_minute, up.budget_per_minute),
          up.budget_per_minute < up.configured_per_minute
            ? `Varg allows this key ${up.budget_per_minute}/min, below the configured ${up.configured_per_minute}.`
            : `RELAY_UPSTREAM_RATE_LIMIT=${up.configured_per_minute}`),
        card("Polls per second", `${up.polls_per_second.toFixed(1)}/s over the last 10 s`,
          bars(perSecond, "requests per second, 5-second bars, last minute", "s-bars"),
          "Each bar is 5 seconds; the last minute."),
        card("429 responses", `${up.rate_limited_last_hour} in the last hour`,
          bars(up.rate_limited.map((b) => b.count), "429 responses per 5 minutes, last hour",
            up.rate_limited_last_hour ? "s-bars bad" : "s-bars"),
          up.paused_for > 0 ? `Every worker is paused for ${up.paused_for.toFixed(0)} s.` : "No pause in force."),
        card("Varg key", up.unauthorized ? "Refused (401)" : "Accepted",
          h("p", { class: "big" }, badge(up.unauthorized ? "unauthorized" : "accepted")),
          up.unauthorized ? "Check VARG_API_KEY: polling backs off until Varg accepts it." : "No 401 lately."),
        card("Watched jobs", `${up.watches.total} watched`,
          h("dl", { class: "facts small" }, fact("Due now", up.watches.due),
            fact("Waiting > 10 s", up.watches.overdue)),
          up.watches.overdue ? "Jobs wait for the budget." : "Nothing waits for the budget.")),
    ];
  });
}

function card(title, value, chart, note) {
  return h("section", { class: "card", "aria-label": title },
    h("h2", {}, title), h("p", { class: "value" }, value), chart, h("p", { class: "muted" }, note));
}

function gauge(used, budget) {
  const share = budget ? Math.min(1, used / budget) : 0;
  const label = `${Math.round(share * 100)}% of the budget used`;
  return svg("svg", { class: `gauge${share > 0.9 ? " bad" : ""}`, viewBox: "0 0 200 16", role: "img", "aria-label": label,
    preserveAspectRatio: "none" },
  svg("title", {}, label),
  svg("rect", { class: "track", x: 0, y: 0, width: 200, height: 16, rx: 3 }),
  svg("rect", { class: "fill", x: 0, y: 0, width: Math.max(share * 200, used ? 2 : 0), height: 16, rx: 3 }));
}

function bars(values, label, cls) {
  const max = Math.max(1, ...values);
  const width = 200 / values.length;
  const description = `${label}: ${values.map((v) => Math.round(v * 10) / 10).join(", ")}`;
  return svg("svg", { class: cls, viewBox: "0 0 200 48", role: "img", "aria-label": description,
    preserveAspectRatio: "none" },
  svg("title", {}, description),
  svg("line", { class: "axis", x1: 0, y1: 47.5, x2: 200, y2: 47.5 }),
  ...values.map((v, i) => {
    const height = v ? Math.max(2, (v / max) * 44) : 0;
    return svg("rect", { x: i * width + 1, y: 47 - height, width: width - 2, height });
  }));
}

// ---------------------------------------------------------------- start

document.getElementById("signout").addEventListener("click", () => {
  signOut("Signed out.");
  announce("Signed out");
});
document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});
window.addEventListener("hashchange", navigate);
setInterval(tick, 1000);
navigate();
