// The dashboard: polls GET /llamaproc/status every second (docs/webui.md), draws request and
// token rates of the last two minutes as SVG, shows each model's state, memory and slots, and
// logs events: a pool's from GET /models/sse (llama-server's router events), a single server's
// from the state changes it sees. Load and unload buttons call the router's routes.
"use strict";

const POLL_MS = 1000;
const HISTORY = 120;  // samples kept per series (two minutes at one per second)

let previous = null;   // the last status document
const series = { req: [], tok: [], model: new Map() };
const cards = new Map();  // model id -> its card's elements
let kind = null;
let eventsLive = false;
const lastStatus = new Map();  // model id -> the status its last event said

const $ = (id) => document.getElementById(id);

function push(list, value) {
  list.push(value);
  if (list.length > HISTORY) list.shift();
}

// Draws `values` (newest last) into an SVG with a 0..HISTORY-1 x 0..40 viewBox.
function drawChart(svg, values) {
  const max = Math.max(1e-9, ...values);
  const offset = HISTORY - values.length;
  const points = values.map((v, i) => `${offset + i},${(40 - 38 * v / max).toFixed(2)}`);
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };
  const children = [make("line", { x1: 0, y1: 39.5, x2: HISTORY - 1, y2: 39.5 })];
  if (values.length > 1) {
    children.push(make("polygon", { points: `${offset},40 ${points.join(" ")} ${HISTORY - 1},40` }));
    children.push(make("polyline", { points: points.join(" ") }));
  }
  svg.replaceChildren(...children);
  return max;
}

function rate(delta, seconds) {
  return seconds > 0 && delta >= 0 ? delta / seconds : 0;
}

function totalRequests(doc) {
  return Object.values(doc.requests).reduce((a, b) => a + b, 0);
}

function logEvent(text, cls) {
  const list = $("events");
  const now = new Date();
  list.prepend(el("li", { class: cls || null },
    el("time", { datetime: now.toISOString() }, now.toLocaleTimeString()), el("span", {}, text)));
  while (list.children.length > 200) list.lastChild.remove();
}

// "restarting" is a load that follows a failure (a restart policy at work), or any new load of
// a single server (it loads only to recover or restart).
function stateText(m, failedBefore) {
  if (m.state === "loading") {
    const restarting = failedBefore || (m.loads > 1 && kind === "server");
    return (restarting ? "restarting " : "loading ") + Math.round(100 * m.load_progress) + "%";
  }
  return m.state;
}

// -- model cards ----------------------------------------------------------------------------

function modelCard(id) {
  if (cards.has(id)) return cards.get(id);
  const c = {
    badge: el("span", { class: "badge" }),
    progress: el("div", { class: "meter", hidden: true }, el("span", { style: "width:0%" })),
    failure: el("p", { class: "failure", hidden: true }),
    stats: el("dl", { class: "stats" }),
    rate: el("span", {}, "– tok/s"),
    chart: document.createElementNS("http://www.w3.org/2000/svg", "svg"),
    load: el("button", { type: "button", onclick: () => act("load", id) }, "Load"),
    unload: el("button", { type: "button", onclick: () => act("unload", id) }, "Unload"),
  };
  c.chart.setAttribute("class", "chart");
  c.chart.setAttribute("viewBox", `0 0 ${HISTORY - 1} 40`);
  c.chart.setAttribute("preserveAspectRatio", "none");
  c.chart.setAttribute("aria-label", `${id}: tokens per second`);
  c.root = el("article", { class: "card model-card", "data-model": id },
    el("header", {}, el("h3", { title: id }, shortName(id)), c.badge),
    c.progress, c.failure, c.stats,
    el("div", { class: "chart-label" }, c.rate, el("span", {}, "last 2 min")), c.chart,
    el("div", { class: "actions" }, c.load, c.unload));
  cards.set(id, c);
  $("models").append(c.root);
  return c;
}

