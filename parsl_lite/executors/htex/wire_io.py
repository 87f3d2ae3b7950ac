"""Sending and receiving multipart messages with less Python per frame than pyzmq's helpers.

pyzmq's ``send_multipart`` and ``recv_multipart`` turn every flag into an
``enum`` (``SNDMORE | flags``, ``getsockopt(RCVMORE)``), and the usual "receive
until ``zmq.Again``" builds an exception with its message text each time the
queue runs dry. On one task's round trip, which crosses four sockets, these
were a measurable part of the Python time spent per hop. These helpers call
the socket's compiled methods with plain ints and ask ``EVENTS`` whether a
message waits instead of failing a receive to find out.

They are for the thread that owns the socket, as any ZMQ call is.
"""
from __future__ import annotations

from typing import Sequence

import zmq
from zmq.backend import Socket as _Compiled

_SNDMORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_send = _Compiled.send
_recv = _Compiled.recv
_get = _Compiled.get


def send_frames(socket: zmq.Socket, frames: Sequence[bytes], copy: bool = True) -> None:
    """``socket.send_multipart(frames, copy=copy)``, blocking as it does when the queue is full."""
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        _send(socket, frame, _SNDMORE if index < last else 0, copy)


def readable(socket: zmq.Socket) -> bool:
    """Whether a whole message waits on ``socket`` (no exception when none does)."""
    return bool(_get(socket, _EVENTS) & _POLLIN)


def recv_frames(socket: zmq.Socket, block: bool = True) -> list[bytes]:
    """One multipart message, as ``socket.recv_multipart()`` returns it.

    Raises:
        zmq.Again: ``block`` is False and no message waits.
    """
    parts = [_recv(socket, 0 if block else _NOBLOCK)]
    while _get(socket, _RCVMORE):
        parts.append(_recv(socket, 0))
    return parts
