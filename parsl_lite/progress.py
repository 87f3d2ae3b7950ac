"""``wait`` and ``as_completed`` over futures, with a progress bar if asked.

    import parsl_lite as parsl

    done, not_done = parsl.wait(futures, progress=True)           # a bar in a terminal, a widget in Jupyter
    for fut in parsl.as_completed(futures, progress=True):
        print(fut.result())

They behave as ``concurrent.futures.wait`` / ``as_completed`` (``timeout``,
``return_when``; a timeout returns what is done from ``wait`` and raises
``TimeoutError`` from ``as_completed``), take Dask's ``with_results`` /
``raise_errors`` in ``as_completed`` and, like ``distributed.wait``, a single
future as well as a collection. They work with any ``concurrent.futures.Future``:
AppFutures, DataFutures, the executors' futures, plain ones.

No polling: each future's done callback puts it on a queue, and the caller's
thread blocks on that queue, counting (:class:`Completion`, the pure part) and
moving the bar (tqdm's auto mode picks the terminal bar or the notebook widget).
"""
from __future__ import annotations

import queue
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, CancelledError, Future
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Union

__all__ = ["wait", "as_completed", "Completion", "DoneAndNotDoneFutures",
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
    return fut.cancelled() or fut.exception() is not None


# ---------------------------------------------------------------- the shell: queue, clock, bar

class _Watch:
    """Done callbacks feeding a queue; ``next_done`` blocks on it until the deadline."""

    def __init__(self, futures: list[Future], deadline: Optional[float]) -> None:
        self.deadline = deadline
        self._queue: "queue.SimpleQueue[Future]" = queue.SimpleQueue()
        for fut in futures:  # a finished future calls back at once, so it is queued too
            fut.add_done_callback(self._queue.put)

    def next_done(self) -> Optional[Future]:
        """The next finished future, or None once the deadline has passed."""
        if self.deadline is None:
            return self._queue.get()
        remaining = self.deadline - time.monotonic()
        try:
            return self._queue.get(timeout=max(remaining, 0.0)) if remaining > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None


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


def as_completed(fs: Futures, timeout: Optional[float] = None, progress: bool = False,
                 with_results: bool = False, raise_errors: bool = True) -> Iterator[Any]:
    """Yield the futures ``fs`` as they finish, as ``concurrent.futures.as_completed``.

    The arguments are checked at the call, the timeout counts from the call.

    Args:
        fs: futures, or one future.
        timeout: seconds from this call; past it, the next step raises ``TimeoutError``
            (``"N (of M) futures unfinished"``).
        progress: show a bar of the futures yielded so far (a widget in a notebook).
        with_results: yield ``(future, result)`` pairs (Dask's keyword).
        raise_errors: with ``with_results``, a failed future's exception is raised when it is
            reached; with False it is yielded as the result (Dask's keyword).
    """
    futures = _futures(fs)
    return _completed(futures, _deadline(timeout), progress, with_results, raise_errors)


def _completed(futures: list[Future], deadline: Optional[float], progress: bool, with_results: bool,
               raise_errors: bool) -> Iterator[Any]:
    watch = _Watch(futures, deadline)
    core = Completion(len(futures))
    bar = _bar(progress, len(futures), "tasks")
    try:
        while not core.over:
            fut = watch.next_done()
            if fut is None:
                raise TimeoutError(f"{core.total - core.finished} (of {core.total}) futures unfinished")
            _count(core, bar, fut)
            if not with_results:
                yield fut
            elif raise_errors or not _failed(fut):
                yield fut, fut.result()
            else:
                yield fut, (CancelledError() if fut.cancelled() else fut.exception())
    finally:
        bar.close()
