"""The endpoint's status: the report sent with each heartbeat, and ``status.json`` for ``endpoint list``.

``status.json`` (in the endpoint's directory, replaced atomically) says what
the daemon is doing: ``state`` (Starting, Running, Disconnected, Stopped,
Failed), ``endpoint_id``, ``pid``, ``workers``, ``queue``, ``spooled``,
``reason`` (why it failed), ``report`` (the last ``StatusReport``), ``zmq_url``,
``last_heard`` (when the service last spoke, UNIX time) and ``updated``. ``parsl-lite endpoint list`` reads it, with the pid
file, so a daemon killed with SIGKILL shows as Stopped, not Running.
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

    A block is ``RUNNING`` once a worker pool of it has registered, ``PENDING`` before.
    """
    from parsl_lite.executors.htex.messages import StatusReply, StatusRequest

    try:
        reply = executor.command(StatusRequest(0), timeout_s=2.0)
    except Exception as exc:
        logger.warning("status query to the interchange failed: %r", exc)
        reply = None
    if not isinstance(reply, StatusReply):
        reply = StatusReply.empty()
    running_blocks = {m.block_id for m in reply.managers}
    block_ids = sorted(dict(executor.blocks))  # a copy in one step: the poller thread changes it
    blocks = {b: ("RUNNING" if b in running_blocks else "PENDING") for b in block_ids}
    provider = executor.provider
    return {
        "alive": True,
        "managers": len(reply.managers),
        "connected_workers": reply.connected_workers,
        "idle_workers": sum(max(0, m.connected_workers - m.tasks) for m in reply.managers),
        "pending_tasks": reply.pending,
        "outstanding_tasks": executor.outstanding,
        "blocks": blocks,
        "provider_type": type(provider).__name__ if provider is not None else None,
        "walltime_left_s": _walltime_left(provider, clock.ages(block_ids, time.monotonic())),
        "timestamp": now,
    }


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
