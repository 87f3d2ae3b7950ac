"""``FastFuture``: a ``concurrent.futures.Future`` that builds its Condition only when someone waits.

A stock ``Future`` creates a ``threading.Condition`` (an RLock, a deque and
five bound methods) in ``__init__``: about half the cost of a future, and most
of its garbage-collector load. A workflow creates two futures per task (the
app's and the executor's) and blocks on few of them, so this class defers the
Condition until a thread really waits (``result()`` on an unfinished future,
``wait``, ``as_completed``).

The waiter and callback lists are likewise made on first use.

The rule that keeps it correct: until the Condition exists, state changes and
callback registration happen under one module-wide lock, which is also the
lock under which the Condition is created; once it exists, everything goes
through it, exactly as in the standard class. A waiter therefore either sees
the final state when it creates the Condition, or is notified through it.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING
from concurrent.futures import InvalidStateError
from typing import Any, Callable, Optional

logger = logging.getLogger(__name__)

_LAZY_LOCK = threading.Lock()
_DONE = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED})


class FastFuture(Future):
    """Drop-in ``Future`` with a lazily created Condition."""

    def __init__(self) -> None:  # what Future.__init__ does, minus the Condition and the two lists
        self._state = PENDING
        self._result: Any = None
        self._exception: Optional[BaseException] = None

    # The waiter and callback lists are made on first use too: most futures
    # get one callback or none, and every list is one more object for the
    # garbage collector to walk on each pass.

    @property  # type: ignore[override]
    def _waiters(self) -> list:
        return self.__dict__.setdefault("_waiter_list", [])

    @property  # type: ignore[override]
    def _done_callbacks(self) -> list:
        return self.__dict__.setdefault("_callback_list", [])

    def _invoke_callbacks(self) -> None:
        callbacks = self.__dict__.get("_callback_list")
        if not callbacks:
            return
        for callback in callbacks:
            try:
                callback(self)
            except (Exception, SystemExit):  # SystemExit too: it would end the thread that resolves us
                logger.exception("exception calling callback for %r", self)

    @property  # type: ignore[override]
    def _condition(self) -> threading.Condition:
        cond = self.__dict__.get("_cond")
        if cond is None:
            with _LAZY_LOCK:
                cond = self.__dict__.get("_cond")
                if cond is None:
                    cond = self.__dict__["_cond"] = threading.Condition()
        return cond

    # ---- readers: a finished future answers without any lock

    def done(self) -> bool:
        return self._state in _DONE

    def running(self) -> bool:
        return self._state == RUNNING

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def result(self, timeout: Optional[float] = None) -> Any:
        if self._state == FINISHED:
            exc = self._exception
            if exc is not None:
                try:
                    raise exc
                finally:
                    del exc  # no reference cycle through the traceback
            return self._result
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout)

    # ---- writers: under the module lock until a Condition exists

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        with _LAZY_LOCK:
            if "_cond" not in self.__dict__:
                if self._state not in _DONE:
                    callbacks = self.__dict__.get("_callback_list")
                    if callbacks is None:
                        self.__dict__["_callback_list"] = [fn]
                    else:
                        callbacks.append(fn)
                    return
                call_now = True
            else:
                call_now = False
        if not call_now:
            super().add_done_callback(fn)
            return
        try:
            fn(self)
        except (Exception, SystemExit):
            logger.exception("exception calling callback for %r", self)

    def set_running_or_notify_cancel(self) -> bool:
        with _LAZY_LOCK:
            if "_cond" not in self.__dict__ and self._state == PENDING:
                self._state = RUNNING
                return True
        return super().set_running_or_notify_cancel()

    def set_result(self, result: Any) -> None:
        with _LAZY_LOCK:
            fast = "_cond" not in self.__dict__
            if fast:
                if self._state in _DONE:
                    raise InvalidStateError(f"{self._state}: {self!r}")
                self._result = result
                self._state = FINISHED
        if fast:
            self._invoke_callbacks()
        else:
            super().set_result(result)

    def set_exception(self, exception: Optional[BaseException]) -> None:
        with _LAZY_LOCK:
            fast = "_cond" not in self.__dict__
            if fast:
                if self._state in _DONE:
                    raise InvalidStateError(f"{self._state}: {self!r}")
                self._exception = exception
                self._state = FINISHED
        if fast:
            self._invoke_callbacks()
        else:
            super().set_exception(exception)
