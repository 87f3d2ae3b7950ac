"""The endpoint's task bookkeeping, pure: which deliveries to run, drop or refuse, which results to spool.

No sockets, executor, files or clocks: the session (``session.py``) feeds it
events and carries out the actions it returns, in order::

    TaskDelivery(t1, t2, t1)  -> [Run(t1), Run(t2)]                 t1's second copy is a duplicate
    executor holds t1, t2     -> [Accept((t1, t2))]
    t1 refused (not allowed)  -> [StoreResults((r1,))]              send it, then spool it (fsync)
    t2 done                   -> [StoreResults((r2,))]
    ResultsStored(t1, t2)     -> [ForgetResults((t1, t2))]          delete the spool files
    HelloReply accepted       -> [ResendResults((...))]             everything still spooled

Delivery is at-least-once (``faas/protocol.py``): a task already held by the
executor, or whose result is spooled, is dropped when it comes again.

:class:`ResultWindow` decides when stored results leave: at most a few
``TaskResults`` unacknowledged, the rest batched behind them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence, Union

from parsl_lite.faas.protocol import TaskItem, TaskResult


@dataclass(frozen=True, slots=True)
class Run:
    """Submit this task to the executor (then report ``submitted`` or ``refused``)."""
    item: TaskItem


@dataclass(frozen=True, slots=True)
class Refuse:
    """Fail this task here, without running it: the session builds the failed result from ``why``."""
    task_id: str
    why: str            # "not_allowed" or "endpoint_lost"
    detail: str


@dataclass(frozen=True, slots=True)
class Accept:
    """Tell the service the executor holds these tasks (``TasksAccepted``)."""
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoreResults:
    """Send these results in one ``TaskResults``, then write them to the spool (durably)."""
    results: tuple[TaskResult, ...]


@dataclass(frozen=True, slots=True)
class ResendResults:
    """Send these spooled results again (read them from the spool)."""
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ForgetResults:
    """The service stored these: delete their spool files."""
    task_ids: tuple[str, ...]


Action = Union[Run, Refuse, Accept, StoreResults, ResendResults, ForgetResults]


class TaskBook:
    """What this endpoint holds: tasks in its executor, results on its disk.

    Args:
        endpoint_id: named in the ``EndpointLost`` of a task re-delivered too often.
        max_retries_on_system_failure: a delivery with ``attempt > 1 + this`` is refused.
        allowed_functions: function ids this endpoint runs; empty: any.
        spooled: task ids whose results are already on disk (found at start).
    """

    def __init__(self, endpoint_id: str, max_retries_on_system_failure: int,
                 allowed_functions: Iterable[str] = (), spooled: Iterable[str] = ()) -> None:
        self.endpoint_id = endpoint_id
        self.max_retries = max_retries_on_system_failure
        self.allowed_functions = frozenset(allowed_functions)
        self.held: set[str] = set()        # submitted to the executor, no result yet
        self.spooled: set[str] = set(spooled)
        self.refused: set[str] = set()     # being refused: a Refuse was returned, its result not yet stored

    def set_allowed_functions(self, function_ids: Iterable[str]) -> None:
        """Narrow the functions the endpoint runs (the service's list in ``HelloReply``), added to ours."""
        service = frozenset(function_ids)
        if service:
            self.allowed_functions = service if not self.allowed_functions else self.allowed_functions & service

    def delivered(self, items: Sequence[TaskItem]) -> list[Action]:
        """A ``TaskDelivery``: run what is new and allowed, refuse what is not, drop duplicates."""
        actions: list[Action] = []
        again: list[str] = []
        for item in items:
            task_id = item.task_id
            if task_id in self.held:
                again.append(task_id)  # the service missed our TasksAccepted: say it again
                continue
            if task_id in self.spooled or task_id in self.refused:
                continue  # its result is on its way (re-sent after each hello)
            if item.attempt > 1 + self.max_retries:
                self.refused.add(task_id)
                actions.append(Refuse(task_id, "endpoint_lost",
                                      f"task {task_id} was delivered {item.attempt} times: the endpoint was lost "
                                      f"while running it {item.attempt - 1} times, more than "
                                      f"max_retries_on_system_failure={self.max_retries}"))
            elif self.allowed_functions and item.function_id not in self.allowed_functions:
                self.refused.add(task_id)
                actions.append(Refuse(task_id, "not_allowed",
                                      f"function {item.function_id} is not in the allowed_functions of endpoint "
                                      f"{self.endpoint_id}"))
            else:
                self.held.add(task_id)
                actions.append(Run(item))
        if again:
            actions.append(Accept(tuple(again)))
        return actions

    def submitted(self, task_ids: Sequence[str]) -> list[Action]:
        """The executor holds these tasks now."""
        held = tuple(t for t in task_ids if t in self.held)
        return [Accept(held)] if held else []

    def completed(self, results: Sequence[TaskResult]) -> list[Action]:
        """Results (from the executor, or failed results of refused tasks): spool them, then send them.

        A result for a task already spooled (a duplicate) is dropped.
        """
        fresh: dict[str, TaskResult] = {}
        for result in results:
            if result.task_id in self.spooled or result.task_id in fresh:
                continue
            fresh[result.task_id] = result
        for task_id in fresh:
            self.held.discard(task_id)
            self.refused.discard(task_id)
            self.spooled.add(task_id)
        return [StoreResults(tuple(fresh.values()))] if fresh else []

    def stored(self, task_ids: Sequence[str]) -> list[Action]:
        """``ResultsStored``: the service has them durably."""
        gone = tuple(t for t in task_ids if t in self.spooled)
        self.spooled.difference_update(gone)
        return [ForgetResults(gone)] if gone else []

    def hello_accepted(self) -> list[Action]:
        """A (re)connected service: send every result it has not acknowledged."""
        return [ResendResults(tuple(sorted(self.spooled)))] if self.spooled else []

    @property
    def outstanding(self) -> int:
        """Tasks held by the executor."""
        return len(self.held)


class ResultWindow:
    """Which results go to the service now, and which wait to go together. Pure.

    At most ``size`` ``TaskResults`` messages are unacknowledged at once. While
    the service is busy storing them, results that complete meanwhile wait in
    the outbox and leave as one bigger batch (one fsync here, one commit there)
    when a ``ResultsStored`` frees the window; an idle endpoint sends each result
    at once. Without a connection everything leaves at once (to the spool only).

    Args:
        size: unacknowledged messages at most (>= 1).
    """

    def __init__(self, size: int = 2) -> None:
        if size < 1:
            raise ValueError(f"window size must be >= 1, got {size}")
        self.size = size
        self.outbox: list[TaskResult] = []
        self._in_flight: list[set[str]] = []   # per message sent: the ids not yet acknowledged

    def add(self, results: Iterable[TaskResult]) -> None:
        self.outbox.extend(results)

    def take(self, connected: bool, max_bytes: int = 1 << 62) -> tuple[TaskResult, ...]:
        """The batch to spool (and send, if ``connected``) now; empty while the window is full.

        A batch stops once its payloads reach ``max_bytes`` (it holds at least one result); the rest
        stays for the next call.
        """
        self._in_flight = [ids for ids in self._in_flight if ids]
        if not self.outbox or (connected and len(self._in_flight) >= self.size):
            return ()
        size, end = 0, 0
        while end < len(self.outbox) and (end == 0 or size < max_bytes):
            size += len(self.outbox[end].payload)
            end += 1
        batch, self.outbox = tuple(self.outbox[:end]), self.outbox[end:]
        return batch

    def sent(self, batch: Sequence[TaskResult]) -> None:
        self._in_flight.append({r.task_id for r in batch})

    def stored(self, task_ids: Iterable[str]) -> None:
        gone = set(task_ids)
        for ids in self._in_flight:
            ids.difference_update(gone)

    def reset(self) -> None:
        """A new connection, or results re-sent for being stale: nothing is on its way any more."""
        self._in_flight.clear()

    @property
    def in_flight(self) -> int:
        return sum(1 for ids in self._in_flight if ids)
