// Polls /v1/dashboard and renders what the key may see; every number carries data-metric
// for tests and tools. The charts (uPlot) and the timeline (SVG) keep what they drew on
// window.dashboard, so a test reads back exactly the numbers on screen.
"use strict";
const REFRESH_MS = 3000;
const STAGE_COLORS = { parse: "#3b7dd8", chunk: "#2b9a5a", embed: "#c46a00", finalize: "#8a3bd8" };
const SVG = "http://www.w3.org/2000/svg";
window.dashboard = { role: null, charts: {}, plotted: {}, timeline: null };

function cell(row, text, cls, metric) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (cls) td.className = cls;
  if (metric) td.dataset.metric = metric;
  return td;
}

function fill(tableId, items, render) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  for (const item of items) render(body.insertRow(), item);
}

function showRole(role) {
  if (window.dashboard.role === role) return;
  window.dashboard.role = role;
  document.body.dataset.role = role;
  for (const el of document.querySelectorAll(".operator-only")) el.hidden = role !== "operator";
  for (const el of document.querySelectorAll(".tenant-only")) el.hidden = role !== "tenant";
}

function timelineButton(row, documentId) {
  const td = row.insertCell();
  const button = document.createElement("button");
  button.className = "link";
  button.type = "button";
  button.textContent = "timeline";
  button.addEventListener("click", () => showTimeline(documentId));
  td.appendChild(button);
}

// --- charts -------------------------------------------------------------------------------

function chartData(history, field, stages) {
  return [history.at.slice(), ...stages.map((s) => history[field][s].slice())];
}

function drawChart(id, history, field, stages) {
  const data = chartData(history, field, stages);
  const key = `${field}:${stages.join(",")}`;
  let chart = window.dashboard.charts[field];
  if (chart && chart._ragstreamKey !== key) {
    chart.destroy();
    chart = null;
  }
  if (!chart) {
    const host = document.getElementById(id);
    host.replaceChildren();
    chart = new uPlot(
      {
        width: 560,
        height: 220,
        spanGaps: true,
        scales: {
          // always the last hour, now at the right edge
          x: { time: true, range: () => [Date.now() / 1000 - 3600, Date.now() / 1000] },
          y: { range: (u, min, max) => [0, Math.max(1, max)] },
        },
        series: [{}, ...stages.map((s) => ({ label: s, stroke: STAGE_COLORS[s] || "#555", width: 2 }))],
        axes: [{}, { size: 50 }],
      },
      data,
      host,
    );
    chart._ragstreamKey = key;
    window.dashboard.charts[field] = chart;
  } else {
    chart.setData(data);
  }
  window.dashboard.plotted[field] = {
    at: chart.data[0].slice(),
    series: Object.fromEntries(stages.map((s, i) => [s, chart.data[i + 1].slice()])),
  };
  document.getElementById(id).dataset.points = String(data[0].length);
}

// --- what both roles see -----------------------------------------------------------------

function renderCommon(data) {
  document.getElementById("generated").textContent = data.generated_at;
  document.getElementById("who").textContent =
    data.role === "operator" ? "operator: every tenant" : `tenant ${data.tenant}`;
  const cards = document.getElementById("documents");
  cards.replaceChildren();
  for (const [status, n] of Object.entries(data.documents)) {
    const card = document.createElement("div");
    card.className = "card";
    card.innerHTML = `<div class="muted"></div><div class="n"></div>`;
    card.firstChild.textContent = status;
    card.lastChild.textContent = n;
    card.lastChild.dataset.metric = `documents.${status}`;
    cards.appendChild(card);
  }
  const operator = data.role === "operator";
  fill("newest", data.newest, (row, d) => {
    cell(row, d.document_id).dataset.documentId = d.document_id;
    if (operator) cell(row, d.tenant);
    cell(row, d.filename, "filename");
    cell(row, d.status);
    cell(row, d.uploaded_at);
    cell(row, d.chunks, "num");
    timelineButton(row, d.document_id);
  });
  fill("failures", data.failures, (row, f) => {
    cell(row, f.document_id);
    if (operator) cell(row, f.tenant);
    cell(row, f.filename, "filename");
    cell(row, f.stage);
    cell(row, `${f.error_class || ""}: ${f.error || ""}`);
    cell(row, f.failed_at);
  });
}

