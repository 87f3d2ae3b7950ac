"""Blocks of the high-throughput executor: scaling, jobs dying behind our back, bad peers."""
from __future__ import annotations

import os
import signal

import pytest
import zmq

from parsl_lite.executors.htex.errors import ManagerLost
from parsl_lite.executors.htex.executor import HighThroughputExecutor
from parsl_lite.executors.htex.messages import Register, RegisterReply, decode, encode
from parsl_lite.executors.htex.wire_auth import CLIENT, WORKERS, Signer
from parsl_lite.providers import LocalProvider

from .conftest import wait_for
from .htex_helpers import our_processes, running_on_a_worker
from .test_htex import double, sleep_then


def test_blocks_follow_the_load_out_and_back_in(make_dfk):
    executor = HighThroughputExecutor(label="htex", max_workers_per_node=1, heartbeat_period=1, heartbeat_threshold=5,
                                      provider=LocalProvider(init_blocks=0, min_blocks=0, max_blocks=2))
    make_dfk(executors=[executor], strategy="htex_auto_scale", strategy_period=0.2, max_idletime=0.5)
    assert executor.blocks == {}
    futs = [sleep_then(1.0, i) for i in range(4)]
    wait_for(lambda: len(executor.blocks) == 2, what="scale-out to 2 blocks")
    assert [f.result(timeout=30) for f in futs] == [0, 1, 2, 3]
    wait_for(lambda: len(executor.blocks) == 0, what="idle blocks to be released")


def test_a_block_killed_behind_our_back_fails_its_tasks_at_the_next_poll(make_dfk, tmp_path):
    executor = HighThroughputExecutor(label="htex", max_workers_per_node=1, heartbeat_period=5, heartbeat_threshold=60,
                                      provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1))
    make_dfk(executors=[executor], strategy="simple", strategy_period=0.2)
    assert double(1).result(timeout=30) == 2
    fut = running_on_a_worker(tmp_path)
    [job_id] = executor.blocks.values()
    pool = wait_for(lambda: our_processes("htex.worker_pool"), what="the pool")[0]
    os.killpg(os.getpgid(pool.pid), signal.SIGKILL)  # the whole job, as a scheduler would
    with pytest.raises(ManagerLost, match="job ended"):  # the poll's verdict, not the (60 s) heartbeat's
        fut.result(timeout=30)
    assert double(2).result(timeout=30) == 4  # the strategy started a new block


@pytest.fixture
def plain_htex(make_dfk):
    executor = HighThroughputExecutor(label="htex", max_workers_per_node=1, encrypted=False, heartbeat_period=1,
                                      heartbeat_threshold=5, provider=LocalProvider(init_blocks=1, max_blocks=1))
    dfk = make_dfk(executors=[executor], strategy="none")
    assert double(1).result(timeout=30) == 2
    return executor, dfk


def dealer_to(port: int) -> tuple[zmq.Context, zmq.Socket]:
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 2000)  # closing right after a send must still deliver it
    socket.connect(f"tcp://127.0.0.1:{port}")
    return context, socket


def test_a_pool_of_another_protocol_version_is_refused_by_name(plain_htex):
    executor, _ = plain_htex
    context, socket = dealer_to(executor._client.worker_port)
    try:
        proof = Signer(executor._client.settings.secret, WORKERS)  # of this run: only the version is wrong
        socket.send_multipart(proof.sign(encode(Register(999, os.urandom(16), "9", "elsewhere", 1, 2, 2**30, 2,
                                                         "3.11.7"))))
        assert socket.poll(10_000)
        reply = decode(socket.recv_multipart())
        assert isinstance(reply, RegisterReply) and not reply.accepted
        assert "999" in reply.reason and "elsewhere" in reply.reason
    finally:
        socket.close()
        context.term()
    assert double(3).result(timeout=30) == 6


def test_malformed_messages_are_dropped_and_logged(plain_htex):
    executor, dfk = plain_htex
    secret = executor._client.settings.secret
    for port, proof in ((executor._client.worker_port, Signer(secret, WORKERS)),
                        (executor._client.client_port, Signer(secret, CLIENT))):
        context, socket = dealer_to(port)
        try:  # signed with the run's secret, so that they get as far as decoding
            socket.send_multipart(proof.sign([b"no_such_kind", b"{}"]))
            socket.send_multipart(proof.sign([b"task_batch", b"not json", b"\x00"]))
            socket.send_multipart(proof.sign([b"register"]))
        finally:
            socket.close()
            context.term()
    assert double(4).result(timeout=30) == 8
    log = os.path.join(dfk.run_dir, "htex", "interchange.log")
    wait_for(lambda: open(log).read().count("dropped a malformed message") >= 6, what="the drops to be logged")


def test_an_unauthenticated_peer_cannot_talk_to_an_encrypted_interchange(make_dfk):
    executor = HighThroughputExecutor(label="htex", max_workers_per_node=1, heartbeat_period=1, heartbeat_threshold=5,
                                      provider=LocalProvider(init_blocks=1, max_blocks=1))
    dfk = make_dfk(executors=[executor], strategy="none")
    context, socket = dealer_to(executor._client.worker_port)
    try:
        socket.send_multipart(encode(Register(1, os.urandom(16), "9", "intruder", 1, 2, 2**30, 2, "3.11.7")))
        assert not socket.poll(1500)  # no plain-text peer gets an answer
    finally:
        socket.close()
        context.term()
    assert double(5).result(timeout=30) == 10
    assert "intruder" not in open(os.path.join(dfk.run_dir, "htex", "interchange.log")).read()


def test_blocks_that_keep_failing_fail_the_tasks_instead_of_stranding_them(make_dfk):
    from parsl_lite.executors.errors import ExecutorError

    executor = HighThroughputExecutor(label="htex", launch_cmd="echo 'no python here' >&2; exit 3",
                                      heartbeat_period=1, heartbeat_threshold=5,
                                      provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1))
    make_dfk(executors=[executor], strategy="simple", strategy_period=0.2)
    with pytest.raises(ExecutorError, match="blocks failed and no worker connected.*exit code 3"):
        double(1).result(timeout=30)
    with pytest.raises(ExecutorError):
        double(2).result(timeout=5)  # the executor stays failed: new tasks fail at once
