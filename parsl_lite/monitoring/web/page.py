"""The web view's one page: HTML, style and script inline, nothing fetched from another host.

The script opens ``/events`` (server-sent events), keeps the document it is
sent, applies each merge patch in version order (a gap: it reconnects and
gets the whole document again) and re-draws the sections whose part of the
document changed. Elements tests read: ``#counts [data-state=S] .n`` (tasks
in state S), ``#total``, ``body[data-version]`` (the version drawn),
``body[data-live]`` ("1" while the stream is open), ``#failures``,
``#report-frame`` (the report, once the run ended).
"""
from __future__ import annotations

_STYLE = """
:root { --bg:#fafafa; --fg:#222; --mute:#777; --line:#ddd; --card:#fff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; gap:1.5em; align-items:baseline; padding:.6em 1em; background:#263238; color:#eceff1; }
header h1 { font-size:1.1em; margin:0; }
header .live { margin-left:auto; font-size:.9em; }
body[data-live="1"] header .live::before { content:"\\25CF live"; color:#81c784; }
body[data-live="0"] header .live::before { content:"\\25CB reconnecting"; color:#ffb74d; }
main { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:1em; padding:1em; }
section { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:.6em .9em; overflow:auto; }
section.wide { grid-column:1 / -1; }
h2 { font-size:1em; margin:.1em 0 .5em; color:#37474f; }
h3 { font-size:.95em; margin:.6em 0 .2em; } h4 { font-size:.85em; margin:.4em 0 .1em; color:var(--mute); }
table { border-collapse:collapse; width:100%; font-size:.92em; }
th, td { text-align:left; padding:.15em .5em; border-bottom:1px solid #eee; vertical-align:top; }
th { color:var(--mute); font-weight:600; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; }
pre { margin:0; white-space:pre-wrap; font-size:.85em; max-height:8em; overflow:auto; }
.empty { color:var(--mute); font-style:italic; }
.bar { display:flex; height:12px; border-radius:3px; overflow:hidden; margin:.4em 0; background:#eee; }
.swatch { display:inline-block; width:.8em; height:.8em; border-radius:2px; margin-right:.4em; vertical-align:-1px; }
iframe { width:100%; height:600px; border:0; }
dl { display:grid; grid-template-columns:max-content 1fr; gap:.1em 1em; margin:0; }
dt { color:var(--mute); }
dd { margin:0; overflow-wrap:anywhere; }
"""

