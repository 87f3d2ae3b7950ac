"""``walltime`` for Python apps: ``AppTimeout`` raised inside the running function (see ``deadline.py``)."""
from __future__ import annotations

from typing import Any, Callable

from parsl_lite.app.errors import AppTimeout
from parsl_lite.deadline import call_with_deadline


class WalltimeLimited:
    """Callable wrapper: ``wrapper(*args, _parsl_walltime=s, **kwargs)`` runs ``func`` for at most ``s`` seconds.

    Made once per app (not per call), so remote executors serialize it once.
    """

    def __init__(self, func: Callable) -> None:
        self.func = func
        self.__name__ = getattr(func, "__name__", "app")

    def __call__(self, *args: Any, _parsl_walltime: float, **kwargs: Any) -> Any:
        return call_with_deadline(self.func, args, kwargs, _parsl_walltime, AppTimeout,
                                  f"app {self.__name__} exceeded its walltime of {_parsl_walltime} s")
