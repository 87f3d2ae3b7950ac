"""The typed wire of htex against real processes: versions in every hello, typed status, result size limit."""
from __future__ import annotations

import functools
import os

import psutil
import pytest
import zmq

from parsl_lite import python_app
from parsl_lite.executors.errors import ExecutorError
from parsl_lite.executors.htex import client as client_module
from parsl_lite.executors.htex.client import InterchangeClient
from parsl_lite.executors.htex.errors import ResultTooLarge
from parsl_lite.executors.htex.messages import (
    PROTOCOL_VERSION, Ack, HoldBlocks, ManagerStatus, Ping, Shutdown, StatusReply, StatusRequest,
    WorkerHello, decode, encode,
)
from parsl_lite.executors.htex.settings import InterchangeSettings
from parsl_lite.executors.htex.wire_auth import WORKERS, Signer

from .htex_helpers import local_htex

# one worker: a test knows which worker holds what; plain TCP: the wire's own authentication is what counts
htex = functools.partial(local_htex, max_workers_per_node=1, heartbeat_threshold=10, encrypted=False)


@python_app
def blob(size):
    return b"x" * size


def settings_for(tmp_path) -> InterchangeSettings:
    return InterchangeSettings(client_address="127.0.0.1", worker_address="127.0.0.1", worker_port=None,
                               worker_port_range=(54000, 55000), interchange_port_range=(55000, 56000),
                               heartbeat_period_s=1.0, heartbeat_threshold_s=5.0, prefetch_capacity=0, max_batch=8,
                               cert_dir=None, logdir=str(tmp_path / "ix"), parent_pid=os.getpid())


def test_a_result_over_max_payload_bytes_fails_its_future_naming_size_and_limit(make_dfk):
    make_dfk(executors=[htex(max_payload_bytes=1_000_000)], strategy="none")
    with pytest.raises(ResultTooLarge) as info:
        blob(2_000_000).result(timeout=30)
    text = str(info.value)
    assert "1000000 bytes" in text and info.value.limit == 1_000_000
    assert info.value.size > 2_000_000 and str(info.value.size) in text
    assert len(blob(500_000).result(timeout=30)) == 500_000  # under the limit: fine, and the worker still works


def test_requests_get_typed_replies(make_dfk):
    executor = htex()
    make_dfk(executors=[executor], strategy="none")
    assert blob(1).result(timeout=30) == b"x"
    status = executor._status(max_age_s=0.0)
    assert isinstance(status, StatusReply) and status.connected_workers == 1 and status.outstanding == 0
    [manager] = status.managers
    assert isinstance(manager, ManagerStatus) and manager.block_id == "0" and manager.connected_workers == 1
    assert "0" in status.block_idle_s and status.block_busy == {"0": 0}
    assert isinstance(executor.command(Ping(0)), Ack)
    assert isinstance(executor.command(HoldBlocks(0, ("0",))), Ack)
    assert executor._status(max_age_s=0.0).managers[0].held


def test_an_interchange_of_another_version_refuses_the_executor_with_both_versions(tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "PROTOCOL_VERSION", PROTOCOL_VERSION + 40)  # our side speaks "v42"
    client = InterchangeClient(settings_for(tmp_path), "old", lambda results: None, lambda exc: None, lambda: False)
    with pytest.raises(ExecutorError) as info:
        client.start()
    text = str(info.value)
    assert f"version {PROTOCOL_VERSION + 40}" in text and f"version {PROTOCOL_VERSION}" in text
    assert "refused" in text
    assert not psutil.pid_exists(client.process.pid) or psutil.Process(client.process.pid).status() == "zombie"
    log = (tmp_path / "ix" / "interchange.log").read_text()
    assert "refusing executor 'old'" in log and f"version {PROTOCOL_VERSION + 40}" in log


def test_a_worker_of_another_version_is_told_why_it_is_refused(tmp_path):
    client = InterchangeClient(settings_for(tmp_path), "ok", lambda results: None, lambda exc: None, lambda: False)
    client.start()
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.connect(f"tcp://127.0.0.1:{client.worker_port}")
        proof = Signer(client.settings.secret, WORKERS)
        socket.send_multipart(proof.sign(encode(WorkerHello(PROTOCOL_VERSION + 1, b"m" * 16, 0, 123))))
        assert socket.poll(10_000)
        reply = decode(socket.recv_multipart())
        assert isinstance(reply, Shutdown) and reply.reason.startswith("refused")
        assert f"version {PROTOCOL_VERSION + 1}" in reply.reason and f"version {PROTOCOL_VERSION}" in reply.reason
        assert isinstance(client.request(StatusRequest(0)), StatusReply)  # the interchange carries on
        refused = client.request(StatusRequest(0))
        assert refused.connected_workers == 0
    finally:
        socket.close()
        context.term()
        client.stop()