_SCRIPT = r"""
"use strict";
const COLORS = {unsched:"#b0bec5", pending:"#90a4ae", launched:"#ffd54f", running:"#42a5f5",
  running_ended:"#64b5f6", exec_done:"#66bb6a", memo_done:"#9ccc65", joining:"#ba68c8",
  dep_fail:"#ff8a65", failed:"#e53935", fail_retryable:"#ffa726"};
const FINAL = ["exec_done", "memo_done", "failed", "dep_fail"];
const color = s => COLORS[s] || "#9e9e9e";
const esc = v => String(v ?? "").replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
let doc = null, version = 0, source = null;

function applyPatch(target, patch) {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out = (target && typeof target === "object" && !Array.isArray(target)) ? {...target} : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]; else out[k] = applyPatch(out[k], v);
  }
  return out;
}

function fmtTime(t) {
  if (t === undefined || t === null || t === "") return "";
  // the store's times are its local wall times read as UTC: shown as UTC they read as written
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return isNaN(d) ? String(t) : d.toISOString().slice(0, 19).replace("T", " ");   // as the terminal and report
}
const isTime = key => /time|_at$|^start$|^end$|heartbeat|^began$|^completed$|last_seen/.test(key);
function fmtCell(key, v) {
  if (v === undefined || v === null) return "";
  if (typeof v === "number" && isTime(key)) return esc(fmtTime(v));
  if (typeof v === "number" && /_s$/.test(key)) return esc(v.toFixed(1) + " s");
  if (typeof v === "object") return esc(JSON.stringify(v));
  return esc(v);
}
function table(rows, opts = {}) {
  if (!rows || !rows.length) return `<p class="empty">${esc(opts.empty || "none")}</p>`;
  const cols = opts.columns || [...new Set(rows.flatMap(r => Object.keys(r)))];
  const pre = new Set(opts.pre || []);
  const head = cols.map(c => `<th>${esc(c.replace(/_/g, " "))}</th>`).join("");
  const body = rows.map(r => "<tr>" + cols.map(c => {
    const v = r[c];
    if (pre.has(c)) return `<td><pre>${esc(v)}</pre></td>`;
    const num = typeof v === "number" && !isTime(c);
    return `<td${num ? ' class="n"' : ""} data-col="${esc(c)}">${fmtCell(c, v)}</td>`;
  }).join("") + "</tr>").join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function drawRun(run) {
  run = run || {};
  document.getElementById("run-id").textContent = run.run_id ? `run ${run.run_id}` : "no run yet";
  document.getElementById("run-state").textContent = run.state || "";
  document.title = run.run_id ? `${run.state}: ${run.name || run.run_id} - parsl-lite monitor` : "parsl-lite monitor";
  const first = ["name", "state", "user", "host", "rundir", "began", "completed", "duration_s"];
  const keys = [...first.filter(k => k in run), ...Object.keys(run).filter(k => !first.includes(k) && k !== "run_id")];
  const items = keys.map(k => [k, run[k]]);
  document.getElementById("run").innerHTML = items.length
    ? "<dl>" + items.map(([k, v]) => `<dt>${esc(k.replace(/_/g, " "))}</dt><dd>${fmtCell(k, v)}</dd>`).join("") + "</dl>"
    : '<p class="empty">waiting for a run in the store</p>';
}

function drawCounts(counts, total) {
  counts = counts || {};
  total = total ?? Object.values(counts).reduce((a, b) => a + b, 0);
  const rows = Object.entries(counts).map(([s, n]) =>
    `<tr data-state="${esc(s)}"><td><span class="swatch" style="background:${color(s)}"></span>${esc(s)}</td>` +
    `<td class="n">${n}</td></tr>`).join("");
  const bar = Object.entries(counts).filter(([, n]) => n > 0).map(([s, n]) =>
    `<span title="${esc(s)}: ${n}" style="flex:${n};background:${color(s)}"></span>`).join("");
  const finished = FINAL.reduce((a, s) => a + (counts[s] || 0), 0);
  document.getElementById("counts").innerHTML = total
    ? `<p id="finished">${finished} of ${total} tasks finished</p><div class="bar">${bar}</div><table><tbody>${rows}</tbody><tfoot><tr><th>total</th>` +
      `<th class="n" id="total">${total}</th></tr></tfoot></table>`
    : '<p class="empty">no tasks yet</p><span id="total" hidden>0</span>';
}

function packLanes(rows, now) {
  // one lane per worker; tries that overlap on one worker (a host running several) get sub-lanes
  const byWorker = new Map();
  for (const r of [...rows].sort((a, b) => a.start - b.start)) {
    const w = r.worker ?? "(no worker recorded)";
    if (!byWorker.has(w)) byWorker.set(w, []);
    const subs = byWorker.get(w);
    let i = subs.findIndex(end => end <= r.start);
    if (i < 0) { i = subs.length; subs.push(0); }
    subs[i] = r.end ?? now;
    r._lane = [w, i];
  }
  const lanes = [], index = new Map();
  for (const w of [...byWorker.keys()].sort())
    byWorker.get(w).forEach((_, i) => { index.set(w + "\u0000" + i, lanes.length); lanes.push(i ? "" : w); });
  return [lanes, r => index.get(r._lane[0] + "\u0000" + r._lane[1])];
}

function drawStream(stream) {
  const el = document.getElementById("stream");
  const rows = Object.values(stream || {}).filter(r => r.start !== null && r.start !== undefined);
  if (!rows.length) { el.innerHTML = '<p class="empty">no task has started yet</p>'; return; }
  const now = Date.now() / 1000 + ((doc && doc.clock_offset_s) || 0);   // on the store's time scale
  const t0 = Math.min(...rows.map(r => r.start));
  const t1 = Math.max(...rows.map(r => r.end ?? (ended(doc.run) ? r.start : now)), t0 + 1e-3);
  const [lanes, laneOf] = packLanes(rows, t1);
  const W = 1000, lane = 14, left = 160, H = lanes.length * lane + 24;
  const x = t => left + (Math.min(t, t1) - t0) / (t1 - t0) * (W - left - 10);
  const bars = rows.map(r => {
    const y = laneOf(r) * lane + 2, x0 = x(r.start), x1 = Math.max(x(r.end ?? t1), x0 + 1.5);
    const took = r.end !== null && r.end !== undefined ? `, ${(r.end - r.start).toFixed(3)} s` : ", running";
    return `<rect x="${x0.toFixed(1)}" y="${y}" width="${(x1 - x0).toFixed(1)}" height="${lane - 3}" ` +
      `fill="${color(r.state || (r.end ? "exec_done" : "running"))}"><title>task ${esc(r.task_id)} ` +
      `${esc(r.func_name)} (${esc(r.state || "")}${took}) on ${esc(r.worker)}</title></rect>`;
  }).join("");
  const labels = lanes.map((w, i) => w &&
    `<text class="lane" x="${left - 6}" y="${i * lane + lane - 3}" text-anchor="end" font-size="11">${esc(w)}</text>`
  ).join("");
  const axis = `<text x="${left}" y="${H - 6}" font-size="11" fill="#777">${esc(fmtTime(t0))}</text>` +
    `<text x="${W - 10}" y="${H - 6}" font-size="11" fill="#777" text-anchor="end">+${(t1 - t0).toFixed(1)} s</text>`;
  el.innerHTML = `<svg viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="task stream">` +
    `${labels}${bars}${axis}</svg><p class="empty">the ${rows.length} most recent tries, a lane per worker</p>`;
}

function fitFrame(frame) {  // the report is ours (same origin): the frame takes its whole height
  try { frame.style.height = (frame.contentDocument.documentElement.scrollHeight + 24) + "px"; } catch (e) {}
}

const ended = run => !!(run && run.state && run.state !== "running");

function drawReport(run) {
  const el = document.getElementById("report");
  if (!ended(run)) { el.innerHTML = '<p class="empty">the report comes when the run ends</p>'; return; }
  const src = "/report?v=" + encodeURIComponent(run.run_id + ":" + (run.completed || ""));
  const frame = document.getElementById("report-frame");
  if (frame && frame.dataset.src === src) return;
  el.innerHTML = `<iframe id="report-frame" data-src="${esc(src)}" src="${esc(src)}" title="report" ` +
    `onload="fitFrame(this)"></iframe>`;
}

function drawExecutors(executors) {
  const el = document.getElementById("executors");
  if (!executors || !executors.length) { el.innerHTML = '<p class="empty">no executor reported yet</p>'; return; }
  el.innerHTML = executors.map(ex => {
    const {label, nodes, blocks, ...rest} = ex;
    const facts = Object.entries(rest).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => `${esc(k.replace(/_/g, " "))}: ${fmtCell(k, v)}`).join(", ");
    return `<div class="executor" data-label="${esc(label)}"><h3>${esc(label)}</h3><p>${facts}</p>` +
      `<h4>workers</h4>${table(nodes, {empty: "no worker pools"})}<h4>blocks</h4>${table(blocks, {empty: "no blocks"})}</div>`;
  }).join("");
}

const SECTIONS = [  // [the document's keys a section shows, how to draw it]
  [["run"], d => { drawRun(d.run); drawReport(d.run); }],
  [["counts", "total"], d => drawCounts(d.counts, d.total)],
  [["stream"], d => drawStream(d.stream)],
  [["executors"], d => drawExecutors(d.executors)],
  [["endpoints"], d => document.getElementById("endpoints").innerHTML = table(d.endpoints, {empty: "no endpoints"})],
  [["failures"], d => document.getElementById("failures").innerHTML =
    table(d.failures, {empty: "no failures", pre: ["error"]})],
];

function draw(changed) {
  for (const [keys, fn] of SECTIONS) if (!changed || keys.some(k => k in changed)) fn(doc || {});
  document.body.dataset.version = version;
}

function connect() {
  source = new EventSource("/events");
  source.onopen = () => document.body.dataset.live = "1";
  source.addEventListener("snapshot", e => {
    const m = JSON.parse(e.data); doc = m.doc || {}; version = m.version; draw(null);
  });
  source.addEventListener("patch", e => {
    const m = JSON.parse(e.data);
    if (m.version <= version) return;
    if (m.version !== version + 1) { source.close(); connect(); return; }  // a gap: start again whole
    doc = applyPatch(doc, m.patch); version = m.version; draw(m.patch);
  });
  source.onerror = () => { document.body.dataset.live = "0"; };
}
connect();
setInterval(() => { if (doc && doc.stream && !ended(doc.run)) drawStream(doc.stream); }, 2000);
"""

PAGE_HTML = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>parsl-lite monitor</title>
<style>{_STYLE}</style></head>
<body data-live="0" data-version="0">
<header><h1>parsl-lite monitor</h1><span id="run-id"></span><span id="run-state"></span><span class="live"></span></header>
<main>
<section><h2>Run</h2><div id="run"></div></section>
<section><h2>Tasks by state</h2><div id="counts"></div></section>
<section class="wide"><h2>Task stream</h2><div id="stream"></div></section>
<section class="wide"><h2>Executors: workers and blocks</h2><div id="executors"></div></section>
<section><h2>Endpoints</h2><div id="endpoints"></div></section>
<section><h2>Recent failures</h2><div id="failures"></div></section>
<section class="wide"><h2>Report</h2><div id="report"></div></section>
</main>
<script>{_SCRIPT}</script>
</body></html>
"""