function renderTenant(data) {
  fill("jobs", data.jobs, (row, j) => {
    cell(row, j.job_id);
    cell(row, j.filename, "filename");
    cell(row, j.kind);
    cell(row, j.from_stage);
    cell(row, j.status);
    cell(row, j.created_at);
    cell(row, j.finished_at);
  });
}

function renderOperator(data) {
  document.getElementById("monitor-seen").textContent = data.monitor_seen_at || "never";
  fill("tenants", data.tenants, (row, t) => {
    cell(row, t.tenant);
    cell(row, t.total, "num", `tenants.${t.tenant}.total`);
    cell(row, Object.entries(t.documents).map(([s, n]) => `${s} ${n}`).join(", "));
  });
  fill("stages", data.stages, (row, s) => {
    cell(row, s.stage);
    cell(row, s.state, `state-${s.state}`, `stages.${s.stage}.state`);
    cell(row, s.lag, "num", `stages.${s.stage}.lag`);
    cell(row, s.workers, "num", `stages.${s.stage}.workers`);
    cell(row, s.processed_per_min, "num", `stages.${s.stage}.processed_per_min`);
    cell(row, s.arrivals_per_min, "num", `stages.${s.stage}.arrivals_per_min`);
    cell(row, s.dlq, "num", `stages.${s.stage}.dlq`);
    cell(row, s.reason);
  });
  const stages = data.stages.map((s) => s.stage);
  const points = document.getElementById("history-points");
  points.textContent = data.history.at.length;
  points.dataset.metric = "history.points";
  drawChart("chart-throughput", data.history, "throughput", stages);
  drawChart("chart-lag", data.history, "lag", stages);
  document.getElementById("alerts-open").textContent = data.alerts.length;
  document.getElementById("alerts-open").dataset.metric = "alerts.open";
  fill("alerts", data.alerts, (row, a) => {
    cell(row, a.kind.replace(/_/g, " "), `kind-${a.kind}`);
    cell(row, a.stage);
    cell(row, a.document_id);
    cell(row, a.first_seen);
    cell(row, a.message);
  });
  const dlq = document.getElementById("dlq-total");
  dlq.textContent = data.dlq_total;
  dlq.dataset.metric = "dlq.total";
}

function render(data) {
  showRole(data.role);
  renderCommon(data);
  if (data.role === "operator") renderOperator(data);
  else renderTenant(data);
  document.body.dataset.loadedAt = data.generated_at;
}

async function refresh() {
  try {
    const answer = await fetch("/v1/dashboard", { cache: "no-store" });
    if (answer.status === 401 || answer.status === 403) {
      throw new Error(`HTTP ${answer.status}: the dashboard needs a tenant's or an operator key`);
    }
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    render(await answer.json());
    document.getElementById("load-error").textContent = "";
  } catch (err) {
    document.getElementById("load-error").textContent = ` (refresh failed: ${err.message})`;
  }
}

// --- a document's timeline (plain SVG, one time axis) ------------------------------------

