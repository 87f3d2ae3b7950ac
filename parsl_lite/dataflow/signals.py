"""SIGTERM runs the kernel's cleanup, as the end of a script would.

``kill``, ``timeout`` and batch systems send SIGTERM, whose default action
ends the process at once: no ``finally``, no ``atexit``, so the interchange,
pools and workers the kernel started would be left behind. While a kernel
is loaded (from the main thread), :class:`SigtermCleanup` turns SIGTERM into
``SystemExit(143)`` raised in the main thread: the stack unwinds, ``with
parsl_lite.load(...)`` blocks and ``atexit`` run ``cleanup()``, and the
script exits with 143 (128 + SIGTERM, what a shell reports for it).

A handler installed before the kernel is chained: it runs first, and if it
raises, its exception wins. A SIGTERM that was ignored (``SIG_IGN``) stays
ignored. At cleanup the previous handler is put back, and a SIGTERM that
arrived while the cleanup was running is delivered to it then.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any, Optional

logger = logging.getLogger(__name__)

EXIT_CODE = 128 + signal.SIGTERM


class SigtermCleanup:
    """The SIGTERM handler of one kernel: ``install`` at load, ``restore`` at cleanup."""

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False
        self._cleaning = False  # between cleaning() and restore(): defer, do not raise
        self._deferred = False

    def install(self) -> None:
        """Install the handler; a no-op off the main thread or when SIGTERM is ignored."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if previous == signal.SIG_IGN:
            return
        self._previous = previous
        signal.signal(signal.SIGTERM, self)
        self._installed = True

    def cleaning(self) -> None:
        """Cleanup has begun: a SIGTERM from now on waits for :meth:`restore` (no exit half-way)."""
        self._cleaning = True

    def restore(self) -> None:
        """Put the previous handler back and deliver a SIGTERM deferred during the cleanup.

        Off the main thread ``signal.signal`` is refused, so our handler stays
        installed and from now on only does what the previous one would.
        """
        self._cleaning = False
        if not self._installed:
            return
        if threading.current_thread() is threading.main_thread():
            self._installed = False
            if signal.getsignal(signal.SIGTERM) is self:
                signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
        if self._deferred:
            self._deferred = False
            logger.info("delivering the SIGTERM received during cleanup")
            os.kill(os.getpid(), signal.SIGTERM)

    def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
        if self._cleaning:
            self._deferred = True  # raising now would cut the cleanup short
            return
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        logger.info("SIGTERM: raising SystemExit(%d) so that the kernel cleans up", EXIT_CODE)
        raise SystemExit(EXIT_CODE)
