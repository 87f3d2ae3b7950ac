"""What the monitor shows, as plain values: one snapshot built from query results, no I/O.

The terminal view (``parsl-lite monitor``) and the web view (``monitor --web``) both draw a
:class:`MonitorView`; ``dataclasses.asdict(view)`` is JSON-ready (str, int, float, bool, None, lists,
dicts). Times are float seconds on the store's scale (see :mod:`parsl_lite.monitoring.queries`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

# States in the order a view lists them; the first group is always shown (zeros too).
SHOWN_STATES = ("pending", "launched", "running", "exec_done", "memo_done", "failed", "dep_fail")
OTHER_STATES = ("unsched", "joining", "fail_retryable", "running_ended")
FINAL_STATES = ("exec_done", "memo_done", "failed", "dep_fail")
STREAM_ROWS = 200
FAILURE_ROWS = 20


@dataclass(frozen=True)
class RunView:
    """One workflow run. ``state``: running | completed | failed | ended abnormally."""

    run_id: str
    name: Optional[str]
    user: str
    host: str
    rundir: str
    began: float
    completed: Optional[float]
    state: str
    duration_s: float
    tasks_completed_count: int
    tasks_failed_count: int


@dataclass(frozen=True)
class ExecutorView:
    """An executor's worker pools (``node`` rows) and blocks; ``workers`` None where it has no pools."""

    label: str
    workers: Optional[int]
    nodes: list[dict] = field(default_factory=list)
    blocks: list[dict] = field(default_factory=list)
    tasks: int = 0


@dataclass(frozen=True)
class MonitorView:
    """Everything one refresh of the monitor shows."""

    run: RunView
    counts: dict[str, int]
    total: int
    executors: list[ExecutorView]
    endpoints: list[dict]
    failures: list[dict]
    stream: list[dict]
    generated_at: float

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in FINAL_STATES)

    @property
    def rate(self) -> float:
        """Tasks finished per second since the run began."""
        return self.finished / self.run.duration_s if self.run.duration_s > 0 else 0.0


def run_view(run: Any, state: str, now: float) -> RunView:
    """A :class:`RunView` of a ``queries.RunRow`` whose state the caller judged."""
    end = run.completed if run.completed is not None else (run.heartbeat if state == "ended abnormally" else None)
    duration = max(0.0, (end if end is not None else now) - run.began)
    return RunView(run.run_id, run.workflow_name, run.user, run.host, run.rundir, run.began, run.completed,
                   state, duration, int(run.tasks_completed_count or 0), int(run.tasks_failed_count or 0))


def ordered_counts(counts: dict[str, int]) -> dict[str, int]:
    """Counts by state in :data:`SHOWN_STATES` order (zeros kept), then any other state that has tasks."""
    out = {state: int(counts.get(state, 0)) for state in SHOWN_STATES}
    for state in (*OTHER_STATES, *sorted(counts)):
        if counts.get(state) and state not in out:
            out[state] = int(counts[state])
    return out


def executor_views(blocks: Sequence[dict], nodes: Sequence[dict], stream_executors: dict[str, int]
                   ) -> list[ExecutorView]:
    """Blocks and worker pools grouped by executor.

    A ``node`` row names no executor in Parsl's schema: it goes to the executor that has its block id,
    if exactly one does, else to the run's only executor, else under ``"?"``.
    """
    labels: dict[str, tuple[list, list]] = {label: ([], []) for label in stream_executors}
    owners: dict[str, set] = {}
    for block in blocks:
        labels.setdefault(block["executor"], ([], []))[1].append(dict(block))
        owners.setdefault(str(block["block_id"]), set()).add(block["executor"])
    for node in nodes:
        label = node.get("executor")
        if label is None:
            candidates = owners.get(str(node["block_id"])) or set(stream_executors) or set(owners_of(blocks))
            label = next(iter(candidates)) if len(candidates) == 1 else "?"
        labels.setdefault(label, ([], []))[0].append(dict(node, executor=label))
    views = []
    for label in sorted(labels):
        pools, blocks_of = labels[label]
        workers = sum(int(n["worker_count"] or 0) for n in pools if n["active"]) if pools else None
        views.append(ExecutorView(label, workers, pools, blocks_of, stream_executors.get(label, 0)))
    return views


def owners_of(blocks: Sequence[dict]) -> set:
    return {b["executor"] for b in blocks}


def stream_rows(rows: Sequence[tuple]) -> list[dict]:
    """``queries.Store.task_stream`` tuples as dicts (the newest :data:`STREAM_ROWS`)."""
    keys = ("task_id", "try_id", "func_name", "executor", "worker", "start", "end", "state")
    return [dict(zip(keys, row)) for row in rows[-STREAM_ROWS:]]


def build_view(run: RunView, counts: dict[str, int], executors: list[ExecutorView], endpoints: Sequence[dict],
               failures: Sequence[dict], stream: Sequence[tuple], now: float) -> MonitorView:
    """The snapshot: counts ordered, failures newest first (at most :data:`FAILURE_ROWS`)."""
    ordered = ordered_counts(counts)
    return MonitorView(run, ordered, sum(ordered.values()), executors, [dict(e) for e in endpoints],
                       [dict(f) for f in failures[:FAILURE_ROWS]], stream_rows(stream), now)


def format_duration(seconds: Optional[float]) -> str:
    """``1h02m03s`` / ``2m03s`` / ``4.2s`` / ``-``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def short_error(text: Optional[str], width: int = 100) -> str:
    """The last line of an error, cut to ``width`` characters."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= width else last[: width - 1] + "…"
