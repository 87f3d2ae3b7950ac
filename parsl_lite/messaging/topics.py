"""Topics: ``publish`` (never blocks) and ``subscribe`` (returns once live), through the broker's forwarder.

A publisher is one XPUB socket per thread, connected to the broker's XSUB: it
waits once, when first made, for the broker's subscription to reach it (at
most :data:`CONNECT_WAIT_S`), then every ``publish`` is a non-blocking send
that ZMQ drops at the high-water mark. The broker's proxy passes its
subscribers' (un)subscriptions up to publishers as well; a publisher reads
and discards them every :data:`DRAIN_EVERY` sends, or its socket would keep
them all. Each message carries the publisher's
id and a sequence number per topic, so a subscriber sees what it lost.

A :class:`Subscription` subscribes its topic, then its own welcome key, and
waits for the broker's welcome: the broker handles a socket's subscriptions
in order, so the topic subscription is live before the welcome is sent.
"""
from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
import uuid
from typing import Any, Iterator, Optional

import zmq

from parsl_lite.messaging import protocol as p
from parsl_lite.messaging.book import DEFAULT_MAX_BYTES
from parsl_lite.messaging.client import BrokerClient, default_client
from parsl_lite.messaging.errors import BrokerUnavailable, MessageTooLarge
from parsl_lite.messaging.forwarder import HIGH_WATER_MARK, PLAIN_USER, drain
from parsl_lite.serialize import deserialize, serialize as plain_serialize, serialize_for_transfer as serialize

logger = logging.getLogger(__name__)

CONNECT_WAIT_S = 2.0
WELCOME_WAIT_S = 10.0
LOSS_REPORT_PERIOD_S = 0.5
STOP = "Stop"
DRAIN_EVERY = 1024
FLAG_BYTES = 3        # beside protocol's FLAG_*: the body is a bytes message itself, not a pickle
WAIT_CHUNK_MS = 500   # a get waits in pieces this long at most, to report losses on time


def _plain_client(sock: zmq.Socket, token: str) -> None:
    sock.plain_username = PLAIN_USER.encode()
    sock.plain_password = token.encode()


