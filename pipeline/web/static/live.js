// Live page of nps-pipeline: polls the worker's JSON API and redraws. No build step.
// Every number shown comes from one API answer: /api/v1/segments (overall and the
// listing), /api/v1/series (sparklines, CSAT/CES intervals), /api/v1/alerts and
// /api/v1/health. Text is always set with textContent (comments come from customers).
"use strict";

const state = { config: null, timer: null, busy: false, again: false };
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- formatting
// Rounding is Math.round (half up) everywhere; tests format the API's numbers the same way.
const int = (n) => Math.round(n).toLocaleString("en-US");
const signed = (x) => (Math.round(x) > 0 ? "+" : "") + Math.round(x);
const pct = (share) => Math.round(share * 100) + "%";

function npsText(stats) {
  if (!stats || stats.nps === null) return "no answers";
  const half = (stats.nps_high - stats.nps_low) / 2;
  return `NPS ${Math.round(stats.nps)} ± ${Math.round(half)}, n = ${int(stats.responses)}`;
}
function csatText(csat) {
  if (!csat || csat.satisfied_share === null) return "no answers";
  const half = ((csat.satisfied_high - csat.satisfied_low) / 2) * 100;
  return `CSAT ${pct(csat.satisfied_share)} ± ${Math.round(half)}, n = ${int(csat.responses)}`;
}
function cesText(ces) {
  if (!ces || ces.mean === null) return "no answers";
  const half = ces.mean_low === null ? null : (ces.mean_high - ces.mean_low) / 2;
  const pm = half === null ? "" : ` ± ${half.toFixed(2)}`;
  return `CES ${ces.mean.toFixed(2)}${pm}, n = ${int(ces.responses)}`;
}
function timeText(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}
function segmentName(key) {
  if (key === "overall") return "overall";
  return key.split("|").map((part) => decodeURIComponent(part.split("=").slice(1).join("="))).join(" · ");
}

// ---------------------------------------------------------------- DOM helpers
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
function setText(id, text) {
  const node = $(id);
  if (node.textContent !== text) node.textContent = text;
}

// ---------------------------------------------------------------- API
async function getJSON(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!resp.ok) {
    let message = `${resp.status}`;
    try { message += ": " + (await resp.json()).error; } catch (_) { /* not JSON */ }
    const err = new Error(`${path} answered ${message}`);
    err.status = resp.status;
    throw err;
  }
  return resp.json();
}
function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const item of Array.isArray(v) ? v : [v]) q.append(k, item);
  }
  return q.toString();
}

// ---------------------------------------------------------------- controls
function choices() {
  return {
    window: $("window").value,
    dimension: $("dimension").value,
    min_responses: Math.max(1, parseInt($("min-responses").value, 10) || 1),
    limit: parseInt($("limit").value, 10) || 20,
  };
}
function fillControls(config) {
  const params = new URLSearchParams(location.search);
  const pick = (name, allowed, fallback) => (allowed.includes(params.get(name)) ? params.get(name) : fallback);
  for (const w of config.windows) $("window").append(el("option", { value: w }, w === "all" ? "all time" : w));
  for (const d of config.dimensions) $("dimension").append(el("option", { value: d }, d));
  $("window").value = pick("window", config.windows, config.default_window);
  $("dimension").value = pick("dimension", config.dimensions, config.default_dimension);
  if (params.get("min_responses")) $("min-responses").value = params.get("min_responses");
  if (["10", "20", "50", "100"].includes(params.get("limit"))) $("limit").value = params.get("limit");
  $("controls").addEventListener("change", () => {
    const c = choices();
    history.replaceState(null, "", "?" + query(c));
    refresh();
  });
  $("controls").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
}

