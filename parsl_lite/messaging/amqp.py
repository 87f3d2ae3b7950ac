"""The same API on a RabbitMQ server (pika), chosen when ``PARSL_LITE_BROKER_URL`` is an ``amqp://`` URL.

:class:`AmqpClient` answers the requests of ``protocol.py`` that ``queues.py``
sends (``DeclareQueue``, ``PutMessages``, ``GetMessages``, ``Settle``,
``TablePut``/``TableGet``/``TableScan``, ``ReportLoss``, ``StatsRequest``) with
AMQP operations, and replies with the same reply messages, so ``Queue``,
``Message`` and ``Table`` run unchanged on it. Topics are in ``amqp_topics.py``,
tables, counters and registries (streams) in ``amqp_streams.py``.

Mapping (and where it differs from our broker; the README says so too):

- a queue is a durable **quorum** queue; ``put``/``put_many`` publish
  persistent messages on a channel in confirm mode and wait once for all the
  confirms (mandatory: a deleted queue's return is ``NoSuchQueue``).
- ``get`` takes ready messages (``basic.get`` for one, a consumer with a
  prefetch of as many as are ready for more); when none is ready it waits on a
  consumer with a prefetch of 1 (pushed, no polling) until one comes or the
  timeout. A message arriving in the instant that consumer is cancelled at
  its timeout is given back (pika rejects it: it counts as a receive).
- ``max_receives`` is ``x-delivery-limit`` (= max_receives - 1 returns), fixed when the
  queue is first created (RabbitMQ refuses other arguments later), with a
  dead-letter exchange routing to ``NAME.dead``. Quorum queues put a returned
  message at the back, not the front (our broker keeps FIFO order).
- the visibility timeout (like ``max_bytes``) is this client's setting, not
  the queue's: a delivery not settled within it is nacked (requeued) by this
  process, from the keeper thread (``amqp_keeper``) when the thread holding it
  makes no call; when the process dies RabbitMQ requeues it as the connection
  closes. RabbitMQ 3.10 has only the node-wide ``consumer_timeout``
  (rabbitmq.conf, 30 min by default, closing the whole channel); a per-queue
  ``x-consumer-timeout`` came with 3.12.
- ``length`` counts ready messages plus this client's unsettled ones; the
  age of the oldest message is not known (``nan``).
- connections are per thread (pika's are not thread-safe), each under a lock;
  a receipt names the thread's state, so any thread may ack or nack.
- tables are streams (``amqp_streams``); stats read the counters stream and the
  registries of queues and listeners this API declared.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Optional

import pika

from parsl_lite.messaging import amqp_keeper as keeper
from parsl_lite.messaging import amqp_streams as s
from parsl_lite.messaging.amqp_connections import Confirms, ThreadState
from parsl_lite.messaging import protocol as p
from parsl_lite.messaging.amqp_topics import PUBLISHED, TRIM_AT, UNROUTED, AmqpPublisher, AmqpSubscription, declare_topology
from parsl_lite.messaging.book import DEAD_LETTER_SUFFIX, DEFAULT_MAX_BYTES, DEFAULT_VISIBILITY_TIMEOUT_S
from parsl_lite.messaging.errors import BrokerError, BrokerUnavailable, NoSuchQueue

__all__ = ["AmqpClient", "AmqpPublisher", "AmqpSubscription"]

logger = logging.getLogger(__name__)

_TAG_BITS = 40               # receipt = thread state id << 40 | delivery tag (a channel's tags count from 1)
_READY_WAIT_S = 0.2          # messages counted ready are pushed within a round trip (unless another reader took them)
TABLE_PREFIX = "parsl_lite.table."
COUNTERS = "parsl_lite.counters"          # sum: published, dropped_no_listener, lost\0TOPIC
QUEUES = "parsl_lite.queues"              # last: the queues this API created
LISTENERS = "parsl_lite.listeners"        # last: TOPIC\0QUEUE of live subscriptions
DROPPED = "dropped_no_listener"
LOST = "lost\0"


def without_password(url: str) -> str:
    """``url`` with its password shown as ``***`` (for stats and messages)."""
    from urllib.parse import urlsplit
    password = urlsplit(url).password
    return url if password is None else url.replace(f":{password}@", ":***@", 1)


class AmqpClient:
    """One RabbitMQ server; a connection per thread (pika's are not thread-safe), a new one after fork."""

    def __init__(self, url: str, where: str = "") -> None:
        self.url, self.where, self.token = url, where, ""
        self.params = pika.URLParameters(url)
        self._local = threading.local()
        self._pid = os.getpid()
        self._ids = itertools.count(1)
        self._settings: dict[str, tuple[float, int, int]] = {}
        self._streams = s.StreamStates()
        self._declared: set[str] = set()
        self._opened: "weakref.WeakSet[Any]" = weakref.WeakSet()     # every thread's state, publisher, subscription
        self._opened_lock = threading.Lock()
        self._sids = itertools.count(1)
        self._by_sid: "weakref.WeakValueDictionary[int, ThreadState]" = weakref.WeakValueDictionary()
        self._holders: dict[int, ThreadState] = {}    # the states holding deliveries (ThreadState.hold)

    # ------------------------------------------------------------ connections

    def thread_local(self) -> threading.local:
        if os.getpid() != self._pid:       # a forked child: the parent's connections are not its own to use
            self._pid, self._local = os.getpid(), threading.local()
            self._streams, self._declared = s.StreamStates(), set()
            self._opened, self._by_sid, self._holders = weakref.WeakSet(), weakref.WeakValueDictionary(), {}
        return self._local

    def _state(self) -> ThreadState:
        local = self.thread_local()
        state = getattr(local, "state", None)
        if state is None:
            state = local.state = ThreadState(next(self._sids), self._holders)
            self._by_sid[state.sid] = state
        return state

    def opened(self, obj: Any) -> None:
        """``obj`` (with ``lock``, ``keep()`` and ``disconnect()``) opened a connection: the keeper services it
        and :meth:`close` closes it."""
        with self._opened_lock:
            self._opened.add(obj)
        keeper.register(obj)

    def _connect(self) -> Any:
        try:
            conn = pika.BlockingConnection(self.params)
        except pika.exceptions.AMQPError as exc:
            raise BrokerUnavailable(f"RabbitMQ at {without_password(self.url)} (from {self.where}): "
                                    f"{exc!r}") from None
        self.opened(self._state())
        return conn

    def _connection(self, which: str = "connection") -> Any:
        """This thread's connection ``which``: "connection" (deliveries, declares) or "side" (publishes, stream
        reads); see :class:`ThreadState`."""
        local = self._state()
        local.forget_closed()
        if getattr(local, which) is None:
            setattr(local, which, self._connect())
        return getattr(local, which)

    def channel(self) -> Any:
        """This thread's channel for gets and acks."""
        conn, local = self._connection(), self._state()
        if local.channel is None or local.channel.is_closed:
            cancelled = local.cancelled
            local.channel = conn.channel()
            local.channel.add_on_cancel_callback(lambda frame: cancelled.add(frame.method.consumer_tag))
            local.forget_deliveries()
        return local.channel

    def admin(self) -> Any:
        """This thread's channel for declares, deletes and purges: a failed one closes it, not the channel
        that holds this thread's deliveries (RabbitMQ would requeue them all)."""
        conn, local = self._connection(), self._state()
        if local.admin is None or local.admin.is_closed:
            local.admin = conn.channel()
        return local.admin

    def confirms(self) -> Confirms:
        """This thread's confirming publisher (on the side connection)."""
        conn, local = self._connection("side"), self._state()
        if local.confirms is None or local.confirms.channel.is_closed:
            local.confirms = Confirms(conn)
        return local.confirms

    def _stream_channel(self) -> Any:
        conn, local = self._connection("side"), self._state()
        if local.streams is None or local.streams.is_closed:
            local.streams = conn.channel()
        return local.streams

    def close(self) -> None:
        """Close every connection this client opened, in any thread (each under its lock); a later call
        opens new ones."""
        self.thread_local()
        with self._opened_lock:
            opened = list(self._opened)
        for obj in opened:
            with obj.lock:
                try:
                    obj.disconnect()
                except pika.exceptions.AMQPError as exc:
                    logger.debug("closing a RabbitMQ connection: %r", exc)
        self._holders.clear()  # their deliveries went back with their connections

    # ------------------------------------------------------------ the requests queues.py sends

    def welcome(self) -> p.Welcome:
        self._guard(None, lambda _: self.channel())
        return p.Welcome(0, "rabbitmq", p.PROTOCOL_VERSION, self.url, self.url)

    def request(self, make: Callable[[int, str], p.Request]) -> p.Reply:
        req = make(next(self._ids), "")
        handler = {p.DeclareQueue: self._declare, p.DeleteQueue: self._delete, p.QueueStatsRequest: self._stats,
                   p.PutMessages: self._put, p.StatsRequest: self._broker_stats,
                   p.TablePut: self._table_put, p.TableGet: self._table_get, p.TableScan: self._table_scan,
                   p.ReportLoss: self._report_loss}.get(type(req))
        if isinstance(req, p.Settle):
            return self._settle(req)                 # under the lock of each thread holding the messages
        if handler is None:
            raise BrokerError("unsupported", f"{req.kind} is not offered on RabbitMQ (it needs the parsl_lite "
                                             f"broker: `parsl-lite broker start`)")
        return self._guard(req, handler)

    def get(self, make: Callable[[int, str], p.GetMessages], timeout_s: float) -> Optional[p.Delivered]:
        req = make(next(self._ids), "")
        return self._guard(req, lambda r: self._get(r, timeout_s))  # type: ignore[return-value]

    def stats(self) -> dict[str, Any]:
        return self.request(lambda rid, tok: p.StatsRequest(rid, tok)).stats  # type: ignore[union-attr]

    def _guard(self, req: Any, handler: Callable[[Any], Any]) -> Any:
        """``handler(req)`` under this thread's lock, with pika's errors as ours; a connection found dead (e.g.
        RabbitMQ closed it) is replaced and the request made once more."""
        state = self._state()
        with state.lock:
            state.expire(time.monotonic())
            try:
                return self._once(req, handler)
            except BrokerUnavailable:
                return self._once(req, handler)    # once more, on new connections

    def _once(self, req: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(req)
        except pika.exceptions.ChannelClosedByBroker as exc:     # channel() and admin() replace a closed one
            if exc.reply_code == 404:
                raise NoSuchQueue(getattr(req, "queue", "?")) from None
            raise BrokerError("amqp", f"{exc.reply_code} {exc.reply_text}") from None
        except pika.exceptions.AMQPConnectionError as exc:
            self._state().forget_closed()
            raise BrokerUnavailable(f"RabbitMQ at {without_password(self.url)}: {exc!r}") from None

    # ------------------------------------------------------------ queues

    def _declare(self, req: p.DeclareQueue) -> p.Reply:
        old = self._settings.get(req.queue, (DEFAULT_VISIBILITY_TIMEOUT_S, 0, DEFAULT_MAX_BYTES))
        settings = (req.visibility_timeout_s or old[0], req.max_receives or old[1], req.max_bytes or old[2])
        dead = "" if req.queue.endswith(DEAD_LETTER_SUFFIX) else req.queue + DEAD_LETTER_SUFFIX
        ready = self._ready_count(req.queue)
        if ready is None and not req.create:
            raise NoSuchQueue(req.queue)
        if ready is None:
            ch = self.admin()
            if dead:
                ch.queue_declare(dead, durable=True, arguments={"x-queue-type": "quorum"})
            arguments: dict[str, Any] = {"x-queue-type": "quorum"}
            if dead:
                arguments.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
            if settings[1]:
                arguments["x-delivery-limit"] = settings[1] - 1
            ch.queue_declare(req.queue, durable=True, arguments=arguments)
            self._append(QUEUES, [(name, b"1", False) for name in (req.queue, dead) if name])
        self._settings[req.queue] = settings
        return self._info(req.request_id, req.queue, dead, ready or 0)

    def _ready_count(self, queue: str) -> Optional[int]:
        """The ready messages of ``queue``; None if there is no such queue (a queue's arguments,
        ``x-delivery-limit`` too, are fixed when it is made, so it is declared only when missing)."""
        try:
            return self.admin().queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._state().admin = None      # a failed declare closes its channel; the next call opens one
            if exc.reply_code != 404:
                raise
            return None

    def _info(self, request_id: int, queue: str, dead: Optional[str] = None,
              ready: Optional[int] = None) -> p.QueueInfo:
        if ready is None:
            ready = self._ready_count(queue)
            if ready is None:
                raise NoSuchQueue(queue)
        held = sum(1 for q, _, _ in self._state().held.values() if q == queue)
        vt, mr, mb = self._settings.get(queue, (DEFAULT_VISIBILITY_TIMEOUT_S, 0, DEFAULT_MAX_BYTES))
        if dead is None:
            dead = "" if queue.endswith(DEAD_LETTER_SUFFIX) else queue + DEAD_LETTER_SUFFIX
        return p.QueueInfo(request_id, queue, ready + held, held, float("nan"), vt, mr, mb, dead)

    def _stats(self, req: p.QueueStatsRequest) -> p.Reply:
        return self._info(req.request_id, req.queue)

    def _delete(self, req: p.DeleteQueue) -> p.Reply:
        if self._ready_count(req.queue) is None:
            raise NoSuchQueue(req.queue)               # as on our broker
        count = self.admin().queue_delete(req.queue).method.message_count
        self._append(QUEUES, [(req.queue, b"", True)])
        return p.Done(req.request_id, count)

    def _put(self, req: p.PutMessages) -> p.Reply:
        now = int(time.time())
        items = [(req.queue, body, pika.BasicProperties(delivery_mode=2, message_id=message_id, timestamp=now))
                 for message_id, body in zip(req.message_ids, p.split_bodies(req.sizes, req.blob))]
        if self.confirms().publish("", items):          # returned: no queue of that name
            raise NoSuchQueue(req.queue)
        return p.Done(req.request_id, len(items))

    def _get(self, req: p.GetMessages, timeout_s: float) -> p.Delivered:
        ch, local = self.channel(), self._state()
        if req.max_messages <= 1:
            method, props, body = ch.basic_get(req.queue, auto_ack=False)
            got = [] if method is None else [(method, props, body)]
        else:
            ready = self._ready_count(req.queue)
            if ready is None:
                raise NoSuchQueue(req.queue)
            got = self._consume(req.queue, min(ready, req.max_messages), _READY_WAIT_S) if ready else []
        if not got and timeout_s > 0:
            got = self._consume(req.queue, 1, timeout_s)
        vt = self._settings.get(req.queue, (DEFAULT_VISIBILITY_TIMEOUT_S,))[0]
        for method, _, _ in got:
            local.hold(method.delivery_tag, req.queue, ch, time.monotonic() + vt)
        sizes, blob = p.join_bodies([body for _, _, body in got])
        return p.Delivered(req.request_id, req.queue, tuple(props.message_id or "" for _, props, _ in got),
                           tuple(local.sid << _TAG_BITS | m.delivery_tag for m, _, _ in got),
                           tuple(1 + int((props.headers or {}).get("x-delivery-count", 0)) for _, props, _ in got),
                           tuple(float(props.timestamp or 0) for _, props, _ in got), sizes, blob)

    def _consume(self, queue: str, prefetch: int, timeout_s: float) -> list[tuple[Any, Any, bytes]]:
        """Up to ``prefetch`` messages pushed by a consumer with that prefetch: all of them, or what came within
        ``timeout_s``. With as many as are ready (or 1), nothing is in flight when it is cancelled, so nothing
        is given back (unless a message comes in the instant a wait times out)."""
        conn, ch, local = self._connection(), self.channel(), self._state()
        if local.qos != prefetch:
            ch.basic_qos(prefetch_count=prefetch)
            local.qos = prefetch
        got: list[tuple[Any, Any, bytes]] = []
        tag = ch.basic_consume(queue, lambda _c, m, pr, b: got.append((m, pr, b)), auto_ack=False)
        deadline = time.monotonic() + timeout_s
        try:
            # until all ``prefetch`` came (cancelling earlier would have pika reject those still on their way:
            # a receive counted for nothing), or the time is up
            while len(got) < prefetch:
                left = deadline - time.monotonic()
                conn.process_data_events(time_limit=max(0.0, min(left, 0.5)))
                if tag in local.cancelled:           # the queue was deleted while we waited
                    local.cancelled.discard(tag)
                    raise NoSuchQueue(queue)
                if time.monotonic() >= deadline:
                    break
        finally:
            if ch.is_open and tag not in local.cancelled:
                ch.basic_cancel(tag)
        return got

    def _settle(self, req: p.Settle) -> p.Reply:
        """Ack or nack on the channel each message came on, under its thread's lock (one lock at a time), so
        any thread may settle. A receipt no longer held (expired, or its channel gone) counts 0."""
        by_state: dict[int, list[int]] = {}
        for receipt in req.receipts:
            by_state.setdefault(receipt >> _TAG_BITS, []).append(receipt & ((1 << _TAG_BITS) - 1))
        done = 0
        for sid, tags in by_state.items():
            state = self._by_sid.get(sid)
            if state is None:
                continue
            with state.lock:
                state.expire(time.monotonic())
                for tag in tags:
                    entry = state.held.pop(tag, None)
                    if entry is None or entry[1].is_closed:
                        continue
                    try:
                        if req.ack:
                            entry[1].basic_ack(tag)
                        else:
                            entry[1].basic_nack(tag, requeue=True)
                    except pika.exceptions.AMQPError as exc:     # its channel or connection went meanwhile
                        logger.info("could not settle a RabbitMQ delivery: %r", exc)
                        continue
                    done += 1
                state.let_go()
        return p.Done(req.request_id, done)

    # ------------------------------------------------------------ streams: tables, counters, registries

    def _append(self, stream: str, rows: list[tuple[str, bytes, bool]]) -> None:
        """Append ``(key, value, deleted)`` records to ``stream`` (declared on first use), confirmed."""
        self._declare_stream(stream)
        self.confirms().publish("", [(stream, value, s.record(key, deleted)) for key, value, deleted in rows])

    def _declare_stream(self, stream: str) -> None:
        self.thread_local()                          # a forked child forgets what its parent declared
        if stream not in self._declared:
            self.admin().queue_declare(stream, durable=True, arguments=s.STREAM_ARGS)
            self._declared.add(stream)

    def read_stream(self, stream: str, mode: str) -> dict[str, Any]:
        """``stream``'s state now (see ``amqp_streams``)."""
        self._declare_stream(stream)

        def catch_up(fold: s.StreamFold) -> None:
            mark, props = s.marker()
            self.confirms().publish("", [(stream, b"", props)])
            s.read_to_marker(self._connection("side"), self._stream_channel(), stream, fold, mark)
        return self._streams.read(stream, mode, catch_up)

    def _table_put(self, req: p.TablePut) -> p.Reply:
        self._append(TABLE_PREFIX + req.table, [(req.key, req.value, False)])
        return p.Done(req.request_id, 1)

    def _table_get(self, req: p.TableGet) -> p.Reply:
        value = self.read_stream(TABLE_PREFIX + req.table, "last").get(req.key)
        return p.TableValue(req.request_id, value is not None, value or b"")

    def _table_scan(self, req: p.TableScan) -> p.Reply:
        rows = sorted((k, v) for k, v in self.read_stream(TABLE_PREFIX + req.table, "last").items()
                      if k.startswith(req.prefix))
        sizes, blob = p.join_bodies([v for _, v in rows])
        return p.TableRows(req.request_id, tuple(k for k, _ in rows), sizes, blob)

    def add_counter(self, key: str, n: int) -> None:
        if n:
            self._append(COUNTERS, [(key, str(int(n)).encode(), False)])

    def count(self, key: str, n: int) -> None:
        """Add ``n`` to the durable counter ``key`` (from any thread)."""
        self._guard(None, lambda _: self.add_counter(key, n))

    def _report_loss(self, req: p.ReportLoss) -> p.Reply:
        self.add_counter(LOST + req.topic, req.lost)
        return p.Done(req.request_id, req.lost)

    def register_listener(self, topic: str, queue: str) -> None:
        self._guard(None, lambda _: self._append(LISTENERS, [(f"{topic}\0{queue}", b"1", False)]))

    def unregister_listener(self, topic: str, queue: str) -> None:
        self._guard(None, lambda _: self._append(LISTENERS, [(f"{topic}\0{queue}", b"", True)]))

    def trim_unrouted(self, at: int) -> int:
        """Purge the unrouted queue once it holds more than ``at`` messages, adding them to the durable count;
        the number it holds (after a trim, 0)."""
        return self._guard(None, lambda _: self._trim_unrouted(at))

    def _trim_unrouted(self, at: int) -> int:
        ch = self.admin()
        if UNROUTED not in self._declared:
            declare_topology(ch)
            self._declared.add(UNROUTED)
        held = ch.queue_declare(UNROUTED, passive=True).method.message_count
        if held > at:
            self.add_counter(DROPPED, ch.queue_purge(UNROUTED).method.message_count)
            return 0
        return held

    def _broker_stats(self, req: p.StatsRequest) -> p.Reply:
        counters = self.read_stream(COUNTERS, "sum")
        lost = {k[len(LOST):]: n for k, n in counters.items() if k.startswith(LOST)}
        dropped = counters.get(DROPPED, 0) + self._trim_unrouted(TRIM_AT)
        published = counters.get(PUBLISHED, 0)
        topics = {"published": published, "forwarded": max(0, published - dropped), "dropped_no_listener": dropped,
                  "lost_slow_subscriber": sum(lost.values()), "lost_by_topic": lost,
                  "listeners": self._listeners()}
        queues = {}
        for name in sorted(self.read_stream(QUEUES, "last")):
            ready = self._ready_count(name)
            if ready is None:
                continue
            held = sum(1 for q, _, _ in self._state().held.values() if q == name)
            dead = 0 if name.endswith(DEAD_LETTER_SUFFIX) else self._ready_count(name + DEAD_LETTER_SUFFIX) or 0
            queues[name] = {"length": ready + held, "in_flight": held, "oldest_age_s": float("nan"),
                            "dead_lettered": dead}
        return p.Stats(req.request_id, {"backend": "rabbitmq", "url": without_password(self.url), "queues": queues,
                                        "topics": topics})

    def _listeners(self) -> dict[str, int]:
        """Listeners per topic: registered subscriptions whose queue still exists (a queue goes with its
        consumer's connection); entries of gone queues are removed."""
        counts: dict[str, int] = {}
        gone = []
        for entry in self.read_stream(LISTENERS, "last"):
            topic, _, queue = entry.partition("\0")
            if self._ready_count(queue) is None:
                gone.append((entry, b"", True))
            else:
                counts[topic] = counts.get(topic, 0) + 1
        if gone:
            self._append(LISTENERS, gone)
        return counts
