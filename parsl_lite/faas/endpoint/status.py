"""The endpoint's status: the report sent with each heartbeat, and ``status.json`` for ``endpoint list``.

``status.json`` (in the endpoint's directory, replaced atomically) says what
the daemon is doing: ``state`` (Starting, Running, Disconnected, Stopped,
Failed), ``endpoint_id``, ``pid``, ``workers``, ``queue``, ``spooled``,
``reason`` (why it failed), ``report`` (the last ``StatusReport``), ``zmq_url``,
``last_heard`` (when the service last spoke, UNIX time) and ``updated``.
``parsl-lite endpoint list`` reads it, with the pid file, so a daemon killed
with SIGKILL shows as Stopped, not Running. Both are written at each heartbeat
and, through the daemon's ``ReportWatch``, as soon as :func:`report_changes`
differ (a block came, started or went; workers connected; the executor failed).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger(__name__)

STATUS_FILE = "status.json"
STARTING, RUNNING, DISCONNECTED, STOPPED, FAILED = "Starting", "Running", "Disconnected", "Stopped", "Failed"


class BlockClock:
    """When the endpoint first saw each block, for ``walltime_left_s`` (the provider's walltime minus age)."""

    def __init__(self) -> None:
        self._first_seen: dict[str, float] = {}

    def ages(self, block_ids: list[str], now: float) -> dict[str, float]:
        for block_id in block_ids:
            self._first_seen.setdefault(block_id, now)
        for gone in [b for b in self._first_seen if b not in block_ids]:
            del self._first_seen[gone]
        return {b: now - self._first_seen[b] for b in block_ids}


def executor_report(executor: Any, clock: BlockClock, now: float) -> dict[str, Any]:
    """The ``StatusReport.report`` of ``faas/protocol.py``, from the executor and its interchange.

    ``blocks`` maps each live block to its state: the provider's last known job
    state, and ``RUNNING`` as soon as a worker pool of it has registered (the
    provider is polled less often than pools connect). ``block_details`` adds
    per block the provider's job id (pod name, Slurm job id), its connected
    workers and the tasks they hold; ``ended_blocks`` the last blocks that
    ended (released by the strategy: ``CANCELLED``; or ``FAILED``, ...). Pools of
    released blocks still connected while their jobs stop count nowhere: they take no task.
    """
    from parsl_lite.executors.htex.messages import StatusReply, StatusRequest

    try:
        reply = executor.command(StatusRequest(0), timeout_s=2.0)
    except Exception as exc:
        logger.warning("status query to the interchange failed: %r", exc)
        reply = None
    if not isinstance(reply, StatusReply):
        reply = StatusReply.empty()
    managers = [m for m in reply.managers if not m.held]
    job_ids = dict(executor.blocks)  # a copy in one step: the poller thread changes it
    history = getattr(executor, "block_history", None)
    details = {b: _block_detail(b, job_ids[b], managers, history) for b in sorted(job_ids)}
    provider = executor.provider
    broken = getattr(executor, "executor_exception", None)
    return {
        "alive": broken is None,  # False: every task sent here would fail at once (routing skips it)
        "executor_error": None if broken is None else f"{type(broken).__name__}: {broken}",
        "managers": len(managers),
        "connected_workers": sum(m.connected_workers for m in managers),
        "idle_workers": sum(max(0, m.connected_workers - m.tasks) for m in managers),
        "pending_tasks": reply.pending,
        "outstanding_tasks": executor.outstanding,
        "blocks": {b: d["state"] for b, d in details.items()},
        "block_details": details,
        "ended_blocks": _ended_blocks(history),
        "provider_type": type(provider).__name__ if provider is not None else None,
        "walltime_left_s": _walltime_left(provider, clock.ages(list(details), time.monotonic())),
        "timestamp": now,
    }


def _block_detail(block_id: str, job_id: Any, managers: list, history: Any) -> dict[str, Any]:
    """One live block: its state, job id, connected workers and the tasks they hold."""
    mine = [m for m in managers if m.block_id == block_id]
    status = dict(history.live).get(block_id) if history is not None else None
    state = getattr(getattr(status, "state", None), "name", "PENDING")
    if mine:
        state = "RUNNING"
    return {"state": state, "job_id": None if job_id is None else str(job_id),
            "workers": sum(m.connected_workers for m in mine), "tasks": sum(m.tasks for m in mine),
            "message": getattr(status, "message", None) if not mine else None}


def _ended_blocks(history: Any) -> dict[str, dict[str, Any]]:
    if history is None:
        return {}
    return {b: {"state": status.state.name, "job_id": None if job_id is None else str(job_id),
                "message": status.message}
            for b, (job_id, status) in list(history.ended.items())}


def report_changes(report: dict[str, Any]) -> tuple:
    """What of a report is worth telling at once rather than at the next heartbeat: blocks, workers, queues,
    failure (not its clocks). During a burst that is every watch period: a few small reports a second."""
    blocks = tuple(sorted((b, d["state"], d["workers"]) for b, d in (report.get("block_details") or {}).items()))
    return (blocks, report.get("managers"), report.get("connected_workers"), report.get("executor_error"),
            report.get("pending_tasks"), report.get("outstanding_tasks"))


def _walltime_left(provider: Any, ages: dict[str, float]) -> Optional[float]:
    """The least walltime left among the live blocks; None without a walltime or blocks."""
    walltime = getattr(provider, "walltime", None)
    if not walltime or not ages:
        return None
    from parsl_lite.jobs.provider import walltime_to_seconds

    try:
        limit = walltime_to_seconds(walltime)
    except ValueError:
        return None
    return max(0.0, limit - max(ages.values()))


def write_status(directory: Path, state: str, **fields: Any) -> None:
    """Replace ``status.json`` atomically (readers never see half a file)."""
    data = {"state": state, "pid": os.getpid(), "updated": time.time(), **fields}
    path = Path(directory) / STATUS_FILE
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("cannot write %s: %s", path, exc)


def read_status(directory: Path) -> Optional[dict]:
    """``status.json``, or None if there is none (never started) or it is unreadable."""
    try:
        data = json.loads((Path(directory) / STATUS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None
