"""What runs beside an app's function where it runs: when it started and ended, and on which worker.

With ``resource_monitoring_enabled`` (Parsl's switch for worker-side
monitoring) the kernel hands executors :class:`Monitored` (one per app
function, so executors' function caches still hit) instead of the function;
it returns a :class:`MonitoredResult` the kernel unwraps before anyone sees
it. The try's ``task_try_time_running``, ``hostname``, ``block_id`` and our
``pl_try.worker`` come from here, whatever the executor. An exception passes
through unchanged (a failed try keeps only the kernel's times).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Callable, Optional

_HOST = socket.gethostname()


class MonitoredResult:
    """An app's return value, with where and when it ran."""

    __slots__ = ("value", "start", "end", "hostname", "worker", "block_id")

    def __init__(self, value: Any, start: float, end: float, hostname: str, worker: str,
                 block_id: Optional[str]) -> None:
        self.value = value
        self.start = start
        self.end = end
        self.hostname = hostname
        self.worker = worker
        self.block_id = block_id

    def __reduce__(self) -> tuple:
        return (MonitoredResult, (self.value, self.start, self.end, self.hostname, self.worker, self.block_id))


_WHERE: dict[int, tuple[int, tuple[str, str, Optional[str]]]] = {}   # thread id -> (pid, where)


def _where() -> tuple[str, str, Optional[str]]:
    """(hostname, worker, block): an htex worker by its pool and rank (Parsl's env names), else the thread.

    Computed once per thread and process (a forked worker has a new pid, so it never reuses its pool's).
    """
    ident, pid = threading.get_ident(), os.getpid()
    known = _WHERE.get(ident)
    if known is not None and known[0] == pid:
        return known[1]
    env = os.environ
    rank = env.get("PARSL_WORKER_RANK")
    if rank is not None:
        worker = f"{_HOST}:{env.get('PARSL_WORKER_POOL_ID', '')[:8]}:{rank}:{pid}"
    else:
        worker = f"{_HOST}:{pid}:{threading.current_thread().name}"
    where = (_HOST, worker, env.get("PARSL_WORKER_BLOCK_ID"))
    _WHERE[ident] = (pid, where)
    return where


class Monitored:
    """``func`` that also says when and where it ran (pickled by reference to this class and ``func``)."""

    __slots__ = ("func",)

    def __init__(self, func: Callable) -> None:
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> MonitoredResult:
        start = time.time()
        value = self.func(*args, **kwargs)
        host, worker, block = _where()
        return MonitoredResult(value, start, time.time(), host, worker, block)

    def __reduce__(self) -> tuple:
        return (Monitored, (self.func,))

    @property
    def __name__(self) -> str:  # executors and logs name the app
        return getattr(self.func, "__name__", "app")


class Wrappers:
    """One :class:`Monitored` per function (the executors' function caches key on identity)."""

    def __init__(self) -> None:
        self._made: dict[int, tuple[Callable, Monitored]] = {}

    def __call__(self, func: Callable) -> Monitored:
        entry = self._made.get(id(func))
        if entry is None or entry[0] is not func:
            if len(self._made) > 4096:
                self._made.clear()
            entry = self._made[id(func)] = (func, Monitored(func))
        return entry[1]
