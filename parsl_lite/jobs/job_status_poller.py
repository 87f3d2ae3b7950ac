"""The shell around the scaling strategy: polls job states and carries out its actions.

One thread, woken every ``strategy_period`` seconds::

    for each executor with a provider (a BlockExecutor):
        provider.status(job ids of its live blocks)     # one batched call, at most
                                                        # every status_polling_interval
        executor.handle_job_status(block, status)       # for each state that changed
    Strategy.decide(snapshots, now)  -> [ScaleOut | ScaleIn]
    executor.scale_out(n) / executor.scale_in(block_ids)

The decisions themselves live in :mod:`parsl_lite.jobs.strategy`, which
has no clock or thread; this module reads ``time.monotonic()`` and calls the
executors. Rounds are serialized by one lock, so the kernel may call
:meth:`JobStatusPoller.poll` or :meth:`~JobStatusPoller.add_executors` from its
own thread at any time.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

from parsl_lite.jobs.strategy import (
    Action, BlockExecutor, BlockSnapshot, ExecutorSnapshot, ScaleIn, ScaleOut, Strategy,
)
from parsl_lite.jobs.states import JobState, JobStatus

logger = logging.getLogger(__name__)

_WARN_STATES = frozenset({JobState.FAILED, JobState.MISSING})


@dataclass(eq=False)
class _Polled:
    """What the poller knows about one executor's blocks."""

    executor: Any  # a BlockExecutor
    statuses: dict[str, JobStatus] = field(default_factory=dict)
    last_status_poll: float = float("-inf")


