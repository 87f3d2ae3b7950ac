"""How the kernel finds the futures an app call waits for, and what it passes in their place.

Parsl's plug-in point (``Config(dependency_resolver=...)``), with Parsl's names:

- :data:`SHALLOW_DEPENDENCY_RESOLVER` (the default): a future counts only when
  it *is* an argument (positional, keyword, or an item of ``inputs``).
- :data:`DEEP_DEPENDENCY_RESOLVER`: futures inside lists, tuples, sets and
  dicts (keys and values), at any depth, are waited for too, and the app gets
  a copy of the structure with each future replaced by its result.

Both halves of each resolver are :func:`functools.singledispatch` functions,
so a user teaches a resolver about a container type of their own::

    @deep_traverse_to_gather.register
    def _(box: Box) -> list[Future]:
        return deep_traverse_to_gather(box.content)

    @deep_traverse_to_unwrap.register
    def _(box: Box) -> Box:
        return Box(deep_traverse_to_unwrap(box.content))

The kernel applies a resolver to each argument, each keyword value and each
item of ``inputs`` (:mod:`parsl_lite.dataflow.arguments`).
"""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from functools import singledispatch
from typing import Any, Callable, Sequence

__all__ = [
    "DEEP_DEPENDENCY_RESOLVER", "SHALLOW_DEPENDENCY_RESOLVER", "DependencyResolver",
    "deep_traverse_to_gather", "deep_traverse_to_unwrap",
    "shallow_traverse_to_gather", "shallow_traverse_to_unwrap",
]


@dataclass(frozen=True, repr=False)
class DependencyResolver:
    """A pair of functions over one app argument.

    Attributes:
        traverse_to_gather: the futures the argument holds, which the task
            must wait for.
        traverse_to_unwrap: the value the app receives in the argument's
            place; called only once every gathered future is done.
    """

    traverse_to_gather: Callable[[Any], Sequence[Future]]
    traverse_to_unwrap: Callable[[Any], Any]

    def __repr__(self) -> str:  # the built-in ones by name, so a Config's repr stays readable
        for name in ("SHALLOW_DEPENDENCY_RESOLVER", "DEEP_DEPENDENCY_RESOLVER"):
            if globals().get(name) is self:
                return name
        return (f"DependencyResolver(traverse_to_gather={self.traverse_to_gather!r}, "
                f"traverse_to_unwrap={self.traverse_to_unwrap!r})")


def _result_of(fut: Future) -> Any:
    """A done future's result (a failed one raises, which the kernel reports as a dependency failure)."""
    if not fut.done():
        raise RuntimeError(f"{fut!r} is not done: it was not gathered as a dependency")
    return fut.result()


@singledispatch
def shallow_traverse_to_gather(obj: Any) -> Sequence[Future]:
    """Only a future is (one) dependency; nothing is looked into."""
    return []


@shallow_traverse_to_gather.register
def _(fut: Future) -> Sequence[Future]:
    return [fut]


@singledispatch
def shallow_traverse_to_unwrap(obj: Any) -> Any:
    """A future becomes its result; anything else is passed as it is."""
    return obj


shallow_traverse_to_unwrap.register(Future, _result_of)


@singledispatch
def deep_traverse_to_gather(obj: Any) -> Sequence[Future]:
    """Futures found anywhere inside lists, tuples, sets and dicts (keys too)."""
    return []


@deep_traverse_to_gather.register
def _(fut: Future) -> Sequence[Future]:
    return [fut]


@deep_traverse_to_gather.register(list)
@deep_traverse_to_gather.register(tuple)
@deep_traverse_to_gather.register(set)
@deep_traverse_to_gather.register(frozenset)
def _(items: Any) -> Sequence[Future]:
    found: list[Future] = []
    for item in items:
        found.extend(deep_traverse_to_gather(item))
    return found


@deep_traverse_to_gather.register(dict)
def _(mapping: dict) -> Sequence[Future]:
    found: list[Future] = []
    for key, value in mapping.items():
        found.extend(deep_traverse_to_gather(key))
        found.extend(deep_traverse_to_gather(value))
    return found


@singledispatch
def deep_traverse_to_unwrap(obj: Any) -> Any:
    """A copy of the structure with every future replaced by its result."""
    return obj


deep_traverse_to_unwrap.register(Future, _result_of)


@deep_traverse_to_unwrap.register(list)
@deep_traverse_to_unwrap.register(tuple)
@deep_traverse_to_unwrap.register(set)
@deep_traverse_to_unwrap.register(frozenset)
def _(items: Any) -> Any:
    values = [deep_traverse_to_unwrap(item) for item in items]
    if isinstance(items, tuple) and hasattr(items, "_fields"):  # a namedtuple takes its fields one by one
        return type(items)(*values)
    return type(items)(values)


@deep_traverse_to_unwrap.register(dict)
def _(mapping: dict) -> dict:
    return {deep_traverse_to_unwrap(key): deep_traverse_to_unwrap(value) for key, value in mapping.items()}


SHALLOW_DEPENDENCY_RESOLVER = DependencyResolver(shallow_traverse_to_gather, shallow_traverse_to_unwrap)
DEEP_DEPENDENCY_RESOLVER = DependencyResolver(deep_traverse_to_gather, deep_traverse_to_unwrap)


def is_builtin_shallow(resolver: DependencyResolver) -> bool:
    """Whether ``resolver`` is the default with no user registrations, so the kernel may take its fast path."""
    return (resolver is SHALLOW_DEPENDENCY_RESOLVER
            and set(shallow_traverse_to_gather.registry) <= {object, Future}
            and set(shallow_traverse_to_unwrap.registry) <= {object, Future})
