"""Finding the futures among an app's arguments, and replacing them by their values.

Dependencies are futures in positional arguments, keyword arguments, and the
``inputs`` list, as in Parsl. Nothing deeper is searched (a future inside a
dict argument is passed as the future).
"""
from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Optional

from parsl_lite.dataflow.futures import AppFuture, DataFuture


def find_dependencies(args: tuple, kwargs: dict) -> list[Future]:
    """Return every future the call depends on: positional, then keyword, then ``inputs`` (Parsl's order)."""
    deps = [a for a in args if isinstance(a, Future)]
    if kwargs:
        inputs = None
        for key, value in kwargs.items():
            if isinstance(value, Future):
                deps.append(value)
            elif key == "inputs" and isinstance(value, (list, tuple)):
                inputs = value
        if inputs:
            deps.extend(v for v in inputs if isinstance(v, Future))
    return deps


def resolve_arguments(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Replace each (done) future by its result. Call only when all are done."""
    args = tuple(a.result() if isinstance(a, Future) else a for a in args)
    resolved = {}
    for key, value in kwargs.items():
        if isinstance(value, Future):
            value = value.result()
        elif key == "inputs" and isinstance(value, (list, tuple)):
            value = [v.result() if isinstance(v, Future) else v for v in value]
        resolved[key] = value
    return args, resolved


def failed_dependencies(deps: list[Future], kernel: object) -> list[tuple[BaseException, str]]:
    """``(exception, description)`` of each failed future, for ``DependencyError`` and ``JoinError``."""
    failed = []
    for dep in deps:
        exc: Optional[BaseException] = dep.exception()
        if exc is not None:
            failed.append((exc, describe_future(dep, kernel)))
    return failed


def describe_future(dep: Future, kernel: object) -> str:
    """Parsl's description: ``task N`` (an app of ``kernel``), ``DataFuture from task N``, else ``repr``."""
    if isinstance(dep, AppFuture) and dep.task_record.kernel is kernel:
        return f"task {dep.tid!r}"
    if isinstance(dep, DataFuture):
        return f"DataFuture from task {dep.tid!r}"
    return repr(dep)


def output_files(kwargs: dict) -> list[Any]:
    """The call's ``outputs`` list (empty when not given)."""
    outputs = kwargs.get("outputs")
    return list(outputs) if outputs else []
