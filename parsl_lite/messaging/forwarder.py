"""The broker's topic forwarder: publishers -> XSUB -> (count, welcome) -> XPUB -> subscribers.

A thread of the broker with sockets of its own. Unlike ``zmq.proxy`` it
subscribes to everything upstream, so every published message reaches it and
one with no live subscription is dropped *and counted*; it sees every
(un)subscription downstream (``XPUB_VERBOSER``), so it knows who listens, and
answers a subscription to a subscriber's welcome key with a welcome frame: the
subscriber then knows that its topic subscriptions, sent before, are live (no
slow-joiner loss). Publishers and subscribers authenticate with ZMQ PLAIN
(user ``parsl_lite``, the broker's token) through the broker's ZAP handler.

A subscriber too slow to keep up fills its pipe to the high-water mark; then
ZMQ drops messages for that subscriber only, and publishers never stall.
Subscribers see the gaps in the sequence numbers and report them
(``ReportLoss``): the count shows in the broker's stats.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

import zmq

from parsl_lite.messaging import protocol

logger = logging.getLogger(__name__)

PLAIN_USER = "parsl_lite"
HIGH_WATER_MARK = 10_000
_DRAIN = 2000          # messages moved per wake-up before subscriptions are looked at again


def plain_server(socket: zmq.Socket) -> None:
    socket.plain_server = True
    socket.zap_domain = b"parsl_lite"


class Forwarder(threading.Thread):
    """Binds ``xsub`` (publishers connect) and ``xpub`` (subscribers connect) on ``host``."""

    def __init__(self, context: zmq.Context, host: str, publish_port: int, subscribe_port: int) -> None:
        super().__init__(name="topic-forwarder", daemon=True)
        self.xsub = context.socket(zmq.XSUB)
        self.xpub = context.socket(zmq.XPUB)
        for sock in (self.xsub, self.xpub):
            plain_server(sock)
            sock.linger = 0
            sock.sndhwm = sock.rcvhwm = HIGH_WATER_MARK
        self.xpub.setsockopt(zmq.XPUB_VERBOSER, 1)
        self.publish_address = _bind(self.xsub, host, publish_port)
        self.subscribe_address = _bind(self.xpub, host, subscribe_port)
        self.xsub.send(b"\x01")   # everything, so that messages nobody hears are counted here
        self._listeners: dict[bytes, int] = {}
        self.published = 0
        self.dropped_no_listener = 0
        self.lost: dict[str, int] = {}
        self._stopping = threading.Event()

    def stats(self) -> dict[str, Any]:
        return {"published": self.published, "forwarded": self.published - self.dropped_no_listener,
                "dropped_no_listener": self.dropped_no_listener,
                "lost_slow_subscriber": sum(self.lost.values()), "lost_by_topic": dict(self.lost),
                "listeners": {protocol.key_topic(k): n for k, n in list(self._listeners.items())
                              if n > 0 and k[:1] == protocol.TOPIC_PREFIX}}

    def add_loss(self, topic: str, lost: int) -> None:
        """Called from the request loop's thread: a dict update under the GIL."""
        self.lost[topic] = self.lost.get(topic, 0) + lost

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.xsub, zmq.POLLIN)
        poller.register(self.xpub, zmq.POLLIN)
        try:
            while not self._stopping.is_set():
                events = dict(poller.poll(200))
                if self.xpub in events:
                    self._subscriptions()
                if self.xsub in events:
                    self._forward()
        except zmq.ContextTerminated:
            pass
        finally:
            self.xsub.close(0)
            self.xpub.close(0)

    def _subscriptions(self) -> None:
        while True:
            try:
                event = self.xpub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not event:
                continue
            key, subscribe = event[1:], event[0] == 1
            self._listeners[key] = self._listeners.get(key, 0) + (1 if subscribe else -1)
            if self._listeners[key] <= 0:
                del self._listeners[key]
            if subscribe and key[:1] == protocol.WELCOME_PREFIX:
                self.xpub.send(protocol.topic_frame(key, 0, 0, protocol.FLAG_WELCOME, b""))

    def _forward(self) -> None:
        recv, send, listeners = self.xsub.recv, self.xpub.send, self._listeners
        moved = dropped = 0
        try:
            while moved < _DRAIN:
                frame = recv(zmq.NOBLOCK)
                moved += 1
                if frame[:frame.find(b"\0") + 1] in listeners:   # protocol.frame_key, inlined: the hot path
                    send(frame, zmq.NOBLOCK)
                else:
                    dropped += 1
        except zmq.Again:
            pass
        finally:
            self.published += moved
            self.dropped_no_listener += dropped


def _bind(socket: zmq.Socket, host: str, port: int) -> str:
    if port:
        socket.bind(f"tcp://{host}:{port}")
        return f"tcp://{host}:{port}"
    chosen = socket.bind_to_random_port(f"tcp://{host}")
    return f"tcp://{host}:{chosen}"
