"""The user's configuration: which executors, how to retry, where to write.

``Config`` keeps Parsl's signature, so a Parsl config runs unchanged. Every
argument is type-checked when the object is built (typeguard raises
``TypeCheckError`` naming the parameter); values of the right type but out of
range raise :class:`~parsl_lite.errors.ConfigurationError` naming the field.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Literal, Optional, Union

from typeguard import TypeCheckError, typechecked

from parsl_lite.dataflow.dependency_resolvers import DependencyResolver
from parsl_lite.dataflow.memoization import BasicMemoizer, Memoizer
from parsl_lite.errors import ConfigurationError
from parsl_lite.executors.base import ParslExecutor
from parsl_lite.representation import RepresentationMixin

_STRATEGIES = (None, "none", "simple", "htex_auto_scale")


def default_provider() -> Any:
    """The provider an executor built without one gets: a ``LocalProvider`` (as in Parsl).

    It is chosen here, in the config layer, so that executors know only the
    provider interface (``parsl_lite.jobs``), never a concrete provider.
    """
    from parsl_lite.providers.local import LocalProvider  # on demand: a threads-only config never loads it

    return LocalProvider()


class Config(RepresentationMixin):
    """What the DataFlowKernel runs with.

    Args:
        executors: where apps run. Left out (or None): one ``ThreadPoolExecutor``,
            as in Parsl; this is the one default, also of ``parsl_lite.load()``
            with no config and of a TOML file without ``[[executors]]``. An
            empty list is refused (Parsl quietly turns it into the default).
        memoizer: memoization and checkpointing (default ``BasicMemoizer()``).
        exit_mode: what leaving ``with parsl_lite.load(...)`` does without an
            exception: ``cleanup`` (shut down), ``skip`` (nothing), ``wait``
            (wait for all tasks, then shut down).
        garbage_collect: forget finished tasks so memory stays flat.
        retries: failure cost a task may accumulate and still be re-run.
        retry_handler: ``(exception, task_record) -> cost`` of each failure
            (default 1 each).
        run_dir: parent of the numbered run directories (``runinfo/000``...).
        std_autopath: ``(task_record, 'stdout'|'stderr') -> path`` for
            ``AUTO_LOGNAME``.
        strategy: block scaling: ``none``/None, ``simple``, ``htex_auto_scale``.
        strategy_period: seconds between strategy decisions.
        max_idletime: seconds a block may idle before it is released.
        monitoring: a :class:`~parsl_lite.monitoring.MonitoringHub`: record the
            workflow, its tasks and resources into a store (docs/monitoring.md).
        initialize_logging: write ``parsl.log`` into the run directory.
        usage_tracking: accepted for Parsl compatibility; parsl_lite never
            sends usage data anywhere (a non-zero level is named in a warning).
        project_name: accepted for Parsl compatibility, unused (warned about).
        max_pending_tasks: unfinished tasks at which an app call from the
            user's code blocks until some finish (backpressure, so a script
            that submits millions of apps does not grow queues without bound);
            None: never block.
        dependency_resolver: which futures among an app's arguments it waits
            for (``parsl_lite.dataflow.dependency_resolvers``): None is
            ``SHALLOW_DEPENDENCY_RESOLVER`` (futures passed directly, Parsl's
            default); ``DEEP_DEPENDENCY_RESOLVER`` looks inside lists,
            tuples, sets and dicts too.
    """

    @typechecked
    def __init__(
        self,
        executors: Optional[Iterable[ParslExecutor]] = None,
        memoizer: Optional[Memoizer] = None,
        exit_mode: Literal["cleanup", "skip", "wait"] = "cleanup",
        garbage_collect: bool = True,
        retries: int = 0,
        retry_handler: Optional[Callable[[BaseException, Any], Union[float, int]]] = None,
        run_dir: str = "runinfo",
        std_autopath: Optional[Callable] = None,
        strategy: Optional[str] = "simple",
        strategy_period: Union[float, int] = 5,
        max_idletime: Union[float, int] = 120.0,
        monitoring: Optional[Any] = None,
        initialize_logging: bool = True,
        usage_tracking: int = 0,
        project_name: Optional[str] = None,
        max_pending_tasks: Optional[int] = 200_000,
        dependency_resolver: Optional[DependencyResolver] = None,
    ) -> None:
        if executors is None:
            from parsl_lite.executors.threads import ThreadPoolExecutor

            executors = [ThreadPoolExecutor()]
        self._executors = tuple(executors)
        if not self._executors:
            raise ConfigurationError("executors", "is empty: name at least one executor, or leave 'executors' "
                                                  "out for the default (one ThreadPoolExecutor)")
        for index, executor in enumerate(self._executors):  # typeguard does not look inside iterables
            if not isinstance(executor, ParslExecutor):
                raise TypeCheckError(f'argument "executors" item {index} ({type(executor).__qualname__}) '
                                     f"is not an instance of ParslExecutor")
            executor.use_default_provider(default_provider)
        labels = [e.label for e in self._executors]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ConfigurationError("executors", f"executor labels must be unique, repeated: {duplicates}")
        if retries < 0:
            raise ConfigurationError("retries", f"must be >= 0, got {retries}")
        if strategy not in _STRATEGIES:
            raise ConfigurationError("strategy", f"must be one of {_STRATEGIES}, got {strategy!r}")
        if strategy_period <= 0:
            raise ConfigurationError("strategy_period", f"must be > 0 seconds, got {strategy_period}")
        if max_idletime < 0:
            raise ConfigurationError("max_idletime", f"must be >= 0 seconds, got {max_idletime}")
        self.memoizer = memoizer
        self.exit_mode = exit_mode
        self.garbage_collect = garbage_collect
        self.retries = retries
        self.retry_handler = retry_handler
        self.run_dir = run_dir
        self.std_autopath = std_autopath
        self.strategy = strategy
        self.strategy_period = strategy_period
        self.max_idletime = max_idletime
        if monitoring is not None:
            from parsl_lite.monitoring.hub import MonitoringHub  # on demand: most configs do not monitor

            if not isinstance(monitoring, MonitoringHub):
                raise TypeCheckError(f'argument "monitoring" ({type(monitoring).__qualname__}) '
                                     f"is not an instance of MonitoringHub")
        self.monitoring = monitoring
        self.initialize_logging = initialize_logging
        self.usage_tracking = usage_tracking
        self.project_name = project_name
        if max_pending_tasks is not None and max_pending_tasks < 1:
            raise ConfigurationError("max_pending_tasks", f"must be >= 1 or None, got {max_pending_tasks}")
        self.max_pending_tasks = max_pending_tasks
        self.dependency_resolver = dependency_resolver

    @property
    def executors(self) -> tuple[ParslExecutor, ...]:
        return self._executors

    def unused_parameters(self) -> list[str]:
        """Parsl parameters given a non-default value that parsl_lite accepts and ignores.

        The kernel names them in a warning when it starts: ``usage_tracking``
        (nothing is ever sent), ``project_name`` (only usage tracking reads it).
        """
        return [name for name, value in (("usage_tracking", self.usage_tracking),
                                         ("project_name", self.project_name)) if value]

    def get_memoizer(self) -> Memoizer:
        """The configured memoizer, or a default ``BasicMemoizer``."""
        return self.memoizer if self.memoizer is not None else BasicMemoizer()
