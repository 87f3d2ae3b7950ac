"""``parsl-lite report RUN -o report.html``: one self-contained HTML file of a run's plots.

The page fetches nothing: the data sits in the page as one JSON block (``<script type=
"application/json" id="report-data">``) and a small inline script draws it on canvases — a task
stream per worker (Gantt), tasks by state over time, worker CPU and memory, per-app durations.
The data is columnar and the heavy lifting (latest states, counts per time bin) happens in SQL, so a
100,000-task run reports in a few seconds.
"""
from __future__ import annotations

import bisect
import dataclasses
import html
import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence

from parsl_lite.monitoring import queries, views

TIME_BINS = 200                  # tasks by state over time
MAX_SAMPLES_PER_WORKER = 600     # worker CPU/memory lines are thinned to this many points
HIST_BINS = 24                   # per-app durations, log-spaced


def report_data(db: queries.Store, run_id: str) -> dict:
    """Everything the report draws, JSON-ready; times in seconds from the run's start.

    The two big reads (the task stream and the state changes over time) run at once, the second on a
    connection of its own: SQLite lets go of the GIL while it works.
    """
    run = db.find_run(run_id)
    t0 = run.began
    end = max(run.completed or 0.0, run.heartbeat or 0.0, db.last_event_time(run.run_id) or 0.0, t0 + 1e-3)
    bin_s = (end - t0) / TIME_BINS
    with ThreadPoolExecutor(1) as pool:
        deltas = pool.submit(_state_deltas, db.url, run.run_id, t0, bin_s)
        stream = db.task_stream(run.run_id)
        over_time = states_over_time(deltas.result(), bin_s)
    return {
        "run": {**dataclasses.asdict(views.run_view(run, run.state(), queries.naive_now())),
                "began_text": queries.format_time(run.began), "end": end - t0},
        "counts": views.ordered_counts({s: v[-1] for s, v in over_time["series"].items() if v}),
        "stream": stream_columns(stream, t0),
        "states_over_time": over_time,
        "resources": resource_series(db.resource_samples(run.run_id), t0),
        "apps": app_stats(app_durations(stream)),
        "failures": db.recent_failures(run.run_id, views.FAILURE_ROWS),
    }


def _state_deltas(url: str, run_id: str, t0: float, bin_s: float) -> list[tuple[int, str, int]]:
    with queries.open_store(url) as db:
        return db.state_deltas(run_id, t0, bin_s)


def stream_columns(rows: Sequence[tuple], t0: float) -> dict:
    """The task stream as parallel arrays (worker and app as indexes into their name lists).

    Each try: ``w`` worker, ``a`` app, ``s`` start (ms from ``t0``) and ``d`` duration (ms; -1 while
    it runs), ``f`` 1 if the try failed, ``id`` task id. Integers keep the page small and quick to parse.
    """
    rows = [r for r in rows if r[5] is not None]
    workers: dict[str, int] = {}
    apps: dict[str, int] = {}
    return {
        "id": [r[0] for r in rows],
        "w": [workers.setdefault(f"{r[3]}/{r[4]}" if r[4] else str(r[3]), len(workers)) for r in rows],
        "a": [apps.setdefault(r[2], len(apps)) for r in rows],
        "s": [round((r[5] - t0) * 1000) for r in rows],
        "d": [-1 if r[6] is None else round((r[6] - r[5]) * 1000) for r in rows],
        "f": [1 if r[7] in _FAILED else 0 for r in rows],
        "workers": list(workers), "apps": list(apps),
    }


_FAILED = frozenset(("failed", "fail_retryable", "dep_fail"))


def states_over_time(deltas: Sequence[tuple[int, str, int]], bin_s: float) -> dict:
    """Counts by state at the end of each time bin, from ``Store.state_deltas``."""
    states = [s for s in (*views.SHOWN_STATES, *views.OTHER_STATES) if any(d[1] == s for d in deltas)]
    states += sorted({d[1] for d in deltas} - set(states))
    running = dict.fromkeys(states, 0)
    series: dict[str, list[int]] = {s: [] for s in states}
    by_bin: dict[int, list[tuple[str, int]]] = {}
    for b, state, delta in deltas:
        by_bin.setdefault(b, []).append((state, delta))
    last = max(by_bin) if by_bin else -1
    for b in range(last + 1):
        for state, delta in by_bin.get(b, ()):
            running[state] += delta
        for state in states:
            series[state].append(running[state])
    return {"bin_s": bin_s, "t": [round((b + 1) * bin_s, 3) for b in range(last + 1)], "series": series}


