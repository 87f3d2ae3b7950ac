"""Proof that a message to the interchange comes from this run, with or without encryption.

With ``encrypted=False`` anyone who reaches the worker port could register a
pool and send back a "result" that the user's process would unpickle. So every
message *to* the interchange (from the executor, its pools and their workers)
starts with one extra frame: an HMAC-SHA256 of the message's frames, keyed
with a per-run secret. The interchange checks it before it decodes anything;
a message without a valid proof is refused, counted and logged, and its bytes
go nowhere.

The secret is made by the executor when it starts (:func:`new_secret`) and
reaches the interchange inside its settings on stdin, the pools through a
0600 file in the run directory (:func:`write_secret_file`; its path, not the
secret, is on their command line) and the workers through their environment
(:data:`SECRET_ENV`), never through ``argv`` where ``ps`` shows it.

One HMAC per message, not per task: a batch of results costs one hash over its
frames (a few µs for small batches; SHA-256 runs at GB/s for big payloads).
The HMAC is computed from its two pads hashed once (RFC 2104: the inner and
outer SHA-256 states after ``key ^ ipad`` and ``key ^ opad``), copied per
message: 1.7 µs for a small message, where ``hmac.digest`` sets the key up
again on every call (4.8 µs) and Python's ``HMAC`` object costs more still.
Messages the interchange sends are not signed: its peers connected to it, a
stranger cannot speak on those connections without being on the path.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
from itertools import chain
from typing import Final, Sequence

from parsl_lite.executors.htex.errors import NotAuthenticated

SECRET_ENV: Final = "PARSL_LITE_HTEX_SECRET"
SECRET_FILE: Final = "htex.secret"
CLIENT: Final = b"client"
"""Channel of the executor's messages (so its proofs are not valid on the worker port, nor the reverse)."""
WORKERS: Final = b"workers"
"""Channel of the pools' and workers' messages."""
_MAC_BYTES: Final = 32
_SHA256_BLOCK: Final = 64
_JOIN_UP_TO: Final = 64 * 1024
_U64 = struct.Struct("<Q").pack
_chain = chain.from_iterable


def new_secret() -> str:
    """A fresh random secret, as hex (it travels in JSON settings and environments)."""
    return secrets.token_hex(32)


def write_secret_file(directory: str, secret_hex: str) -> str:
    """Write the secret to ``<directory>/htex.secret``, readable by its owner only; return the path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, SECRET_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file keeps its mode through O_CREAT: make sure
        os.write(fd, secret_hex.encode("ascii"))
    finally:
        os.close(fd)
    return path


def read_secret_file(path: str) -> str:
    """The secret written by :func:`write_secret_file`.

    Raises:
        OSError: the file cannot be read (e.g. the run directory is not shared with this node).
    """
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()


class Signer:
    """Signs (peers) and verifies (the interchange) the messages of one channel.

    Args:
        secret_hex: the run's secret.
        channel: :data:`CLIENT` or :data:`WORKERS`.
    """

    def __init__(self, secret_hex: str, channel: bytes) -> None:
        key = bytes.fromhex(secret_hex)
        if len(key) < 16:
            raise ValueError("the run's secret must be at least 16 bytes")
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))  # the pads, hashed once (RFC 2104)
        self._inner.update(channel)
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def mac(self, frames: Sequence[bytes]) -> bytes:
        """The proof over ``frames``; each frame's length goes in first, so frames cannot be re-cut."""
        lengths = list(map(len, frames))
        pairs = zip(map(_U64, lengths), frames)  # (length, frame), interleaved by C loops, not Python ones
        inner = self._inner.copy()
        if sum(lengths) <= _JOIN_UP_TO:  # one update over the joined bytes
            inner.update(b"".join(_chain(pairs)))
        else:  # big payloads are not copied
            for prefix, frame in pairs:
                inner.update(prefix)
                inner.update(frame)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def sign(self, frames: list[bytes]) -> list[bytes]:
        """``[proof, *frames]``, ready for ``send_multipart``."""
        return [self.mac(frames), *frames]

    def verify(self, frames: Sequence[bytes]) -> Sequence[bytes]:
        """The message frames after a valid proof.

        Raises:
            NotAuthenticated: no proof frame, or one that does not match.
        """
        if len(frames) < 2 or len(frames[0]) != _MAC_BYTES:
            raise NotAuthenticated("no proof frame in front of the message")
        if not hmac.compare_digest(frames[0], self.mac(frames[1:])):
            raise NotAuthenticated("the proof does not match the message (not signed with this run's secret)")
        return frames[1:]