class JobStatusPoller:
    """Keeps each executor's blocks in line with its load, from a thread of its own.

    Args:
        strategy: ``none``/None, ``simple`` or ``htex_auto_scale``.
        max_idletime: seconds a block must be idle before it is released.
        strategy_period: seconds between two rounds.
        clock: the time source; ``time.monotonic`` unless a test needs another.
            Executors' ``block_idle_since`` must use the same clock.
    """

    def __init__(self, *, strategy: Optional[str], max_idletime: float,
                 strategy_period: Union[float, int], clock: Callable[[], float] = time.monotonic) -> None:
        self._strategy = Strategy(strategy=strategy, max_idletime=max_idletime)
        self._period = float(strategy_period)
        self._clock = clock
        self._polled: list[_Polled] = []
        self._lock = threading.Lock()  # one round at a time
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def add_executors(self, executors: Sequence[Any]) -> None:
        """Start polling the executors that have a provider, and start their initial blocks now.

        The first round runs in the caller's thread, so the initial blocks are
        submitted before this returns rather than one period later. Executors
        without a provider (threads) are skipped.
        """
        new = [_Polled(e) for e in executors if _pollable(e)]
        if not new or self._stop.is_set():
            return
        with self._lock:
            self._polled.extend(new)
            self._round(new)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="parsl_lite-job-status-poller", daemon=True)
            self._thread.start()

    def poll(self) -> None:
        """Run one round now: refresh job states, decide, act."""
        with self._lock:
            self._round(self._polled)

    def close(self, timeout_s: float = 1.0, scale_in: bool = True) -> None:
        """Stop the thread and, like Parsl, release every block still active.

        Idempotent. The executors' own shutdown should still cancel what they
        own; cancelling a job twice is harmless.

        Args:
            timeout_s: how long to wait for a round in progress (a slow
                scheduler command) before giving up on it.
            scale_in: release the remaining blocks.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                logger.warning("job status poller still busy after %.1fs; leaving it (daemon thread)", timeout_s)
        if not scale_in:
            return
        if not self._lock.acquire(timeout=timeout_s):
            logger.warning("job status poller busy; not releasing blocks (executors cancel their own at shutdown)")
            return
        try:
            for polled in self._polled:
                live = tuple(bid for bid, status in polled.statuses.items() if not status.terminal)
                if live:
                    self._apply(polled, ScaleIn(polled.executor.label, live, "shutting down"))
        finally:
            self._lock.release()

    # --- one round; callers hold self._lock ---

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self.poll()
            except Exception:  # never let the thread die: the next round may work
                logger.exception("job status poller round failed")

    def _round(self, polled: list[_Polled]) -> None:
        now = self._clock()
        snapshots = []
        for entry in polled:
            try:
                self._refresh(entry, now)
                snapshots.append(self._snapshot(entry))
            except Exception:
                logger.exception("executor %s: cannot read its blocks; skipping it this round",
                                 entry.executor.label)
        by_label = {entry.executor.label: entry for entry in polled}
        for action in self._strategy.decide(snapshots, now):
            self._apply(by_label[action.label], action)

    def _refresh(self, entry: _Polled, now: float) -> None:
        """Bring ``entry.statuses`` up to date with the executor's blocks and the provider."""
        executor = entry.executor
        blocks = dict(executor.blocks)
        for block_id in [b for b in entry.statuses if b not in blocks]:
            del entry.statuses[block_id]  # the executor forgot it; so do we
        for block_id in blocks:
            if block_id not in entry.statuses:  # started by the executor itself (init_blocks)
                entry.statuses[block_id] = JobStatus(JobState.PENDING)
                _announce(executor, block_id, entry.statuses[block_id])
        provider = executor.provider
        if now - entry.last_status_poll < provider.status_polling_interval:
            return
        live = [bid for bid, status in entry.statuses.items() if not status.terminal]
        entry.last_status_poll = now
        if not live:
            return
        try:
            statuses = provider.status([blocks[bid] for bid in live])
        except Exception as exc:  # the scheduler may be briefly unreachable; ask again next time
            logger.warning("executor %s: provider %s could not report job states (%s); keeping the last known",
                           executor.label, provider.label, exc)
            return
        if len(statuses) != len(live):
            logger.error("executor %s: provider %s returned %d statuses for %d jobs; ignoring them",
                         executor.label, provider.label, len(statuses), len(live))
            return
        for block_id, status in zip(live, statuses):
            if status.state != entry.statuses[block_id].state:
                entry.statuses[block_id] = status
                self._report(entry, block_id, status)

    def _snapshot(self, entry: _Polled) -> ExecutorSnapshot:
        executor, provider = entry.executor, entry.executor.provider
        blocks = tuple(
            BlockSnapshot(bid, status.state, None if status.terminal else executor.block_idle_since(bid))
            for bid, status in entry.statuses.items())
        return ExecutorSnapshot(
            label=executor.label, outstanding=executor.outstanding,
            connected_workers=executor.connected_workers, workers_per_block=executor.workers_per_block,
            blocks=blocks, init_blocks=provider.init_blocks, min_blocks=provider.min_blocks,
            max_blocks=provider.max_blocks, parallelism=provider.parallelism,
            failed=getattr(executor, "executor_exception", None) is not None)

    def _apply(self, entry: _Polled, action: Action) -> None:
        executor = entry.executor
        if isinstance(action, ScaleOut):
            logger.info("executor %s: scaling out by %d block(s): %s", executor.label, action.blocks, action.reason)
            try:
                new_ids = executor.scale_out(action.blocks)
            except Exception:
                logger.exception("executor %s: scaling out by %d block(s) failed", executor.label, action.blocks)
                return
            for block_id in new_ids:
                entry.statuses[block_id] = JobStatus(JobState.PENDING)
                _announce(executor, block_id, entry.statuses[block_id])
            if len(new_ids) < action.blocks:
                logger.warning("executor %s: asked for %d block(s), got %d", executor.label,
                               action.blocks, len(new_ids))
            return
        logger.info("executor %s: scaling in blocks %s: %s", executor.label, list(action.block_ids), action.reason)
        try:
            released = executor.scale_in(list(action.block_ids))
        except Exception:
            logger.exception("executor %s: scaling in blocks %s failed", executor.label, list(action.block_ids))
            return
        for block_id in released:
            status = JobStatus(JobState.SCALED_IN, f"released ({action.reason})")
            entry.statuses[block_id] = status
            self._report(entry, block_id, status)

    def _report(self, entry: _Polled, block_id: str, status: JobStatus) -> None:
        executor = entry.executor
        level = logging.WARNING if status.state in _WARN_STATES else logging.INFO
        logger.log(level, "executor %s: block %s is %s", executor.label, block_id, status)
        _announce(executor, block_id, status)
        try:
            executor.handle_job_status(block_id, status)
        except Exception:
            logger.exception("executor %s: handle_job_status(%s, %s) failed", executor.label, block_id, status)


def _announce(executor: Any, block_id: str, status: JobStatus) -> None:
    """Tell the kernel's listeners (monitoring's ``block`` table) that a block changed state."""
    changed = getattr(executor, "block_changed", None)
    if changed is None:
        return
    jobs = getattr(executor, "blocks", None)
    job_id = jobs.get(block_id) if isinstance(jobs, dict) else None
    changed(block_id, None if job_id is None else str(job_id), status.status_name)


def _pollable(executor: Any) -> bool:
    """True for executors whose blocks the poller should manage."""
    if getattr(executor, "provider", None) is None:
        return False
    if not isinstance(executor, BlockExecutor):
        logger.warning("executor %s has a provider but does not offer what the poller needs "
                       "(parsl_lite.jobs.strategy.BlockExecutor); its blocks will not be scaled",
                       getattr(executor, "label", executor))
        return False
    return True
