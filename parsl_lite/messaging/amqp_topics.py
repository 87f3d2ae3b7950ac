"""Topics on RabbitMQ: a topic exchange, drops counted through its alternate exchange, losses by sequence gaps.

::

    publish ──▶ [parsl_lite.topic-exchange (topic)] ──bound──▶ parsl_lite.sub.<id> (a subscription's) ──▶ recv
                        │ no binding matched
                        ▼ alternate-exchange
                [parsl_lite.unrouted (fanout)] ──▶ parsl_lite.unrouted (lazy queue): its length + what was
                                                   trimmed (the counters stream) = dropped_no_listener

- A subscription's queue is named (``parsl_lite.sub.<uuid>``), auto-deleted when its consumer goes (the
  process ends or closes it), capped at the high-water mark with ``x-max-length`` (RabbitMQ drops the oldest).
  It is entered in the listeners registry (a stream, ``amqp_streams``) so ``stats()`` can count listeners.
- Each message carries its publisher's id and a sequence number per topic (headers), so a subscriber sees
  the messages its full queue dropped, and reports them (``ReportLoss``: the counters stream).
- The unrouted queue keeps messages on disk (lazy); a publisher trims it every ``TRIM_PERIOD_S`` when it holds
  more than ``TRIM_AT`` (purge, then add the purged count to the durable counter), and adds what it published
  to the ``published`` counter (so a count shows within ``TRIM_PERIOD_S`` + the keeper's period).
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Optional

import pika

from parsl_lite.messaging import protocol as p

if TYPE_CHECKING:
    from parsl_lite.messaging.amqp import AmqpClient

logger = logging.getLogger(__name__)

TOPIC_EXCHANGE = "parsl_lite.topic-exchange"
UNROUTED = "parsl_lite.unrouted"               # the alternate exchange (fanout) and its queue
SUBSCRIPTION_PREFIX = "parsl_lite.sub."
TRIM_AT = 10_000
PUBLISHED = "published"                        # the counter (amqp.COUNTERS) of messages published
TRIM_PERIOD_S = 2.0
_PREFETCH = 400
_UNUSED_QUEUE_EXPIRES_MS = 3_600_000           # a queue whose process died before it consumed


def declare_topology(ch: Any) -> None:
    """The topic exchange, its alternate exchange and the unrouted queue (idempotent)."""
    ch.exchange_declare(UNROUTED, exchange_type="fanout", durable=True)
    ch.queue_declare(UNROUTED, durable=True, arguments={"x-queue-mode": "lazy"})
    ch.queue_bind(UNROUTED, UNROUTED)
    ch.exchange_declare(TOPIC_EXCHANGE, exchange_type="topic", durable=True,
                        arguments={"alternate-exchange": UNROUTED})


def routing_key(topic: str) -> str:
    """Hex: no ``.`` word separators or ``*``/``#`` wildcards, so a binding matches its topic exactly."""
    return p.topic_key(topic)[1:-1].hex()


