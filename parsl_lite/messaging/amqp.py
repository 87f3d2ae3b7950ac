"""The same API on a RabbitMQ server (pika), chosen when ``PARSL_LITE_BROKER_URL`` is an ``amqp://`` URL.

:class:`AmqpClient` answers the requests of ``protocol.py`` that ``queues.py``
sends (``DeclareQueue``, ``PutMessages``, ``GetMessages``, ``Settle``, ...)
with AMQP operations, and replies with the same reply messages, so
:class:`~parsl_lite.messaging.queues.Queue` runs unchanged on it. Topics have
their own two classes here (a topic exchange).

Mapping (and where it differs from our broker; the README says so too):

- a queue is a durable **quorum** queue; ``put`` is a persistent publish with
  publisher confirms (returns once RabbitMQ has it); ``get`` polls
  ``basic.get`` until a message or the timeout; ``ack``/``nack`` are
  ``basic.ack``/``basic.nack(requeue)``.
- ``max_receives`` is ``x-delivery-limit`` (= max_receives - 1 returns), fixed when the
  queue is first created (RabbitMQ refuses other arguments later), with a
  dead-letter exchange routing to ``NAME.dead``. Quorum queues put a returned
  message at the back, not the front (our broker keeps FIFO order).
- the visibility timeout (like ``max_bytes``) is this client's setting, not the queue's: a delivery not settled within
  it is nacked (requeued) at this client's next call, or when its connection
  closes (the process dies). RabbitMQ 3.10 has no per-queue consumer timeout.
- ``length`` counts ready messages plus this client's unsettled ones; the
  age of the oldest message is not known (``nan``).
- a message must be acked from the thread that got it (pika channels are per thread).
- tables are not offered on RabbitMQ (:class:`BrokerError`, code ``unsupported``).
- topics: one ``topic`` exchange; a subscription is an exclusive queue bound to the
  topic, live when the bind returns. Messages nobody hears are dropped by RabbitMQ,
  not counted; a slow subscriber's queue is capped by ``x-max-length`` (oldest dropped).
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from typing import Any, Callable, Optional

import pika

from parsl_lite.messaging import protocol as p
from parsl_lite.messaging.book import DEAD_LETTER_SUFFIX, DEFAULT_MAX_BYTES, DEFAULT_VISIBILITY_TIMEOUT_S
from parsl_lite.messaging.errors import BrokerError, BrokerUnavailable, NoSuchQueue

logger = logging.getLogger(__name__)

TOPIC_EXCHANGE = "parsl_lite.topics"
_POLL_S = (0.002, 0.05)           # basic.get back-off: first and longest pause


class AmqpClient:
    """One RabbitMQ server; a connection per thread (pika's are not thread-safe), a new one after fork."""

    def __init__(self, url: str, where: str = "") -> None:
        self.url, self.where, self.token = url, where, ""
        self._params = pika.URLParameters(url)
        self._local = threading.local()
        self._pid = os.getpid()
        self._ids = itertools.count(1)
        self._settings: dict[str, tuple[float, int, int]] = {}

    # ------------------------------------------------------------ connections

    def thread_local(self) -> threading.local:
        if os.getpid() != self._pid:
            self._pid, self._local = os.getpid(), threading.local()
        return self._local

    def channel(self) -> Any:
        local = self.thread_local()
        ch = getattr(local, "channel", None)
        if ch is None or ch.is_closed:
            conn = getattr(local, "connection", None)
            if conn is None or conn.is_closed:
                try:
                    conn = local.connection = pika.BlockingConnection(self._params)
                except pika.exceptions.AMQPError as exc:
                    raise BrokerUnavailable(f"RabbitMQ at {self.url} (from {self.where}): {exc!r}") from None
                local.held = {}
            ch = local.channel = conn.channel()
            ch.confirm_delivery()
            local.held = {}
        return ch

    def close(self) -> None:
        conn = getattr(self.thread_local(), "connection", None)
        if conn is not None and conn.is_open:
            conn.close()

    # ------------------------------------------------------------ the requests queues.py sends

    def welcome(self) -> p.Welcome:
        self.channel()
        return p.Welcome(0, "rabbitmq", p.PROTOCOL_VERSION, self.url, self.url)

    def request(self, make: Callable[[int, str], p.Request]) -> p.Reply:
        req = make(next(self._ids), "")
        handler = {p.DeclareQueue: self._declare, p.DeleteQueue: self._delete, p.QueueStatsRequest: self._stats,
                   p.PutMessages: self._put, p.Settle: self._settle, p.StatsRequest: self._broker_stats,
                   p.ReportLoss: lambda r: p.Done(r.request_id, 0)}.get(type(req))
        if handler is None:
            raise BrokerError("unsupported", f"{req.kind} is not offered on RabbitMQ (tables need the parsl_lite "
                                             f"broker: `parsl-lite broker start`)")
        self._expire()
        return self._guard(req, handler)

    def get(self, make: Callable[[int, str], p.GetMessages], timeout_s: float) -> Optional[p.Delivered]:
        req = make(next(self._ids), "")
        self._expire()
        return self._guard(req, lambda r: self._get(r, timeout_s))  # type: ignore[return-value]

    def stats(self) -> dict[str, Any]:
        return self.request(lambda rid, tok: p.StatsRequest(rid, tok)).stats  # type: ignore[union-attr]

    def _guard(self, req: Any, handler: Callable[[Any], p.Reply]) -> p.Reply:
        try:
            return handler(req)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self.thread_local().channel = None
            if exc.reply_code == 404:
                raise NoSuchQueue(getattr(req, "queue", "?")) from None
            raise BrokerError("amqp", f"{exc.reply_code} {exc.reply_text}") from None
        except pika.exceptions.AMQPConnectionError as exc:
            self.thread_local().connection = None
            raise BrokerUnavailable(f"RabbitMQ at {self.url}: {exc!r}") from None

    def _declare(self, req: p.DeclareQueue) -> p.Reply:
        old = self._settings.get(req.queue, (DEFAULT_VISIBILITY_TIMEOUT_S, 0, DEFAULT_MAX_BYTES))
        settings = (req.visibility_timeout_s or old[0], req.max_receives or old[1], req.max_bytes or old[2])
        dead = "" if req.queue.endswith(DEAD_LETTER_SUFFIX) else req.queue + DEAD_LETTER_SUFFIX
        if not req.create or self._exists(req.queue):
            self.channel().queue_declare(req.queue, passive=True)
        else:
            ch = self.channel()
            if dead:
                ch.queue_declare(dead, durable=True, arguments={"x-queue-type": "quorum"})
            arguments: dict[str, Any] = {"x-queue-type": "quorum"}
            if dead:
                arguments.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
            if settings[1]:
                arguments["x-delivery-limit"] = settings[1] - 1
            ch.queue_declare(req.queue, durable=True, arguments=arguments)
        self._settings[req.queue] = settings
        return self._info(req.request_id, req.queue, dead)

    def _exists(self, queue: str) -> bool:
        """Whether ``queue`` exists (a queue's arguments, ``x-delivery-limit`` too, are fixed when it is made)."""
        try:
            self.channel().queue_declare(queue, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker as exc:
            self.thread_local().channel = None   # a failed passive declare closes the channel
            if exc.reply_code != 404:
                raise
            return False

    def _info(self, request_id: int, queue: str, dead: Optional[str] = None) -> p.QueueInfo:
        ready = self.channel().queue_declare(queue, passive=True).method.message_count
        held = sum(1 for q, _, _ in self.thread_local().held.values() if q == queue)
        vt, mr, mb = self._settings.get(queue, (DEFAULT_VISIBILITY_TIMEOUT_S, 0, DEFAULT_MAX_BYTES))
        if dead is None:
            dead = "" if queue.endswith(DEAD_LETTER_SUFFIX) else queue + DEAD_LETTER_SUFFIX
        return p.QueueInfo(request_id, queue, ready + held, held, float("nan"), vt, mr, mb, dead)

    def _stats(self, req: p.QueueStatsRequest) -> p.Reply:
        return self._info(req.request_id, req.queue)

    def _delete(self, req: p.DeleteQueue) -> p.Reply:
        ch = self.channel()
        ch.queue_declare(req.queue, passive=True)      # 404 -> NoSuchQueue, as on our broker
        count = ch.queue_delete(req.queue).method.message_count
        return p.Done(req.request_id, count)

    def _put(self, req: p.PutMessages) -> p.Reply:
        ch = self.channel()
        ch.queue_declare(req.queue, passive=True)      # publishing to a missing queue would drop silently
        for message_id, body in zip(req.message_ids, p.split_bodies(req.sizes, req.blob)):
            ch.basic_publish("", req.queue, body, pika.BasicProperties(delivery_mode=2, message_id=message_id,
                                                                       timestamp=int(time.time())),
                             mandatory=True)
        return p.Done(req.request_id, len(req.message_ids))

    def _get(self, req: p.GetMessages, timeout_s: float) -> p.Delivered:
        ch, local = self.channel(), self.thread_local()
        deadline, pause = time.monotonic() + timeout_s, _POLL_S[0]
        got: list[tuple[Any, Any, bytes]] = []
        while True:
            while len(got) < req.max_messages:
                method, props, body = ch.basic_get(req.queue, auto_ack=False)
                if method is None:
                    break
                got.append((method, props, body))
            if got or time.monotonic() >= deadline:
                break
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, _POLL_S[1])
        vt = self._settings.get(req.queue, (DEFAULT_VISIBILITY_TIMEOUT_S,))[0]
        for method, _, _ in got:
            local.held[method.delivery_tag] = (req.queue, ch, time.monotonic() + vt)
        sizes, blob = p.join_bodies([body for _, _, body in got])
        return p.Delivered(req.request_id, req.queue, tuple(props.message_id or "" for _, props, _ in got),
                           tuple(m.delivery_tag for m, _, _ in got),
                           tuple(1 + int((props.headers or {}).get("x-delivery-count", 0)) for _, props, _ in got),
                           tuple(float(props.timestamp or 0) for _, props, _ in got), sizes, blob)

    def _settle(self, req: p.Settle) -> p.Reply:
        held, done = self.thread_local().held, 0
        for tag in req.receipts:
            entry = held.pop(tag, None)
            if entry is None or entry[1].is_closed:
                continue
            if req.ack:
                entry[1].basic_ack(tag)
            else:
                entry[1].basic_nack(tag, requeue=True)
            done += 1
        return p.Done(req.request_id, done)

    def _expire(self) -> None:
        """Give back this thread's deliveries whose visibility timeout passed (see the module docstring)."""
        held = getattr(self.thread_local(), "held", None)
        if not held:
            return
        now = time.monotonic()
        for tag in [t for t, (_, ch, deadline) in held.items() if deadline <= now]:
            _, ch, _ = held.pop(tag)
            if ch.is_open:
                ch.basic_nack(tag, requeue=True)

    def _broker_stats(self, req: p.StatsRequest) -> p.Reply:
        return p.Stats(req.request_id, {"backend": "rabbitmq", "url": self.url, "queues": {}, "topics": {}})


# ---------------------------------------------------------------- topics

def _routing_key(topic: str) -> str:
    """Hex: no ``.`` word separators or ``*``/``#`` wildcards, so a binding matches its topic exactly."""
    return p.topic_key(topic)[1:-1].hex()


class AmqpPublisher:
    """A thread's publisher: plain publishes (no confirms: never waits for the server) to the topic exchange."""

    def __init__(self, client: AmqpClient) -> None:
        self.pid = os.getpid()
        self._conn = pika.BlockingConnection(client._params)
        self._ch = self._conn.channel()
        self._ch.exchange_declare(TOPIC_EXCHANGE, exchange_type="topic")

    def send(self, key: bytes, flags: int, body: bytes) -> None:
        topic = p.key_topic(key)
        headers = {"flags": flags}
        self._ch.basic_publish(TOPIC_EXCHANGE, _routing_key(topic), body, pika.BasicProperties(headers=headers))
        self._conn.process_data_events(0)


class AmqpSubscription:
    """An exclusive queue bound to the topic: live once the bind returns."""

    def __init__(self, client: AmqpClient, topic: str, max_length: int) -> None:
        self._conn = pika.BlockingConnection(client._params)
        self._ch = self._conn.channel()
        self._ch.exchange_declare(TOPIC_EXCHANGE, exchange_type="topic")
        self._queue = self._ch.queue_declare("", exclusive=True, auto_delete=True,
                                             arguments={"x-max-length": max_length}).method.queue
        self._ch.queue_bind(self._queue, TOPIC_EXCHANGE, routing_key=_routing_key(topic))
        self._ch.basic_qos(prefetch_count=1000)
        self._ready: list[tuple[int, bytes]] = []
        self._ch.basic_consume(self._queue, lambda ch, m, props, body: self._ready.append(
            (int((props.headers or {}).get("flags", 0)), body)), auto_ack=True)

    def recv(self, timeout_s: float) -> Optional[tuple[int, bytes]]:
        """``(flags, body)`` of the next message, or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self._ready:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._conn.process_data_events(time_limit=min(left, 0.5))
        return self._ready.pop(0)

    def close(self) -> None:
        if self._conn.is_open:
            self._conn.close()
