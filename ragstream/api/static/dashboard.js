// Polls /v1/dashboard and renders it; every number carries data-metric for tests and tools.
"use strict";
const REFRESH_MS = 3000;

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

function render(data) {
  document.getElementById("generated").textContent = data.generated_at;
  document.getElementById("monitor-seen").textContent = data.monitor_seen_at || "never";
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
  document.getElementById("alerts-open").textContent = data.alerts.length;
  document.getElementById("alerts-open").dataset.metric = "alerts.open";
  fill("alerts", data.alerts, (row, a) => {
    cell(row, a.kind.replace(/_/g, " "), `kind-${a.kind}`);
    cell(row, a.stage);
    cell(row, a.document_id);
    cell(row, a.first_seen);
    cell(row, a.message);
  });
  fill("failures", data.failures, (row, f) => {
    cell(row, f.document_id);
    cell(row, f.filename);
    cell(row, f.stage);
    cell(row, `${f.error_class || ""}: ${f.error || ""}`);
    cell(row, f.failed_at);
  });
  const dlq = document.getElementById("dlq-total");
  dlq.textContent = data.dlq_total;
  dlq.dataset.metric = "dlq.total";
  document.body.dataset.loadedAt = data.generated_at;
}

async function refresh() {
  try {
    const answer = await fetch("/v1/dashboard", { cache: "no-store" });
    if (answer.status === 401 || answer.status === 403) {
      throw new Error(`HTTP ${answer.status}: the dashboard needs an operator key (tenant '*')`);
    }
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    render(await answer.json());
    document.getElementById("load-error").textContent = "";
  } catch (err) {
    document.getElementById("load-error").textContent = ` (refresh failed: ${err.message})`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
