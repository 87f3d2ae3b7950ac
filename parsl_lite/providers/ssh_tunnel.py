"""The local end of a remote port forward: each forwarded connection pumped to a local socket.

With ``SSHProvider(tunnel=True)`` the remote sshd listens on its
``127.0.0.1:<worker port>``; each connection a worker pool makes there arrives
here as a paramiko channel, which one thread copies to and from a new TCP
connection to the interchange::

    pool on host ─► host:127.0.0.1:P ─► sshd ═══ SSH ═══► channel ─► pump thread ─► 127.0.0.1:P here
"""
from __future__ import annotations

import logging
import select
import socket
import threading
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import paramiko

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 64 * 1024
_CONNECT_TIMEOUT_S = 10.0
_WAKE_S = 1.0  # how often an idle pump checks that its channel is still open


def forward_handler(address: str, port: int, where: str) -> Callable[..., None]:
    """A paramiko ``request_port_forward`` handler that pumps each channel to ``address:port``.

    paramiko calls it on its transport thread, so it only starts a thread.
    """
    def handler(channel: paramiko.Channel, origin: tuple, server: tuple) -> None:
        threading.Thread(target=_pump, args=(channel, address, port, where), daemon=True,
                         name=f"parsl_lite-ssh-tunnel-{port}").start()
    return handler


def _pump(channel: paramiko.Channel, address: str, port: int, where: str) -> None:
    """Copy bytes both ways until either side closes."""
    try:
        sock = socket.create_connection((address, port), timeout=_CONNECT_TIMEOUT_S)
    except OSError as exc:
        logger.warning("tunnel from %s: cannot reach %s:%d here: %s", where, address, port, exc.strerror or exc)
        channel.close()
        return
    sock.settimeout(None)
    try:
        while not channel.closed:
            readable, _, _ = select.select([sock, channel], [], [], _WAKE_S)
            if channel in readable:
                data = channel.recv(_CHUNK_BYTES)
                if not data:
                    break
                sock.sendall(data)
            if sock in readable:
                data = sock.recv(_CHUNK_BYTES)
                if not data:
                    break
                channel.sendall(data)
    except Exception as exc:  # noqa: BLE001 - paramiko's errors too: a broken tunnel ends quietly
        logger.debug("tunnel from %s to %s:%d closed: %r", where, address, port, exc)
    finally:
        sock.close()
        channel.close()