class _Publisher:
    """One thread's publishing socket."""

    def __init__(self, client: BrokerClient) -> None:
        self.pid = os.getpid()
        address = client.welcome().publish_address
        self.sock = client.context.socket(zmq.XPUB)
        self.sock.linger = 0
        self.sock.sndhwm = HIGH_WATER_MARK
        _plain_client(self.sock, client.token)
        self.sock.connect(address)
        if not self.sock.poll(int(CONNECT_WAIT_S * 1000)):   # the broker's subscribe-all: the path is open
            logger.warning("no subscription from the broker's forwarder at %s yet; publishing anyway", address)
        self.publisher_id = random.getrandbits(63)
        self.seqs: dict[bytes, int] = {}
        self.dropped = self.sent = 0

    def send(self, key: bytes, flags: int, body: bytes) -> None:
        seq = self.seqs.get(key, 0) + 1
        self.seqs[key] = seq
        self.sent += 1
        if not self.sent % DRAIN_EVERY:   # the subscription notices the broker passed up: we do not filter
            drain(self.sock)
        try:
            self.sock.send(p.topic_frame(key, self.publisher_id, seq, flags, body), zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1


_forks = 0                         # bumped in a forked child: the parent's publishers are not its own
_this_thread = threading.local()   # .last: (client, _forks, publisher), so that publish makes no getpid call


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


def _publisher(client: Any) -> Any:
    client = client or default_client()
    last = getattr(_this_thread, "last", None)
    if last is not None and last[0] is client and last[1] == _forks:
        return last[2]
    local = client.thread_local()
    pub = getattr(local, "publisher", None)
    if pub is None or pub.pid != os.getpid():
        if _is_amqp(client):
            from parsl_lite.messaging.amqp import AmqpPublisher
            pub = local.publisher = AmqpPublisher(client)
        else:
            pub = local.publisher = _Publisher(client)
    _this_thread.last = (client, _forks, pub)
    return pub


def _is_amqp(client: Any) -> bool:
    return type(client).__name__ == "AmqpClient"   # without importing pika for our own broker


_PLAIN = frozenset({bytes, str, int, float, bool, type(None)})   # no class of __main__ can hide inside
_KEYS: dict[str, bytes] = {}
_MAX_KEYS = 4096


def _key(topic: str) -> bytes:
    key = _KEYS.get(topic)
    if key is None:
        key = p.topic_key(topic)
        if len(_KEYS) >= _MAX_KEYS:   # many topics: no unbounded growth
            _KEYS.clear()
        _KEYS[topic] = key
    return key


def publish(topic: str, message: Any, client: Optional[BrokerClient] = None) -> None:
    """Send ``message`` to the listeners of ``topic`` now; nobody listening: it is dropped (and counted by the
    broker). Never blocks (but the first call of a thread connects, waiting at most ``CONNECT_WAIT_S``).

    Raises:
        ValueError: a bad topic.
        MessageTooLarge: the serialized message is over 1 MiB.
    """
    key = _key(topic)
    if type(message) is bytes:     # as it is: no pickling at either end
        body, flags = message, FLAG_BYTES
    else:
        body = plain_serialize(message) if type(message) in _PLAIN else serialize(message, "message")
        flags = p.FLAG_DATA
    if len(body) > DEFAULT_MAX_BYTES:
        raise MessageTooLarge(f"topic {topic!r}", len(body), DEFAULT_MAX_BYTES)
    _publisher(client).send(key, flags, body)


def stop(topic: str, listener_id: Optional[str] = None, client: Optional[BrokerClient] = None) -> None:
    """End the listeners of ``topic`` (all, or only the one subscribed with ``listener_id``)."""
    _publisher(client).send(p.topic_key(topic), p.FLAG_STOP, (listener_id or "").encode())


class Subscription:
    """The messages of one topic published after :func:`subscribe` returned; iterate to get them.

    Iteration ends on a stop for the topic (:func:`stop`, or the message ``"Stop"``) or for this
    ``listener_id``, or after :meth:`close`. Losses (sequence gaps) are counted in ``lost`` and
    reported to the broker.
    """

    def __init__(self, topic: str, listener_id: Optional[str] = None, client: Optional[BrokerClient] = None,
                 high_water_mark: int = HIGH_WATER_MARK) -> None:
        self.topic, self.listener_id = topic, listener_id
        self._key = p.topic_key(topic)
        self._client = client or default_client()
        self._last: dict[int, int] = {}
        self.lost = self.received = 0
        self._reported = 0
        self._last_report = time.monotonic()
        self.stopped = False
        self._amqp = None
        if _is_amqp(self._client):
            from parsl_lite.messaging.amqp import AmqpSubscription
            self._amqp = AmqpSubscription(self._client, topic, high_water_mark)
            return
        self._sock = self._client.context.socket(zmq.SUB)
        self._wait_ms = -1   # the socket's receive timeout (ZMQ's default: none)
        self._sock.linger = 0
        self._sock.rcvhwm = high_water_mark
        _plain_client(self._sock, self._client.token)
        self._sock.connect(self._client.welcome().subscribe_address)
        self._sock.subscribe(self._key)
        self._welcome_key = p.welcome_key(uuid.uuid4().hex)
        self._sock.subscribe(self._welcome_key)
        self._wait_welcome()

    def _wait_welcome(self) -> None:
        deadline = time.monotonic() + WELCOME_WAIT_S
        while time.monotonic() < deadline:
            if self._sock.poll(100):
                if p.frame_key(self._sock.recv()) == self._welcome_key:
                    self._sock.unsubscribe(self._welcome_key)
                    return
        self.close()
        raise BrokerUnavailable(f"no welcome from the broker's forwarder within {WELCOME_WAIT_S:g} s "
                                f"(broker at {self._client.url}, from {self._client.where})")

    def __iter__(self) -> Iterator[Any]:
        while True:
            message = self.get(timeout=None)
            if self.stopped:
                return
            yield message

    def get(self, timeout: Optional[float] = None) -> Any:
        """The next message, waiting up to ``timeout`` seconds (None: until one comes); None if none came
        or the subscription stopped (see ``stopped``)."""
        if self._amqp is not None:
            return self._get_amqp(None if timeout is None else time.monotonic() + timeout)
        sock, deadline = self._sock, None   # the clock is read only once there is a wait
        while not self.stopped:
            try:
                frame = sock.recv(zmq.NOBLOCK)   # the common case under load: one is there already
            except zmq.Again:
                if deadline is None:
                    deadline = math.inf if timeout is None else time.monotonic() + timeout
                frame = self._wait(deadline)
                if frame is None:
                    if time.monotonic() >= deadline:
                        return None
                    continue
            message = self._read(frame)
            if message is not _NOTHING:
                return message
            if deadline is None:
                deadline = math.inf if timeout is None else time.monotonic() + timeout
        return None

    def _wait(self, deadline: float) -> Optional[bytes]:
        """The next frame, waited for in libzmq until ``deadline`` (or for ``WAIT_CHUNK_MS``); None if none came.

        A blocking recv with a receive timeout rather than ``Socket.poll`` (a Poller built per wait) then a
        recv: on a bare SUB here ~8 µs sooner per wake-up. No timeout and no loss to report: no timer at all
        (a timed wait cost ~20 µs more CPU per wake-up on this VM).
        """
        if deadline == math.inf:
            wait_ms = -1 if self.lost == self._reported else WAIT_CHUNK_MS
        else:
            left = deadline - time.monotonic()
            wait_ms = 0 if left <= 0 else max(1, min(WAIT_CHUNK_MS, int(left * 1000)))
        if wait_ms != self._wait_ms:   # get(timeout=5) sets it once
            self._sock.rcvtimeo = self._wait_ms = wait_ms
        try:
            return self._sock.recv()
        except zmq.Again:
            self._maybe_report()
            return None

    def _get_amqp(self, deadline: Optional[float]) -> Any:
        while not self.stopped:
            left = 0.5 if deadline is None else deadline - time.monotonic()
            got = self._amqp.recv_meta(max(0.0, left))
            if got is None:
                self._maybe_report()
                if deadline is not None:
                    return None
                continue
            publisher, seq, flags, body = got
            self._count(publisher, seq)
            message = self._handle(flags, body)
            if message is not _NOTHING:
                return message
        return None

    def _read(self, frame: bytes) -> Any:
        """The message in ``frame``, or ``_NOTHING`` (not ours, or a stop: then the subscription is closed)."""
        key, publisher, seq, flags, body = p.read_frame(frame)
        if key != self._key:
            return _NOTHING
        self._count(publisher, seq)
        return self._handle(flags, body)

    def _count(self, publisher: int, seq: int) -> None:
        """Note a message's place in its publisher's sequence; a gap is messages lost on the way."""
        last = self._last.get(publisher, 0)
        if seq > last:
            if last and seq > last + 1:
                self.lost += seq - last - 1
            self._last[publisher] = seq

    def _handle(self, flags: int, body: bytes) -> Any:
        if flags == p.FLAG_STOP:
            target = body.decode(errors="replace")
            if not target or target == self.listener_id:
                self.close()
            return _NOTHING
        self.received += 1
        if flags == FLAG_BYTES:
            return body
        message = deserialize(body)
        if isinstance(message, str) and message == STOP:
            self.close()
            return _NOTHING
        return message

    def _maybe_report(self, force: bool = False) -> None:
        if self.lost > self._reported and (force or time.monotonic() - self._last_report > LOSS_REPORT_PERIOD_S):
            lost, self._reported, self._last_report = self.lost - self._reported, self.lost, time.monotonic()
            try:
                self._client.request(lambda rid, tok: p.ReportLoss(rid, tok, self.topic, lost))
            except Exception as exc:   # a loss report must never break a listener
                logger.info("could not report %d lost messages of %r: %s", lost, self.topic, exc)

    def close(self) -> None:
        """Stop listening (reports any loss not reported yet)."""
        if not self.stopped:
            self.stopped = True
            self._maybe_report(force=True)
            if self._amqp is not None:
                self._amqp.close()
                return
            self._sock.close(0)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_NOTHING = object()


def subscribe(topic: str, listener_id: Optional[str] = None, client: Optional[BrokerClient] = None,
              high_water_mark: int = HIGH_WATER_MARK) -> Subscription:
    """Listen to ``topic``; returns once the subscription is live (no message published after it is lost,
    unless the listener is too slow: see ``high_water_mark``)."""
    return Subscription(topic, listener_id, client, high_water_mark)
