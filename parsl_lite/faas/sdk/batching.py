"""When the executor's queued submissions go out: the decisions alone, no threads, clocks or sockets.

The executor feeds :class:`SubmitQueue` its events (a task queued, the
interval's timer fired, someone waits on a future, shutdown) under its lock
and carries out what comes back (arm the timer, send these batches) on the
client's loop (DESIGN rule 2: pure cores, thin shells).
"""
from __future__ import annotations

import enum
from typing import Generic, TypeVar

T = TypeVar("T")


class Next(enum.Enum):
    """What the executor must do after a task was queued."""
    NOTHING = "nothing"          # a timer is armed already; wait for it (or a full batch)
    ARM_TIMER = "arm_timer"      # the first task of a batch: send it batch_interval from now
    SEND_FULL = "send_full"      # a batch is full: send the full batches now
    SEND_ALL = "send_all"        # batching is off: send at once


class SubmitQueue(Generic[T]):
    """Queued submissions, cut into batches of at most ``batch_size``.

    Args:
        batch_size: the most tasks in one batch (>= 1).
        batch_enabled: False sends every task as soon as it is queued.
    """

    def __init__(self, batch_size: int, batch_enabled: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.batch_enabled = batch_enabled
        self._items: list[T] = []
        self.timer_armed = False

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> Next:
        """Queue ``item``; what to do now."""
        self._items.append(item)
        if not self.batch_enabled:
            return Next.SEND_ALL
        if len(self._items) % self.batch_size == 0:
            return Next.SEND_FULL
        if not self.timer_armed:
            self.timer_armed = True
            return Next.ARM_TIMER
        return Next.NOTHING

    def take(self, full_only: bool = False) -> list[list[T]]:
        """The batches to send now: every queued item, or (``full_only``) only the full batches.

        The timer stays armed while items are left (they go when it fires); with none left it is
        no longer needed (``timer_armed`` False: the executor cancels it).
        """
        cut = len(self._items) - len(self._items) % self.batch_size if full_only else len(self._items)
        taken, self._items = self._items[:cut], self._items[cut:]
        if not self._items:
            self.timer_armed = False
        return [taken[i:i + self.batch_size] for i in range(0, len(taken), self.batch_size)]

    def clear(self) -> list[T]:
        """Drop every queued item (shutdown with ``cancel_futures``); the dropped items."""
        dropped, self._items = self._items, []
        self.timer_armed = False
        return dropped
