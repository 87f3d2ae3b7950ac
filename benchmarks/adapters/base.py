"""What a benchmark case may ask of a library, and the registry of libraries.

A case is written once against :class:`Adapter`; each library under test
(parsl_lite with a given executor, Parsl, Dask, a bare process pool) is one
small subclass. Adapters import their library inside :meth:`Adapter.start`,
never at module level, so the parent process of a run imports no library at
all and each child imports only its own.
"""
from __future__ import annotations

import abc
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

