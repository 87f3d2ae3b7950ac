"""A thread's RabbitMQ connections for ``amqp.py``: publishes that share one confirm wait, and per-thread state.

pika's connections are not thread-safe, so each thread has its own (two: see
:class:`ThreadState`), each under a lock that the keeper thread (``amqp_keeper``)
also takes when it services them.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

import pika

from parsl_lite.messaging.errors import BrokerError, BrokerUnavailable

CONFIRM_TIMEOUT_S = 30.0


class Confirms:
    """A channel in confirm mode whose publishes share one wait: publish a batch, then wait for every confirm.

    pika's ``BlockingChannel.basic_publish`` waits for each confirm in turn (a round trip and a quorum
    commit per message), so this publishes through the channel's underlying pika ``Channel`` (``_impl``),
    counts the ``Basic.Ack``/``Nack`` frames itself and waits on the channel's own I/O loop
    (``_flush_output``, as ``BlockingChannel`` does). These are pika internals (1.3, 1.4); without them it
    falls back to a confirm per message. RabbitMQ sends a mandatory message's ``Basic.Return`` before its ack.
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.channel = conn.channel()
        self._impl = getattr(self.channel, "_impl", None)
        self._batched = self._impl is not None and hasattr(self.channel, "_flush_output")
        self._tag = 0
        self._pending: set[int] = set()
        self._nacked = 0
        self._returned: list[str] = []
        if not self._batched:
            self.channel.confirm_delivery()
            return
        selected: list[bool] = []
        self._impl.add_on_return_callback(lambda _ch, method, _props, _body: self._returned.append(method.routing_key))
        self._impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _frame: selected.append(True))
        self._wait(lambda: bool(selected))

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        done = {t for t in self._pending if t <= method.delivery_tag} if method.multiple else {method.delivery_tag}
        self._pending -= done
        if isinstance(method, pika.spec.Basic.Nack):
            self._nacked += len(done)

    def _wait(self, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        ioloop = self._impl.connection.ioloop
        timer = ioloop.call_later(CONFIRM_TIMEOUT_S, lambda: None)     # wakes the loop's poll at the deadline
        try:
            self.channel._flush_output(ready, lambda: time.monotonic() >= deadline)
        finally:
            ioloop.remove_timeout(timer)
        if not ready():
            raise BrokerUnavailable(f"RabbitMQ confirmed nothing within {CONFIRM_TIMEOUT_S:g} s")

    def publish(self, exchange: str, items: list[tuple[str, bytes, pika.BasicProperties]]) -> list[str]:
        """Publish ``(routing key, body, properties)`` items (mandatory), wait for all; the routing keys returned.

        Raises:
            BrokerError: RabbitMQ nacked some (it could not store them).
        """
        if not self._batched:
            return self._publish_each(exchange, items)
        self._returned, self._nacked = [], 0
        for routing_key, body, props in items:
            self._impl.basic_publish(exchange, routing_key, body, props, mandatory=True)
            self._tag += 1
            self._pending.add(self._tag)
        self._wait(lambda: not self._pending)
        if self._nacked:
            raise BrokerError("amqp", f"RabbitMQ refused {self._nacked} of {len(items)} messages (nack)")
        return self._returned

    def _publish_each(self, exchange: str, items: list[tuple[str, bytes, pika.BasicProperties]]) -> list[str]:
        returned = []
        for routing_key, body, props in items:
            try:
                self.channel.basic_publish(exchange, routing_key, body, props, mandatory=True)
            except pika.exceptions.UnroutableError:
                returned.append(routing_key)
            except pika.exceptions.NackError:
                raise BrokerError("amqp", "RabbitMQ refused a message (nack)") from None
        return returned


class ThreadState:
    """One thread's two connections and their channels; the keeper (``amqp_keeper``) services them while the
    thread is elsewhere: heartbeats, and deliveries held past their visibility timeout are given back on time.

    ``connection`` holds the deliveries (gets, acks) and does the declares; ``side`` publishes (queue puts,
    stream records) and reads streams. Apart, because a connection RabbitMQ closes takes its unacked
    deliveries back: RabbitMQ 3.10 closes a connection with INTERNAL_ERROR when it publishes to a stream
    another connection created a moment ago (osiris_writer:write with no writer yet); that must not cost a
    handler the message it holds.

    While it holds deliveries it is kept in ``holders`` (the client's), so a thread that ends holding
    messages does not take them back with its connection: they stay held, for an ack from another thread,
    until their visibility timeout gives them back (as on our broker).
    """

    def __init__(self, sid: int, holders: dict[int, "ThreadState"]) -> None:
        self.sid = sid                         # in the receipts it hands out: an ack from any thread finds it
        self.holders = holders
        self.lock = threading.RLock()          # held by every call on this connection, the keeper's too
        self.connection: Any = None
        self.side: Any = None
        self.channel: Any = None               # gets, acks: holds the deliveries
        self.streams: Any = None               # stream reads (on ``side``)
        self.admin: Any = None                 # declares, deletes, purges (a failure closes only this one)
        self.confirms: Optional[Confirms] = None
        self.held: dict[int, tuple[str, Any, float]] = {}     # delivery tag -> (queue, channel, deadline)
        self.cancelled: set[str] = set()
        self.qos = 0

    def hold(self, tag: int, queue: str, channel: Any, deadline: float) -> None:
        self.held[tag] = (queue, channel, deadline)
        self.holders[self.sid] = self

    def let_go(self) -> None:
        """Call after deliveries left ``held``: once none is, nothing but its thread keeps this state alive."""
        if not self.held:
            self.holders.pop(self.sid, None)

    def forget_deliveries(self) -> None:
        """Its channel is new or gone: the deliveries held on the old one went back with it."""
        self.held, self.qos = {}, 0
        self.let_go()

    def expire(self, now: float) -> None:
        """Nack (requeue) the deliveries whose visibility timeout passed."""
        for tag in [t for t, (_, _, deadline) in self.held.items() if deadline <= now]:
            _, ch, _ = self.held.pop(tag)
            if ch.is_open:
                ch.basic_nack(tag, requeue=True)
        self.let_go()

    def keep(self) -> bool:
        live = [c for c in (self.connection, self.side) if c is not None and c.is_open]
        if self.connection in live:
            self.expire(time.monotonic())
        for conn in live:
            conn.process_data_events(0)
        return bool(live)

    def disconnect(self) -> None:
        for conn in (self.connection, self.side):
            if conn is not None and conn.is_open:
                conn.close()

    def forget_closed(self) -> None:
        """Drop a connection found closed (and what lived on it); the next call opens a new one."""
        if self.connection is not None and self.connection.is_closed:
            self.connection = self.channel = self.admin = None
            self.cancelled = set()
            self.forget_deliveries()
        if self.side is not None and self.side.is_closed:
            self.side = self.confirms = self.streams = None
