"""Package attributes imported on first use (PEP 562), so worker processes start fast."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_attributes(package: str, namespace: dict[str, Any], where: dict[str, str]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` that imports ``name`` from ``where[name]`` when first asked.

    Args:
        package: the package's name, for the error message.
        namespace: the package's ``globals()``; each attribute is cached there once imported.
        where: attribute name -> module that defines it.
    """

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