// ---------------------------------------------------------------- overall
function windowOf(view, win) {
  if (!view) return null;
  return win === "all" ? view.all_time : view.windows[win];
}
function renderOverall(overall, trend, win) {
  const stats = windowOf(overall, win);
  setText("overall-window", win === "all" ? "· all time" : `· last ${win}`);
  setText("overall-nps", npsText(stats));
  setText("overall-nps-detail", stats && stats.nps !== null
    ? `95% interval ${signed(stats.nps_low)} to ${signed(stats.nps_high)} · ` +
      `${int(stats.promoters)} promoters, ${int(stats.passives)} passives, ${int(stats.detractors)} detractors`
    : "");
  const csat = trend ? trend.csat : null;
  setText("overall-csat", csatText(csat));
  setText("overall-csat-detail", csat && csat.satisfied_share !== null
    ? `95% interval ${pct(csat.satisfied_low)} to ${pct(csat.satisfied_high)} · mean ${csat.mean.toFixed(2)} of 5`
    : "");
  const ces = trend ? trend.ces : null;
  setText("overall-ces", cesText(ces));
  setText("overall-ces-detail", ces && ces.mean_low !== null
    ? `95% interval ${ces.mean_low.toFixed(2)} to ${ces.mean_high.toFixed(2)}` : "");
}

// ---------------------------------------------------------------- segments
function sparkline(points, stepSeconds) {
  const w = 120, h = 28, pad = 3;
  const usable = points.filter((p) => p.nps !== null);
  const stepText = stepSeconds >= 3600 ? `${stepSeconds / 3600} h` : `${stepSeconds / 60} min`;
  const label = usable.length
    ? `NPS in ${points.length} steps of ${stepText}: from ${signed(usable[0].nps)} to ${signed(usable[usable.length - 1].nps)}` +
      ` (lowest ${signed(Math.min(...usable.map((p) => p.nps)))}, highest ${signed(Math.max(...usable.map((p) => p.nps)))})`
    : "no NPS answers in the window";
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const title = document.createElementNS(svg.namespaceURI, "title");
  title.textContent = label;
  svg.append(title);
  const y = (v) => pad + ((100 - v) / 200) * (h - 2 * pad); // fixed -100..100 scale: rows compare
  const x = (i) => pad + (points.length > 1 ? (i / (points.length - 1)) * (w - 2 * pad) : 0);
  const zero = document.createElementNS(svg.namespaceURI, "line");
  zero.setAttribute("class", "zero");
  zero.setAttribute("x1", pad); zero.setAttribute("x2", w - pad);
  zero.setAttribute("y1", y(0)); zero.setAttribute("y2", y(0));
  svg.append(zero);
  let run = [];
  const flush = () => {
    if (run.length > 1) {
      const line = document.createElementNS(svg.namespaceURI, "polyline");
      line.setAttribute("points", run.join(" "));
      svg.append(line);
    } else if (run.length === 1) {
      const [cx, cy] = run[0].split(",");
      const dot = document.createElementNS(svg.namespaceURI, "circle");
      dot.setAttribute("cx", cx); dot.setAttribute("cy", cy); dot.setAttribute("r", 1.8);
      svg.append(dot);
    }
    run = [];
  };
  points.forEach((p, i) => {
    if (p.nps === null) flush();
    else run.push(`${x(i).toFixed(1)},${y(p.nps).toFixed(1)}`);
  });
  flush();
  return svg;
}
function comparison(stats, overall) {
  if (!stats || stats.nps === null || !overall || overall.nps === null) return el("span", { class: "flag same" }, "–");
  if (stats.nps_high < overall.nps) return el("span", { class: "flag bad" }, "▼ below overall");
  if (stats.nps_low > overall.nps) return el("span", { class: "flag good" }, "▲ above overall");
  return el("span", { class: "flag same" }, "≈ within interval");
}
function renderSegments(c, list, series, overallStats) {
  // short: at phone width the caption scrolls with the table
  const caption = list.dimension === "overall" ? "Overall" : `By ${list.dimension}`;
  setText("segments-caption", `${caption}, ${c.window === "all" ? "all time" : "last " + c.window}`);
  const step = series ? series.step_seconds : 0;
  setText("trend-step", step ? `(${step >= 3600 ? step / 3600 + " h" : step / 60 + " min"} steps)` : "");
  const rows = list.segments.map((row) => {
    const s = row.stats;
    const t = series && series.series[row.segment];
    return el("tr", { "data-segment": row.segment },
      el("th", { scope: "row", class: "segment" }, segmentName(row.segment)),
      el("td", { class: "nps" }, s.nps === null ? "no answers" : npsText(s),
        s.nps === null ? null : el("span", { class: "sub" }, `95% interval ${signed(s.nps_low)} to ${signed(s.nps_high)}`)),
      el("td", { class: "num responses" }, int(s.responses)),
      el("td", { class: "num detractors" }, s.detractor_share === null ? "–" : `${pct(s.detractor_share)} (${int(s.detractors)})`),
      el("td", { class: "num csat" }, s.csat_satisfied_share === null ? "–" : `${pct(s.csat_satisfied_share)} of ${int(s.csat_responses)}`),
      el("td", { class: "num ces" }, s.ces_mean === null ? "–" : `${s.ces_mean.toFixed(2)} (n = ${int(s.ces_responses)})`),
      el("td", { class: "trend" }, t ? sparkline(t.points, step) : "–"),
      el("td", { class: "compare" }, comparison(s, overallStats)));
  });
  $("segments").tBodies[0].replaceChildren(...rows);
  if (!rows.length) {
    $("segments").tBodies[0].append(el("tr", {}, el("td", { colspan: 8 }, `No segment has ${c.min_responses} or more answers in this window yet.`)));
  }
  setText("segments-total", `${list.segments.length} of ${list.total} segments shown · as of ${timeText(list.as_of)} (event time)`);
}

