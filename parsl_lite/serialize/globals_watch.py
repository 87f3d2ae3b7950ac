"""Notice when a function sent by value would now be sent differently.

dill sends a ``__main__`` function (or any it cannot import by name) by value,
with the current values of the globals it reads. :class:`FunctionCache` sends
such a body once and then only its digest, so a notebook that re-runs
``x = 5`` would leave workers with the old ``x``. A :class:`GlobalsWatch`
remembers which globals (and closure cells) the function and the by-value
functions it reaches read, and :meth:`GlobalsWatch.snapshot` takes their
current values; the cache re-serializes when one is no longer the same object.

Rebinding is seen; mutating a global in place (``data.append(1)``) is not, as
the object is the same. A snapshot holds strong references to the values it
saw, so an id cannot be reused while the entry exists. Names are those the
bytecode loads as globals (``LOAD_GLOBAL``/``LOAD_NAME`` among the names in
``co_names``, nested code objects included), found once per code object.
"""
from __future__ import annotations

import dis
import functools
import operator
import sys
from types import BuiltinFunctionType, CodeType, FunctionType, ModuleType
from typing import Any, Callable, Optional

_EMPTY_CELL = object()
_MAX_DEPTH = 8  # wrappers (walltime, keyword filter) and helper functions, not whole object graphs


def sent_by_value(func: FunctionType) -> bool:
    """True if dill sends ``func`` by value: from ``__main__``, or not importable by its name."""
    module_name = func.__module__
    if module_name is None or module_name == "__main__":
        return True
    found: Any = sys.modules.get(module_name)
    for part in func.__qualname__.split("."):
        found = getattr(found, part, None)
        if found is None:
            return True
    return found is not func


_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})


@functools.lru_cache(maxsize=4096)
def _code_names(code: CodeType) -> tuple[str, ...]:
    """The global names ``code`` and its nested code objects load (once per code object)."""
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname in _GLOBAL_OPS}
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names.update(_code_names(const))
    return tuple(sorted(names))


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # a cell not yet bound
        return _EMPTY_CELL


class GlobalsWatch:
    """The globals and cells a by-value function reads, directly or through its helpers."""

    __slots__ = ("_reads", "_cells", "_namespace", "_names")

    def __init__(self, reads: list[tuple[dict, tuple[str, ...]]], cells: list[Any]) -> None:
        merged: dict[int, tuple[dict, list[str]]] = {}
        for namespace, names in reads:  # helpers usually share the function's module globals
            merged.setdefault(id(namespace), (namespace, []))[1].extend(names)
        self._reads = [(namespace, tuple(dict.fromkeys(names))) for namespace, names in merged.values()]
        self._cells = tuple(cells)
        # The common case, one namespace and no closure, gets a path of its own (about 2x faster).
        single = len(self._reads) == 1 and not self._cells
        self._namespace, self._names = self._reads[0] if single else (None, ())

    def snapshot(self) -> tuple:
        """The current values, to give back to :meth:`unchanged` later."""
        if self._namespace is not None:
            return tuple(map(self._namespace.get, self._names))
        values: list[Any] = []
        for namespace, names in self._reads:
            values.extend(map(namespace.get, names))
        values.extend(map(_cell_value, self._cells))
        return tuple(values)

    def unchanged(self, old: tuple) -> bool:
        """True if every value is the very object it was in ``old``."""
        if self._namespace is not None:
            return all(map(operator.is_, old, map(self._namespace.get, self._names)))
        new = self.snapshot()
        return len(old) == len(new) and all(map(operator.is_, old, new))


def watch_for(func: Callable) -> Optional[GlobalsWatch]:
    """A watch for ``func``, or None if nothing it reads is sent by value."""
    reads: list[tuple[dict, tuple[str, ...]]] = []
    cells: list[Any] = []
    _walk(func, reads, cells, set(), 0)
    return GlobalsWatch(reads, cells) if reads or cells else None


def _walk(obj: Any, reads: list, cells: list, seen: set[int], depth: int) -> None:
    if depth > _MAX_DEPTH or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, FunctionType):
        if not sent_by_value(obj):
            return
        names = _code_names(obj.__code__)
        namespace = obj.__globals__
        reads.append((namespace, names))
        closure = obj.__closure__ or ()
        cells.extend(closure)
        reached = [namespace.get(name) for name in names] + [_cell_value(c) for c in closure]
        for value in reached + list(obj.__defaults__ or ()):
            if _worth_walking(value):
                _walk(value, reads, cells, seen, depth + 1)
    elif isinstance(obj, functools.partial):
        for value in (obj.func, *obj.args, *obj.keywords.values()):
            _walk(value, reads, cells, seen, depth + 1)
    elif _worth_walking(obj):  # a callable wrapper (walltime, keyword filter, bash runner): what it holds
        for value in vars(obj).values():
            if _worth_walking(value):
                _walk(value, reads, cells, seen, depth + 1)


def _worth_walking(value: Any) -> bool:
    """Functions, partials and callable instances with attributes; not classes, modules or builtins."""
    if isinstance(value, (FunctionType, functools.partial)):
        return True
    return (callable(value) and not isinstance(value, (type, ModuleType, BuiltinFunctionType))
            and hasattr(value, "__dict__"))
