"""How a task fails: the retry handler and retries, a refused launch, and abandonment at shutdown.

A mixin of :class:`~parsl_lite.dataflow.kernel.DataFlowKernel`: the graph
decides (retry or fail, under the kernel's lock), these methods gather what
it needs to decide (the retry handler's cost) and carry out its actions.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from parsl_lite.dataflow.errors import KernelShutdown
from parsl_lite.dataflow.graph import ExecFailed, Finish, LaunchFailed, TaskAbandoned, TaskGraph, TaskId, TaskRecord

logger = logging.getLogger(__name__)


class HandlesFailures:
    """The kernel's failure paths. Uses its ``_lock``, ``_graph``, ``_cleanup_called``, ``_retry_handler``, ``_apply``."""

    _lock: threading.Lock
    _graph: TaskGraph
    _cleanup_called: bool
    _retry_handler: Optional[Callable[[BaseException, TaskRecord], float]]
    _apply: Callable[..., None]

    def _task_failed(self, record: TaskRecord, exc: BaseException, retriable: bool = True) -> None:
        """Record the failure; retry if the handler's cost allows (never once cleanup began, or if not ``retriable``)."""
        if self._cleanup_called:  # shutting down: no retry handler, no retry (cleanup's docstring)
            self._abandon(record.id, exc)
            return
        if record.fail_history is None:
            record.fail_history = []
        record.fail_history.append(repr(exc))
        cost, exc = self._failure_cost(record, exc) if retriable else (float("inf"), exc)
        with self._lock:
            actions = self._graph.handle(ExecFailed(record.id, cost))
        self._apply(actions, exc=exc)

    def _failure_cost(self, record: TaskRecord, exc: BaseException) -> tuple[float, BaseException]:
        """The retry handler's cost for this failure, and the exception the task fails with.

        As in Parsl, a handler that raises stops the retries, and what it raised
        becomes the task's exception (its ``__context__`` is the app's). A
        ``SystemExit`` from it must not reach ``result()`` (it would end the
        script), so then the task keeps the app's exception.
        """
        if self._retry_handler is None:
            return 1.0, exc
        try:
            return float(self._retry_handler(exc, record)), exc
        except Exception as handler_exc:
            logger.exception("task %d: retry_handler raised - will not retry", record.id)
            return float("inf"), handler_exc
        except SystemExit:
            logger.exception("task %d: retry_handler raised SystemExit - will not retry", record.id)
            return float("inf"), exc

    def _launch_failed(self, record: TaskRecord, exc: BaseException) -> None:
        """The task could not be handed to an executor: it fails with ``exc``, without retries."""
        with self._lock:
            actions = self._graph.handle(LaunchFailed(record.id))
        self._apply(actions, exc=exc)

    def _abandon(self, tid: TaskId, cause: Optional[BaseException]) -> None:
        """Fail one unfinished task with :class:`KernelShutdown` (``cause``: what the executor said)."""
        with self._lock:
            record = self._graph.tasks.get(tid)
            if record is None:  # already final
                return
            actions = self._graph.handle(TaskAbandoned(tid))
        self._apply(actions, exc=self._shutdown_error(record, cause))

    @staticmethod
    def _shutdown_error(record: TaskRecord, cause: Optional[BaseException]) -> KernelShutdown:
        exc = KernelShutdown(f"task {record.id} ({record.func_name}) did not finish: the kernel was cleaned up")
        exc.__cause__ = cause
        return exc

    def _abandon_unfinished(self) -> None:
        with self._lock:
            actions = []
            for tid in list(self._graph.tasks):
                actions.extend(self._graph.handle(TaskAbandoned(tid)))
        if actions:
            logger.error("kernel cleanup failed %d unfinished tasks", sum(type(a) is Finish for a in actions))
        self._apply(actions)
