"""Which of the call keywords Parsl reserves a function declares."""
from __future__ import annotations

import inspect
from typing import Callable

SPECIAL_KWARGS = frozenset({"inputs", "outputs", "stdout", "stderr", "walltime", "parsl_resource_specification"})


def accepted_specials(func: Callable) -> frozenset[str]:
    """The reserved keywords ``func`` takes (all of them if it has ``**kwargs``)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # builtins without a signature take what they are given
        return SPECIAL_KWARGS
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return SPECIAL_KWARGS
    return SPECIAL_KWARGS & frozenset(params)


def signature_defaults(func: Callable) -> dict:
    """Keyword defaults of ``func`` for reserved keywords (``def f(outputs=[File(...)])``)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}
    return {name: p.default for name, p in params.items()
            if name in SPECIAL_KWARGS and p.default is not inspect.Parameter.empty}


class KeywordFilter:
    """Calls ``func`` without the reserved keywords it does not declare. Made once per app."""

    def __init__(self, func: Callable) -> None:
        self.func = func
        self.__name__ = getattr(func, "__name__", "app")
        self._drop = SPECIAL_KWARGS - accepted_specials(func)

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self.func(*args, **{k: v for k, v in kwargs.items() if k not in self._drop})
