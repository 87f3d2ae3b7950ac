"""Replacing a lost interchange: when, how often, and the steps.

When the client reports its interchange lost (the process died, or it fell
silent past the heartbeat threshold), the executor

1. in one critical section with ``submit``: takes the lost interchange's
   futures, and from now on *holds* new tasks (or, past the restart budget,
   marks itself broken);
2. queues a :class:`Lost` item behind the results already received, so the
   completion thread fails those futures with ``InterchangeLost``, in order
   (the kernel retries them if ``Config(retries=)`` allows);
3. on a thread of its own: kills what is left of the old interchange, cancels
   its blocks through the provider (their pools are not asked to reconnect),
   starts a new interchange with the same settings (keys, secret), sends it
   the held tasks and starts as many blocks as there were. If that start
   fails, the executor is broken with that cause.

:class:`RestartBudget` is the pure rule (the time is passed in): at most
``max_restarts`` restarts within any ``window_s``. An interchange that dies
now and then is replaced each time; one that dies at once, again and again (a
crash loop: a bad environment, a port taken, a bug), ends with a clear error.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import InvalidStateError
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

from parsl_lite.executors.base import ResultSink
from parsl_lite.executors.htex.errors import InterchangeLost
from parsl_lite.executors.htex.messages import TaskMessage

if TYPE_CHECKING:
    from parsl_lite.executors.htex.client import InterchangeClient

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 600.0


class RestartBudget:
    """Counts restarts in a sliding window. No clock inside: callers pass ``now``.

    Args:
        max_restarts: restarts allowed within ``window_s``; 0 disables restarts.
        window_s: the window's length, in seconds.
    """

    def __init__(self, max_restarts: int, window_s: float = DEFAULT_WINDOW_S) -> None:
        self.max_restarts = max_restarts
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def try_restart(self, now: float) -> Optional[str]:
        """Record a restart at ``now`` if the budget allows one.

        Returns:
            None if the restart may go ahead, else why not (for the error message).
        """
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        if self.max_restarts <= 0:
            return "restarting a lost interchange is disabled (interchange_restarts=0)"
        if len(self._times) >= self.max_restarts:
            return (f"the interchange was already restarted {len(self._times)} times within "
                    f"{self.window_s:.0f} s (interchange_restarts={self.max_restarts}); giving up")
        self._times.append(now)
        return None


class RestartsInterchange:
    """The executor's half of a restart (a mixin of ``HighThroughputExecutor``).

    It uses the executor's ``_lock``, ``_broken``, ``_futures`` (the current
    interchange's tasks), ``_held``, ``_sent_digests``, ``_client``,
    ``_completer``, ``_restarts`` (a :class:`RestartBudget`), ``_restart_thread``,
    ``blocks``, ``_new_client``, ``_fail``, ``_cancel_blocks`` and ``scale_out``.
    """

    label: str
    blocks: dict[str, str]
    _lock: threading.Lock
    _broken: Optional[BaseException]
    _futures: dict[int, ResultSink]
    _held: Optional[list[tuple]]
    _sent_digests: set[bytes]
    _client: Optional["InterchangeClient"]
    _completer: Any
    _restarts: RestartBudget
    _restart_thread: Optional[threading.Thread]
    _new_client: Callable[[dict[int, ResultSink]], "InterchangeClient"]
    _fail: Callable[[BaseException], None]
    _cancel_blocks: Callable[[list[str]], list[str]]
    scale_out: Callable[[int], list[str]]

    def _interchange_lost(self, futures: dict[int, ResultSink], cause: BaseException) -> None:
        """The client's I/O thread: the interchange died or fell silent.

        Its tasks fail with ``cause`` on the completion thread, after the results
        already received; tasks submitted from now on are held for a new
        interchange, which a thread of its own starts (with new blocks), unless
        the restart budget is spent: then the executor is broken with a clear cause.
        """
        with self._lock:
            if self._broken is not None or futures is not self._futures:
                return  # shut down, failed, or a client we already replaced
            refusal = self._restarts.try_restart(time.monotonic())
            if refusal is not None:
                reason = getattr(cause, "reason", str(cause))
                cause = InterchangeLost(f"{reason}; {refusal}")
                self._broken = cause
            else:
                self._held = []
                self._sent_digests = set()  # the new interchange's workers know no function yet
            old_client, self._client = self._client, None
            self._futures = {}
            old_blocks = list(self.blocks)
            if refusal is not None:  # still make sure the old interchange and its blocks are gone
                thread = threading.Thread(target=self._retire, args=(old_client, old_blocks),
                                          name=f"parsl_lite-{self.label}-retire", daemon=True)
            else:
                thread = threading.Thread(target=self._restart, args=(cause, old_client, old_blocks),
                                          name=f"parsl_lite-{self.label}-restart", daemon=True)
            self._restart_thread = thread
        logger.error("executor %r: %d tasks in flight fail: %s", self.label, len(futures), cause)
        self._completer.put([(futures, Lost(cause))])
        thread.start()

    def _restart(self, cause: BaseException, old: Optional["InterchangeClient"], old_blocks: list[str]) -> None:
        """Retire the old interchange and its blocks, start a new one, send it the held tasks, start blocks."""
        self._retire(old, old_blocks)
        with self._lock:
            futures = self._futures
            if self._broken is not None:
                return
        client = self._new_client(futures)
        try:
            client.start()
        except Exception as exc:
            lost = InterchangeLost(f"{getattr(cause, 'reason', cause)}; a new interchange could not be started: {exc}")
            lost.__cause__ = exc
            logger.error("executor %r: %s", self.label, lost)
            self._fail(lost)
            try:
                client.stop()  # its pipe and ZMQ context
            except Exception:
                logger.debug("stopping a client that did not start", exc_info=True)
            return
        with self._lock:
            current = self._broken is None and futures is self._futures
            if current:
                self._client = client
                held, self._held = self._held or [], None
                for task_id, digest, body, packed, resources in held:
                    send_body = None
                    if digest not in self._sent_digests:
                        self._sent_digests.add(digest)
                        send_body = body
                    client.send_task(TaskMessage(task_id, digest, send_body, packed, resources))
        if not current:  # shut down (or failed) while we started it
            client.stop()
            return
        logger.warning("executor %r: new interchange up (client port %d, worker port %d) after: %s; "
                       "%d held tasks sent, starting %d blocks", self.label, client.client_port,
                       client.worker_port, cause, len(held), len(old_blocks))
        try:
            self.scale_out(max(0, len(old_blocks) - len(self.blocks)))
        except Exception:  # the strategy will try again
            logger.exception("executor %r: could not start blocks for the new interchange", self.label)

    def _retire(self, old: Optional["InterchangeClient"], old_blocks: list[str]) -> None:
        """Make sure the old interchange is gone and cancel its blocks (we do not wait for them to reconnect)."""
        if old is not None:
            process = old.process
            if process is not None and process.poll() is None:
                process.kill()  # silent but alive (stopped, hung): it is not coming back
            old.wait_closed(5.0)  # so stop() does not ask a dead interchange to shut down
            try:
                old.stop()
            except Exception:
                logger.exception("executor %r: stopping the lost interchange's client failed", self.label)
        self._cancel_blocks(old_blocks)


class Lost(NamedTuple):
    """A completion-queue item: the interchange these tasks were sent to is lost."""

    cause: BaseException


def fail_all(futures: dict[int, ResultSink], cause: BaseException) -> int:
    """Fail and remove every future of ``futures``; return how many.

    The completion thread may pop from the same map at the same time: each
    future is taken by exactly one side (``dict.pop``/``popitem`` are atomic),
    so none is set twice and none is missed.
    """
    count = 0
    while True:
        try:
            _, future = futures.popitem()
        except KeyError:
            return count
        try:
            future.set_exception(cause)
        except InvalidStateError:  # cancelled by its holder
            pass
        count += 1


def fail_all_of(lost: tuple[dict[int, ResultSink], BaseException]) -> None:
    """``fail_all`` taking one argument: the setter of a :class:`Lost` completion item."""
    fail_all(*lost)