class AmqpPublisher:
    """A thread's publisher: plain publishes (no confirms: never waits for the server) to the topic exchange."""

    def __init__(self, client: "AmqpClient") -> None:
        self.pid = os.getpid()
        self._client = client
        self.lock = threading.RLock()
        self._connect()
        self.publisher_id = random.getrandbits(63)
        self._seqs: dict[str, int] = {}
        self._unflushed = 0                 # published since the last flush into the counters stream
        self._next_trim = time.monotonic() + TRIM_PERIOD_S

    def _connect(self) -> None:
        self._conn = pika.BlockingConnection(self._client.params)
        self._ch = self._conn.channel()
        declare_topology(self._ch)
        self._client.opened(self)

    def keep(self) -> bool:
        if not self._conn.is_open:
            return False
        self._conn.process_data_events(0)
        if self._unflushed and time.monotonic() >= self._next_trim:
            self._housekeeping()                # the last messages of a burst are counted too
        return True

    def disconnect(self) -> None:
        if self._conn.is_open:
            self._conn.close()

    def _housekeeping(self) -> None:
        """Add what was published to the durable count; trim the unrouted queue (every ``TRIM_PERIOD_S``)."""
        self._next_trim = time.monotonic() + TRIM_PERIOD_S
        published, self._unflushed = self._unflushed, 0
        try:
            if published:
                self._client.count(PUBLISHED, published)
            self._client.trim_unrouted(TRIM_AT)
        except Exception as exc:            # counting must never break a publisher
            logger.info("could not count published or trim the unrouted queue: %r", exc)

    def send(self, key: bytes, flags: int, body: bytes) -> None:
        topic = p.key_topic(key)
        seq = self._seqs[topic] = self._seqs.get(topic, 0) + 1
        headers = {"flags": flags, "pub": self.publisher_id, "seq": seq}
        props = pika.BasicProperties(headers=headers)
        with self.lock:
            try:
                self._ch.basic_publish(TOPIC_EXCHANGE, routing_key(topic), body, props)
                self._conn.process_data_events(0)
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError,
                    pika.exceptions.ConnectionWrongStateError, pika.exceptions.ChannelWrongStateError):
                self._connect()                     # closed by RabbitMQ meanwhile: once more on a new one
                self._ch.basic_publish(TOPIC_EXCHANGE, routing_key(topic), body, props)
            self._unflushed += 1
        if time.monotonic() >= self._next_trim:
            self._housekeeping()


class AmqpSubscription:
    """A named queue bound to the topic: live once the bind returns; gone when its consumer goes."""

    def __init__(self, client: "AmqpClient", topic: str, max_length: int) -> None:
        self._client, self.topic = client, topic
        self.lock = threading.RLock()
        self._conn = pika.BlockingConnection(client.params)
        self._ch = self._conn.channel()
        declare_topology(self._ch)
        self.queue = SUBSCRIPTION_PREFIX + uuid.uuid4().hex
        self._ch.queue_declare(self.queue, auto_delete=True,
                               arguments={"x-max-length": max_length, "x-expires": _UNUSED_QUEUE_EXPIRES_MS})
        self._ready: list[tuple[int, int, int, int, bytes]] = []   # (delivery tag, publisher, seq, flags, body)
        self._unacked = 0
        # manual acks with a prefetch: the backlog stays in the capped queue (auto-acked deliveries would pile
        # up in this process instead, and x-max-length would never drop anything)
        self._ch.basic_qos(prefetch_count=min(_PREFETCH, max_length))
        self._ch.basic_consume(self.queue, self._on_message, auto_ack=False)
        self._ch.queue_bind(self.queue, TOPIC_EXCHANGE, routing_key=routing_key(topic))
        client.register_listener(topic, self.queue)
        client.opened(self)          # its heartbeats go on while the listener's loop is busy elsewhere

    def keep(self) -> bool:
        if not self._conn.is_open:
            return False
        self._conn.process_data_events(0)
        return True

    def _on_message(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        headers = props.headers or {}
        publisher, seq = headers.get("pub"), headers.get("seq")
        if not (isinstance(publisher, int) and isinstance(seq, int)):
            publisher = seq = 0
        self._ready.append((method.delivery_tag, publisher, seq, int(headers.get("flags", 0)), body))

    def recv_meta(self, timeout_s: float) -> Optional[tuple[int, int, int, bytes]]:
        """``(publisher, seq, flags, body)`` of the next message (0, 0 when it has none), or None after
        ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while not self._ready:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._conn.process_data_events(time_limit=min(left, 0.5))
            tag, publisher, seq, flags, body = self._ready.pop(0)
            self._unacked += 1
            if not self._ready or self._unacked >= _PREFETCH // 4:
                self._ch.basic_ack(tag, multiple=True)
                self._unacked = 0
        return publisher, seq, flags, body

    def disconnect(self) -> None:
        with self.lock:
            if self._conn.is_open:
                self._conn.close()

    def close(self) -> None:
        """Stop listening: the queue goes with the connection; the listener entry is removed."""
        self.disconnect()
        try:
            self._client.unregister_listener(self.topic, self.queue)
        except Exception as exc:
            logger.info("could not remove the listener entry of %r: %r", self.topic, exc)
