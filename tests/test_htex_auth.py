"""Peers must prove they belong to the run, even with ``encrypted=False``: the HMAC proof and a real stranger."""
from __future__ import annotations

import functools
import os
import pickle
import stat

import psutil
import pytest
import zmq

from parsl_lite import python_app
from parsl_lite.executors.htex.errors import NotAuthenticated
from parsl_lite.executors.htex.messages import (
    PROTOCOL_VERSION, Register, RegisterReply, ResultBatch, ResultMessage, ShutdownRequest, StatusRequest,
    WorkerHello, decode, encode,
)
from parsl_lite.executors.htex.wire_auth import (
    CLIENT, WORKERS, Signer, new_secret, read_secret_file, write_secret_file,
)

from .conftest import wait_for
from .htex_helpers import local_htex, mark_then_sleep

# one worker: a test knows which worker holds what; plain TCP: the wire's own authentication is what counts
htex = functools.partial(local_htex, max_workers_per_node=1, heartbeat_threshold=10, encrypted=False)

# ---------------------------------------------------------------- the proof itself (pure)


def test_a_signed_message_verifies_and_any_change_is_refused():
    secret = new_secret()
    proof = Signer(secret, WORKERS)
    frames = encode(ResultBatch((ResultMessage(1, "ok", b"value"),)))
    signed = proof.sign(frames)
    assert list(proof.verify(signed)) == frames
    for bad in (frames,                                              # no proof at all
                [b"\0" * 32, *frames],                               # a made-up one
                Signer(new_secret(), WORKERS).sign(frames),          # another run's
                Signer(secret, CLIENT).sign(frames),                 # this run's, other channel
                [signed[0], *frames[:-1], frames[-1] + b"!"],        # a changed payload
                [signed[0], frames[0][:5], frames[0][5:]]):                  # the same bytes cut otherwise
        with pytest.raises(NotAuthenticated):
            proof.verify(bad)


def test_the_secret_file_is_private_and_the_settings_do_not_show_the_secret(tmp_path):
    secret = new_secret()
    path = write_secret_file(str(tmp_path), secret)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and read_secret_file(path) == secret
    from parsl_lite.executors.htex.settings import InterchangeSettings
    settings = InterchangeSettings("127.0.0.1", "127.0.0.1", None, (54000, 55000), (55000, 56000), 1.0, 5.0, 0, 8,
                                   None, str(tmp_path), os.getpid(), secret)
    assert secret not in repr(settings)
    assert InterchangeSettings.from_json(settings.to_json()).secret == secret


# ---------------------------------------------------------------- against a running executor


class Boom:
    """Unpickling this writes a file: proof that a stranger's bytes were unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@python_app
def double(x):
    return 2 * x


def dealer(port: int) -> tuple[zmq.Context, zmq.Socket]:
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 2000)
    socket.connect(f"tcp://127.0.0.1:{port}")
    return context, socket


def test_a_stranger_speaking_the_protocol_is_refused_and_its_pickle_never_unpickled(make_dfk, tmp_path):
    executor = htex()
    dfk = make_dfk(executors=[executor], strategy="none")
    marker, planted = tmp_path / "running", tmp_path / "unpickled"
    fut = mark_then_sleep(str(marker), 2, "the real result")
    wait_for(marker.exists, 30, "the task to run")
    task_id = next(iter(executor._futures))
    evil = pickle.dumps(Boom(str(planted)))
    manager_id = os.urandom(16)
    context, socket = dealer(executor._client.worker_port)
    try:
        socket.send_multipart(encode(Register(PROTOCOL_VERSION, manager_id, "0", "stranger", 1, 1, 2**30, 1, "3.11")))
        assert socket.poll(10_000)
        reply = decode(socket.recv_multipart())
        assert isinstance(reply, RegisterReply) and not reply.accepted and "prove" in reply.reason
        socket.send_multipart(encode(WorkerHello(PROTOCOL_VERSION, manager_id, 0, 1)))
        for status in ("ok", "error", "lost"):
            socket.send_multipart(encode(ResultBatch((ResultMessage(task_id, status, evil),))))
        socket.send_multipart([os.urandom(32), *encode(ResultBatch((ResultMessage(task_id, "ok", evil),)))])
    finally:
        socket.close()
        context.term()
    log = os.path.join(dfk.run_dir, "htex", "interchange.log")
    wait_for(lambda: open(log).read().count("refused an unauthenticated message") >= 6, 20, "the refusals logged")
    assert fut.result(timeout=30) == "the real result"  # the stranger's "result" never reached the future
    assert not planted.exists()
    assert executor._status(max_age_s=0.0).refused >= 6
    assert double(21).result(timeout=30) == 42


def test_a_stranger_on_the_executors_port_cannot_command_the_interchange(make_dfk, tmp_path):
    executor = htex()
    dfk = make_dfk(executors=[executor], strategy="none")
    assert double(1).result(timeout=30) == 2
    context, socket = dealer(executor._client.client_port)
    try:
        socket.send_multipart(encode(ShutdownRequest(1)))
        socket.send_multipart(Signer(new_secret(), CLIENT).sign(encode(ShutdownRequest(2))))
        # even with this run's proof, a client that did not say hello is not listened to
        socket.send_multipart(Signer(executor._client.settings.secret, CLIENT).sign(encode(StatusRequest(3))))
        assert not socket.poll(1000)
    finally:
        socket.close()
        context.term()
    log = os.path.join(dfk.run_dir, "htex", "interchange.log")
    wait_for(lambda: "did not say ClientHello first" in open(log).read(), 20, "the refusal logged")
    assert open(log).read().count("refused an unauthenticated message") >= 2
    assert double(2).result(timeout=30) == 4


def test_the_secret_is_on_no_command_line_and_in_no_log(make_dfk):
    executor = htex()
    dfk = make_dfk(executors=[executor], strategy="none")
    assert double(1).result(timeout=30) == 2
    secret = executor._client.settings.secret
    lines = []
    for proc in psutil.Process().children(recursive=True):
        try:
            lines.append(" ".join(proc.cmdline()))
        except psutil.Error:
            continue
    assert any("htex.worker_pool" in line for line in lines) and any("htex.worker " in line for line in lines)
    assert not any(secret in line for line in lines)
    for root, _, files in os.walk(dfk.run_dir):
        for name in files:
            if name.endswith((".log", ".stderr", ".stdout", ".sh")):
                assert secret not in open(os.path.join(root, name), errors="replace").read(), name