function updateCard(m, tokRate, sampling) {
  const c = modelCard(m.id);
  if (m.state === "failed") c.failedBefore = true;
  else if (m.state !== "loading") c.failedBefore = false;
  const label = stateText(m, c.failedBefore);
  c.root.dataset.state = m.state;
  c.badge.className = "badge state-" + (label.startsWith("restarting") ? "restarting" : m.state);
  c.badge.textContent = label;
  c.progress.hidden = m.state !== "loading";
  c.progress.firstChild.style.width = Math.round(100 * m.load_progress) + "%";
  c.failure.hidden = !m.failure;
  c.failure.textContent = m.failure ? `${m.failure.kind}: ${m.failure.message}` : "";
  const rows = [];
  const add = (name, value) => rows.push(el("dt", {}, name), el("dd", {}, value));
  if (m.memory) {
    add("memory", `${formatBytes(m.memory.held)} (weights ${formatBytes(m.memory.model)}, ` +
                  `context ${formatBytes(m.memory.context)}, compute ${formatBytes(m.memory.compute)})`);
  } else if (kind === "pool" && m.memory_estimate) {
    add("memory", `${formatBytes(m.memory_estimate)} when loaded (estimate)`);
  }
  if (m.slots) {
    add("slots", `${m.slots.busy} busy of ${m.slots.total}`);
    add("waiting", String(m.slots.waiting));
  } else {
    add("slots", m.state === "loaded" ? "busy (no answer this second)" : "–");
  }
  add("in flight", String(m.active_requests));
  add("loads", String(m.loads));
  if (m.aliases && m.aliases.length && kind === "pool") add("aliases", m.aliases.join(", "));
  c.stats.replaceChildren(...rows);
  const history = series.model.get(m.id) || [];
  series.model.set(m.id, history);
  if (sampling) push(history, tokRate);
  drawChart(c.chart, history);
  c.rate.textContent = tokRate.toFixed(1) + " tok/s";
  const pool = kind === "pool";
  c.load.hidden = !pool;
  c.unload.hidden = !pool;
  c.load.disabled = m.state === "loaded" || m.state === "loading";
  c.unload.disabled = m.state !== "loaded" && m.state !== "loading";
}

async function act(what, id) {
  try {
    await postJson("models/" + what, { model: id });
    if (!eventsLive) logEvent(`${id}: ${what} asked`);
  } catch (e) {
    logEvent(`${id}: ${what} failed: ${e.message}`, "error-text");
  }
  poll();
}

// -- polling --------------------------------------------------------------------------------

// Logs what changed between two polls (a single server has no event stream).
function logChanges(before, after) {
  const old = new Map(before.models.map((m) => [m.id, m]));
  for (const m of after.models) {
    const o = old.get(m.id);
    if (!o) continue;
    if (m.loads > o.loads) logEvent(`${shortName(m.id)}: restarting (load ${m.loads})`);
    if (m.state !== o.state) {
      const why = m.state === "failed" && m.failure ? ` (${m.failure.message})` : "";
      logEvent(`${shortName(m.id)}: ${m.state}${why}`, m.state === "failed" ? "error-text" : null);
    }
  }
}

function updateSummary(doc) {
  const budget = doc.memory_budget;
  const used = doc.memory_reserved;
  $("memory-text").textContent = formatBytes(used) + (budget ? " of " + formatBytes(budget) : "");
  const meter = $("memory-meter");
  meter.hidden = !budget;
  meter.classList.toggle("over", budget > 0 && used > budget);
  meter.firstChild.style.width = budget ? Math.min(100, Math.round(100 * used / budget)) + "%" : "0%";
  const loaded = doc.models.filter((m) => m.state === "loaded").length;
  $("memory-sub").textContent = (doc.kind === "pool" ? `reserved by ${loaded} loaded model(s)` : "held by the model") +
    (budget ? "" : "; no memory budget set");
  const r = doc.requests;
  $("req-totals").textContent = `${r.ok} ok, ${r.client_error} client errors, ${r.server_error} server errors, ` +
    `${r.unavailable} unavailable, ${r.stream_failed} failed streams`;
  const generated = doc.models.reduce((a, m) => a + (m.tokens ? m.tokens.generated : 0), 0);
  $("tok-totals").textContent = `${generated} tokens generated by the models loaded now`;
}

