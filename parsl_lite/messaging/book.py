"""A queue's bookkeeping: FIFO order, visibility deadlines, receive counts, dead-lettering, the size limit.

Pure (DESIGN rule 2): no SQLite, sockets or clocks. The broker feeds it
events with the time (``now``, UNIX seconds, so ages survive a restart) and
applies the actions it returns to the store::

    put(seq, id, size, now)        -> refuses an oversized message (MessageTooLarge) before it is stored
    receive(now, n)                -> [Deliver]           (store: the new receive count)
    settle(receipt, ack, now)      -> [Delete] | [Requeue] | [DeadLetter] | []  (stale receipt: nothing)
    settle_many(receipts, ack, now) -> the actions of each settle, in order
    expire(now)                    -> [Requeue | DeadLetter, ...]   (deliveries past their deadline)

Messages are ordered by ``seq`` (the store's row id): a message that comes
back (nack, expiry) goes ahead of every younger one. A message received
``max_receives`` times and not acked is dead-lettered instead of coming back.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Iterable, Optional, Union

from parsl_lite.messaging.errors import MessageTooLarge

DEFAULT_VISIBILITY_TIMEOUT_S = 30.0
DEFAULT_MAX_BYTES = 1024 * 1024
DEAD_LETTER_SUFFIX = ".dead"


@dataclass(frozen=True)
class QueueSettings:
    """Args:
        visibility_timeout_s: how long a delivered, unacknowledged message stays invisible to other readers.
        max_receives: deliveries before a message not acked is dead-lettered; 0 means never.
        max_bytes: the largest message body accepted by ``put``.
        dead_letter_queue: where dead-lettered messages go ("" for none: they are dropped).
    """
    visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S
    max_receives: int = 0
    max_bytes: int = DEFAULT_MAX_BYTES
    dead_letter_queue: str = ""

    def __post_init__(self) -> None:
        if not self.visibility_timeout_s > 0:
            raise ValueError(f"visibility_timeout_s: need > 0, got {self.visibility_timeout_s!r}")
        if self.max_receives < 0:
            raise ValueError(f"max_receives: need >= 0 (0: never dead-letter), got {self.max_receives!r}")
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes: need > 0, got {self.max_bytes!r}")


@dataclass(slots=True)
class Entry:
    """One stored message, as the book knows it (the body stays in the store)."""
    seq: int
    message_id: str
    size: int
    enqueued_at: float
    receive_count: int = 0
    receipt: int = 0               # of the current delivery; 0 when ready
    deadline: float = 0.0


@dataclass(slots=True)
class Deliver:                     # not frozen: a batch of 100 makes 100 of them, and frozen costs 2x
    seq: int
    message_id: str
    receipt: int
    receive_count: int
    enqueued_at: float


@dataclass(slots=True)
class Delete:
    seq: int


@dataclass(frozen=True)
class Requeue:
    seq: int


@dataclass(frozen=True)
class DeadLetter:
    entry: Entry
    dead_letter_queue: str


Action = Union[Deliver, Delete, Requeue, DeadLetter]


@dataclass
class QueueBook:
    """The state of one queue. Receipts count up from ``first_receipt``: the broker starts them past any
    receipt its previous run handed out, so an ack of a delivery made before a restart settles nothing."""
    name: str
    settings: QueueSettings = field(default_factory=QueueSettings)
    first_receipt: int = 1
    _entries: dict[int, Entry] = field(default_factory=dict)
    _ids: dict[str, int] = field(default_factory=dict)               # message_id -> seq, of those held
    _ready: list[int] = field(default_factory=list)                 # heap of seqs
    _deadlines: list[tuple[float, int]] = field(default_factory=list)  # heap of (deadline, receipt)
    _by_receipt: dict[int, int] = field(default_factory=dict)        # receipt -> seq
    dead_lettered: int = 0

    def __post_init__(self) -> None:
        self._next_receipt = self.first_receipt

    # ------------------------------------------------------------ events

    def check_size(self, size: int) -> None:
        """Raises:
            MessageTooLarge: ``size`` is over the queue's ``max_bytes``.
        """
        if size > self.settings.max_bytes:
            raise MessageTooLarge(f"queue {self.name!r}", size, self.settings.max_bytes)

    def put(self, seq: int, message_id: str, size: int, now: float, receive_count: int = 0) -> None:
        """A message was stored (or loaded from the store at start, with its ``receive_count``)."""
        self._entries[seq] = Entry(seq, message_id, size, now, receive_count)
        self._ids[message_id] = seq
        heapq.heappush(self._ready, seq)

    def holds(self, message_id: str) -> bool:
        """A message of this id is held (a put sent again after its reply was lost: store it once)."""
        return message_id in self._ids

    def receive(self, now: float, max_messages: int = 1) -> list[Deliver]:
        """Hand out up to ``max_messages`` ready messages, oldest first, each until ``now + visibility``."""
        out: list[Deliver] = []
        ready, entries, by_receipt, deadlines = self._ready, self._entries, self._by_receipt, self._deadlines
        deadline = now + self.settings.visibility_timeout_s
        receipt = self._next_receipt
        while ready and len(out) < max_messages:
            entry = entries.get(heapq.heappop(ready))
            if entry is None or entry.receipt:
                continue  # deleted, or a stale heap entry
            entry.receive_count += 1
            entry.receipt, entry.deadline = receipt, deadline
            by_receipt[receipt] = entry.seq
            heapq.heappush(deadlines, (deadline, receipt))
            out.append(Deliver(entry.seq, entry.message_id, receipt, entry.receive_count, entry.enqueued_at))
            receipt += 1
        self._next_receipt = receipt
        return out

    def settle(self, receipt: int, ack: bool, now: float) -> list[Action]:
        """Ack deletes; nack gives the message back at once (or dead-letters it). A stale receipt
        (the delivery expired and the message went back) does nothing: the later delivery holds it."""
        return self.settle_many((receipt,), ack, now)

    def settle_many(self, receipts: Iterable[int], ack: bool, now: float) -> list[Action]:
        """:meth:`settle` of each receipt, the actions in order."""
        out: list[Action] = []
        by_receipt, entries, ids = self._by_receipt, self._entries, self._ids
        for receipt in receipts:
            seq = by_receipt.pop(receipt, None)
            if seq is None:
                continue
            if ack:
                ids.pop(entries.pop(seq).message_id, None)
                out.append(Delete(seq))
            else:
                out.append(self._give_back(entries[seq]))
        return out

    def expire(self, now: float) -> list[Action]:
        """Deliveries whose deadline passed come back (or are dead-lettered)."""
        out: list[Action] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, receipt = heapq.heappop(self._deadlines)
            seq = self._by_receipt.pop(receipt, None)
            if seq is not None:
                out.append(self._give_back(self._entries[seq]))
        return out

    def _give_back(self, entry: Entry) -> Action:
        entry.receipt, entry.deadline = 0, 0.0
        limit = self.settings.max_receives
        if limit and entry.receive_count >= limit:
            del self._entries[entry.seq]
            self._ids.pop(entry.message_id, None)
            self.dead_lettered += 1
            return DeadLetter(entry, self.settings.dead_letter_queue)
        heapq.heappush(self._ready, entry.seq)
        return Requeue(entry.seq)

    # ------------------------------------------------------------ views

    def next_deadline(self) -> Optional[float]:
        """The earliest visibility deadline of a live delivery, or None."""
        while self._deadlines and self._deadlines[0][1] not in self._by_receipt:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def has_ready(self) -> bool:
        while self._ready:
            entry = self._entries.get(self._ready[0])
            if entry is not None and not entry.receipt:
                return True
            heapq.heappop(self._ready)
        return False

    @property
    def length(self) -> int:
        """Messages held: ready and in flight."""
        return len(self._entries)

    @property
    def in_flight(self) -> int:
        return len(self._by_receipt)

    def oldest_age_s(self, now: float) -> float:
        """Age of the oldest message held (0.0 when empty)."""
        if not self._entries:
            return 0.0
        return max(0.0, now - min(e.enqueued_at for e in self._entries.values()))
