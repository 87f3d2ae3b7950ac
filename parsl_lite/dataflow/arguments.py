"""Finding the futures among an app's arguments, and replacing them by their values.

By default dependencies are futures in positional arguments, keyword
arguments, and the ``inputs`` list, as in Parsl; nothing deeper is searched (a
future inside a dict argument is passed as the future). That default is
:data:`~parsl_lite.dataflow.dependency_resolvers.SHALLOW_DEPENDENCY_RESOLVER`,
written out here as two loops because it runs for every app call;
:func:`gather_with` and :func:`unwrap_with` apply any other resolver
(``Config(dependency_resolver=...)``) the way Parsl does.
"""
from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Optional

from parsl_lite.dataflow.dependency_resolvers import DependencyResolver
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


def gather_with(resolver: DependencyResolver, args: tuple, kwargs: dict) -> list[Future]:
    """The futures ``resolver`` finds in each argument, keyword value and ``inputs`` item (Parsl's order)."""
    gather = resolver.traverse_to_gather
    deps = [fut for arg in args for fut in gather(arg)]
    for value in kwargs.values():
        deps.extend(gather(value))
    inputs = kwargs.get("inputs")
    if isinstance(inputs, (list, tuple)):
        for item in inputs:
            deps.extend(gather(item))
    return _unique(deps)


class UnwrapFailed(Exception):
    """A resolver's ``traverse_to_unwrap`` raised: ``(exception, argument)`` for each argument it failed on."""

    def __init__(self, failures: list[tuple[Exception, Any]]) -> None:
        super().__init__(failures)
        self.failures = failures


def unwrap_with(resolver: DependencyResolver, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Each argument as ``resolver`` unwraps it. Call only when every gathered future is done.

    Raises:
        UnwrapFailed: after trying every argument, if unwrapping any raised (Parsl: a DependencyError).
    """
    failures: list[tuple[Exception, Any]] = []

    def unwrap(value: Any) -> Any:
        try:
            return resolver.traverse_to_unwrap(value)
        except Exception as exc:
            failures.append((exc, value))
            return value

    resolved = {}
    for key, value in kwargs.items():
        if key == "inputs" and isinstance(value, (list, tuple)):
            value = [unwrap(item) for item in value]
        else:
            value = unwrap(value)
        resolved[key] = value
    resolved_args = tuple(unwrap(arg) for arg in args)
    if failures:
        raise UnwrapFailed(failures)
    return resolved_args, resolved


def _unique(deps: list[Future]) -> list[Future]:
    """Each future once (a deep structure may hold the same one twice), in order of first sight."""
    if len(deps) < 2:
        return deps
    return list({id(fut): fut for fut in deps}.values())


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
