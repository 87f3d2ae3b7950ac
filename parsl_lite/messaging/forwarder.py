"""The broker's topic forwarder: publishers -> XSUB =[zmq proxy, in C]=> XPUB -> subscribers.

The data path is ``zmq.proxy_steerable`` in this thread: no Python and no GIL
per message (a Python loop here cost 1.2 µs of CPU per message under load and
~45 µs per wake-up when messages come one at a time). The XSUB subscribes to
everything, so every published frame reaches the broker (a publisher never
filters; "live" is decided here, not at each publisher). What Python must
know comes from the proxy's capture socket, filtered so that it sees only the
frames nobody hears and the (un)subscriptions (see :mod:`topic_tally`): a
second thread, the tally, counts the frames with no listener, keeps the
listener counts (``XPUB_VERBOSER``: every (un)subscription), and answers a
subscription to a subscriber's welcome key by sending the welcome frame in
through the XSUB: it arrives after the subscriber's topic subscriptions,
sent before on the same pipe, are live (no slow-joiner loss). Publishers and
subscribers authenticate with ZMQ PLAIN (user ``parsl_lite``, the broker's
token) through the broker's ZAP handler; the inproc sockets need none.

A subscriber too slow to keep up fills its pipe to the high-water mark; then
ZMQ drops messages for that subscriber only, and publishers never stall.
Subscribers see the gaps in the sequence numbers and report them
(``ReportLoss``): the count shows in the broker's stats.
"""
from __future__ import annotations

import itertools
import logging
import struct
import threading
import uuid
from typing import Any

import zmq

from parsl_lite.messaging import protocol
from parsl_lite.messaging.topic_tally import LISTEN, SYNCED, UNLISTEN, WELCOME, Tally, sync_key

logger = logging.getLogger(__name__)

PLAIN_USER = "parsl_lite"
HIGH_WATER_MARK = 10_000
JOIN_WAIT_S = 5.0       # an inproc sender waits this long, at most, for the XSUB's subscribe-all
SYNC_WAIT_S = 5.0       # stats wait this long, at most, for the tally to catch up


def plain_server(socket: zmq.Socket) -> None:
    socket.plain_server = True
    socket.zap_domain = b"parsl_lite"


