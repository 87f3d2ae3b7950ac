"""Start-up of the htex: initial blocks beside the interchange, forked workers, the ZAP handler."""
from __future__ import annotations

import os
import re
import socket

import zmq
from zmq.utils.monitor import recv_monitor_message

from parsl_lite import python_app
from parsl_lite.executors.htex import curve
from parsl_lite.executors.htex.forked import ForkedWorker, fork_worker, _exit_code
from parsl_lite.providers import LocalProvider

from .conftest import wait_for
from .htex_helpers import local_htex, our_processes


@python_app
def whoami():
    import os

    return os.getpid(), os.getppid()


class RecordingProvider(LocalProvider):
    """A real LocalProvider that notes, at each submit, whether the executor's interchange had answered yet."""

    def __init__(self, executor_box: list, take_port: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.executor_box = executor_box
        self.take_port = take_port
        self.interchange_up_at_submit: list[bool] = []
        self.ports: list[int] = []
        self.squatters: list[socket.socket] = []

    def submit(self, command: str, tasks_per_node: int, job_name: str = "parsl_lite.auto") -> str:
        client = self.executor_box[0]._client
        self.interchange_up_at_submit.append(client is not None and client.worker_port != 0)
        port = int(re.search(r"--port (\d+)", command).group(1))
        self.ports.append(port)
        if self.take_port and len(self.ports) == 1:  # another program takes the port chosen ahead
            squatter = socket.socket()
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            self.squatters.append(squatter)
        return super().submit(command, tasks_per_node, job_name)


def _executor_with(take_port: bool = False):
    box: list = []
    provider = RecordingProvider(box, take_port=take_port, init_blocks=1, min_blocks=0, max_blocks=1)
    executor = local_htex(provider=provider)
    box.append(executor)
    return executor, provider


def test_the_initial_block_starts_before_the_interchange_is_up(make_dfk):
    executor, provider = _executor_with()
    make_dfk(executors=[executor], strategy="none")
    assert provider.interchange_up_at_submit == [False]  # submitted while the interchange was starting
    assert provider.ports == [executor._client.worker_port]  # the port chosen ahead is the one it listens on
    pid, _ = whoami().result(timeout=30)
    assert pid != os.getpid()
    assert len(executor.blocks) == 1  # the poller did not start a second one


def test_a_port_taken_meanwhile_falls_back_to_the_interchanges_choice(make_dfk):
    executor, provider = _executor_with(take_port=True)
    try:
        make_dfk(executors=[executor], strategy="none")
        assert provider.interchange_up_at_submit == [False, True]  # the early block, then the poller's
        assert executor._client.worker_port != provider.ports[0]
        assert provider.ports[1] == executor._client.worker_port
        whoami().result(timeout=30)
        assert len(executor.blocks) == 1  # the early block was cancelled
    finally:
        for squatter in provider.squatters:
            squatter.close()


def test_workers_are_forked_children_of_their_pool_and_named_as_workers(make_dfk):
    executor, _ = _executor_with()
    make_dfk(executors=[executor], strategy="none")
    seen = {}
    while len(seen) < 2:
        seen.update(f.result(timeout=30) for f in [whoami() for _ in range(4)])
    pools = our_processes("parsl_lite.executors.htex.worker_pool")
    assert len(pools) == 1
    assert set(seen.values()) == {pools[0].pid}
    workers = {p.pid: " ".join(p.cmdline()) for p in our_processes("parsl_lite.executors.htex.worker ")}
    assert set(workers) == set(seen)
    assert all("--index" in line for line in workers.values())


def test_a_forked_worker_reports_its_exit_like_popen():
    code_2 = fork_worker(["--no-such-option"], {})  # argparse refuses it: exit status 2
    assert isinstance(code_2, ForkedWorker)
    assert code_2.wait(timeout=30) == 2
    assert code_2.poll() == 2
    assert (_exit_code(None), _exit_code(3), _exit_code("bye")) == (0, 3, 1)


def test_a_killed_forked_worker_reports_the_signal():
    pid = os.fork()
    if pid == 0:  # a child that waits to be killed
        try:
            os.execv("/bin/sleep", ["sleep", "60"])
        finally:
            os._exit(1)
    child = ForkedWorker(pid)
    assert child.poll() is None
    child.kill()
    assert child.wait(timeout=30) == -9
    child.kill()  # already reaped: harmless


def _curve_pair(tmp_path):
    cert_dir = curve.create_keys(str(tmp_path / "certs"))
    context = zmq.Context()
    handler = curve.start_authenticator(context, cert_dir)
    server = context.socket(zmq.ROUTER)
    server.linger = 0
    curve.make_server(server, cert_dir)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    return cert_dir, context, handler, server, port


def test_the_zap_handler_admits_the_client_key_and_refuses_another(tmp_path):
    cert_dir, context, handler, server, port = _curve_pair(tmp_path)
    try:
        good = context.socket(zmq.DEALER)
        good.linger = 0
        curve.make_client(good, cert_dir)
        good.connect(f"tcp://127.0.0.1:{port}")
        good.send(b"hello")
        assert server.poll(30_000)
        assert server.recv_multipart()[1] == b"hello"

        stranger = context.socket(zmq.DEALER)
        stranger.linger = 0
        public, secret = zmq.curve_keypair()
        stranger.curve_publickey, stranger.curve_secretkey = public, secret
        stranger.curve_serverkey = zmq.auth.load_certificate(os.path.join(cert_dir, "server.key"))[0]
        monitor = stranger.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        stranger.connect(f"tcp://127.0.0.1:{port}")
        assert monitor.poll(30_000)
        assert recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        stranger.disable_monitor()
        monitor.close()
        for sock in (good, stranger):
            sock.close()
    finally:
        server.close()
        handler.stop()
        handler.stop()  # idempotent
        context.term()


def test_a_malformed_zap_request_is_refused(tmp_path):
    cert_dir, context, handler, server, _ = _curve_pair(tmp_path)
    try:
        assert handler.reply([b"1.0", b"7"])[2] == b"400"
        assert handler.reply([b"1.0", b"7", b"", b"addr", b"", b"NULL"])[2] == b"400"
    finally:
        server.close()
        handler.stop()
        context.term()
