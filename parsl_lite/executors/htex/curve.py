"""CurveZMQ keys for ``encrypted=True``: only holders of the executor's keys may connect.

The executor makes two key pairs in ``<run_dir>/<label>/certificates/``: the
interchange's (server) and one client pair shared by the executor, its pools
and their workers. The interchange runs a ZAP authenticator that admits only
the client public key found there, so a peer that knows the server's public
key but not the client's secret is refused before any message reaches us.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

import zmq
import zmq.auth

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

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


def start_authenticator(context: zmq.Context, cert_dir: str) -> "ThreadAuthenticator":
    """Start the ZAP handler that admits only the client key (call in the interchange)."""
    from zmq.auth.thread import ThreadAuthenticator  # pulls in asyncio: only the interchange needs it

    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=os.path.join(cert_dir, "allowed"))
    return auth


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