// ---------------------------------------------------------------- alerts
function statsLine(stats) {
  if (!stats) return "–";
  const parts = [`${stats.window}: ${npsText(stats)}`];
  if (stats.detractor_share !== null) parts.push(`detractors ${pct(stats.detractor_share)}`);
  if (stats.csat_satisfied_share !== null) parts.push(`CSAT ${pct(stats.csat_satisfied_share)} of ${int(stats.csat_responses)}`);
  if (stats.ces_mean !== null) parts.push(`CES ${stats.ces_mean.toFixed(2)} of ${int(stats.ces_responses)}`);
  return parts.join(" · ");
}
function num(v, digits) { return v === null || v === undefined ? "–" : Number(v).toPrecision(digits); }
function alertItem(a) {
  const ev = a.evidence;
  const when = a.status === "resolved"
    ? `resolved ${timeText(a.resolved_at)} · fired ${timeText(a.fired_at)}`
    : `fired ${timeText(a.fired_at)} · started ${timeText(a.started_at)}`;
  const facts = [
    ["Rule", `${a.rule} (${a.kind}, ${a.severity})`],
    ["Window", statsLine(ev.window)],
    ["Baseline", ev.baseline ? statsLine(ev.baseline) : "–"],
    ["Metric", `${ev.metric}: observed ${num(ev.observed, 3)}, expected ${num(ev.expected, 3)}, effect ${num(ev.effect, 3)}`],
    ["Test", `${ev.statistic} = ${num(ev.statistic_value, 3)}` +
      (ev.threshold !== null ? `, limit ${num(ev.threshold, 3)}` : "") +
      (ev.p_value !== null ? `, p = ${Number(ev.p_value).toExponential(1)}` : "") +
      (ev.adjusted_p_value !== null ? `, BH-adjusted ${Number(ev.adjusted_p_value).toExponential(1)}` : "")],
  ];
  const dl = el("dl", { class: "evidence" });
  for (const [k, v] of facts) dl.append(el("dt", {}, k), el("dd", {}, v));
  const comments = ev.comments.map((c) =>
    el("blockquote", {}, `${c.score}/10 · ${timeText(c.event_time)} · “${c.comment}”`));
  return el("li", { class: `alert ${a.status}`, "data-alert-id": a.alert_id, "data-status": a.status, "data-segment": a.segment },
    el("p", {}, el("span", { class: `badge ${a.status}` }, a.status === "firing" ? "⚠ FIRING" : "✓ RESOLVED"),
      el("strong", { class: "summary" }, a.summary)),
    el("p", { class: "hint" }, `${segmentName(a.segment)} (${a.dimension}) · ${when}`),
    el("details", {}, el("summary", {}, "Evidence"), el("p", {}, a.description), dl,
      comments.length ? el("p", { class: "hint" }, "Recent detractor comments (redacted):") : null, ...comments));
}
function syncList(list, alerts) {
  // Only new items are inserted (and gone ones removed), so the live region announces news only.
  const wanted = alerts.map((a) => `${a.alert_id}/${a.status}`);
  const have = new Map([...list.children].map((li) => [`${li.dataset.alertId}/${li.dataset.status}`, li]));
  for (const [key, li] of have) if (!wanted.includes(key)) li.remove();
  let previous = null;
  alerts.forEach((a, i) => {
    const li = have.get(wanted[i]) || alertItem(a);
    if (previous === null) { if (list.firstChild !== li) list.prepend(li); }
    else if (previous.nextSibling !== li) previous.after(li);
    previous = li;
  });
}
function renderAlerts(feed) {
  syncList($("firing"), feed.firing);
  syncList($("recent"), feed.recent);
  setText("firing-count", String(feed.firing.length));
  $("firing-empty").hidden = feed.firing.length > 0;
  $("recent-empty").hidden = feed.recent.length > 0;
  if (!feed.enabled) setText("recent-empty", "Alert rules are switched off (NPS_ALERTS_ENABLED=false).");
}

