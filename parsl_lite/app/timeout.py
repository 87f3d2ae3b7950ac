"""``walltime`` for Python apps: raise ``AppTimeout`` inside the running function.

A thread cannot be killed, so the timer thread asks the interpreter to raise
``AppTimeout`` in the app's thread (``PyThreadState_SetAsyncExc``). The
exception arrives at the next bytecode boundary: a call blocked inside C code
(a long ``time.sleep`` or a socket read) is interrupted only when it returns.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable

from parsl_lite.app.errors import AppTimeout


class _Deadline:
    """Shared by the app's thread and the timer; the lock keeps the exception from landing after return."""

    def __init__(self, thread_id: int) -> None:
        self.thread_id = thread_id
        self.lock = threading.Lock()
        self.finished = False

    def expire(self) -> None:
        with self.lock:
            if not self.finished:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id),
                                                           ctypes.py_object(AppTimeout))

    def finish(self) -> None:
        with self.lock:
            self.finished = True


class WalltimeLimited:
    """Callable wrapper: ``wrapper(*args, _parsl_walltime=s, **kwargs)`` runs ``func`` for at most ``s`` seconds.

    Made once per app (not per call), so remote executors serialize it once.
    """

    def __init__(self, func: Callable) -> None:
        self.func = func
        self.__name__ = getattr(func, "__name__", "app")

    def __call__(self, *args: Any, _parsl_walltime: float, **kwargs: Any) -> Any:
        deadline = _Deadline(threading.get_ident())
        timer = threading.Timer(_parsl_walltime, deadline.expire)
        timer.daemon = True
        timer.start()
        try:
            try:
                return self.func(*args, **kwargs)
            finally:
                deadline.finish()
                timer.cancel()
        except AppTimeout:
            raise AppTimeout(f"app {self.__name__} exceeded its walltime of {_parsl_walltime} s") from None
