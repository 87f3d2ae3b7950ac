"""Run a call for at most N seconds by raising an exception inside it.

A thread cannot be killed, so a timer thread asks the interpreter to raise the
exception in the caller's thread (``PyThreadState_SetAsyncExc``). It arrives at
the next bytecode boundary: a call blocked inside C code (a long
``time.sleep``, a socket read) is interrupted only when it returns. Used for
Python apps' ``walltime`` and the high-throughput executor's
``running_time_limit``.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable


class _Deadline:
    """Shared by the caller's thread and the timer; the lock keeps the exception from landing after return."""

    def __init__(self, thread_id: int, exc_type: type[BaseException]) -> None:
        self.thread_id = thread_id
        self.exc_type = exc_type
        self.lock = threading.Lock()
        self.finished = False

    def expire(self) -> None:
        with self.lock:
            if not self.finished:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id),
                                                           ctypes.py_object(self.exc_type))

    def finish(self) -> None:
        with self.lock:
            self.finished = True


def call_with_deadline(func: Callable[..., Any], args: tuple, kwargs: dict, seconds: float,
                       exc_type: type[BaseException], message: str) -> Any:
    """Return ``func(*args, **kwargs)``, or raise ``exc_type(message)`` once ``seconds`` have passed.

    ``exc_type`` must be constructible without arguments (the interpreter
    raises the bare class first; it is replaced by one carrying ``message``).
    """
    deadline = _Deadline(threading.get_ident(), exc_type)
    timer = threading.Timer(seconds, deadline.expire)
    timer.daemon = True
    timer.start()
    try:
        try:
            return func(*args, **kwargs)
        finally:
            deadline.finish()
            timer.cancel()
    except exc_type:
        raise exc_type(message) from None
