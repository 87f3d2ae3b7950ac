"""Adapters for parsl_lite and Parsl, which share one API.

Both sides make exactly the same calls, with only the package name changed::

    parsl.load(Config(executors=[ThreadPoolExecutor(max_threads=W)], run_dir=tmp))
    app = python_app(fn)        # before timing
    fut = app(*args)            # submit
    parsl.dfk().cleanup()       # stop

Everything else is left at the library's defaults (logging into the run
directory included), since that is what a user gets.

The ``htex`` group uses the high-throughput executor, again with identical
calls on both packages (Parsl's default ``encrypted`` is True in the installed
2026.10 release, as in parsl_lite)::

    parsl.load(Config(executors=[HighThroughputExecutor(label="htex", max_workers_per_node=W,
                                 provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1))],
                      strategy="none", run_dir=tmp))

Start-up (timed) is ``load``, then waiting until the executor reports W
connected workers (``connected_s``), then :meth:`Adapter.wait_ready` (W
distinct worker processes have each run a task), which every process-based
adapter of the group does alike. What "connected" means differs: parsl_lite's
``connected_workers`` counts worker processes that registered with the
interchange themselves; Parsl has no such property, so the sum of
``worker_count`` over ``connected_managers()`` is used, which a manager
declares when it registers, possibly before its workers are up. Hence
``startup_s`` (ready), not ``connected_s``, is the figure to compare.
"""
from __future__ import annotations

import abc
import importlib
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from benchmarks.adapters.base import Adapter, Submit, register_adapter


class _ParslFamily(Adapter):
    """Loads ``<package>`` with one executor and submits through ``python_app``.

    Subclasses name the package and build the executor.
    """

    package: ClassVar[str]
    warm_modules: ClassVar[tuple[str, ...]] = ()
    """Modules ``start`` would import on first use (lazy packages), imported by ``prepare`` instead."""

    def __init__(self) -> None:
        super().__init__()
        self._parsl: ModuleType | None = None

    @abc.abstractmethod
    def _make_executor(self, parsl: ModuleType, workers: int) -> Any:
        """Build the executor from the already imported package.

        Args:
            parsl: the package (``parsl`` or ``parsl_lite``).
            workers: W.

        Returns:
            The executor instance to put in the ``Config``.
        """

    def _config_kwargs(self) -> dict[str, Any]:
        """``Config`` arguments besides ``executors`` and ``run_dir`` (none by default)."""
        return {}

    def prepare(self) -> None:
        """Import the package and the modules ``start`` uses (not timed)."""
        for module in ("", ".config", ".executors", ".providers", *self.warm_modules):
            importlib.import_module(self.package + module)

    def start(self, workers: int, run_dir: Path) -> None:
        """``load`` a config with one executor (imports are done by ``prepare``)."""
        parsl = importlib.import_module(self.package)
        config_cls = importlib.import_module(f"{self.package}.config").Config
        executor = self._make_executor(parsl, workers)
        parsl.load(config_cls(executors=[executor], run_dir=str(run_dir), **self._config_kwargs()))
        self._parsl = parsl

    def app(self, fn: Callable[..., Any]) -> Submit:
        """Decorate ``fn`` with the package's ``python_app``."""
        assert self._parsl is not None, "start() first"
        submit: Submit = self._parsl.python_app(fn)
        return submit

    def stop(self) -> None:
        """``dfk().cleanup()``; in the installed Parsl it also unloads the DFK."""
        if self._parsl is not None:
            self._parsl.dfk().cleanup()
            self._parsl = None


class _Threads(_ParslFamily):
    executor = "threads"

    def _make_executor(self, parsl: ModuleType, workers: int) -> Any:
        executors = importlib.import_module(f"{self.package}.executors")
        return executors.ThreadPoolExecutor(max_threads=workers)


@register_adapter
class ParslLiteThreads(_Threads):
    """parsl_lite with its ``ThreadPoolExecutor(max_threads=W)``."""

    name = "parsl_lite-threads"
    library = "parsl_lite"
    package = "parsl_lite"
    warm_modules = (".executors.threads", ".dataflow.kernel")


@register_adapter
class ParslThreads(_Threads):
    """Parsl from PyPI with its ``ThreadPoolExecutor(max_threads=W)``."""

    name = "parsl-threads"
    library = "parsl"
    package = "parsl"


class _Htex(_ParslFamily):
    """The high-throughput executor: ZMQ interchange plus one local block of W workers."""

    executor = "htex"
    encrypted: ClassVar[bool | None] = None
    """Passed to the executor when not None; None keeps the package's default."""

    label = "htex"
    poll_s = 0.01
    connect_timeout_s = 120.0

    def _make_executor(self, parsl: ModuleType, workers: int) -> Any:
        executors = importlib.import_module(f"{self.package}.executors")
        providers = importlib.import_module(f"{self.package}.providers")
        extra = {} if self.encrypted is None else {"encrypted": self.encrypted}
        return executors.HighThroughputExecutor(
            label=self.label, max_workers_per_node=workers,
            provider=providers.LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1), **extra)

    def _config_kwargs(self) -> dict[str, Any]:
        return {"strategy": "none"}

    @abc.abstractmethod
    def _connected_workers(self, executor: Any) -> int:
        """How many workers the executor says are connected now."""

    def start(self, workers: int, run_dir: Path) -> None:
        """``load``, wait for W connected workers (``connected_s``), then for W ready ones."""
        t0 = time.perf_counter()
        super().start(workers, run_dir)
        assert self._parsl is not None
        self.startup_figures["load_s"] = time.perf_counter() - t0
        executor = self._parsl.dfk().executors[self.label]
        deadline = time.monotonic() + self.connect_timeout_s
        while self._connected_workers(executor) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: fewer than {workers} workers connected "
                                   f"after {self.connect_timeout_s:g} s")
            time.sleep(self.poll_s)
        self.startup_figures["connected_s"] = time.perf_counter() - t0
        self.wait_ready(workers)


@register_adapter
class ParslLiteHtex(_Htex):
    """parsl_lite's ``HighThroughputExecutor`` at its defaults (CurveZMQ encryption on)."""

    name = "parsl_lite-htex"
    library = "parsl_lite"
    package = "parsl_lite"
    # parsl_lite's packages import these on first use; Parsl's (and distributed) import them with the package.
    warm_modules = (".executors.htex.executor", ".dataflow.kernel")

    def _connected_workers(self, executor: Any) -> int:
        return int(executor.connected_workers)


@register_adapter
class ParslLiteHtexPlain(ParslLiteHtex):
    """parsl_lite's ``HighThroughputExecutor`` with ``encrypted=False``."""

    name = "parsl_lite-htex-plain"
    encrypted = False


@register_adapter
class ParslHtex(_Htex):
    """Parsl's ``HighThroughputExecutor`` at its defaults (encrypted=True in 2026.10)."""

    name = "parsl-htex"
    library = "parsl"
    package = "parsl"

    def _connected_workers(self, executor: Any) -> int:
        return sum(int(m.get("worker_count", 0)) for m in executor.connected_managers())
