"""The app decorators: ``python_app``, ``bash_app``, ``join_app``.

Calling a decorated function submits a task to the DataFlowKernel and returns
an ``AppFuture`` at once. Each decorator works bare (``@python_app``) or with
options (``@python_app(executors=['htex'], cache=True)``).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

from parsl_lite.app.bash import BashRunner
from parsl_lite.app.call import prepare_call
from parsl_lite.app.signature import SPECIAL_KWARGS, KeywordFilter, accepted_specials, signature_defaults
from parsl_lite.app.timeout import WalltimeLimited
from parsl_lite.dataflow.futures import AppFuture
from parsl_lite.dataflow.loader import DataFlowKernelLoader

F = TypeVar("F", bound=Callable[..., Any])
Executors = Union[str, Sequence[str]]


class AppBase:
    """What the three kinds of app share: options, the kernel lookup, the submit call.

    Args:
        func: the decorated function.
        data_flow_kernel: a kernel to submit to instead of the loaded one.
        executors: ``'all'`` or the labels this app may run on.
        cache: memoize results (needs a memoizer with ``memoize=True``).
        ignore_for_cache: keyword arguments left out of the memo hash.
        parsl_resource_specification: the tasks' resource specification (e.g. ``{"endpoints": [...]}``
            for a FaaS executor); a call's own overrides it key by key.
    """

    join = False

    def __init__(self, func: Callable, data_flow_kernel: Any = None, executors: Executors = "all",
                 cache: bool = False, ignore_for_cache: Optional[Sequence[str]] = None,
                 parsl_resource_specification: Optional[dict] = None) -> None:
        if not callable(func):
            raise TypeError(f"an app decorates a function, got {type(func).__name__}")
        self.func = func
        self.__name__ = getattr(func, "__name__", type(func).__name__)
        self.data_flow_kernel = data_flow_kernel
        self.executors = executors
        self.cache = cache
        self.ignore_for_cache = tuple(ignore_for_cache or ())
        self.resource_specification = dict(parsl_resource_specification) if parsl_resource_specification else None
        self._defaults = signature_defaults(func)
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def _submit(self, executable: Callable, args: tuple, kwargs: dict, resource_specification: Optional[dict]
                ) -> AppFuture:
        if self.resource_specification is not None:
            resource_specification = {**self.resource_specification, **(resource_specification or {})}
        kernel = self.data_flow_kernel if self.data_flow_kernel is not None else DataFlowKernelLoader.dfk()
        return kernel.submit(self.func, args, self.executors, self.cache, self.ignore_for_cache, kwargs,
                                     self.join, executable, resource_specification, prepare_call)

    def _with_defaults(self, kwargs: dict) -> dict:
        if not self._defaults:
            return kwargs
        return {**self._defaults, **kwargs}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.__name__}>"


class PythonApp(AppBase):
    """A Python function run as a task; its future resolves to the return value."""

    def __init__(self, func: Callable, **options: Any) -> None:
        super().__init__(func, **options)
        self._accepted = accepted_specials(func)
        self._filtered: Callable = func if self._accepted == SPECIAL_KWARGS else KeywordFilter(func)
        self._timed = WalltimeLimited(self._filtered)

    def __call__(self, *args: Any, **kwargs: Any) -> AppFuture:
        resource_specification = None
        executable: Callable = self.func
        if kwargs or self._defaults:
            kwargs = self._with_defaults(kwargs) if kwargs else dict(self._defaults)
            if "parsl_resource_specification" in kwargs:
                resource_specification = (kwargs["parsl_resource_specification"]
                                          if "parsl_resource_specification" in self._accepted
                                          else kwargs.pop("parsl_resource_specification"))
            if not SPECIAL_KWARGS.isdisjoint(kwargs):
                executable = self._filtered
            # As Parsl: a walltime, passed or the signature's default, is enforced; the
            # function also receives it if it declares the parameter.
            walltime = kwargs.get("walltime") if "walltime" in self._accepted else kwargs.pop("walltime", None)
            if walltime is not None:
                kwargs["_parsl_walltime"] = walltime
                executable = self._timed
        return self._submit(executable, args, kwargs, resource_specification)


class BashApp(AppBase):
    """A function that returns a shell command; the command runs on the worker.

    The future resolves to the exit code (0); a non-zero exit raises
    ``BashExitFailure``, a ``walltime`` overrun ``AppTimeout``.
    """

    def __init__(self, func: Callable, **options: Any) -> None:
        super().__init__(func, **options)
        self._runner = BashRunner(func)

    def __call__(self, *args: Any, **kwargs: Any) -> AppFuture:
        kwargs = self._with_defaults(kwargs)
        resource_specification = kwargs.pop("parsl_resource_specification", None)
        return self._submit(self._runner, args, kwargs, resource_specification)


class JoinApp(PythonApp):
    """A Python function that returns futures; its own future resolves to their results.

    Join apps run on the kernel's process (Parsl's ``_parsl_internal``
    executor), since their body only wires more apps.
    """

    join = True


def _decorator(cls: type, function: Optional[Callable], **options: Any) -> Any:
    if function is not None:
        return cls(function, **options)
    return lambda func: cls(func, **options)


def python_app(function: Optional[F] = None, data_flow_kernel: Any = None, cache: bool = False,
               executors: Executors = "all", ignore_for_cache: Optional[Sequence[str]] = None,
               parsl_resource_specification: Optional[dict] = None) -> Any:
    """Make ``function`` a Python app (bare ``@python_app`` or ``@python_app(...)``)."""
    return _decorator(PythonApp, function, data_flow_kernel=data_flow_kernel, cache=cache,
                      executors=executors, ignore_for_cache=ignore_for_cache,
                      parsl_resource_specification=parsl_resource_specification)


def bash_app(function: Optional[F] = None, data_flow_kernel: Any = None, cache: bool = False,
             executors: Executors = "all", ignore_for_cache: Optional[Sequence[str]] = None,
             parsl_resource_specification: Optional[dict] = None) -> Any:
    """Make ``function`` a bash app: it returns a command line to run."""
    return _decorator(BashApp, function, data_flow_kernel=data_flow_kernel, cache=cache,
                      executors=executors, ignore_for_cache=ignore_for_cache,
                      parsl_resource_specification=parsl_resource_specification)


def join_app(function: Optional[F] = None, data_flow_kernel: Any = None, cache: bool = False,
             ignore_for_cache: Optional[Sequence[str]] = None) -> Any:
    """Make ``function`` a join app: it returns futures, and its future waits for them."""
    return _decorator(JoinApp, function, data_flow_kernel=data_flow_kernel, cache=cache,
                      executors="all", ignore_for_cache=ignore_for_cache)
