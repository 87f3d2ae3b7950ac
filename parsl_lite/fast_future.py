"""``FastFuture``: a ``concurrent.futures.Future`` that builds its Condition only when someone waits.

A stock ``Future`` creates a ``threading.Condition`` (an RLock, a deque and
five bound methods) in ``__init__``: about half the cost of a future, and most
of its garbage-collector load. A workflow creates two futures per task (the
app's and the executor's) and blocks on few of them, so this class defers the
Condition until a thread really waits (``result()`` on an unfinished future,
``wait``, ``as_completed``).

The waiter and callback lists are likewise made on first use (a single
callback needs no list), and the attributes stay inline in the instance (no
``__dict__``), so a future is one object for the garbage collector, not three.

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

    # No ``self.__dict__`` here: on CPython 3.11+ an instance keeps its attributes
    # inline until ``__dict__`` is asked for, which makes a dict (one more object
    # per future for the garbage collector to walk). The attributes most futures
    # get are set in ``__init__``, in one order: one set later, once many
    # instances exist, also makes a dict. The rarely needed lists default here.
    _waiter_list: Optional[list] = None
    _callback_list: Optional[list] = None

    def __init__(self) -> None:  # what Future.__init__ does, minus the Condition and the two lists
        self._state = PENDING
        self._result: Any = None
        self._exception: Optional[BaseException] = None
        self._cond: Optional[threading.Condition] = None
        self._one_callback: Optional[Callable[[Future], Any]] = None  # most futures get one: no list then

    @property  # type: ignore[override]
    def _waiters(self) -> list:
        # Only asked for under the Condition (``wait``, ``as_completed``, the stock setters).
        waiters = self._waiter_list
        if waiters is None:
            waiters = self._waiter_list = []
        return waiters

    @property  # type: ignore[override]
    def _done_callbacks(self) -> list:
        # Asked for under the lock that guards the callbacks: the module lock (a second
        # callback) until the Condition exists, the Condition after; the one callback moves in.
        callbacks = self._callback_list
        if callbacks is None:
            callbacks = self._callback_list = []
            one = self._one_callback
            if one is not None:
                callbacks.append(one)
                self._one_callback = None
        return callbacks

    def _invoke_callbacks(self) -> None:
        one, callbacks = self._one_callback, self._callback_list
        if one is not None:
            try:  # _call, inlined: once per future, on the completion path
                one(self)
            except (Exception, SystemExit):
                logger.exception("exception calling callback for %r", self)
        if callbacks:
            for callback in callbacks:
                self._call(callback)

    def _call(self, callback: Callable[[Future], Any]) -> None:
        try:
            callback(self)
        except (Exception, SystemExit):  # SystemExit too: it would end the thread that resolves us
            logger.exception("exception calling callback for %r", self)

    @property  # type: ignore[override]
    def _condition(self) -> threading.Condition:
        cond = self._cond
        if cond is None:
            with _LAZY_LOCK:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
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
            if self._cond is None:
                if self._state not in _DONE:
                    if self._one_callback is None and self._callback_list is None:
                        self._one_callback = fn
                    else:
                        self._done_callbacks.append(fn)  # keeps the order: the first one moves in first
                    return
                call_now = True
            else:
                call_now = False
        if not call_now:
            super().add_done_callback(fn)
            return
        self._call(fn)

    def set_running_or_notify_cancel(self) -> bool:
        with _LAZY_LOCK:
            if self._cond is None and self._state == PENDING:
                self._state = RUNNING
                return True
        return super().set_running_or_notify_cancel()

    def set_result(self, result: Any) -> None:
        if not self._finish_fast(result, None):
            super().set_result(result)

    def set_exception(self, exception: Optional[BaseException]) -> None:
        if not self._finish_fast(None, exception):
            super().set_exception(exception)

    def _finish_fast(self, result: Any, exception: Optional[BaseException]) -> bool:
        """Set the outcome under the module lock and run the callbacks; False if a Condition exists (stock way)."""
        with _LAZY_LOCK:
            if self._cond is not None:
                return False
            state = self._state
            if state not in _DONE:
                self._result = result
                self._exception = exception
                self._state = FINISHED
        if state in _DONE:  # raised outside the lock: the repr takes the Condition, made under that lock
            raise InvalidStateError(f"{state}: {self!r}")
        if self._one_callback is not None or self._callback_list is not None:
            self._invoke_callbacks()
        return True
