"""A thread that services this process's idle RabbitMQ connections: heartbeats and visibility deadlines.

pika's ``BlockingConnection`` does I/O only inside a call made by the thread
that uses it. A thread that holds a message and computes for a minute makes
no call, so (1) RabbitMQ, hearing no heartbeat, closes the connection and
requeues the message early, and (2) a delivery past its visibility timeout
is given back only at that thread's next call. The keeper fixes both: every
:data:`KEEP_PERIOD_S` it takes each registered object's lock *if it is free*
(the owner is not inside a call) and calls its ``keep()`` — process pending
I/O (heartbeats) and nack the deliveries whose deadline passed. The lock
serializes every use of a connection, so pika is never used by two threads
at once.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any, Protocol

logger = logging.getLogger(__name__)

KEEP_PERIOD_S = 0.5


class Kept(Protocol):
    lock: threading.RLock

    def keep(self) -> bool:
        """Service the connection (called with ``lock`` held, from the keeper's thread); False once it is
        closed (the keeper forgets it; reconnecting registers it again)."""


_lock = threading.Lock()
_kept: "weakref.WeakSet[Any]" = weakref.WeakSet()
_pid = 0                      # the process whose keeper thread runs (0: none runs)


def register(obj: Kept) -> None:
    """Have the keeper service ``obj`` while it is open. The thread starts with the first registration (of a
    process: a forked child gets its own) and ends when nothing open is left."""
    global _pid, _kept
    with _lock:
        if _pid != os.getpid():
            if _pid:                               # a forked child: its parent's objects are not its own
                _kept = weakref.WeakSet()
            _pid = os.getpid()
            threading.Thread(target=_run, args=(_pid,), name="parsl_lite-amqp-keeper", daemon=True).start()
        _kept.add(obj)


def _run(pid: int) -> None:
    global _pid
    while True:
        time.sleep(KEEP_PERIOD_S)
        with _lock:
            if _pid != pid:
                return
            if not _kept:
                _pid = 0
                return
            objs = list(_kept)
        for obj in objs:
            if not obj.lock.acquire(blocking=False):
                continue                                   # its owner is in a call: it does the I/O itself
            try:
                kept = obj.keep()
            except Exception as exc:                       # the owner sees the broken connection at its next call
                logger.debug("amqp keeper: %r", exc)
                kept = False
            finally:
                obj.lock.release()
            if not kept:
                with _lock:
                    _kept.discard(obj)
