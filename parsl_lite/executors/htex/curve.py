"""CurveZMQ keys for ``encrypted=True``: only holders of the executor's keys may connect.

The executor makes two key pairs in ``<run_dir>/<label>/certificates/``: the
interchange's (server) and one client pair shared by the executor, its pools
and their workers. The interchange runs a ZAP authenticator that admits only
the client public key found there, so a peer that knows the server's public
key but not the client's secret is refused before any message reaches us.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Optional

import zmq
import zmq.auth
import zmq.utils.z85

logger = logging.getLogger(__name__)

_SERVER = "server"
_CLIENT = "client"


def create_keys(cert_dir: str) -> str:
    """Make the server and client key pairs (private files, mode 0600); return ``cert_dir``."""
    os.makedirs(cert_dir, mode=0o700, exist_ok=True)
    for name in (_SERVER, _CLIENT):
        if not os.path.exists(os.path.join(cert_dir, f"{name}.key_secret")):
            public, secret = zmq.auth.create_certificates(cert_dir, name)
            os.chmod(secret, 0o600)
    # the authenticator admits every *.key in its folder: keep only the client's there
    allowed = os.path.join(cert_dir, "allowed")
    os.makedirs(allowed, mode=0o700, exist_ok=True)
    with open(os.path.join(cert_dir, f"{_CLIENT}.key")) as src, open(os.path.join(allowed, f"{_CLIENT}.key"), "w") as dst:
        dst.write(src.read())
    return cert_dir


def start_authenticator(context: zmq.Context, cert_dir: str) -> "ZapHandler":
    """Start the ZAP handler that admits only the client key (call in the interchange)."""
    handler = ZapHandler(context, os.path.join(cert_dir, "allowed"))
    handler.start()
    return handler


class ZapHandler:
    """Answers the context's ZAP requests (RFC 27) on a thread of its own: CURVE with an allowed key, or no.

    pyzmq's ``ThreadAuthenticator`` does the same on an asyncio loop; importing
    asyncio alone was ~40 ms of the interchange's start. This one is a blocking
    poll of the ZAP socket and a stop pipe, nothing else.

    Args:
        context: the context whose sockets ask (the ZAP endpoint is per context).
        allowed_dir: a folder of public ``*.key`` files; their keys are admitted.
    """

    _ENDPOINT = "inproc://zeromq.zap.01"

    def __init__(self, context: zmq.Context, allowed_dir: str) -> None:
        self.context = context
        self.allowed = {zmq.utils.z85.decode(key) for key in zmq.auth.load_certificates(allowed_dir)}
        self._stop_r, self._stop_w = os.pipe()
        self._ready = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Bind the ZAP endpoint (in the handler's thread, which owns the socket) and wait until it is bound."""
        self._thread = threading.Thread(target=self._run, name="parsl_lite-zap", daemon=True)
        self._thread.start()
        self._ready.wait()

    def stop(self) -> None:
        """Stop answering and close the ZAP socket. Idempotent."""
        if self._thread is None:
            return
        os.write(self._stop_w, b"x")
        self._thread.join()
        self._thread = None
        os.close(self._stop_r)
        os.close(self._stop_w)

    def _run(self) -> None:
        socket = self.context.socket(zmq.REP)
        socket.linger = 1
        try:
            socket.bind(self._ENDPOINT)
        finally:
            self._ready.set()
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self._stop_r, zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if self._stop_r in events:
                    return
                if socket in events:
                    socket.send_multipart(self.reply(socket.recv_multipart()))
        finally:
            socket.close()

    def reply(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply to one request: 200 for CURVE with an allowed key, 400 otherwise."""
        if len(request) < 6:
            logger.warning("malformed ZAP request of %d frames", len(request))
            version, request_id = (request + [b"1.0", b""])[:2]
            return [version, request_id, b"400", b"malformed request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism, *credentials = request
        if mechanism == b"CURVE" and credentials and credentials[0] in self.allowed:
            return [version, request_id, b"200", b"OK", zmq.utils.z85.encode(credentials[0]), b""]
        logger.warning("refused a %s connection from %s: not an allowed key", mechanism.decode(errors="replace"),
                       address.decode(errors="replace"))
        return [version, request_id, b"400", b"key not allowed", b"", b""]


def make_server(socket: zmq.Socket, cert_dir: Optional[str]) -> None:
    """Turn a listening socket into a Curve server (no-op when ``cert_dir`` is None)."""
    if cert_dir is None:
        return
    public, secret = zmq.auth.load_certificate(os.path.join(cert_dir, f"{_SERVER}.key_secret"))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def make_client(socket: zmq.Socket, cert_dir: Optional[str]) -> None:
    """Give a connecting socket the client keys and the server's public key (no-op without ``cert_dir``)."""
    if cert_dir is None:
        return
    public, secret = zmq.auth.load_certificate(os.path.join(cert_dir, f"{_CLIENT}.key_secret"))
    server_public, _ = zmq.auth.load_certificate(os.path.join(cert_dir, f"{_SERVER}.key"))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public
