"""Durable queues (FIFO, at-least-once, bounded-wait reads) and tables (a small keyed store) on the broker.

Messages are any picklable objects (``parsl_lite.serialize``); the size limit
applies to their serialized bytes and is checked here, before anything is
sent, and again by the broker.
"""
from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from parsl_lite.messaging import protocol as p
from parsl_lite.messaging.client import GET_SLACK_S, BrokerClient, default_client
from parsl_lite.messaging.errors import MessageTooLarge
from parsl_lite.serialize import deserialize, serialize_for_transfer as serialize


class _Ids:
    """Message ids: a random prefix per process (new after a fork) and a counter; one ``urandom`` per process,
    not one per message."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.prefix, self.count = uuid.uuid4().hex, itertools.count()

    def __call__(self, n: int) -> tuple[str, ...]:
        prefix, count = self.prefix, self.count
        return tuple([f"{prefix}{next(count):x}" for _ in range(n)])


_new_ids = _Ids()


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError(f"{what} {value!r}: need a non-empty string without NUL characters")
    return value


@dataclass
class Message:
    """A message handed to this reader. ``ack()`` when done with it; otherwise it comes back to the queue
    after the visibility timeout (``nack()``: at once) and, after ``max_receives`` deliveries, goes to the
    dead-letter queue."""
    body: Any
    message_id: str
    receive_count: int
    enqueued_at: float
    queue: "Queue" = field(repr=False)
    receipt: int = field(repr=False, default=0)

    def ack(self) -> bool:
        """Delete the message. False if this delivery had expired (the message went back to the queue)."""
        return self.queue._settle([self.receipt], ack=True) == 1

    def nack(self) -> bool:
        """Give the message back now (counted as a receive)."""
        return self.queue._settle([self.receipt], ack=False) == 1


class Queue:
    """A named queue on the broker, created if missing (see :func:`parsl_lite.messaging.queue`)."""

    def __init__(self, name: str, visibility_timeout_s: Optional[float] = None, max_receives: Optional[int] = None,
                 max_bytes: Optional[int] = None, create: bool = True, client: Optional[BrokerClient] = None) -> None:
        self.name = _name(name, "queue name")
        for what, value in (("visibility_timeout_s", visibility_timeout_s), ("max_receives", max_receives),
                            ("max_bytes", max_bytes)):
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"{what}: need a number > 0, got {value!r}")
        self._client = client or default_client()
        info = self._client.request(lambda rid, tok: p.DeclareQueue(
            rid, tok, self.name, create, float(visibility_timeout_s or 0), int(max_receives or 0), int(max_bytes or 0)))
        assert isinstance(info, p.QueueInfo)
        self._info = info

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    @property
    def visibility_timeout_s(self) -> float:
        return self._info.visibility_timeout_s

    @property
    def max_receives(self) -> int:
        return self._info.max_receives

    @property
    def max_bytes(self) -> int:
        return self._info.max_bytes

    @property
    def dead_letter_queue(self) -> str:
        return self._info.dead_letter_queue

    def put(self, message: Any) -> str:
        """Store ``message`` durably (returns once the broker has committed it); its message id.

        Raises:
            MessageTooLarge: its serialized size is over the queue's ``max_bytes`` (nothing is sent).
            NoSuchQueue: the queue was deleted.
        """
        return self.put_many([message])[0]

    def put_many(self, messages: Iterable[Any]) -> list[str]:
        """Store several messages in one request (one commit); their ids, in order."""
        bodies = [serialize(m, "message") for m in messages]
        for body in bodies:
            if len(body) > self.max_bytes:
                raise MessageTooLarge(f"queue {self.name!r}", len(body), self.max_bytes)
        ids = _new_ids(len(bodies))
        sizes, blob = p.join_bodies(bodies)
        self._client.request(lambda rid, tok: p.PutMessages(rid, tok, self.name, ids, sizes, blob))
        return list(ids)

    def get(self, timeout: float = 0.0) -> Optional[Message]:
        """The oldest ready message, waiting up to ``timeout`` seconds for one; None if none came.

        Raises:
            NoSuchQueue: the queue was deleted (also while waiting).
        """
        got = self.get_many(1, timeout)
        return got[0] if got else None

    def get_many(self, max_messages: int = 10, timeout: float = 0.0) -> list[Message]:
        """Up to ``max_messages`` messages: as many as are ready, or the first to come within ``timeout``."""
        if not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"timeout: need seconds >= 0, got {timeout!r}")
        at_broker = timeout - GET_SLACK_S if timeout > 2 * GET_SLACK_S else float(timeout)
        reply = self._client.get(lambda rid, tok: p.GetMessages(rid, tok, self.name, int(max_messages),
                                                                float(at_broker)), float(timeout))
        if reply is None:
            return []
        bodies = p.split_bodies(reply.sizes, reply.blob)
        return [Message(deserialize(body), mid, count, at, self, receipt) for body, mid, receipt, count, at
                in zip(bodies, reply.message_ids, reply.receipts, reply.receive_counts, reply.enqueued_at)]

    def ack_many(self, messages: Iterable[Message]) -> int:
        """Ack several messages in one request; how many were still held by this reader."""
        return self._settle([m.receipt for m in messages], ack=True)

    def _settle(self, receipts: list[int], ack: bool) -> int:
        reply = self._client.request(lambda rid, tok: p.Settle(rid, tok, self.name, tuple(receipts), ack))
        assert isinstance(reply, p.Done)
        return reply.count

    def info(self) -> p.QueueInfo:
        """Length (ready + in flight), in flight, age of the oldest message, settings."""
        reply = self._client.request(lambda rid, tok: p.QueueStatsRequest(rid, tok, self.name))
        assert isinstance(reply, p.QueueInfo)
        self._info = reply
        return reply

    def __len__(self) -> int:
        return self.info().length

    @property
    def oldest_age_s(self) -> float:
        return self.info().oldest_age_s

    def delete(self) -> int:
        """Delete the queue and its messages; how many were dropped."""
        return delete_queue(self.name, self._client)


def delete_queue(name: str, client: Optional[BrokerClient] = None) -> int:
    """Delete a queue and its messages (readers waiting on it get :class:`NoSuchQueue`).

    Raises:
        NoSuchQueue: there is no such queue.
    """
    client = client or default_client()
    reply = client.request(lambda rid, tok: p.DeleteQueue(rid, tok, _name(name, "queue name")))
    assert isinstance(reply, p.Done)
    return reply.count


class Table:
    """A keyed store of picklable values on the broker (durable, in its SQLite file)."""

    def __init__(self, name: str, client: Optional[BrokerClient] = None) -> None:
        self.name = _name(name, "table name")
        self._client = client or default_client()

    def __repr__(self) -> str:
        return f"Table({self.name!r})"

    def put(self, key: str, value: Any) -> None:
        blob = serialize(value, f"value for key {key!r}")
        key = _name(key, "key")
        self._client.request(lambda rid, tok: p.TablePut(rid, tok, self.name, key, blob))

    def get(self, key: str, default: Any = None) -> Any:
        reply = self._client.request(lambda rid, tok: p.TableGet(rid, tok, self.name, _name(key, "key")))
        assert isinstance(reply, p.TableValue)
        return deserialize(reply.value) if reply.found else default

    def scan(self, prefix: str = "") -> dict[str, Any]:
        """Every row whose key starts with ``prefix``, in key order."""
        reply = self._client.request(lambda rid, tok: p.TableScan(rid, tok, self.name, str(prefix)))
        assert isinstance(reply, p.TableRows)
        return {k: deserialize(v) for k, v in zip(reply.keys, p.split_bodies(reply.sizes, reply.blob))}
