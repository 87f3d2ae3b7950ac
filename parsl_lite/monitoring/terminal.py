"""``parsl-lite monitor``: the live terminal view of a run, drawn with rich from a :class:`MonitorView`.

The drawing (:func:`render`) is a pure function of the snapshot; :func:`watch` re-queries the store
every ``interval_s`` (only when something was committed) and redraws, until Ctrl-C.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from parsl_lite.monitoring import queries
from parsl_lite.monitoring.views import MonitorView, format_duration, short_error

_STATE_STYLE = {"running": "yellow", "completed": "green", "failed": "red", "ended abnormally": "bold red",
                "exec_done": "green", "memo_done": "green", "failed_task": "red", "dep_fail": "red",
                "pending": "dim", "launched": "cyan"}


def _header(view: MonitorView) -> Text:
    run = view.run
    text = Text()
    text.append(f"run {run.run_id}", style="bold")
    text.append(f"  {run.name or ''}  {run.rundir}\n")
    text.append("state ")
    text.append(run.state, style=_STATE_STYLE.get(run.state, ""))
    text.append(f"   began {queries.format_time(run.began)}   ran {format_duration(run.duration_s)}"
                f"   {view.finished}/{view.total} tasks finished ({view.rate:.1f}/s)")
    return text


def _counts(view: MonitorView) -> Text:
    """``tasks  pending 0  launched 3  ...  total 25``: one line that wraps on a narrow terminal."""
    text = Text("tasks ", style="bold")
    for state, n in view.counts.items():
        text.append(f" {state} ")
        text.append(str(n), style="bold " + _STATE_STYLE.get("failed_task" if state == "failed" else state, ""))
        text.append(" ")
    text.append(f" total {view.total}", style="bold")
    return text


def _executors(view: MonitorView) -> Table:
    table = Table(title="executors: workers and blocks", title_justify="left")
    for name in ("executor", "tasks", "workers", "pools", "blocks"):
        table.add_column(name)
    for ex in view.executors:
        pools = ", ".join(f"{n['hostname']}:{n['uid'][:8]} ({n['worker_count']}{'' if n['active'] else ', lost'})"
                          for n in ex.nodes) or "-"
        blocks = ", ".join(f"{b['block_id']}:{b['status']}" + (f" (job {b['job_id']})" if b['job_id'] else "")
                           for b in ex.blocks) or "-"
        table.add_row(ex.label, str(ex.tasks), "-" if ex.workers is None else str(ex.workers), pools, blocks)
    return table


def _endpoints(view: MonitorView) -> Table:
    table = Table(title="endpoints", title_justify="left")
    for name in ("endpoint", "executor", "status", "workers", "idle", "pending", "last seen"):
        table.add_column(name)
    for e in view.endpoints:
        table.add_row(str(e["endpoint_id"]), str(e["executor"]), str(e["status"]), _n(e["workers"]),
                      _n(e["idle_workers"]), _n(e["pending_tasks"]), queries.format_time(e["last_seen"]))
    return table


def _failures(view: MonitorView, width: int) -> Table:
    table = Table(title="recent failures", title_justify="left")
    for name in ("task", "try", "app", "time", "error"):
        table.add_column(name, overflow="fold" if name == "error" else "ellipsis")
    for f in view.failures:
        table.add_row(str(f["task_id"]), str(f["try_id"]), str(f["func_name"]), queries.format_time(f["time"]),
                      Text(short_error(f["error"], width), style="red"))
    return table


def _n(value: Optional[int]) -> str:
    return "-" if value is None else str(value)


def render(view: MonitorView, width: int = 100) -> RenderableType:
    """The whole screen for one snapshot: header, tasks by state, executors, endpoints, failures."""
    parts: list[RenderableType] = [_header(view), _counts(view)]
    if view.executors:
        parts.append(_executors(view))
    if view.endpoints:
        parts.append(_endpoints(view))
    parts.append(_failures(view, width) if view.failures else Text("no failures", style="green"))
    return Group(*parts)


def watch(db: queries.Store, run_spec: Optional[str], interval_s: float, console: Console,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Redraw the view of ``run_spec`` every ``interval_s`` until Ctrl-C; returns the exit status (0)."""
    token = None
    reader = queries.SnapshotReader(db, run_spec)  # follows this run, even when a newer one starts
    width = max(60, console.width - 40)            # room left for an error's text
    try:
        view = reader.read()
        with Live(render(view, width), console=console, auto_refresh=False) as live:
            while True:
                sleep(interval_s)
                now_token = db.change_token()
                if now_token == token and view.run.state != "running":
                    continue
                token = now_token
                view = reader.read()
                live.update(render(view, width), refresh=True)
    except KeyboardInterrupt:
        return 0
