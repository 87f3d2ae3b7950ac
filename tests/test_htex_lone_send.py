"""A lone task leaves from the submitting thread; otherwise the I/O thread sends (and batches). Real sockets."""
from __future__ import annotations

import threading

import pytest
import zmq

from parsl_lite.executors.htex.client import InterchangeClient
from parsl_lite.executors.htex.messages import StatusReply, StatusRequest, TaskMessage
from parsl_lite.executors.htex.wire_io import readable, recv_frames, send_frames

from .conftest import wait_for
from .test_htex_wire import settings_for


class RecordingClient(InterchangeClient):
    """Notes which thread sent each batch of tasks (the real send still happens)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.senders: list[tuple[str, tuple[int, ...]]] = []

    def _send_tasks(self, tasks) -> None:
        self.senders.append((threading.current_thread().name, tuple(t.task_id for t in tasks)))
        super()._send_tasks(tasks)


def task(task_id: int) -> TaskMessage:
    return TaskMessage(task_id, b"d" * 32, b"body", b"args", {})


@pytest.fixture
def client(tmp_path):
    client = RecordingClient(settings_for(tmp_path), "lone", lambda results: None, lambda exc: None, lambda: True)
    client.start()
    yield client
    client.stop()


def test_a_lone_task_is_sent_by_the_submitting_thread_and_reaches_the_interchange(client):
    client.send_task(task(1), alone=True)
    assert client.senders == [(threading.current_thread().name, (1,))]  # sent before send_task returned
    client.send_task(task(2))  # not alone: the I/O thread sends it
    wait_for(lambda: len(client.senders) == 2, what="the second task sent")
    assert client.senders[1] == ("parsl_lite-lone-io", (2,))
    status = wait_for(lambda: (s := client.request(StatusRequest(0))).pending == 2 and s, what="both tasks queued")
    assert isinstance(status, StatusReply)


def test_a_lone_task_goes_through_the_io_thread_while_the_socket_is_busy(client):
    with client._socket_lock:  # as when the I/O thread is receiving: the submitter must not wait for it
        client.send_task(task(1), alone=True)
        assert client.senders == []
    wait_for(lambda: client.senders, what="the task sent")
    assert client.senders == [("parsl_lite-lone-io", (1,))]
    wait_for(lambda: client.request(StatusRequest(0)).pending == 1, what="the task queued at the interchange")


def test_wire_io_carries_frames_and_says_when_a_message_waits():
    context = zmq.Context()
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    try:
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push.connect(f"tcp://127.0.0.1:{port}")
        assert not readable(pull)
        with pytest.raises(zmq.Again):
            recv_frames(pull, block=False)
        frames = [b"kind", b"{}", b"", b"x" * 100_000]
        send_frames(push, frames, copy=False)
        wait_for(lambda: readable(pull), what="the message waiting")
        assert recv_frames(pull) == frames
        assert not readable(pull)
    finally:
        pull.close(linger=0)
        push.close(linger=0)
        context.term()
