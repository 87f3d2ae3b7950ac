"""Runs apps on threads of the user's process: no serialization, lowest latency.

Modelled on CPython's ``concurrent.futures.thread``: a queue of work items,
a fixed set of worker threads, one ``None`` sentinel per thread to stop them.
It is leaner than the standard pool because the kernel already tracks every
task: no per-submit thread accounting, a C ``SimpleQueue``, and threads that
start with the executor.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any, Callable, Optional

from typeguard import typechecked

from parsl_lite.executors.base import ParslExecutor
from parsl_lite.fast_future import FastFuture
from parsl_lite.executors.errors import ExecutorShutdown

logger = logging.getLogger(__name__)

_WorkItem = tuple  # (future, func, args, kwargs)
_JOIN_BUDGET_S = 2.0


def _worker(queue: "SimpleQueue[Optional[_WorkItem]]") -> None:
    """Run work items until the sentinel. Holds no reference to the executor."""
    get = queue.get
    while True:
        item = get()
        if item is None:
            return
        future, func, args, kwargs = item
        if not future.set_running_or_notify_cancel():
            continue
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:  # the task's failure, whatever it is (SystemExit too), belongs to its future
            _complete(future.set_exception, exc)
        else:
            _complete(future.set_result, result)
        del item, future, func, args, kwargs


def _complete(setter: Callable[[Any], None], value: Any) -> None:
    """Resolve a future; whatever its callbacks (the kernel's completion) raise must not end this thread."""
    try:
        setter(value)
    except BaseException:  # e.g. SystemExit from a callback: the thread would vanish without a word
        logger.exception("completing a task on an executor thread raised; the thread carries on")


class ThreadPoolExecutor(ParslExecutor):
    """A pool of ``max_threads`` threads in this process.

    Args:
        label: the executor's name in the config.
        max_threads: how many tasks run at once.
        thread_name_prefix: prefix of the worker threads' names.
        working_dir: accepted for Parsl compatibility; tasks run in the
            process's working directory.
    """

    @typechecked
    def __init__(
        self,
        label: str = "threads",
        max_threads: int = 2,
        thread_name_prefix: Optional[str] = None,
        working_dir: Optional[str] = None,
    ) -> None:
        if max_threads < 1:
            from parsl_lite.errors import ConfigurationError

            raise ConfigurationError("max_threads", f"must be at least 1, got {max_threads}")
        self.label = label
        self.max_threads = max_threads
        self.thread_name_prefix = thread_name_prefix
        self.working_dir = working_dir
        self._queue: SimpleQueue[Optional[_WorkItem]] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._shutdown_lock = threading.Lock()
        self._broken: Optional[BaseException] = None

    def unused_parameters(self) -> list[str]:
        """``working_dir`` when given: tasks run in the process's working directory (the kernel warns)."""
        return ["working_dir"] if self.working_dir is not None else []

    def start(self) -> None:
        """Start the threads. After a shutdown this starts afresh, so a Config can be loaded again."""
        self._queue = SimpleQueue()  # threads of a previous start keep the old queue
        self._broken = None
        prefix = self.thread_name_prefix or f"parsl_lite-{self.label}"
        for index in range(self.max_threads):
            thread = threading.Thread(target=_worker, args=(self._queue,), name=f"{prefix}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("executor %r started %d threads", self.label, self.max_threads)

    def submit(self, func: Callable, resource_specification: dict, *args: Any, **kwargs: Any) -> Future:
        if self._broken is not None:
            raise self._broken
        if resource_specification and "endpoints" in resource_specification:
            from parsl_lite.executors.errors import ExecutorError

            raise ExecutorError(self.label, "resource specification key 'endpoints' routes tasks among function "
                                "service endpoints: only a FaaSExecutor takes it, not a ThreadPoolExecutor")
        future: Future = FastFuture()
        self._queue.put((future, func, args, kwargs))
        return future

    @property
    def outstanding(self) -> int:
        return self._queue.qsize()

    @property
    def connected_workers(self) -> int:
        return len(self._threads)

    def shutdown(self) -> None:
        """Refuse new work, cancel queued work, let running tasks finish, join the threads."""
        with self._shutdown_lock:
            if self._broken is not None:
                return
            self._broken = ExecutorShutdown(self.label, "shut down")
        cause = ExecutorShutdown(self.label, "shut down before the task started")
        while True:
            try:
                item = self._queue.get_nowait()
            except Exception:  # queue.Empty
                break
            if item is not None and item[0].set_running_or_notify_cancel():
                item[0].set_exception(cause)
        for _ in self._threads:
            self._queue.put(None)
        # A thread cannot be killed: wait a bounded time for running tasks, then
        # leave the (daemon) stragglers behind and say so, rather than hang.
        deadline = time.monotonic() + _JOIN_BUDGET_S
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        busy = [t.name for t in self._threads if t.is_alive() and t is not threading.current_thread()]
        if busy:
            logger.warning("executor %r: threads %s still running a task after %.0f s; left as daemons",
                           self.label, busy, _JOIN_BUDGET_S)
        self._threads.clear()
        logger.info("executor %r shut down", self.label)