def resource_series(samples: Sequence[tuple], t0: float) -> dict:
    """Per worker: time, CPU % and RSS (MB) lists, thinned to :data:`MAX_SAMPLES_PER_WORKER` points."""
    per: dict[str, list[tuple]] = {}
    for worker, t, cpu, rss in samples:
        per.setdefault(str(worker), []).append((t, cpu, rss))
    out = {}
    for worker, points in sorted(per.items()):
        step = max(1, math.ceil(len(points) / MAX_SAMPLES_PER_WORKER))
        kept = points[::step]
        out[worker] = {"t": [round(t - t0, 3) for t, _, _ in kept],
                       "cpu": [None if c is None else round(c, 1) for _, c, _ in kept],
                       "rss_mb": [None if r is None else round(r / 1e6, 1) for _, _, r in kept]}
    return out


def app_durations(stream: Sequence[tuple]) -> dict[str, list[float]]:
    """Seconds each finished try of each app ran (from running, or launched, to returned)."""
    out: dict[str, list[float]] = {}
    for row in stream:
        if row[5] is not None and row[6] is not None:
            out.setdefault(row[2], []).append(row[6] - row[5])
    return out


def app_stats(durations: dict[str, list[float]]) -> list[dict]:
    """Per app: count, mean, p50, p90, max (s) and a log-spaced histogram of its tries' durations.

    The values are sorted once; each bin's count is the distance between two bisections.
    """
    out = []
    for name, values in sorted(durations.items()):
        values = sorted(max(0.0, v) for v in values)
        n = len(values)
        edges = _log_edges(max(values[0], 1e-6), max(values[-1], 1e-6))
        cuts = [bisect.bisect_left(values, e) for e in edges]
        counts = [cuts[i + 1] - cuts[i] for i in range(len(edges) - 1)]
        counts[0] += cuts[0]          # below the first edge (durations of 0)
        counts[-1] += n - cuts[-1]    # the maximum itself
        out.append({"app": name, "count": n, "mean": sum(values) / n, "p50": _pct(values, 0.5),
                    "p90": _pct(values, 0.9), "max": values[-1], "edges": edges, "hist": counts})
    return out


def _log_edges(lo: float, hi: float) -> list[float]:
    if hi <= lo * 1.01:
        lo, hi = lo / 1.5, hi * 1.5
    step = (math.log(hi) - math.log(lo)) / HIST_BINS
    return [math.exp(math.log(lo) + i * step) for i in range(HIST_BINS + 1)]


def _pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def render_report(db: queries.Store, run_id: str) -> str:
    """The whole report page for ``run_id`` (see the module docstring)."""
    return render_html(report_data(db, run_id))


def render_html(data: dict) -> str:
    """The page for :func:`report_data`'s dict: inline JSON, CSS and script, nothing to fetch."""
    run = data["run"]
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False, default=_json_default)
    payload = payload.replace("<", "\\u003c")  # nothing in the JSON can close (or open) a <script> element
    title = html.escape(f"parsl_lite report: {run['name'] or 'workflow'} {run['run_id']}")
    return (_PAGE.replace("{{TITLE}}", title).replace("{{SUMMARY}}", _summary_html(data))
            .replace("{{FAILURES}}", _failures_html(data["failures"])).replace("{{APPS}}", _apps_html(data["apps"]))
            .replace("{{DATA}}", payload).replace("{{SCRIPT}}", _SCRIPT))


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _summary_html(data: dict) -> str:
    run = data["run"]
    counts = " ".join(f"<span class='st'>{html.escape(s)}&nbsp;<b>{n}</b></span>" for s, n in data["counts"].items())
    fields = [("run", run["run_id"]), ("name", run["name"] or "-"), ("rundir", run["rundir"]),
              ("user", f"{run['user']}@{run['host']}"), ("state", run["state"]), ("began", run["began_text"]),
              ("duration", views.format_duration(run["duration_s"])), ("tries", str(len(data["stream"]["s"])))]
    rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in fields)
    return f"<table class='kv'>{rows}</table><p>{counts}</p>"