let polling = false;
let rateBase = null;         // the document the rates were last measured from
const modelRates = new Map();  // model id -> its last tok/s

async function poll() {
  if (polling) return;
  polling = true;
  try {
    await pollOnce();
  } finally {
    polling = false;
  }
}

async function pollOnce() {
  let doc;
  try {
    doc = await apiJson("llamaproc/status");
  } catch (e) {
    $("conn").textContent = "cannot reach the server: " + e.message;
    return;
  }
  $("conn").textContent = `${doc.kind === "pool" ? "model pool" : "single server"} · updated ` +
    new Date(doc.time * 1000).toLocaleTimeString();
  if (kind === null) {
    kind = doc.kind;
    if (kind === "pool") followEvents();
  }
  if (previous && kind === "server") logChanges(previous, doc);
  // rates come from polls about a second apart (an event's extra poll only refreshes the cards)
  const sampling = rateBase !== null && doc.time - rateBase.time >= 0.9 * POLL_MS / 1000;
  const seconds = sampling ? doc.time - rateBase.time : 0;
  const base = new Map((rateBase ? rateBase.models : []).map((m) => [m.id, m]));
  let tokTotal = 0;
  const seen = new Set();
  for (const m of doc.models) {
    seen.add(m.id);
    if (sampling) {
      const o = base.get(m.id);
      const ok = m.tokens && o && o.tokens && m.loads === o.loads;
      modelRates.set(m.id, ok ? rate(m.tokens.generated - o.tokens.generated, seconds) : 0);
    }
    const tokRate = modelRates.get(m.id) || 0;
    tokTotal += tokRate;
    updateCard(m, tokRate, sampling);
  }
  for (const [id, c] of cards) {
    if (!seen.has(id)) { c.root.remove(); cards.delete(id); series.model.delete(id); modelRates.delete(id); }
  }
  if (sampling) {
    push(series.req, rate(totalRequests(doc) - totalRequests(rateBase), seconds));
    push(series.tok, tokTotal);
  }
  if (sampling || rateBase === null) rateBase = doc;
  const reqMax = drawChart($("req-chart"), series.req);
  const tokMax = drawChart($("tok-chart"), series.tok);
  $("req-rate").textContent = (series.req[series.req.length - 1] || 0).toFixed(2) + " req/s";
  $("tok-rate").textContent = tokTotal.toFixed(1) + " tok/s";
  $("req-max").textContent = series.req.length ? "max " + reqMax.toFixed(2) : "";
  $("tok-max").textContent = series.tok.length ? "max " + tokMax.toFixed(1) : "";
  updateSummary(doc);
  previous = doc;
}

// A pool's events, live (fetch, not EventSource: EventSource cannot send the API key).
async function followEvents() {
  for (;;) {
    try {
      const res = await api("models/sse");
      eventsLive = true;
      await readEvents(res, (data) => {
        let e;
        try { e = JSON.parse(data); } catch (_) { return; }
        const d = e.data || {};
        if (e.event === "status_change") {
          const failed = d.failed ? ` (failed: ${d.error || "unknown reason"})` : "";
          // loaded while it was loaded: a swap (or a reload) put a new model in its place
          const again = d.status === "loaded" && lastStatus.get(e.model) === "loaded" ? " again (swapped)" : "";
          lastStatus.set(e.model, d.status);
          logEvent(`${shortName(e.model)}: ${d.status}${again}${failed}`, d.failed ? "error-text" : null);
        } else if (e.event === "model_remove") {
          logEvent(`${shortName(e.model)}: removed`);
        } else if (e.event === "models_reload") {
          logEvent("model list reloaded");
        } else {
          logEvent(`${e.model || ""}: ${e.event}`);
        }
        poll();
      });
    } catch (e) {
      logEvent("event stream lost: " + e.message, "error-text");
    }
    eventsLive = false;
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  poll();
  setInterval(poll, POLL_MS);
});
