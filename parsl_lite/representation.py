"""A ``repr`` built from a class's constructor parameters, for configs and plug-ins."""
from __future__ import annotations

import inspect
from typing import Any


class RepresentationMixin:
    """Gives ``Class(param=value, ...)`` as ``repr``, from the ``__init__`` signature.

    Parameters that equal their default are left out, so a repr shows what the
    user set. A parameter is read from the attribute of the same name.
    """

    def __repr__(self) -> str:
        params = inspect.signature(type(self).__init__).parameters
        parts: list[str] = []
        for name, param in params.items():
            if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            value: Any = getattr(self, name, param.default)
            if param.default is not param.empty and _same(value, param.default):
                continue
            parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return a is b
