"""Adapters for parsl_lite and Parsl, which share one API.

Both sides make exactly the same calls, with only the package name changed::

    parsl.load(Config(executors=[ThreadPoolExecutor(max_threads=W)], run_dir=tmp))
    app = python_app(fn)        # before timing
    fut = app(*args)            # submit
    parsl.dfk().cleanup()       # stop

Everything else is left at the library's defaults (logging into the run
directory included), since that is what a user gets.
"""
from __future__ import annotations

import abc
import importlib
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

    def __init__(self) -> None:
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

    def start(self, workers: int, run_dir: Path) -> None:
        """Import the package and ``load`` a config with one executor."""
        parsl = importlib.import_module(self.package)
        config_cls = importlib.import_module(f"{self.package}.config").Config
        executor = self._make_executor(parsl, workers)
        parsl.load(config_cls(executors=[executor], run_dir=str(run_dir)))
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


@register_adapter
class ParslThreads(_Threads):
    """Parsl from PyPI with its ``ThreadPoolExecutor(max_threads=W)``."""

    name = "parsl-threads"
    library = "parsl"
    package = "parsl"
