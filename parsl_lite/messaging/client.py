"""The client's request channel to the broker: one TCP connection per thread, bounded waits, retries.

Every request carries the token; the first one of a client is a ``Hello``,
so a wrong token fails at once with :class:`BrokerAuthError` saying where the
token came from. A request whose connection breaks (the broker was killed
or restarted) is sent again on a new connection, dialled every
:data:`REDIAL_S` until the broker is back; one not answered within
:data:`ATTEMPT_S` is sent again too, until ``request_timeout_s``, then
:class:`BrokerUnavailable`. Retries are safe: puts carry the client's message
ids (stored once), settles name receipts (a second ack does nothing). A
``get`` waits at most its own timeout (resent on a new connection within it,
since what a killed broker delivered comes back as ready when it restarts)
and returns nothing if the broker is away.
"""
from __future__ import annotations

import itertools
import logging
import os
import socket
import struct
import threading
import time
from typing import Any, Callable, Optional

import zmq

from parsl_lite.messaging import protocol as p
from parsl_lite.messaging.errors import (
    BrokerAuthError, BrokerError, BrokerUnavailable, MalformedMessage, NoSuchQueue,
)

logger = logging.getLogger(__name__)

ATTEMPT_S = 2.0
REDIAL_S = 0.05
RECV_QUANTUM_S = 0.02
"""How often a wait for a reply checks its deadline (a reply itself wakes it at once)."""
GET_SLACK_S = 0.2
"""A ``get(timeout=s)`` waits at most ``s + GET_SLACK_S``; the broker is asked to answer by ``s - GET_SLACK_S``
(when ``s`` allows), so that on a loaded machine its "nothing came" still arrives in time and the socket
need not be replaced."""
REQUEST_TIMEOUT_S = 30.0

_forks = [0]    # forks this process came through: a client made before one is not the child's (cheaper than getpid)
os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))


