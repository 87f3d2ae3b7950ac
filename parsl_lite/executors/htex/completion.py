"""Completing an executor's futures off the I/O thread, in order, without deadlocks.

::

    I/O thread (client.py)          completion thread                 user / kernel code
    socket -> ResultBatch  --put-->  deque of (futures, result) --> prepare: deserialize
      (one lock, at most one           in arrival order                 settle: future.set_result
       wake-up per batch)                                                 -> kernel _exec_done,
                                                                             dependants launched,
                                                                             user done-callbacks

The client's I/O thread only moves frames: it hands each batch of results to
:meth:`Completer.put` and goes back to its socket, so heartbeats, commands and
tasks keep flowing whatever the callbacks do. The completion thread
``parsl_lite-<label>-completion`` takes the items one at a time, in arrival
order, and for each one

1. *prepares* it (``prepare(item)``: deserialize the result; no user code), then
2. *settles* it: calls the ``(setter, value)`` that ``prepare`` returned, i.e.
   ``future.set_result(value)``. This runs the future's callbacks: the
   kernel's completion, the launch of dependants (which pickles their
   arguments and submits them) and the user's done-callbacks.

**The choice.** A done-callback may block: on a future of this same executor
(whose result can only arrive through this same queue), on an Event, on a
lock. We considered

- running user callbacks on another thread than the one that sets executor
  futures: the user's callbacks hang on the kernel's ``AppFuture``, set
  inside the kernel's callback of our future, so this needs the kernel to
  move its own futures' callbacks elsewhere (a second hop for every task);
- a thread-local "drain the queue while you wait": it only helps for waits we
  can intercept (``Future.result`` of our futures), not for the ``AppFuture``
  the user really waits on, ``concurrent.futures.wait``, an Event or a lock;

and took the general way, that of a pool with compensating threads:

    a standby thread ``parsl_lite-<label>-completion-standby`` sleeps until
    items wait while the completion thread is busy; it then checks every
    ``stall_s``. If the completion thread is still inside the *same item's*
    setter (its future is set and its callbacks run; deserializing does not
    count) and items wait, the standby takes over as the completion thread
    (and takes its name; the old one is renamed ``...-completion-blocked-N``)
    and a new standby is started. The old thread finishes its callback
    whenever it can and then exits.

So a blocked callback holds the queue up for ``stall_s`` at most, futures'
setters still begin in arrival order (the take-over happens only once the
stuck item's setter has begun; ``tests/test_htex_completion.py`` checks the
order under many take-overs), and at rest or under a steady load there are
two threads and no polling (the standby wakes every ``stall_s`` only while
the completion thread is busy and items wait). At most ``max_threads``
threads may be stuck in callbacks at once; past that, later items wait (and
one warning says so). The time threshold decides only *when* help comes,
never what is computed.

**A lone result completes where it arrives.** Handing a result to the
completion thread costs a thread wake-up (30-80 µs on a small VM), a whole
tenth of a one-at-a-time round trip. So the client's I/O thread, declared
an :class:`InlineHost` (:func:`host_inline`), completes a batch of one result
itself when the completion thread is idle and nothing is queued (its setter
then begins after every earlier item's, as the order wants). The same
standby watches it: if the host stays inside one such setter for ``stall_s``,
the standby *retires* it and calls its ``on_stuck`` (the client starts a new
I/O thread, which puts its results on the queue until the retired one is
out of its callback); the retired thread exits when its callback returns.
The standby looks every ``stall_s`` only while lone results keep coming, and
sleeps untimed once ``stall_s`` passes without one.

**Cost.** The leader pops without a lock unless a take-over is under way
(see ``_lead_loop``); what remains is one ``put`` per batch and one function
call per result.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Iterable, Optional

logger = logging.getLogger(__name__)

#: What ``prepare`` returns: a one-argument callable and its argument, or None to skip the item.
Settle = Optional[tuple[Callable[[Any], Any], Any]]

_STALL_S = 0.05
_MAX_THREADS = 32
_EXIT = object()
_hosts = threading.local()  # .host: the InlineHost this thread is, if any


class InlineHost:
    """A thread that may complete a lone result itself (the client's I/O thread), and how to replace it.

    Args:
        on_stuck: called (by the standby, the completer's lock held; it must not
            block) when the host has sat in one result's callbacks for
            ``stall_s``; it starts the thread that takes the host's job over.
    """

    __slots__ = ("on_stuck", "allowed", "busy", "seq", "retired")

    def __init__(self, on_stuck: Callable[[], None]) -> None:
        self.on_stuck = on_stuck
        self.allowed = False   # set by the host around the one ``put`` it may complete itself
        self.busy = False      # inside a setter (the future's callbacks)
        self.seq = 0           # setters begun
        self.retired = False   # replaced while inside a setter: exit when it returns


def host_inline(host: Optional[InlineHost]) -> None:
    """Declare the calling thread an inline host (None: no longer)."""
    _hosts.host = host


class Completer:
    """Runs ``prepare`` then the returned setter for each item, in order, on a thread of its own.

    Args:
        name: the completion thread's name (``parsl_lite-<label>-completion``).
        prepare: turns an item into ``(setter, value)`` (or None); must not block.
        stall_s: how long the completion thread may sit in one item's callbacks
            while items wait before a standby thread takes over.
        max_threads: at most this many completion threads at once (stuck ones included).
    """

    def __init__(self, name: str, prepare: Callable[[Any], Settle], stall_s: float = _STALL_S,
                 max_threads: int = _MAX_THREADS) -> None:
        self.name = name
        self._prepare = prepare
        self._stall_s = stall_s
        self._max_threads = max(2, max_threads)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)     # the leader waits here for items
        self._watch = threading.Condition(self._lock)    # the standby waits here
        self._drained = threading.Condition(self._lock)  # stop() waits here
        self._items: collections.deque = collections.deque()
        self._leader: Optional[threading.Thread] = None
        self._standby: Optional[threading.Thread] = None
        self._leader_idle = True   # the leader waits for items
        # Per thread, whether it is inside a setter (callbacks). One flag per thread, not one
        # shared: a replaced thread leaving its callback must not clear its successor's flag.
        self._lanes: dict[threading.Thread, _Lane] = {}
        self._progress = 0         # items taken so far
        self._armed = False        # the standby watches the leader
        self._taking_over = False  # the standby is deciding to take over (the leader must lock)
        self._threads: set[threading.Thread] = set()
        self._demoted: set[threading.Thread] = set()  # replaced while inside a callback
        self._spawned = 0
        self._inline_host: Optional[InlineHost] = None  # the host the standby watches
        self._retired_hosts = 0    # hosts retired and still inside their callback: no inline meanwhile
        self._stopping = False
        self._closed = False
        self._warned_full = False

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Start the completion thread and its standby."""
        with self._lock:
            self._leader = self._spawn(self._lead, self.name)
            self._standby = self._spawn(self._stand_by, f"{self.name}-standby")

    def stop(self, timeout_s: float = 5.0) -> list:
        """Process what is queued, then stop every thread (callbacks still stuck are left, as daemons).

        Safe to call from a completion thread (a callback that shuts the
        executor down): the standby takes over and drains the queue.

        Returns:
            The items not processed within ``timeout_s`` (the caller fails them).
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._stopping = True
            self._work.notify_all()
            self._watch.notify_all()
            while self._items and time.monotonic() < deadline:
                self._drained.wait(max(0.0, deadline - time.monotonic()))
            leftover = []
            while True:  # popleft, as the leader does: each item is taken once
                try:
                    leftover.append(self._items.popleft())
                except IndexError:
                    break
            self._closed = True
            # Wait for the threads that are about to exit, not for those inside a callback:
            # they end when it returns (the caller's failing of pending futures may release them).
            busy = {t for t in self._threads if t in self._demoted or self._lanes[t].settling}
            stuck = [t.name for t in busy]
            threads = [t for t in self._threads if t is not threading.current_thread() and t not in busy]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck += [t.name for t in threads if t.is_alive()]
        if stuck:
            logger.warning("%s: threads still inside callbacks at shutdown: %s", self.name, stuck)
        return leftover

    # ------------------------------------------------------------ from the I/O thread

    def put(self, items: Iterable) -> None:
        """Queue items for completion, in order. One lock, at most one wake-up, per call.

        After :meth:`stop`, items are completed in the caller's thread. An
        inline host's lone item, while the completion thread is idle, is
        completed in the host's thread (see the module's docstring).
        """
        host = getattr(_hosts, "host", None)
        if host is not None and host.allowed:
            items = list(items)
            if len(items) == 1 and self._begin_inline(host):
                self._settle_inline(host, items[0])
                return
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                self._items.extend(items)
                if self._leader_idle:
                    self._work.notify()
                elif not self._armed and self._items:
                    self._armed = True
                    self._watch.notify()
        if closed:
            for item in items:
                self._run_one(item)

    def _begin_inline(self, host: InlineHost) -> bool:
        """Whether ``host`` may complete its item now: nothing queued, the leader idle, nobody stuck inline."""
        with self._lock:
            if self._closed or self._stopping or self._items or not self._leader_idle or self._taking_over \
                    or self._retired_hosts or host.retired:
                return False
            if self._inline_host is not host:  # the standby watches from now until a quiet stall_s
                self._inline_host = host
                self._watch.notify()
            return True

    def _settle_inline(self, host: InlineHost, item: Any) -> None:
        settle = self._prepare(item)
        if settle is None:
            return
        host.seq += 1
        host.busy = True
        try:
            settle[0](settle[1])
        except BaseException:  # as on the completion thread: a callback must not kill the I/O thread
            logger.exception("%s: completing %r failed", self.name, item)
        finally:
            with self._lock:  # with the standby's look at ``busy``: retired only while inside the setter
                host.busy = False
                if host.retired:
                    self._retired_hosts -= 1

    def _watch_inline(self) -> None:
        """Lock held: wait ``stall_s``; retire the host if it sat in one setter all along, disarm if it was quiet."""
        host = self._inline_host
        assert host is not None
        seq, busy, began = host.seq, host.busy, time.monotonic()
        self._watch.wait(self._stall_s)
        if self._inline_host is not host or host.seq != seq:
            return  # replaced, or it moved on: watch on
        if not busy or not host.busy:
            if not host.busy:
                self._inline_host = None  # quiet: sleep until the next lone result
            return
        if time.monotonic() - began < self._stall_s:
            return  # woken early (a put for the leader): not stuck yet
        self._inline_host = None
        self._retired_hosts += 1
        host.retired = True
        logger.info("%s: the I/O thread is blocked in a callback; a new one takes over its socket", self.name)
        host.on_stuck()

    # ------------------------------------------------------------ the threads

    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        """Start a daemon thread (a callback stuck forever must not keep the interpreter alive)."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.add(thread)
        self._lanes[thread] = _Lane()
        thread.start()
        return thread

    def _lead(self) -> None:
        me = threading.current_thread()
        try:
            self._lead_loop(me)
        finally:
            with self._lock:
                self._threads.discard(me)
                self._demoted.discard(me)
                self._lanes.pop(me, None)

    def _lead_loop(self, me: threading.Thread) -> None:
        """Take items in order and complete them; return when another thread leads or on stop.

        Only the leader pops, so while no take-over is under way it pops
        without the lock (one lock per item cost ~5% of htex's no-op
        throughput). The take-over is a Dekker handshake: the standby sets
        ``_taking_over`` and then reads the leader's ``settling``; the leader
        clears it and then reads ``_taking_over``. Under the GIL one of
        them sees the other's write, so a leader leaving a callback during a
        take-over goes the locked way and learns it no longer leads.
        """
        items, prepare, lane = self._items, self._prepare, self._lanes[me]
        while True:
            if self._taking_over or self._leader is not me or not items:
                item = self._next_locked(me)
                if item is _EXIT:
                    return
            else:
                item = items.popleft()
                self._progress += 1
                if items and not self._armed:  # items wait behind this one: the standby watches
                    self._arm()
            settle = prepare(item)
            if settle is not None:
                lane.settling = True
                try:
                    settle[0](settle[1])
                except BaseException:  # a future set twice, a callback's sys.exit: never kill the thread
                    logger.exception("%s: completing %r failed", self.name, item)
                lane.settling = False

    def _next_locked(self, me: threading.Thread) -> Any:
        """The next item, waiting for one under the lock; ``_EXIT`` if we no longer lead or stop."""
        items = self._items
        with self._lock:
            while True:
                if self._leader is not me:
                    return _EXIT  # another thread took over while we were in a callback
                if items:
                    break
                if self._stopping:
                    self._drained.notify_all()
                    self._leader = None
                    self._watch.notify_all()
                    return _EXIT
                self._drained.notify_all()
                self._leader_idle = True
                self._work.wait()
            self._leader_idle = False
            item = items.popleft()
            self._progress += 1
            if items and not self._armed:
                self._armed = True
                self._watch.notify()
            return item

    def _arm(self) -> None:
        with self._lock:
            if not self._armed:
                self._armed = True
                self._watch.notify()

    def _run_one(self, item: Any) -> None:
        settle = self._prepare(item)
        if settle is not None:
            settle[0](settle[1])

    def _stand_by(self) -> None:
        me = threading.current_thread()
        try:
            if self._watch_leader(me):
                self._lead()
                return
        finally:
            with self._lock:
                self._threads.discard(me)
                self._lanes.pop(me, None)

    def _watch_leader(self, me: threading.Thread) -> bool:
        """Wait until the leader is stuck in a callback while items wait; True once we lead."""
        with self._lock:
            while True:
                if self._stopping and not self._items:
                    return False
                if not self._items or self._leader_idle:
                    self._armed = False
                    if self._inline_host is not None and not self._stopping:
                        self._watch_inline()
                    else:
                        self._watch.wait(None if not self._stopping else self._stall_s)
                    continue
                self._armed = True
                seen, leader = self._progress, self._leader
                self._watch.wait(self._stall_s)
                if not (self._items and self._progress == seen and self._leader is leader and leader is not None):
                    continue
                self._taking_over = True  # first announce, then look (see _lead_loop)
                try:
                    # still in the same item's callbacks (progress is counted before settling is set)
                    lane = self._lanes.get(leader)
                    if lane is not None and lane.settling and self._progress == seen \
                            and self._take_over(me, leader):
                        return True
                finally:
                    self._taking_over = False

    def _take_over(self, me: threading.Thread, leader: threading.Thread) -> bool:
        """Become the leader and start a new standby, unless too many threads are stuck. Lock held."""
        if len(self._threads) >= self._max_threads:
            if not self._warned_full:
                self._warned_full = True
                logger.warning("%s: %d threads are blocked in done-callbacks; later results wait for them",
                               self.name, len(self._threads) - 1)
            return False
        logger.info("%s: %s is blocked in a callback; %s takes over", self.name, leader.name, me.name)
        self._spawned += 1
        leader.name = f"{self.name}-blocked-{self._spawned}"
        self._demoted.add(leader)
        me.name = self.name  # the thread that completes is always the one of this name
        self._leader = me
        self._leader_idle = False
        self._armed = False
        self._standby = self._spawn(self._stand_by, f"{self.name}-standby")
        return True


class _Lane:
    """One completion thread's flag: inside a setter (the future's callbacks) or not."""

    __slots__ = ("settling",)

    def __init__(self) -> None:
        self.settling = False
