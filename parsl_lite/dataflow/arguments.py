"""Finding the futures among an app's arguments, and replacing them by their values.

Dependencies are futures in positional arguments, keyword arguments, and the
``inputs`` list, as in Parsl. Nothing deeper is searched (a future inside a
dict argument is passed as the future).
"""
from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Optional


def find_dependencies(args: tuple, kwargs: dict) -> list[Future]:
    """Return every future the call depends on, in argument order."""
    deps = [a for a in args if isinstance(a, Future)]
    if kwargs:
        for key, value in kwargs.items():
            if isinstance(value, Future):
                deps.append(value)
            elif key == "inputs" and isinstance(value, (list, tuple)):
                deps.extend(v for v in value if isinstance(v, Future))
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


def failed_dependencies(deps: list[Future]) -> list[tuple[BaseException, Optional[int]]]:
    """``(exception, task id)`` of each failed dependency, for ``DependencyError``."""
    failed = []
    for dep in deps:
        exc: Optional[BaseException] = dep.exception()
        if exc is not None:
            failed.append((exc, getattr(dep, "tid", None)))
    return failed


def output_files(kwargs: dict) -> list[Any]:
    """The call's ``outputs`` list (empty when not given)."""
    outputs = kwargs.get("outputs")
    return list(outputs) if outputs else []