def _failures_html(failures: list[dict]) -> str:
    if not failures:
        return "<p>No failures.</p>"
    rows = "".join(f"<tr><td>{f['task_id']}</td><td>{f['try_id']}</td><td>{html.escape(str(f['func_name']))}"
                   f"</td><td>{queries.format_time(f['time'])}</td><td class='err'>"
                   f"{html.escape(views.short_error(f['error'], 300))}</td></tr>" for f in failures)
    return f"<table><tr><th>task</th><th>try</th><th>app</th><th>time</th><th>error</th></tr>{rows}</table>"


def _apps_html(apps: list[dict]) -> str:
    rows = "".join(f"<tr><td>{html.escape(a['app'])}</td><td>{a['count']}</td><td>{_s(a['mean'])}</td>"
                   f"<td>{_s(a['p50'])}</td><td>{_s(a['p90'])}</td><td>{_s(a['max'])}</td></tr>" for a in apps)
    return ("<table><tr><th>app</th><th>tries</th><th>mean</th><th>p50</th><th>p90</th><th>max</th></tr>"
            f"{rows}</table>")


def _s(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{TITLE}}</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;max-width:1300px}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}
table.kv th{background:#f4f4f4}.st{margin-right:1em}.err{color:#b00;font-family:monospace}
canvas{border:1px solid #ccc;display:block;margin:.3em 0}.legend span{margin-right:1em}
.note{color:#666;font-size:.9em}
</style></head><body>
<h1>{{TITLE}}</h1>
{{SUMMARY}}
<h2>Task stream (per worker)</h2><div class="note">One row per worker, one bar per try; red: failed.
Colour: the app.</div><div id="stream-legend" class="legend"></div><canvas id="stream" width="1250"></canvas>
<h2>Tasks by state over time</h2><div id="states-legend" class="legend"></div>
<canvas id="states" width="1250" height="300"></canvas>
<h2>Worker CPU (%)</h2><canvas id="cpu" width="1250" height="260"></canvas>
<h2>Worker memory (RSS, MB)</h2><div id="res-legend" class="legend"></div>
<canvas id="rss" width="1250" height="260"></canvas>
<h2>Per-app durations</h2>{{APPS}}<canvas id="apps" width="1250"></canvas>
<h2>Recent failures</h2>{{FAILURES}}
<script type="application/json" id="report-data">{{DATA}}</script>
<script>{{SCRIPT}}</script>
</body></html>
"""

_SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("report-data").textContent);
const PAL = ["#4e79a7","#f28e2b","#59a14f","#76b7b2","#edc948","#b07aa1","#ff9da7","#9c755f","#bab0ac","#e15759"];
const STATE_COL = {pending:"#bab0ac",launched:"#76b7b2",running:"#edc948",exec_done:"#59a14f",memo_done:"#8cd17d",
  failed:"#e15759",dep_fail:"#ff9da7",fail_retryable:"#f28e2b",joining:"#b07aa1",unsched:"#ddd",running_ended:"#9c755f"};
const M = {l: 150, r: 20, t: 10, b: 30};
function legend(id, names, colour) {
  document.getElementById(id).innerHTML = names.map((n, i) =>
    `<span><b style="color:${colour(n, i)}">&#9632;</b> ${n.replace(/[<&]/g, "")}</span>`).join("");
}
function axes(ctx, w, h, xmax, ymax, ylabel) {
  ctx.strokeStyle = "#999"; ctx.fillStyle = "#333"; ctx.font = "11px sans-serif";
  ctx.strokeRect(M.l, M.t, w - M.l - M.r, h - M.t - M.b);
  const digits = xmax >= 100 ? 0 : xmax >= 10 ? 1 : xmax >= 1 ? 2 : 3;
  for (let i = 0; i <= 10; i++) {
    const x = M.l + (w - M.l - M.r) * i / 10;
    ctx.fillText((xmax * i / 10).toFixed(digits) + " s", x - 12, h - M.b + 14);
  }
  if (ymax !== null) for (let i = 0; i <= 4; i++) {
    const y = h - M.b - (h - M.t - M.b) * i / 4;
    ctx.fillText(String(+(ymax * i / 4).toPrecision(3)), M.l - 45, y + 4);
  }
  if (ylabel) ctx.fillText(ylabel, 4, M.t + 10);
}
function drawStream() {
  const S = D.stream, n = S.s.length, rows = Math.max(1, S.workers.length);
  const c = document.getElementById("stream"), rowH = Math.max(3, Math.min(22, 500 / rows));
  c.height = M.t + M.b + rows * rowH;
  const ctx = c.getContext("2d"), w = c.width, xmax = Math.max(D.run.end, 1e-3);
  const sx = (w - M.l - M.r) / xmax / 1000;   // starts and durations are in ms
  axes(ctx, w, c.height, xmax, null, "");
  ctx.font = "10px sans-serif";
  if (rowH >= 8) S.workers.forEach((name, i) => ctx.fillText(name.slice(-24), 2, M.t + i * rowH + rowH * 0.75));
  for (let i = 0; i < n; i++) {
    const d = S.d[i] < 0 ? xmax * 1000 - S.s[i] : S.d[i];
    ctx.fillStyle = S.f[i] ? "#e15759" : PAL[S.a[i] % PAL.length];
    ctx.fillRect(M.l + S.s[i] * sx, M.t + S.w[i] * rowH + 1, Math.max(1, d * sx), rowH - 2);
  }
  legend("stream-legend", S.apps, (a, i) => PAL[i % PAL.length]);
}
function lines(id, xs, series, colour, ylabel, stacked) {
  const c = document.getElementById(id), ctx = c.getContext("2d"), w = c.width, h = c.height;
  const names = Object.keys(series);
  let xmax = Math.max(D.run.end, 1e-3), ymax = 1;
  names.forEach(k => { const t = xs(k); if (t.length) xmax = Math.max(xmax, t[t.length - 1]);
    series[k].forEach(v => { if (v !== null) ymax = Math.max(ymax, v); }); });
  axes(ctx, w, h, xmax, ymax, ylabel);
  const X = t => M.l + (w - M.l - M.r) * t / xmax, Y = v => h - M.b - (h - M.t - M.b) * v / ymax;
  names.forEach((k, i) => {
    const t = xs(k), v = series[k];
    ctx.strokeStyle = colour(k, i); ctx.lineWidth = 1.5; ctx.beginPath();
    let on = false;
    for (let j = 0; j < v.length; j++) {
      if (v[j] === null) { on = false; continue; }
      on ? ctx.lineTo(X(t[j]), Y(v[j])) : ctx.moveTo(X(t[j]), Y(v[j])); on = true;
    }
    ctx.stroke();
  });
}
function drawStates() {
  const T = D.states_over_time, col = (k, i) => STATE_COL[k] || PAL[i % PAL.length];
  lines("states", () => T.t, T.series, col, "tasks");
  legend("states-legend", Object.keys(T.series), col);
}
function drawResources() {
  const R = D.resources, names = Object.keys(R), col = (k, i) => PAL[i % PAL.length];
  const pick = f => Object.fromEntries(names.map(k => [k, R[k][f]]));
  lines("cpu", k => R[k].t, pick("cpu"), col, "CPU %");
  lines("rss", k => R[k].t, pick("rss_mb"), col, "MB");
  legend("res-legend", names.length ? names : ["(no resource samples)"], col);
}
function drawApps() {
  const A = D.apps, c = document.getElementById("apps"), rowH = 60;
  c.height = M.t + M.b + Math.max(1, A.length) * rowH;
  const ctx = c.getContext("2d"), w = c.width;
  let lo = Infinity, hi = 0;
  A.forEach(a => { lo = Math.min(lo, a.edges[0]); hi = Math.max(hi, a.edges[a.edges.length - 1]); });
  if (!A.length) return;
  const L = Math.log10(lo), H = Math.log10(hi), X = v => M.l + (w - M.l - M.r) * (Math.log10(v) - L) / (H - L);
  ctx.font = "11px sans-serif"; ctx.fillStyle = "#333";
  for (let e = Math.ceil(L); e <= Math.floor(H); e++) ctx.fillText("1e" + e + " s", X(Math.pow(10, e)) - 10, c.height - 10);
  A.forEach((a, i) => {
    const top = M.t + i * rowH, peak = Math.max(...a.hist, 1);
    ctx.fillStyle = "#333"; ctx.fillText(a.app.slice(0, 22), 2, top + rowH / 2);
    ctx.fillStyle = PAL[i % PAL.length];
    a.hist.forEach((n, j) => { const x0 = X(a.edges[j]), x1 = X(a.edges[j + 1]), bh = (rowH - 8) * n / peak;
      ctx.fillRect(x0, top + rowH - 4 - bh, Math.max(1, x1 - x0 - 1), bh); });
    ctx.fillStyle = "#000"; ctx.fillRect(X(Math.max(a.p50, lo)), top + 2, 2, rowH - 6);
  });
}
drawStream(); drawStates(); drawResources(); drawApps();
"""