const TL = { width: 900, gutter: 70, right: 16, row: 26, top: 8, axis: 26 };

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function drawTimeline(t) {
  const stages = ["parse", "chunk", "embed"];
  const values = [0, t.span_s];
  for (const s of t.segments) values.push(s.start_s, s.end_s);
  if (t.failed) values.push(t.failed.at_s);
  const x0 = Math.min(...values);
  const span = Math.max(Math.max(...values) - x0, 0.001);
  const pxPerS = (TL.width - TL.gutter - TL.right) / span;
  const x = (s) => TL.gutter + (s - x0) * pxPerS;
  const height = TL.top + stages.length * TL.row + TL.axis;
  const svg = svgEl("svg", { width: TL.width, height, viewBox: `0 0 ${TL.width} ${height}` });
  svg.dataset.x0S = String(x0);
  svg.dataset.pxPerS = String(pxPerS);
  svg.dataset.gutter = String(TL.gutter);
  stages.forEach((stage, i) => {
    const label = svgEl("text", { x: 4, y: TL.top + i * TL.row + 17 });
    label.textContent = stage;
    svg.appendChild(label);
  });
  for (const s of t.segments) {
    const i = stages.indexOf(s.stage);
    const from = Math.min(s.start_s, s.end_s);
    const classes = [`seg-${s.kind}`];
    if (s.open) classes.push("seg-open");
    if (s.failed) classes.push("seg-failed");
    if (s.impossible) classes.push("seg-impossible");
    const rect = svgEl("rect", {
      x: x(from),
      y: TL.top + i * TL.row + (s.kind === "queued" ? 7 : 3),
      width: Math.max(Math.abs(s.end_s - s.start_s) * pxPerS, 1),
      height: s.kind === "queued" ? 10 : 18,
      class: `segment ${classes.join(" ")}`,
    });
    Object.assign(rect.dataset, {
      stage: s.stage,
      kind: s.kind,
      startS: String(s.start_s),
      endS: String(s.end_s),
      open: String(s.open),
      failed: String(s.failed),
      impossible: String(s.impossible),
    });
    const tip = svgEl("title", {});
    tip.textContent =
      `${s.stage} ${s.kind}: ${s.start} to ${s.end} (${(s.end_s - s.start_s).toFixed(3)} s)` +
      `${s.open ? ", still going" : ""}${s.failed ? ", failed" : ""}` +
      `${s.impossible ? ", IMPOSSIBLE: ends before it starts" : ""}`;
    rect.appendChild(tip);
    svg.appendChild(rect);
  }
  if (t.failed) {
    const fx = x(t.failed.at_s);
    const mark = svgEl("line", {
      x1: fx, x2: fx, y1: TL.top, y2: TL.top + stages.length * TL.row,
      stroke: "#b00020", "stroke-width": 2, class: "failed-mark",
    });
    mark.dataset.atS = String(t.failed.at_s);
    svg.appendChild(mark);
    const nearEnd = fx > TL.width * 0.7; // the label goes where there is room
    const label = svgEl("text", {
      x: nearEnd ? fx - 4 : fx + 4,
      y: TL.top + stages.length * TL.row - 2,
      "text-anchor": nearEnd ? "end" : "start",
      fill: "#b00020",
    });
    label.textContent = `failed in ${t.failed.stage || "?"}`;
    svg.appendChild(label);
  }
  const axisY = TL.top + stages.length * TL.row + 4;
  svg.appendChild(svgEl("line", { x1: TL.gutter, x2: TL.width - TL.right, y1: axisY, y2: axisY, stroke: "#889" }));
  for (let k = 0; k <= 5; k++) {
    const s = x0 + (span * k) / 5;
    const tick = svgEl("text", { x: x(s) - 10, y: axisY + 16 });
    tick.textContent = `${s.toFixed(span < 10 ? 2 : 0)} s`;
    svg.appendChild(tick);
  }
  const host = document.getElementById("timeline");
  host.replaceChildren(svg);
  host.dataset.documentId = t.document_id;
  document.getElementById("timeline-title").textContent =
    `${t.filename || t.document_id}: ${t.status}; seconds since upload at ${t.origin}`;
  window.dashboard.timeline = t;
}

async function showTimeline(documentId) {
  const error = document.getElementById("timeline-error");
  document.getElementById("timeline-id").value = documentId;
  try {
    const answer = await fetch(`/v1/dashboard/documents/${encodeURIComponent(documentId)}/timeline`, {
      cache: "no-store",
    });
    if (!answer.ok) throw new Error(answer.status === 404 ? "no such document" : `HTTP ${answer.status}`);
    drawTimeline(await answer.json());
    error.textContent = "";
  } catch (err) {
    error.textContent = ` ${err.message}`;
  }
}

document.getElementById("timeline-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = document.getElementById("timeline-id").value.trim();
  if (id) showTimeline(id);
});

// --- a tenant's search -----------------------------------------------------------------------

document.getElementById("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const query = document.getElementById("search-query").value.trim();
  const error = document.getElementById("search-error");
  if (!query) return;
  try {
    const answer = await fetch("/v1/dashboard/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query, k: 10 }),
    });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    const found = await answer.json();
    fill("search-results", found.hits, (row, h) => {
      cell(row, h.score.toFixed(4), "num");
      cell(row, h.filename, "filename");
      cell(row, h.chunk_index, "num");
      cell(row, h.text.length > 300 ? `${h.text.slice(0, 300)}…` : h.text);
    });
    error.textContent = found.hits.length ? "" : " nothing found";
  } catch (err) {
    error.textContent = ` ${err.message}`;
  }
});

refresh();
setInterval(refresh, REFRESH_MS);