class Forwarder(threading.Thread):
    """Binds ``xsub`` (publishers connect) and ``xpub`` (subscribers connect) on ``host``."""

    def __init__(self, context: zmq.Context, host: str, publish_port: int, subscribe_port: int) -> None:
        super().__init__(name="topic-forwarder", daemon=True)
        self.context = context
        name = uuid.uuid4().hex
        self._inject = f"inproc://topic-inject-{name}"
        self._capture_address = f"inproc://topic-capture-{name}"
        self._control_address = f"inproc://topic-control-{name}"
        self.xsub = context.socket(zmq.XSUB)
        self.xpub = context.socket(zmq.XPUB)
        for sock in (self.xsub, self.xpub):
            plain_server(sock)
            sock.linger = 0
            sock.sndhwm = sock.rcvhwm = HIGH_WATER_MARK
        self.xpub.setsockopt(zmq.XPUB_VERBOSER, 1)
        self.publish_address = _bind(self.xsub, host, publish_port)
        self.subscribe_address = _bind(self.xpub, host, subscribe_port)
        self.xsub.bind(self._inject)
        self.xsub.send(b"\x01")   # everything, so that messages nobody hears reach the tally
        self.capture = context.socket(zmq.PUB)
        self.capture.setsockopt(zmq.INVERT_MATCHING, 1)   # to the tally: what matches no topic with listeners
        self.capture.setsockopt(zmq.XPUB_NODROP, 1)   # a tally behind: the proxy waits (nothing goes uncounted)
        self.capture.sndhwm = HIGH_WATER_MARK          # and publishers drop at their own mark meanwhile
        self.capture.linger = 0
        self.capture.bind(self._capture_address)
        self.control = context.socket(zmq.REP)
        self.control.linger = 0
        self.control.bind(self._control_address)
        self.tally = Tally()
        self.lost: dict[str, int] = {}
        self._injected = 0           # frames the broker sent in itself (welcomes, syncs): not "published"
        self._syncs = itertools.count(1)
        self._seen = threading.Condition()
        self._local = threading.local()
        self._stopping = threading.Event()
        self._tally_thread = threading.Thread(target=self._tally_loop, name="topic-tally", daemon=True)

    # ------------------------------------------------------------ stats (the request loop's thread)

    def stats(self) -> dict[str, Any]:
        """The counts once the tally has seen everything the proxy moved before this call."""
        proxied = self._proxied()
        injected = self._injected      # before this call's own sync frame, which ``proxied`` does not include
        self._sync()
        dropped = self.tally.dropped
        forwarded = max(0, proxied - injected - dropped)
        return {"published": forwarded + dropped, "forwarded": forwarded, "dropped_no_listener": dropped,
                "lost_slow_subscriber": sum(self.lost.values()), "lost_by_topic": dict(self.lost),
                "listeners": self.tally.topics()}

    def add_loss(self, topic: str, lost: int) -> None:
        """Called from the request loop's thread: a dict update under the GIL."""
        self.lost[topic] = self.lost.get(topic, 0) + lost

    def _proxied(self) -> int:
        """Frames the proxy has read from the XSUB (its STATISTICS: the first of eight counters)."""
        req = getattr(self._local, "control", None)
        if req is None:
            req = self._local.control = self.context.socket(zmq.REQ)
            req.linger = 0
            req.rcvtimeo = req.sndtimeo = int(SYNC_WAIT_S * 1000)
            req.connect(self._control_address)
        try:
            req.send(b"STATISTICS")
            return struct.unpack("<Q", req.recv_multipart()[0])[0]
        except zmq.ZMQError as exc:   # the proxy is gone (stopping): the REQ is stuck, make another next time
            logger.info("no statistics from the topic proxy: %s", exc)
            req.close(0)
            self._local.control = None
            return self.tally.dropped + self._injected

    def _sync(self) -> None:
        """Send a sync frame in through the XSUB; return once the tally has seen it (or after SYNC_WAIT_S)."""
        sender = getattr(self._local, "sender", None)
        if sender is None:
            sender = self._local.sender = _inproc_sender(self.context, self._inject)
        drain(sender)
        number = next(self._syncs)
        with self._seen:
            self._injected += 1
        sender.send(sync_key(number), zmq.NOBLOCK)
        with self._seen:
            self._seen.wait_for(lambda: self.tally.synced >= number or self._stopping.is_set(), SYNC_WAIT_S)

    # ------------------------------------------------------------ the threads

    def stop(self) -> None:
        self._stopping.set()
        with self._seen:
            self._seen.notify_all()
        req = self.context.socket(zmq.REQ)
        req.linger = 1000
        try:
            req.connect(self._control_address)
            req.send(b"TERMINATE", zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            logger.info("could not stop the topic proxy: %s", exc)
        finally:
            req.close()

    def run(self) -> None:
        self._tally_thread.start()
        try:
            zmq.proxy_steerable(self.xsub, self.xpub, self.capture, self.control)
        except zmq.ContextTerminated:
            pass
        except zmq.ZMQError as exc:
            logger.warning("the topic proxy stopped: %s", exc)
        finally:
            self._stopping.set()
            for sock in (self.xsub, self.xpub, self.capture, self.control):
                sock.close(0)
            self._tally_thread.join(2)

    def _tally_loop(self) -> None:
        try:
            counter = self.context.socket(zmq.SUB)
            counter.setsockopt(zmq.INVERT_MATCHING, 1)
            counter.rcvhwm = HIGH_WATER_MARK
            counter.linger = 0
            counter.connect(self._capture_address)
            sender = _inproc_sender(self.context, self._inject)
        except zmq.ZMQError as exc:   # the context went away before the tally started
            logger.info("the topic tally did not start: %s", exc)
            return
        poller = zmq.Poller()
        poller.register(counter, zmq.POLLIN)
        poller.register(sender, zmq.POLLIN)
        try:
            while not self._stopping.is_set():
                events = dict(poller.poll(200))
                if sender in events:
                    drain(sender)    # the XSUB passes every subscription up to its senders too
                if counter in events:
                    try:
                        self._count(counter, sender)
                    except zmq.ContextTerminated:
                        raise
                    except Exception:   # a tally that stopped reading would stall the proxy (XPUB_NODROP)
                        logger.exception("the topic tally failed on a frame; going on")
        except zmq.ContextTerminated:
            pass
        finally:
            counter.close(0)
            sender.close(0)

    def _count(self, counter: zmq.Socket, sender: zmq.Socket) -> None:
        recv, see, synced = counter.recv, self.tally.see, False
        for _ in range(10_000):   # then the poll again: the stop flag, the sender's notices
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            todo = see(frame)
            if todo is None:
                continue
            what, key = todo
            if what == LISTEN:
                counter.subscribe(key)       # inverted: from now on the tally skips this topic's frames
            elif what == UNLISTEN:
                counter.unsubscribe(key)
            elif what == WELCOME:
                with self._seen:
                    self._injected += 1
                sender.send(protocol.topic_frame(key, 0, 0, protocol.FLAG_WELCOME, b""), zmq.NOBLOCK)
            elif what == SYNCED:
                synced = True
        if synced:
            with self._seen:
                self._seen.notify_all()


def _inproc_sender(context: zmq.Context, address: str) -> zmq.Socket:
    """An XPUB connected to the XSUB's inproc endpoint, once the XSUB's subscribe-all has reached it (a PUB
    would drop what it sends before that)."""
    sock = context.socket(zmq.XPUB)
    sock.linger = 0
    sock.sndhwm = 0
    sock.connect(address)
    if not sock.poll(int(JOIN_WAIT_S * 1000)):
        logger.warning("the topic forwarder's XSUB did not subscribe its inproc sender within %g s", JOIN_WAIT_S)
    return sock


def drain(sock: zmq.Socket) -> None:
    """Read and discard what ``sock`` has (an XPUB sender's subscription notices)."""
    try:
        while True:
            sock.recv(zmq.NOBLOCK)
    except zmq.Again:
        pass


def _bind(socket: zmq.Socket, host: str, port: int) -> str:
    if port:
        socket.bind(f"tcp://{host}:{port}")
        return f"tcp://{host}:{port}"
    chosen = socket.bind_to_random_port(f"tcp://{host}")
    return f"tcp://{host}:{chosen}"
