"""The scaling strategy: how many blocks each executor should have. Pure.

No clocks, threads or executor calls here. The job status poller
(``job_status_poller.py``) takes a snapshot of each executor, with the time,
and carries out the actions returned::

    ExecutorSnapshot(outstanding=10, workers_per_block=4, blocks=[RUNNING idle-since None], ...)
        -> [ScaleOut("htex", 2)]                      10 tasks need 3 blocks of 4 workers
    ExecutorSnapshot(outstanding=0, blocks=[RUNNING idle since t-200], ...), now=t, max_idletime=120
        -> [ScaleIn("htex", ("0",))]                  idle for longer than max_idletime

Strategies (Parsl's names):

- ``none`` (or None): start ``init_blocks`` once, then never act.
- ``simple``: scale out when the outstanding tasks, times ``parallelism``,
  exceed the workers of the active blocks, to
  ``ceil(outstanding * parallelism / workers_per_block)`` blocks (at least one
  while tasks are outstanding), never above ``max_blocks``. Scale in only when
  no task is outstanding, releasing blocks idle for ``max_idletime`` or more,
  never below ``min_blocks``.
- ``htex_auto_scale``: as ``simple``, and also releases idle blocks while
  tasks run elsewhere, when the other blocks have room for all of them.

Neither acts for an executor that has failed. Both keep at least ``min_blocks`` active, and replace blocks that ended
(failed, timed out) while tasks still need them: ended blocks do not count.
A block is only ever released if its executor says it is idle (holds no task).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Protocol, Sequence, Union, runtime_checkable

from parsl_lite.errors import ConfigurationError
from parsl_lite.jobs.provider import ExecutionProvider
from parsl_lite.jobs.states import JobState, JobStatus

STRATEGIES = (None, "none", "simple", "htex_auto_scale")


@dataclass(frozen=True, slots=True)
class BlockSnapshot:
    """One block as the strategy sees it.

    Args:
        block_id: the executor's id of the block.
        state: its last known job state.
        idle_since: when (on the caller's clock) it last held a task, or when
            it was submitted if it never held one; None while it holds tasks.
    """

    block_id: str
    state: JobState
    idle_since: Optional[float] = None


@dataclass(frozen=True, slots=True)
class ExecutorSnapshot:
    """One executor's load, blocks and block limits at one moment.

    Args:
        label: the executor's label.
        outstanding: tasks submitted to it and not finished.
        connected_workers: workers connected now (for the decision's log line).
        workers_per_block: task slots a block brings (nodes per block x workers per node).
        blocks: its blocks, including ended ones (they are not counted).
        init_blocks: blocks to start at the first decision.
        min_blocks: active blocks to keep at all times.
        max_blocks: active blocks never to exceed.
        parallelism: slots wanted per outstanding task, in [0, 1].
        failed: the executor gave up (Parsl's ``bad_state_is_set``): nothing is decided for it.
    """

    label: str
    outstanding: int
    connected_workers: int
    workers_per_block: int
    blocks: tuple[BlockSnapshot, ...]
    init_blocks: int
    min_blocks: int
    max_blocks: int
    parallelism: float
    failed: bool = False


@dataclass(frozen=True, slots=True)
class ScaleOut:
    """Start ``blocks`` more blocks for executor ``label``."""

    label: str
    blocks: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ScaleIn:
    """Release exactly these (idle) blocks of executor ``label``."""

    label: str
    block_ids: tuple[str, ...]
    reason: str = ""


Action = Union[ScaleOut, ScaleIn]


@runtime_checkable
class BlockExecutor(Protocol):
    """What an executor offers the job status poller to have its blocks scaled.

    All members are called from the poller's thread. Times are on the
    ``time.monotonic()`` clock.
    """

    label: str

    @property
    def provider(self) -> Optional[ExecutionProvider]:
        """Where its blocks come from; executors without one are not polled."""

    @property
    def outstanding(self) -> int:
        """Tasks submitted and not yet finished."""

    @property
    def connected_workers(self) -> int:
        """Workers connected and able to run tasks now."""

    @property
    def workers_per_block(self) -> int:
        """Task slots one block brings: ``nodes_per_block`` x workers per node (>= 1)."""

    @property
    def blocks(self) -> Mapping[str, str]:
        """Its blocks, ``block_id -> job_id``, at least those not yet ended or released."""

    def block_idle_since(self, block_id: str) -> Optional[float]:
        """When the block last held a task (or was submitted); None while it holds tasks."""

    def scale_out(self, blocks: int) -> list[str]:
        """Submit ``blocks`` new blocks through the provider; return their block ids."""

    def scale_in(self, block_ids: list[str]) -> list[str]:
        """Stop sending tasks to these blocks and cancel them; return the ids released."""

    def handle_job_status(self, block_id: str, status: JobStatus) -> None:
        """A block's state changed (ended, failed, released): fail or retry its tasks."""


class Strategy:
    """Decides scale-outs and scale-ins from executor snapshots.

    Remembers only which executors it has seen, so that ``init_blocks`` are
    started once, at an executor's first decision.

    Args:
        strategy: ``none``/None, ``simple`` or ``htex_auto_scale``.
        max_idletime: seconds a block must have been idle before it is released.

    Raises:
        ConfigurationError: an unknown strategy or a negative ``max_idletime``.
    """

    def __init__(self, *, strategy: Optional[str], max_idletime: float) -> None:
        if strategy not in STRATEGIES:
            raise ConfigurationError("strategy", f"must be one of {STRATEGIES}, got {strategy!r}")
        if max_idletime < 0:
            raise ConfigurationError("max_idletime", f"must be >= 0 seconds, got {max_idletime}")
        self.strategy = strategy
        self.max_idletime = max_idletime
        self._seen: set[str] = set()

    def decide(self, executors: Sequence[ExecutorSnapshot], now: float) -> list[Action]:
        """Return the actions for these executors, at most one per executor.

        Args:
            executors: one snapshot per executor, taken at ``now``.
            now: the time, on the clock of the snapshots' ``idle_since``.
        """
        actions: list[Action] = []
        for snapshot in executors:
            first = snapshot.label not in self._seen
            self._seen.add(snapshot.label)
            action = self._decide_one(snapshot, now, first)
            if action is not None:
                actions.append(action)
        return actions

    def _decide_one(self, snap: ExecutorSnapshot, now: float, first: bool) -> Optional[Action]:
        if snap.failed:  # its tasks already failed; a new block would only idle (and be billed)
            return None
        active = [b for b in snap.blocks if not b.state.terminal]
        if self.strategy in (None, "none"):
            missing = min(snap.init_blocks, snap.max_blocks) - len(active)
            return ScaleOut(snap.label, missing, "initial blocks") if first and missing > 0 else None
        floor = max(snap.min_blocks, snap.init_blocks) if first else snap.min_blocks
        if snap.outstanding > 0:
            per_block = max(1, snap.workers_per_block)
            needed = max(1, math.ceil(snap.outstanding * snap.parallelism / per_block))
            target = min(max(needed, floor), snap.max_blocks)
        else:
            target = min(floor, snap.max_blocks)
        if target > len(active):
            return ScaleOut(snap.label, target - len(active), _describe(snap, len(active), target))
        may_release = snap.outstanding == 0 or self.strategy == "htex_auto_scale"
        if target < len(active) and may_release:
            victims = self._idle_blocks(active, now, limit=len(active) - max(target, snap.min_blocks))
            if victims:
                return ScaleIn(snap.label, victims, _describe(snap, len(active), len(active) - len(victims)))
        return None

    def _idle_blocks(self, active: list[BlockSnapshot], now: float, limit: int) -> tuple[str, ...]:
        """Up to ``limit`` blocks idle for ``max_idletime`` or more.

        Pending blocks go first (releasing them loses no warm worker), then
        the longest idle; ties by id, so decisions are reproducible.
        """
        idle = [b for b in active if b.idle_since is not None and now - b.idle_since >= self.max_idletime]
        idle.sort(key=lambda b: (b.state is not JobState.PENDING, b.idle_since, b.block_id))
        return tuple(b.block_id for b in idle[:max(0, limit)])


def _describe(snap: ExecutorSnapshot, active: int, target: int) -> str:
    """The facts behind a decision, for the poller's INFO log line."""
    return (f"{snap.outstanding} outstanding tasks, {snap.connected_workers} connected workers, "
            f"{snap.workers_per_block} workers per block, {active} -> {target} active blocks "
            f"(min {snap.min_blocks}, max {snap.max_blocks}, parallelism {snap.parallelism})")
