"""Join apps: waiting for the futures a join app's body returned, then finishing with their results.

A mixin of :class:`~parsl_lite.dataflow.kernel.DataFlowKernel`. As in Parsl,
the body must return a Future or a list of Futures; an inner app's failure
fails the join app with :class:`~parsl_lite.dataflow.errors.JoinError`, and
neither is retried (the body already ran, the inner apps had their retries).
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any, Callable

from parsl_lite.dataflow import arguments
from parsl_lite.dataflow.errors import JoinError
from parsl_lite.dataflow.graph import ExecSucceeded, TaskGraph, TaskRecord


class AwaitsJoins:
    """The kernel's join path. Uses its ``_lock``, ``_graph``, ``_apply`` and ``_task_failed``."""

    _lock: threading.Lock
    _graph: TaskGraph
    _apply: Callable[..., None]
    _task_failed: Callable[..., None]

    def _await_join(self, record: TaskRecord, returned: Any) -> None:
        """Wait for what a join app's body returned: a Future, or a list of Futures (Parsl's rule)."""
        if isinstance(returned, Future):
            inner = [returned]
        elif isinstance(returned, list) and all(isinstance(f, Future) for f in returned):
            inner = returned
        else:  # Parsl's TypeError; final, like every join failure (the body already ran)
            error = TypeError(f"join_app body must return a Future or list of Futures, "
                              f"got {returned!r} of type {type(returned)}")
            self._task_failed(record, error, retriable=False)
            return
        if not inner:  # an empty list joins at once, to []
            self._join_finished(record, returned, inner)
            return
        remaining = [len(inner)]
        count_lock = threading.Lock()

        def one_done(_: Future) -> None:
            with count_lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._join_finished(record, returned, inner)

        for fut in inner:
            fut.add_done_callback(one_done)

    def _join_finished(self, record: TaskRecord, returned: Any, inner: list) -> None:
        failed = arguments.failed_dependencies(inner, self)
        if failed:
            self._task_failed(record, JoinError(failed, record.id), retriable=False)  # inner apps had their retries
            return
        value = [f.result() for f in inner] if isinstance(returned, list) else inner[0].result()
        with self._lock:
            actions = self._graph.handle(ExecSucceeded(record.id))
        self._apply(actions, value)
