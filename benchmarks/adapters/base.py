"""What a benchmark case may ask of a library, and the registry of libraries.

A case is written once against :class:`Adapter`; each library under test
(parsl_lite with a given executor, Parsl, Dask, a bare process pool) is one
small subclass. Adapters import their library inside :meth:`Adapter.start`,
never at module level, so the parent process of a run imports no library at
all and each child imports only its own.
"""
from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

Submit = Callable[..., Any]
"""Calling it submits one task and returns the library's future for it."""


class Adapter(abc.ABC):
    """One library, started with one executor, seen through five calls.

    Class attributes:
        name: the registry key and the ``--libraries`` value,
            e.g. ``parsl_lite-threads``.
        library: the library measured (``parsl_lite``, ``parsl``, ``dask``,
            ``processpool``); the report's column.
        executor: the ``--executor`` group this adapter competes in
            (``threads``, ``htex``); peers of one group share a table.
    """

    name: ClassVar[str]
    library: ClassVar[str]
    executor: ClassVar[str]

    startup_figures: dict[str, float]
    """Figures of the start-up itself (``connected_s``...), filled by :meth:`start`.

    The child adds them to the case's figures, so the report shows them."""

    def __init__(self) -> None:
        self.startup_figures = {}

    def prepare(self) -> None:
        """Import the library; called by the child before start-up is timed.

        Import time is not start-up (TARGETS.md times ``load(config)`` to
        all workers connected). The default does nothing.
        """

    @abc.abstractmethod
    def start(self, workers: int, run_dir: Path) -> None:
        """Load the library with ``workers`` workers; timed as ``startup_s``.

        Args:
            workers: threads or processes executing tasks (W).
            run_dir: a fresh temporary directory the library may write to.
        """

    @abc.abstractmethod
    def app(self, fn: Callable[..., Any]) -> Submit:
        """Turn a plain function into something that submits it.

        Called before the timed part of a case, so decoration costs are not
        counted. A future passed as an argument to the returned callable must
        be resolved to its result before ``fn`` runs (dataflow).

        Args:
            fn: a module-level function from :mod:`benchmarks.tasks`.

        Returns:
            ``submit(*args) -> future``.
        """

    def result(self, future: Any) -> Any:
        """Block until one task is done and return its result.

        Args:
            future: what a ``submit`` returned.

        Returns:
            The task's result; its exception is raised.
        """
        return future.result()

    def gather(self, futures: Iterable[Any]) -> list[Any]:
        """Block until all tasks are done and return their results in order.

        Args:
            futures: what ``submit`` calls returned.

        Returns:
            The results, in the order of ``futures``.
        """
        result = self.result
        return [result(f) for f in futures]

    def partitioned_mean(self, items: int, blocks: int, block_fn: Callable[..., float],
                         item_fn: Callable[..., float], *args: Any) -> float:
        """Evaluate ``items`` estimates split into ``blocks`` tasks and return their mean.

        The default submits ``blocks`` apps ``block_fn(items // blocks, *args)``
        (each evaluates its share in a row and returns the share's mean) and
        averages what they return. A library with its own idiom for this (a
        Dask bag) overrides it and uses ``item_fn(index, *args)`` per item.

        Args:
            items: how many estimates in all; a multiple of ``blocks``.
            blocks: how many tasks.
            block_fn: ``block_fn(count, *args) -> mean of count estimates``.
            item_fn: ``item_fn(index, *args) -> one estimate``.
            args: passed on to ``block_fn`` / ``item_fn``.

        Returns:
            The mean of all ``items`` estimates.
        """
        submit = self.app(block_fn)
        per_block = items // blocks
        means = self.gather([submit(per_block, *args) for _ in range(blocks)])
        return sum(means) / len(means)

    def wait_ready(self, workers: int, timeout_s: float = 120.0, probe_s: float = 0.02) -> None:
        """Block until ``workers`` distinct worker processes have each run a task.

        The same probe for every process-based library, so that start-up means
        the same everywhere: rounds of ``workers`` tasks
        (:func:`benchmarks.tasks.whoami`, holding a worker ``probe_s``) until
        as many different process ids have answered.

        Args:
            workers: W.
            timeout_s: give up after this long.
            probe_s: how long each probe task holds its worker.

        Raises:
            TimeoutError: fewer than ``workers`` processes answered in time.
        """
        from benchmarks import tasks  # (tiny; imported where used)

        submit = self.app(tasks.whoami)
        seen: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(seen) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(seen)} of {workers} workers ran a task within {timeout_s:g} s")
            seen.update(self.gather([submit(probe_s) for _ in range(workers)]))

    @abc.abstractmethod
    def stop(self) -> None:
        """Shut the library down, releasing every thread and process."""


_AdapterT = TypeVar("_AdapterT", bound=type[Adapter])
ADAPTERS: dict[str, type[Adapter]] = {}
"""Every registered adapter by name, in registration order."""


def register_adapter(cls: _AdapterT) -> _AdapterT:
    """Class decorator adding an adapter to :data:`ADAPTERS`.

    Args:
        cls: the adapter class; its ``name`` must be new.

    Returns:
        ``cls`` unchanged.

    Raises:
        ValueError: the name is already registered.
    """
    if cls.name in ADAPTERS:
        raise ValueError(f"adapter {cls.name!r} registered twice")
    ADAPTERS[cls.name] = cls
    return cls


def adapters_for(executor: str, only: Iterable[str] | None = None) -> list[type[Adapter]]:
    """The adapters of one executor group, optionally narrowed by name.

    Args:
        executor: the ``--executor`` group, e.g. ``threads``.
        only: adapter names to keep; None keeps all of the group.

    Returns:
        The adapters, in registration order.

    Raises:
        ValueError: a name in ``only`` is unknown or not in the group.
    """
    group = [cls for cls in ADAPTERS.values() if cls.executor == executor]
    if only is None:
        return group
    wanted = list(only)
    names = {cls.name for cls in group}
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise ValueError(f"no {executor!r} adapter named {unknown}; known: {sorted(names)}")
    return [cls for cls in group if cls.name in wanted]

