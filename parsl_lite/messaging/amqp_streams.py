"""Keyed state on RabbitMQ: tables, counters and registries as durable stream queues (RabbitMQ >= 3.9).

A stream is an append-only log that any number of readers read from an offset
without consuming it. A write appends one record (headers: ``key``, and
``deleted`` for a tombstone; body: the value) with a publisher confirm, so it
is durable when ``put`` returns. A read appends a *marker* (a record of its own
id), then reads from the offset where this client stopped last time up to its
marker, folding the records into the client's cached state: everything
confirmed before the read began is seen (RabbitMQ tells a stream's end to no
AMQP client: the queue's message count is 0 for streams), and later reads
only read what was appended since.

::

    put:   publish(stream, {key}, value) ──confirm──▶ [stream: r0 r1 r2 ... ]
    read:  publish(stream, {marker: id}) ──confirm──▶ [ ... r7 r8 m(id) ]
           consume from cached offset  ──▶ StreamFold.apply(r7), apply(r8), stop at m(id)

:class:`StreamFold` is the pure part (records in, state out); the I/O is in
:func:`read_to_marker`. A table folds last-write-wins; counters sum deltas.
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Optional

import pika

from parsl_lite.messaging.errors import BrokerUnavailable

STREAM_ARGS = {"x-queue-type": "stream"}
READ_TIMEOUT_S = 30.0
_PREFETCH = 500          # stream consumers must set a prefetch; acked in halves


class StreamFold:
    """The state of one stream read so far: ``last`` (key -> latest body; tombstones delete) or ``sum``
    (key -> total of integer bodies). Records before ``next_offset`` were applied; later reads skip them."""

    def __init__(self, mode: str) -> None:
        if mode not in ("last", "sum"):
            raise ValueError(f"fold mode {mode!r}: need 'last' or 'sum'")
        self.mode = mode
        self.next_offset = 0
        self.state: dict[str, Any] = {}

    def apply(self, offset: int, headers: dict[str, Any], body: bytes) -> None:
        """Fold one record (a marker, or a record already applied, changes nothing but the offset)."""
        if offset < self.next_offset:
            return
        self.next_offset = offset + 1
        key = headers.get("key")
        if not isinstance(key, str):
            return                              # a reader's marker
        if self.mode == "sum":
            self.state[key] = self.state.get(key, 0) + int(body or b"0")
        elif headers.get("deleted"):
            self.state.pop(key, None)
        else:
            self.state[key] = body


def record(key: str, deleted: bool = False) -> pika.BasicProperties:
    headers: dict[str, Any] = {"key": key}
    if deleted:
        headers["deleted"] = True
    return pika.BasicProperties(delivery_mode=2, headers=headers)


def marker() -> tuple[str, pika.BasicProperties]:
    mark = uuid.uuid4().hex
    return mark, pika.BasicProperties(delivery_mode=2, headers={"marker": mark})


def read_to_marker(conn: Any, ch: Any, stream: str, fold: StreamFold, mark: str,
                   timeout_s: float = READ_TIMEOUT_S) -> None:
    """Consume ``stream`` from ``fold.next_offset`` into ``fold`` until the record carrying ``mark``.

    Raises:
        BrokerUnavailable: the marker did not come within ``timeout_s``.
    """
    done = threading.Event()
    unacked = [0]

    def on_record(channel: Any, method: Any, props: Any, body: bytes) -> None:
        headers = props.headers or {}
        fold.apply(int(headers.get("x-stream-offset", fold.next_offset)), headers, body)
        unacked[0] += 1
        if unacked[0] >= _PREFETCH // 2:
            channel.basic_ack(method.delivery_tag, multiple=True)
            unacked[0] = 0
        if headers.get("marker") == mark:
            done.set()

    ch.basic_qos(prefetch_count=_PREFETCH)
    tag = ch.basic_consume(stream, on_record, auto_ack=False, arguments={"x-stream-offset": fold.next_offset})
    deadline = time.monotonic() + timeout_s
    try:
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerUnavailable(f"RabbitMQ: no end of stream {stream!r} within {timeout_s:g} s")
            conn.process_data_events(time_limit=min(left, 0.2))
    finally:
        if ch.is_open:
            ch.basic_cancel(tag)


class StreamStates:
    """This client's folds, one per stream, shared by its threads (each reads through its own channel)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folds: dict[str, tuple[threading.Lock, StreamFold]] = {}

    def read(self, stream: str, mode: str, catch_up: Callable[[StreamFold], None]) -> dict[str, Any]:
        """A copy of ``stream``'s state after ``catch_up(fold)`` brought it to now."""
        with self._lock:
            entry = self._folds.get(stream)
            if entry is None or entry[1].mode != mode:
                entry = self._folds[stream] = (threading.Lock(), StreamFold(mode))
        with entry[0]:                       # one catch-up per stream at a time: folds apply in offset order
            catch_up(entry[1])
            return dict(entry[1].state)

    def forget(self, stream: Optional[str] = None) -> None:
        with self._lock:
            if stream is None:
                self._folds.clear()
            else:
                self._folds.pop(stream, None)