// ---------------------------------------------------------------- health
function renderHealth(h) {
  setText("health-rate", `${h.events_per_second.toFixed(1)} events/s`);
  setText("health-consumed", int(h.consumed));
  setText("health-scored", int(h.scored));
  const reasons = Object.entries(h.deadletters_by_reason).map(([r, n]) => `${r} ${int(n)}`).join(", ");
  setText("health-dead", int(h.deadlettered) + (reasons ? ` (${reasons})` : ""));
  setText("health-dupes", int(h.duplicates));
  const others = Object.values(h.lag_records).reduce((a, b) => a + b, 0) - h.input_lag_records;
  setText("health-lag", `${int(h.input_lag_records)} records` + (others ? ` (+${int(others)} in standby changelogs)` : ""));
  setText("health-clock", timeText(h.clock));
  setText("health-workers", `${h.workers.length}` + (h.unanswered_workers ? ` (+${h.unanswered_workers} not answering)` : ""));
}

// ---------------------------------------------------------------- loop
async function refresh() {
  if (state.busy) { state.again = true; return; } // a choice changed mid-poll: poll again
  state.busy = true;
  clearTimeout(state.timer);
  const c = choices();
  try {
    const listing = getJSON(`/api/v1/segments?${query({ dimension: c.dimension, window: c.window, limit: c.limit, min_responses: c.min_responses })}`);
    const overall = getJSON("/api/v1/segments/overall").catch((e) => (e.status === 404 ? null : Promise.reject(e)));
    const overallTrend = getJSON(`/api/v1/series?${query({ dimension: "overall", window: c.window, points: 12 })}`);
    const alerts = getJSON("/api/v1/alerts?limit=50");
    const health = getJSON("/api/v1/health");
    const list = await listing;
    const series = list.segments.length
      ? await getJSON(`/api/v1/series?${query({ dimension: c.dimension, window: c.window, points: 12, segment: list.segments.map((r) => r.segment) })}`)
      : null;
    const [ov, ovTrend, feed, h] = await Promise.all([overall, overallTrend, alerts, health]);
    const overallStats = windowOf(ov, c.window);
    renderOverall(ov, ovTrend.series.overall, c.window);
    renderSegments(c, list, series, overallStats);
    renderAlerts(feed);
    renderHealth(h);
    const status = $("status");
    status.classList.remove("error");
    status.textContent = `Updated ${new Date().toLocaleTimeString("en-GB")} · every ${state.config.poll_ms / 1000} s`;
    document.body.dataset.updated = String(Date.now());
  } catch (err) {
    const status = $("status");
    status.classList.add("error");
    status.textContent = `Not updated: ${err.message}. Retrying…`;
  } finally {
    state.busy = false;
    state.timer = setTimeout(refresh, state.again ? 0 : state.config.poll_ms);
    state.again = false;
  }
}

async function start() {
  try {
    state.config = await getJSON("/live/config.json");
  } catch (err) {
    $("status").textContent = `Cannot reach the worker: ${err.message}. Reload to retry.`;
    $("status").classList.add("error");
    return;
  }
  fillControls(state.config);
  refresh();
}
document.addEventListener("DOMContentLoaded", start);
