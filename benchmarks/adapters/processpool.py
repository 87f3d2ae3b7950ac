"""``concurrent.futures.ProcessPoolExecutor(W)``: the physical floor of the ``htex`` group.

::

    pool = ProcessPoolExecutor(W)
    fut = pool.submit(fn, *args)
    fut.result()
    pool.shutdown()

A process pool has no dataflow: a future passed as an argument is resolved
*in the parent*, by waiting for its result before submitting (``app``). So
for independent work (``noop``, ``latency``, ``pi``, ``memory``) this is the
floor; for dependent work (``dag``, ``chain``) it is a simple serial
scheduler, a reference point rather than a floor (the fan-out's children are
still submitted together once the root is done, and the sink once all
children are).

Start-up: constructing the pool, then :meth:`Adapter.wait_ready` (the pool
forks its workers on demand, so this is where they start). There is no
``connected_s``.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from benchmarks.adapters.base import Adapter, Submit, register_adapter


@register_adapter
class ProcessPool(Adapter):
    """``concurrent.futures.ProcessPoolExecutor(max_workers=W)``, default start method."""

    name = "processpool"
    library = "processpool"
    executor = "htex"

    def __init__(self) -> None:
        super().__init__()
        self._pool: Any = None

    def start(self, workers: int, run_dir: Path) -> None:
        """Create the pool and wait until W worker processes have each run a task."""
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(max_workers=workers)
        self.wait_ready(workers)

    def app(self, fn: Callable[..., Any]) -> Submit:
        """``pool.submit(fn, *args)``, after waiting in the parent for futures among ``args``."""
        pool_submit = self._pool.submit

        def submit(*args: Any) -> Any:
            if any(isinstance(a, Future) for a in args):
                args = tuple(a.result() if isinstance(a, Future) else a for a in args)
            return pool_submit(fn, *args)

        return submit

    def stop(self) -> None:
        """``pool.shutdown(wait=True)``."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
