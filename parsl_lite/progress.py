"""``wait`` and ``as_completed`` over futures, with a progress bar if asked.

    import parsl_lite as parsl

    done, not_done = parsl.wait(futures, progress=True)           # a bar in a terminal, a widget in Jupyter
    for fut in parsl.as_completed(futures, progress=True):
        print(fut.result())

They behave as ``concurrent.futures.wait`` / ``as_completed`` (``timeout``,
``return_when``; a timeout returns what is done from ``wait`` and raises
``TimeoutError`` from ``as_completed``), take Dask's ``with_results`` /
``raise_errors`` in ``as_completed`` and, like ``distributed.wait``, a single
future as well as a collection. ``as_completed`` returns Dask's kind of
iterator (:class:`AsCompleted`: ``add`` while iterating, ``batches``, ``async
for``). They work with any ``concurrent.futures.Future``: AppFutures,
DataFutures, the executors' futures, plain ones.

No polling: each future's done callback puts it on a queue (and wakes asyncio
waiters), and the caller's thread blocks on that queue, counting
(:class:`Completion`, the pure part) and moving the bar (tqdm's auto mode picks
the terminal bar or the notebook widget).
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, CancelledError, Future
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Union

__all__ = ["wait", "as_completed", "AsCompleted", "Completion", "DoneAndNotDoneFutures",
           "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"]

_RETURN_WHEN = (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION)
Futures = Union[Future, Iterable[Future]]


class DoneAndNotDoneFutures(NamedTuple):
    """What :func:`wait` returns, as ``concurrent.futures.wait`` does."""

    done: set
    not_done: set


class Completion:
    """Counts finished futures and says when a wait is over. No threads, clocks or futures here.

    Args:
        total: how many futures are waited for.
        return_when: ``ALL_COMPLETED``, ``FIRST_COMPLETED`` or ``FIRST_EXCEPTION``.
    """

    def __init__(self, total: int, return_when: str = ALL_COMPLETED) -> None:
        self.total = total
        self.return_when = return_when
        self.finished = 0
        self.failed = 0

    def added(self, n: int = 1) -> None:
        """``n`` more futures to wait for (``AsCompleted.add``)."""
        self.total += n

    def future_done(self, failed: bool) -> bool:
        """One more future finished (``failed``: with an exception); True if the wait is now over."""
        self.finished += 1
        self.failed += bool(failed)
        return self.over

    @property
    def over(self) -> bool:
        if self.finished >= self.total:
            return True
        if self.return_when == FIRST_COMPLETED:
            return self.finished > 0
        if self.return_when == FIRST_EXCEPTION:
            return self.failed > 0
        return False


# ---------------------------------------------------------------- checks at the edge

def _futures(fs: Any) -> list[Future]:
    """``fs`` as a list of distinct futures, in the given order; TypeError naming the bad item."""
    if isinstance(fs, Future):
        return [fs]
    if isinstance(fs, (str, bytes)) or not isinstance(fs, Iterable):
        raise TypeError(f"fs must be a future or an iterable of futures, got {type(fs).__name__}")
    unique: dict[Future, None] = {}
    for index, item in enumerate(fs):
        if not isinstance(item, Future):
            raise TypeError(f"fs[{index}] is a {type(item).__name__}, not a concurrent.futures.Future")
        unique[item] = None
    return list(unique)


def _deadline(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    return time.monotonic() + timeout


def _failed(fut: Future) -> bool:
    """Finished with an exception (a cancelled future is not failed, as in ``concurrent.futures.wait``)."""
    return not fut.cancelled() and fut.exception() is not None


# ---------------------------------------------------------------- the shell: queue, clock, bar

class _Watch:
    """Done callbacks feeding a queue; ``next_done`` blocks on it until the deadline.

    ``async_next_done`` waits in an event loop instead: a finished future also
    wakes the asyncio waiters (through their loops), and a waiter takes from the
    queue only once woken, so cancelling it loses no future.
    """

    def __init__(self, futures: list[Future], deadline: Optional[float]) -> None:
        self.deadline = deadline
        self._queue: "queue.SimpleQueue[Future]" = queue.SimpleQueue()
        self._waiters: set[asyncio.Future] = set()
        self.watch(futures)

    def watch(self, futures: list[Future]) -> None:
        for fut in futures:  # a finished future calls back at once, so it is queued too
            fut.add_done_callback(self._put)

    def _put(self, fut: Future) -> None:
        self._queue.put(fut)
        for waiter in list(self._waiters):
            try:
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # its loop is closed: nobody waits there any more
                self._waiters.discard(waiter)

    def has_ready(self) -> bool:
        return not self._queue.empty()

    def _remaining(self) -> Optional[float]:
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)

    def next_done(self) -> Optional[Future]:
        """The next finished future, or None once the deadline has passed."""
        remaining = self._remaining()
        try:
            return self._queue.get(timeout=remaining) if remaining != 0.0 else self._queue.get_nowait()
        except queue.Empty:
            return None

    async def async_next_done(self) -> Optional[Future]:
        """:meth:`next_done` without blocking the running loop."""
        while self._queue.empty():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                if self._queue.empty():  # a future finishing before the waiter was added
                    await asyncio.wait_for(waiter, self._remaining())
            except asyncio.TimeoutError:
                return None
            finally:
                self._waiters.discard(waiter)
        return self._queue.get_nowait()


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(progress: bool, total: int, desc: str) -> Any:
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm  # the notebook widget under Jupyter, else the terminal bar

    return tqdm(total=total, desc=desc, unit="task", dynamic_ncols=True)


def _count(core: Completion, bar: Any, fut: Future) -> bool:
    """Record one finished future on the counter and the bar; True if the wait is over."""
    failed = _failed(fut)
    over = core.future_done(failed)
    if failed:
        bar.set_postfix(failed=core.failed, refresh=False)
    bar.update(1)
    return over


# ---------------------------------------------------------------- the API

def wait(fs: Futures, timeout: Optional[float] = None, return_when: str = ALL_COMPLETED,
         progress: bool = False) -> DoneAndNotDoneFutures:
    """Wait for the futures ``fs``, as ``concurrent.futures.wait``; a progress bar if ``progress``.

    Args:
        fs: futures (AppFutures, DataFutures, any ``concurrent.futures.Future``), or one future.
        timeout: seconds to wait at most (None: no limit). On timeout nothing is raised:
            ``not_done`` holds what is unfinished.
        return_when: ``ALL_COMPLETED``, ``FIRST_COMPLETED`` or ``FIRST_EXCEPTION`` (the
            ``concurrent.futures`` constants, or their names as strings, as Dask takes them).
        progress: show a bar of finished futures (a widget in a notebook).

    Returns:
        ``(done, not_done)``, two sets. A failed future is done; its exception is not raised.
    """
    futures = _futures(fs)
    if return_when not in _RETURN_WHEN:
        raise ValueError(f"return_when must be one of {', '.join(_RETURN_WHEN)}, got {return_when!r}")
    watch = _Watch(futures, _deadline(timeout))
    core = Completion(len(futures), return_when)
    bar = _bar(progress, len(futures), "tasks")
    try:
        while not core.over:
            fut = watch.next_done()
            if fut is None or _count(core, bar, fut):
                break
    finally:
        bar.close()
    done = {fut for fut in futures if fut.done()}
    return DoneAndNotDoneFutures(done, set(futures) - done)


def as_completed(fs: Futures = (), timeout: Optional[float] = None, progress: bool = False,
                 with_results: bool = False, raise_errors: bool = True) -> "AsCompleted":
    """Iterate over the futures ``fs`` as they finish, as ``concurrent.futures.as_completed``.

    The arguments are checked at the call, and the timeout counts from the call. The
    iterator is Dask's too: ``add`` / ``update`` more futures while iterating, ``count``,
    ``is_empty``, ``has_ready``, ``next_batch``, ``batches``.

    Args:
        fs: futures, or one future.
        timeout: seconds from this call; past it, the next step raises ``TimeoutError``
            (``"N (of M) futures unfinished"``).
        progress: show a bar of the futures returned so far (a widget in a notebook).
        with_results: yield ``(future, result)`` pairs (Dask's keyword).
        raise_errors: with ``with_results``, a failed future's exception is raised when it is
            reached (the iteration may go on after it); with False it is yielded as the result.
    """
    return AsCompleted(_futures(fs), _deadline(timeout), progress, with_results, raise_errors)


class AsCompleted:
    """What :func:`as_completed` returns: an iterator of finished futures that more can be added to.

    Each future given or added is returned once, when it has finished (a future
    added twice, twice, as in Dask). The iteration ends when every one has been
    returned; the bar closes then, on a timeout, or at :meth:`close`.
    """

    def __init__(self, futures: list[Future], deadline: Optional[float], progress: bool, with_results: bool,
                 raise_errors: bool) -> None:
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._lock = threading.Lock()  # add() may come from another thread than the iterating one
        self._core = Completion(len(futures))
        self._watch = _Watch(futures, deadline)
        self._progress = progress
        self._bar: Any = None

    def update(self, futures: Iterable[Future]) -> None:
        """Add futures; each is returned once it has finished."""
        added = _futures(list(futures))
        with self._lock:
            self._core.added(len(added))
            if self._bar is not None and self._progress:
                self._bar.total = self._core.total
                self._bar.refresh()
        self._watch.watch(added)

    def add(self, future: Future) -> None:
        """Add one future (Dask's ``as_completed.add``)."""
        self.update([future])

    def count(self) -> int:
        """How many futures are yet to be returned (finished or not)."""
        with self._lock:
            return self._core.total - self._core.finished

    def is_empty(self) -> bool:
        return self.count() == 0

    def has_ready(self) -> bool:
        """True if a finished future is waiting to be returned."""
        return self._watch.has_ready()

    def __iter__(self) -> "AsCompleted":
        return self

    def __next__(self) -> Any:
        if self.is_empty():
            self.close()
            raise StopIteration
        self._open_bar()
        return self._returned(self._watch.next_done())

    def __aiter__(self) -> "AsCompleted":
        return self

    async def __anext__(self) -> Any:
        """``async for fut in as_completed(...)``: the same, without blocking the loop (a notebook's)."""
        if self.is_empty():
            self.close()
            raise StopAsyncIteration
        self._open_bar()
        return self._returned(await self._watch.async_next_done())

    def _open_bar(self) -> None:
        if self._bar is None:  # drawn before the first wait, so it shows while nothing has finished
            self._bar = _bar(self._progress, self._core.total, "tasks")

    def _returned(self, fut: Optional[Future]) -> Any:
        """Count ``fut`` (None: the deadline passed) and return what the iteration yields for it."""
        if fut is None:
            self.close()
            raise TimeoutError(f"{self.count()} (of {self._core.total}) futures unfinished")
        with self._lock:
            _count(self._core, self._bar, fut)
        if not self.with_results:
            return fut
        if fut.cancelled():  # Dask's: yielded with a CancelledError, never raised
            return fut, CancelledError()
        if self.raise_errors or not _failed(fut):
            return fut, fut.result()
        return fut, fut.exception()

    def next_batch(self, block: bool = True) -> list:
        """The finished futures waiting now; with ``block``, at least one (waiting for it)."""
        batch = [next(self)] if block else []
        while self.has_ready():
            batch.append(next(self))
        return batch

    def batches(self) -> Iterator[list]:
        """Lists of the futures finished since the last list, as soon as there are some."""
        while True:
            try:
                yield self.next_batch()
            except StopIteration:
                return

    def close(self) -> None:
        """Close the bar (the futures are left as they are)."""
        if self._bar is not None:
            self._bar.close()

    def __repr__(self) -> str:
        return f"<AsCompleted: {self.count()} of {self._core.total} to return>"