class BrokerClient:
    """Requests to one broker. Safe to share between threads (each gets its own socket); after a fork the
    child makes its own context (ZMQ contexts do not survive ``fork``)."""

    def __init__(self, url: str, token: str, where: str, request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.url, self.token, self.where = url, token, where
        self.request_timeout_s = request_timeout_s
        self._ids = itertools.count(1)
        self._pid, self._fork = os.getpid(), _forks[0]
        self._context = zmq.Context()
        self._local = threading.local()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._welcome: Optional[p.Welcome] = None

    # ------------------------------------------------------------ sockets

    @property
    def context(self) -> zmq.Context:
        if self._fork != _forks[0]:   # forked: the parent's context and sockets are not ours
            self._pid, self._fork = os.getpid(), _forks[0]
            self._context, self._local, self._sockets = zmq.Context(), threading.local(), []
            self._welcome = None
        return self._context

    def thread_local(self) -> threading.local:
        """This thread's (and process's) state of this client: its sockets."""
        self.context
        return self._local

    def _socket(self, wait_s: float) -> Optional[socket.socket]:
        """This thread's connection, dialled if need be within ``wait_s``; None if the broker did not answer."""
        self.context
        sock = getattr(self._local, "socket", None)
        if sock is not None:
            return sock
        host, port = _host_port(self.url)
        end = time.monotonic() + wait_s
        while True:
            try:
                sock = socket.create_connection((host, port), timeout=max(0.01, end - time.monotonic()))
                break
            except OSError as exc:
                left = end - time.monotonic()
                if left <= 0:
                    logger.info("cannot reach the broker at %s: %s", self.url, exc)
                    return None
                time.sleep(min(REDIAL_S, left))
        sock.settimeout(None)    # blocking, bounded by the kernel's timeouts: one syscall per recv (no poll first)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(RECV_QUANTUM_S))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(ATTEMPT_S))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._local.socket = sock
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _drop_socket(self) -> None:
        sock = getattr(self._local, "socket", None)
        if sock is not None:
            self._local.socket = None
            with self._lock:
                if sock in self._sockets:
                    self._sockets.remove(sock)
            sock.close()

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        if os.getpid() == self._pid:
            for sock in sockets:
                sock.close()
            self._context.destroy(linger=0)   # also the topic sockets of other threads (publishers, subscriptions)

    # ------------------------------------------------------------ requests

    def welcome(self) -> p.Welcome:
        """The broker's ``Welcome`` (its topic addresses); the first call checks the token."""
        if self._welcome is None or self._fork != _forks[0]:
            client = f"{socket.gethostname()}:{os.getpid()}"
            reply = self._call(lambda rid: p.Hello(rid, self.token, p.PROTOCOL_VERSION, client), hello=False)
            assert isinstance(reply, p.Welcome)
            self._welcome = reply
        return self._welcome

    def request(self, make: Callable[[int, str], p.Request]) -> p.Reply:
        """Send ``make(request_id, token)`` and return the reply, retrying as the module says.

        Raises:
            BrokerAuthError, NoSuchQueue, MessageTooLarge, BrokerError: the broker refused it.
            BrokerUnavailable: no answer within ``request_timeout_s``.
        """
        return self._call(lambda rid: make(rid, self.token))

    def _call(self, make: Callable[[int], p.Request], hello: bool = True) -> p.Reply:
        if hello:
            self.welcome()
        deadline = time.monotonic() + self.request_timeout_s
        while True:
            reply = self._attempt(make(next(self._ids)), min(ATTEMPT_S, max(0.0, deadline - time.monotonic())))
            if reply is not None:
                return _checked(reply, self)
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(f"the broker at {self.url} (from {self.where}) did not answer within "
                                        f"{self.request_timeout_s:g} s")
            logger.info("no answer from the broker at %s; retrying", self.url)

    def get(self, make: Callable[[int, str], p.GetMessages], timeout_s: float) -> Optional[p.Delivered]:
        """A ``GetMessages`` answered within ``timeout_s`` (+ :data:`GET_SLACK_S` for the reply to travel),
        else None."""
        self.welcome()
        reply = self._attempt(make(next(self._ids), self.token), timeout_s + GET_SLACK_S)
        return None if reply is None else _checked(reply, self)  # type: ignore[return-value]

    def _attempt(self, request: p.Request, wait_s: float) -> Optional[p.Reply]:
        """The reply to ``request`` within ``wait_s``, or None (then the connection is replaced: a late reply
        to this request must not be taken for the next one's). A broken connection is dialled again and
        the request sent again within ``wait_s``."""
        parts = p.stream_parts(p.encode(request))
        end = time.monotonic() + wait_s
        while True:
            sock = self._socket(end - time.monotonic())
            if sock is None:
                return None
            try:
                _send(sock, parts)
                while True:
                    frames = _receive(sock, end)
                    if frames is None:
                        self._drop_socket()
                        return None
                    try:
                        reply = p.decode(frames)
                    except MalformedMessage as exc:
                        logger.warning("malformed reply from %s: %s", self.url, exc)
                        continue
                    if reply.request_id == request.request_id or (
                            reply.request_id == 0 and isinstance(reply, p.ErrorReply)):
                        return reply
            except (OSError, MalformedMessage) as exc:     # the broker went away (or spoke nonsense)
                logger.info("lost the connection to the broker at %s: %r", self.url, exc)
                self._drop_socket()
                left = end - time.monotonic()
                if left <= 0:
                    return None
                time.sleep(min(REDIAL_S, left))

    def stats(self) -> dict[str, Any]:
        reply = self.request(lambda rid, tok: p.StatsRequest(rid, tok))
        assert isinstance(reply, p.Stats)
        return reply.stats


def _host_port(url: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` (HOST may be ``[v6]``)."""
    host, _, port = url.partition("://")[2].rpartition(":")
    return host.strip("[]"), int(port)


def _timeval(seconds: float) -> bytes:
    return struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))


def _send(sock: socket.socket, parts: list[bytes]) -> None:
    """Raises:
        OSError: the broker took nothing for ``ATTEMPT_S`` (SO_SNDTIMEO), or the connection broke.
    """
    sent = sock.sendmsg(parts)
    total = sum(map(len, parts))
    if sent < total:
        sock.sendall(b"".join(parts)[sent:])


def _receive(sock: socket.socket, end: float) -> Optional[list[bytes]]:
    """The frames of the next message, or None if it did not come by ``end`` (``time.monotonic``; checked
    every :data:`RECV_QUANTUM_S`, the socket's SO_RCVTIMEO).

    Raises:
        ConnectionError: the broker closed the connection.
        MalformedMessage: not a message of ours.
    """
    buffer = b""
    size = 0
    while True:
        try:
            chunk = sock.recv(max(_RECV_BYTES, min(size - len(buffer), 1 << 20)))
        except BlockingIOError:
            if time.monotonic() >= end:
                return None
            continue
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        buffer = buffer + chunk if buffer else chunk
        size = size or p.stream_size(buffer)
        if size and len(buffer) >= size:
            return p.stream_frames(buffer, 0, size)
        if size > 4 * _RECV_BYTES and type(buffer) is bytes:
            buffer = bytearray(buffer)           # a long reply: append in place, not by copies


_RECV_BYTES = 64 * 1024   # under malloc's mmap threshold: 256 KiB cost an mmap, mremap and munmap per reply


def _checked(reply: p.Reply, client: BrokerClient) -> p.Reply:
    if not isinstance(reply, p.ErrorReply):
        return reply
    if reply.code in ("auth", "version"):
        raise BrokerAuthError(f"the broker at {client.url} refused this client: {reply.text} "
                              f"(token from {client.where})")
    if reply.code == "no_such_queue":
        raise NoSuchQueue(reply.text)
    raise BrokerError(reply.code, reply.text)


# ---------------------------------------------------------------- the process's default client

_default: Optional[BrokerClient] = None
_exported: dict[str, str] = {}
_default_lock = threading.Lock()


def default_client() -> BrokerClient:
    """The broker named by the environment or ``broker.json`` (see ``paths.locate``), one per process.

    It also puts the broker's URL and token into ``os.environ``, so processes this one starts later
    (workers, endpoints) find the same broker.
    """
    global _default
    client = _default
    if client is not None:      # the hot path (every publish): no lock, no import
        return client
    from parsl_lite.messaging.paths import TOKEN_ENV, URL_ENV, locate
    with _default_lock:
        if _default is None:
            url, token, where = locate()
            if url.startswith(("amqp://", "amqps://")):
                from parsl_lite.messaging.amqp import AmqpClient
                _default = AmqpClient(url, where)   # type: ignore[assignment]
            else:
                _default = BrokerClient(url, token, where)
            for name, value in ((URL_ENV, url), (TOKEN_ENV, token)):
                if name not in os.environ:
                    os.environ[name] = _exported[name] = value
        return _default


def reset_default_client() -> None:
    """Forget the default client and the variables it exported (tests, or after the broker moved)."""
    global _default
    with _default_lock:
        client, _default = _default, None
        for name, value in list(_exported.items()):
            if os.environ.get(name) == value:
                del os.environ[name]
        _exported.clear()
    if client is not None:
        client.close()
