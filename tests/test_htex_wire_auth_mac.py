"""The proof is an HMAC-SHA256 over length-prefixed frames, whichever way ``mac`` feeds it (joined or frame by frame)."""
from __future__ import annotations

import hashlib
import hmac
import os

import pytest

from parsl_lite.executors.htex.wire_auth import CLIENT, Signer, new_secret


def reference(secret_hex: str, channel: bytes, frames: list[bytes]) -> bytes:
    body = b"".join(len(f).to_bytes(8, "little") + f for f in frames)
    return hmac.new(bytes.fromhex(secret_hex), channel + body, hashlib.sha256).digest()


@pytest.mark.parametrize("sizes", [(10, 7, 100), (0, 0), (10, 70_000), (200_000, 3, 65_536)])
def test_the_proof_is_the_same_for_small_and_big_messages(sizes):
    secret = new_secret()
    frames = [os.urandom(n) for n in sizes]
    signer = Signer(secret, CLIENT)
    assert signer.mac(frames) == reference(secret, CLIENT, frames)
    assert signer.verify(signer.sign(frames)) == frames
    recut = [frames[0] + frames[1][:1], frames[1][1:], *frames[2:]] if sizes[1] else None
    if recut is not None:  # moving a byte across frames changes the proof
        assert signer.mac(recut) != signer.mac(frames)


@pytest.mark.parametrize("key_bytes", [16, 64, 65, 200])
def test_the_proof_is_rfc_2104_hmac_for_keys_shorter_and_longer_than_a_block(key_bytes):
    secret = os.urandom(key_bytes).hex()
    frames = [b"task", os.urandom(300)]
    assert Signer(secret, CLIENT).mac(frames) == reference(secret, CLIENT, frames)
