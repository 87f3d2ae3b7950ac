"""Sending and receiving multipart messages with less Python per frame than pyzmq's helpers.

pyzmq's ``send_multipart`` and ``recv_multipart`` turn every flag into an
``enum`` (``SNDMORE | flags``, ``getsockopt(RCVMORE)``), and the usual "receive
until ``zmq.Again``" builds an exception with its message text each time the
queue runs dry. On one task's round trip, which crosses four sockets, these
were a measurable part of the Python time spent per hop. These helpers call
the socket's compiled methods with plain ints, read "more frames follow" from
the received frame (set in C, where ``getsockopt(RCVMORE)`` costs an enum
lookup per frame), send small frames by copy (a zero-copy send of a small
frame copies anyway, after building a memoryview), and ask a zero-timeout
poll whether a message waits instead of failing a receive to find out
(``getsockopt(EVENTS)`` costs an enum lookup too).

They are for the thread that owns the socket, as any ZMQ call is.
"""
from __future__ import annotations

from typing import Sequence

import zmq
from zmq.backend import Socket as _Compiled
from zmq.backend import zmq_poll as _poll

_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)
_COPY_BELOW = zmq.COPY_THRESHOLD  # smaller frames are copied by pyzmq whatever ``copy`` says
_send = _Compiled.send
_recv = _Compiled.recv


def send_frames(socket: zmq.Socket, frames: Sequence[bytes], copy: bool = True) -> None:
    """``socket.send_multipart(frames, copy=copy)``, blocking as it does when the queue is full.

    With ``copy=False`` only the frames of at least ``zmq.COPY_THRESHOLD`` bytes go without a copy.
    """
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        _send(socket, frame, _SNDMORE if index < last else 0, copy or len(frame) < _COPY_BELOW)


def readable(socket: zmq.Socket) -> bool:
    """Whether a whole message waits on ``socket`` (no exception when none does)."""
    return bool(_poll([(socket, _POLLIN)], 0))


def recv_frames(socket: zmq.Socket, block: bool = True) -> list[bytes]:
    """One multipart message, as ``socket.recv_multipart()`` returns it.

    Raises:
        zmq.Again: ``block`` is False and no message waits.
    """
    frame = _recv(socket, 0 if block else _NOBLOCK, False)
    parts = [frame.bytes]
    while frame.more:
        frame = _recv(socket, 0, False)
        parts.append(frame.bytes)
    return parts
