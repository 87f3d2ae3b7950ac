"""The executor's side of the wire: the interchange process and the one socket to it.

One I/O thread receives on the socket. ZMQ sockets are not thread-safe, so
every call on it is made under ``_socket_lock``, and the I/O thread waits on
the socket's file descriptor (``ZMQ_FD``) and a wake-up pipe, not inside
``zmq_poll``. Submitting threads append tasks to a list and, when the list was
empty, poke the pipe; the I/O thread then sends everything queued as one
``TaskBatch``. Under load batches grow by themselves. A task submitted while
no other is out (``send_task(task, alone=True)``) skips the hand-off: the
submitting thread sends it itself, if the socket is free, which saves one
thread wake-up on each round trip of a one-at-a-time workflow.

The I/O thread also watches the interchange: a dead process, or silence past
the heartbeat threshold while tasks are out, is reported through ``on_lost``.

Results are handed to ``on_results`` after the socket lock is released, and
the I/O thread is an :class:`~parsl_lite.executors.htex.completion.InlineHost`
for the last batch of each wake-up: a lone result may be completed right there
(one thread wake-up less per round trip). Should its callbacks block, the
completer's standby retires this thread and a new one takes over the socket
(:meth:`InterchangeClient._io_stuck`); the old one exits when they return.

Before the I/O thread starts, :meth:`InterchangeClient.start` says
``ClientHello`` (with the protocol version) and waits for the answer, so an
interchange of another version is refused at start with both versions named.
Every message to the interchange carries a proof of the run's secret
(``wire_auth.py``), which :meth:`start` also writes for the pools
(:attr:`InterchangeClient.secret_file`).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Optional

import zmq

from parsl_lite.executors.htex import curve
from parsl_lite.executors.htex.completion import InlineHost, host_inline
from parsl_lite.executors.htex.errors import InterchangeLost, MalformedMessage
from parsl_lite.executors.htex.messages import (
    PROTOCOL_VERSION, Ack, ClientHello, ErrorReply, Ping, Reply, Request, ResultBatch, ShutdownRequest, StatusReply,
    TaskBatch, TaskMessage, decode, encode,
)
from parsl_lite.executors.htex.wire_auth import CLIENT, Signer, write_secret_file
from parsl_lite.executors.htex.wire_io import readable, recv_frames, send_frames
from parsl_lite.executors.htex.settings import InterchangeSettings
from parsl_lite.executors.errors import ExecutorError
from parsl_lite.fast_future import FastFuture

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 30.0
_MAX_TASKS_PER_MESSAGE = 1024
_REPLIES = (Ack, ErrorReply, StatusReply)
_PROCESS_CHECK_S = 0.05  # how often a busy I/O thread looks at the interchange process (a waitpid)


class InterchangeClient:
    """Starts the interchange and carries tasks, results and commands.

    Args:
        settings: what the interchange is started with.
        label: the executor's label, for messages.
        on_results: called in the I/O thread with each ``ResultBatch``'s results.
        on_lost: called once, in the I/O thread, if the interchange dies or falls silent.
        has_outstanding: whether tasks are out (silence only matters then).
    """

    def __init__(self, settings: InterchangeSettings, label: str, on_results: Callable[[tuple], None],
                 on_lost: Callable[[BaseException], None], has_outstanding: Callable[[], bool]) -> None:
        self.settings = settings
        self.label = label
        self._on_results = on_results
        self._on_lost = on_lost
        self._has_outstanding = has_outstanding
        self._lock = threading.Lock()
        self._socket_lock = threading.Lock()  # every call on the socket, from any thread
        self._socket_open = False
        self._outgoing: list[TaskMessage] = []
        self._commands: list[Request] = []
        self._proof = Signer(settings.secret, CLIENT)
        self._handlers: dict[type, Callable[[Any], None]] = {  # replies from the interchange, by type
            kind: self._resolve_request for kind in _REPLIES}
        self._retired = 0
        self.secret_file = ""
        self._replies: dict[int, Future] = {}
        self._request_ids = itertools.count(1)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self.process: Optional[subprocess.Popen] = None
        self.client_port = self.worker_port = 0
        self._context = zmq.Context()
        self._socket: Optional[zmq.Socket] = None

    # ------------------------------------------------------------ start / stop

    def start(self) -> None:
        """Start the interchange, learn its ports, connect, start the I/O thread.

        Raises:
            ExecutorError: the interchange did not start (with its reason, e.g. no free port).
        """
        os.makedirs(self.settings.logdir, exist_ok=True)
        self.secret_file = write_secret_file(self.settings.logdir, self.settings.secret)
        stderr = open(os.path.join(self.settings.logdir, "interchange.stderr"), "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "parsl_lite.executors.htex.interchange"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                        start_new_session=True)
        stderr.close()
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(self.settings.to_json().encode() + b"\n")
        self.process.stdin.close()
        ready, _, _ = select.select([self.process.stdout], [], [], _START_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else b""
        try:
            reply = json.loads(line)
        except ValueError:
            self.process.kill()
            self.process.wait()
            raise ExecutorError(self.label, f"the interchange did not start within {_START_TIMEOUT_S:.0f} s "
                                            f"(see {self.settings.logdir}/interchange.stderr)") from None
        if "error" in reply:
            self.process.wait()
            raise ExecutorError(self.label, f"the interchange could not start: {reply['error']}")
        self.client_port, self.worker_port = reply["client_port"], reply["worker_port"]
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        curve.make_client(self._socket, self.settings.cert_dir)
        self._socket.connect(f"tcp://{self.settings.client_address}:{self.client_port}")
        self._say_hello()
        self._socket_open = True
        self._thread = threading.Thread(target=self._run, name=f"parsl_lite-{self.label}-io", daemon=True)
        self._thread.start()

    def _say_hello(self) -> None:
        """``ClientHello`` and its answer, before the I/O thread owns the socket.

        Raises:
            ExecutorError: refused (another protocol version) or no answer.
        """
        socket = self._socket
        assert socket is not None
        socket.send_multipart(self._proof.sign(encode(ClientHello(0, PROTOCOL_VERSION, self.label))))
        deadline = time.monotonic() + _START_TIMEOUT_S
        while socket.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            try:
                reply = decode(socket.recv_multipart())
            except MalformedMessage as exc:
                reply = ErrorReply(0, f"its answer to our hello is not one we can read ({exc})")
            if isinstance(reply, Ack):
                return
            if isinstance(reply, ErrorReply):
                self._abandon()
                raise ExecutorError(self.label, f"the interchange refused this executor: {reply.reason}")
        self._abandon()
        raise ExecutorError(self.label, f"the interchange did not answer our hello within {_START_TIMEOUT_S:.0f} s "
                                        f"(see {self.settings.logdir}/interchange.log)")

    def _abandon(self) -> None:
        assert self._socket is not None and self.process is not None
        self._socket.close(linger=0)
        self.process.kill()
        self.process.wait()

    def wait_closed(self, timeout_s: float) -> None:
        """Wait for the I/O thread to end (it ends right after it reports the interchange lost)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the interchange to shut down, stop the I/O thread, make sure the process is gone."""
        self._stopping = True  # from now on the interchange exiting is expected, not a loss
        if self._thread is not None and self._thread.is_alive():
            try:
                self.request(ShutdownRequest(0), timeout_s=min(2.0, timeout_s))
            except Exception as exc:  # it may be dead already; we kill it below either way
                logger.info("interchange shutdown command: %r", exc)
            self._stop = True
            self._poke()
            if self._thread is not threading.current_thread():  # stop() from a result's callback
                self._thread.join(timeout_s)
        if self.process is not None:
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("interchange (pid %d) did not exit; killing it", self.process.pid)
                self.process.kill()
                self.process.wait()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._context.term()

    # ------------------------------------------------------------ from other threads

    def send_task(self, task: TaskMessage, alone: bool = False) -> None:
        """Queue one task; the I/O thread sends it (with whatever else is queued).

        Args:
            task: the task.
            alone: no other task of this executor is out, so no batch is to be
                had: send it from this thread if the socket is free now.
        """
        with self._lock:
            self._outgoing.append(task)
            if len(self._outgoing) != 1:
                return  # the I/O thread has been poked already
            if not (alone and self._socket_lock.acquire(blocking=False)):
                self._poke()
                return
            if not self._socket_open:  # not yet open, or closed: the I/O thread's business, as before
                self._socket_lock.release()
                self._poke()
                return
            tasks, self._outgoing = self._outgoing, []
        try:  # the socket lock is ours; the tasks are taken, in order
            self._send_tasks(tasks)
            if readable(self._socket):  # type: ignore[arg-type]
                self._poke()  # our calls may have taken the socket's wake-up: let the I/O thread look
        finally:
            self._socket_lock.release()

    def request(self, request: Request, timeout_s: float = 10.0) -> Reply:
        """Send a request to the interchange and wait for its reply.

        Args:
            request: e.g. ``StatusRequest(0)``; its ``request_id`` is replaced by a fresh one.
            timeout_s: how long to wait.

        Returns:
            ``Ack``, ``StatusReply`` (to a ``StatusRequest``) or ``ErrorReply`` (refused, with the reason).

        Raises:
            TimeoutError: no reply within ``timeout_s``.
            InterchangeLost: the connection closed before the reply came.
        """
        reply: Future = FastFuture()
        with self._lock:
            request_id = next(self._request_ids)
            self._replies[request_id] = reply
            self._commands.append(dataclasses.replace(request, request_id=request_id))
            self._poke()
        return reply.result(timeout=timeout_s)

    def _poke(self) -> None:
        os.write(self._wake_w, b"!")

    # ------------------------------------------------------------ the I/O thread

    def _io_stuck(self) -> None:
        """The I/O thread sits in a lone result's callbacks: start another on the socket (completer's lock held)."""
        stuck = self._thread
        if stuck is not None:
            self._retired += 1
            stuck.name = f"{stuck.name}-blocked-{self._retired}"
        self._thread = threading.Thread(target=self._run, name=f"parsl_lite-{self.label}-io", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        host = InlineHost(self._io_stuck)
        host_inline(host)
        try:
            self._loop(host)
        except InterchangeLost as lost:
            logger.error("executor %r: %s", self.label, lost)
            self._on_lost(lost)
        except Exception as exc:  # a bug here must fail the futures, not strand them
            logger.exception("executor %r: I/O thread failed", self.label)
            self._on_lost(InterchangeLost(f"the executor's I/O thread failed: {exc!r}"))
        finally:
            host_inline(None)
            if not host.retired:  # a retired thread's successor owns the socket
                assert self._socket is not None
                with self._socket_lock:
                    self._socket_open = False
                    self._socket.close(linger=0)
                self._fail_commands()

    def _loop(self, host: InlineHost) -> None:
        assert self._socket is not None
        poller = select.poll()  # raw descriptors: one poll(2), where zmq_poll makes a zero-timeout pass first
        zmq_fd = self._socket.getsockopt(zmq.FD)  # readable when the socket has news: then ask EVENTS
        poller.register(zmq_fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        period_ms = int(min(self.settings.heartbeat_period_s, 1.0) * 1000)
        last_heard = last_ping = last_check = time.monotonic()
        wake_r, socket_lock = self._wake_r, self._socket_lock
        arrived: list[tuple] = []
        while not self._stop:
            events = poller.poll(period_ms)  # raw descriptors only: the socket itself is not touched
            if any(fd == wake_r for fd, _ in events):
                os.read(wake_r, 65536)
            with socket_lock:
                self._flush()
                heard = self._receive_all(arrived)  # last call on the socket before we wait again
            if arrived:
                self._deliver(arrived, host)
                arrived = []
                if host.retired:
                    return  # blocked in a callback meanwhile: another thread has the socket now
            now = time.monotonic()
            if heard:
                last_heard = now
            if now - last_check < _PROCESS_CHECK_S:
                continue  # busy: the checks below run at most every _PROCESS_CHECK_S
            last_check = now
            if self.process is not None and self.process.poll() is not None:
                if self._stopping:
                    return
                raise InterchangeLost(f"the interchange process (pid {self.process.pid}) exited with code "
                                      f"{self.process.returncode}")
            if now - last_ping >= self.settings.heartbeat_period_s:
                with self._lock:  # sent by the next turn of the loop, under the socket lock
                    self._commands.append(Ping(0))
                self._poke()
                last_ping = now
                if not self._has_outstanding():
                    last_heard = now  # silence while idle is not a fault
            if now - last_heard > self.settings.heartbeat_threshold_s and self._has_outstanding():
                raise InterchangeLost(f"no word from the interchange for {now - last_heard:.1f} s "
                                      f"(heartbeat_threshold {self.settings.heartbeat_threshold_s} s)")

    def _deliver(self, arrived: list[tuple], host: InlineHost) -> None:
        """Hand the results over, in order; only the last batch may be completed in this thread (inline)."""
        last = len(arrived) - 1
        for index, results in enumerate(arrived):
            host.allowed = index == last  # a host retired in a callback must hold no later batch back
            try:
                self._on_results(results)
            finally:
                host.allowed = False

    def _flush(self) -> None:
        """Send what is queued. Socket lock held."""
        with self._lock:
            tasks, self._outgoing = self._outgoing, []
            commands, self._commands = self._commands, []
        if tasks:
            self._send_tasks(tasks)
        for command in commands:
            self._send_command(command)

    def _send_tasks(self, tasks: list[TaskMessage]) -> None:
        """Socket lock held."""
        for start in range(0, len(tasks), _MAX_TASKS_PER_MESSAGE):
            chunk = tuple(tasks[start:start + _MAX_TASKS_PER_MESSAGE])
            send_frames(self._socket, self._proof.sign(encode(TaskBatch(chunk))), copy=False)  # type: ignore[arg-type]

    def _send_command(self, request: Request) -> None:
        send_frames(self._socket, self._proof.sign(encode(request)))  # type: ignore[arg-type]

    def _receive_all(self, arrived: list[tuple]) -> bool:
        """Handle every message that waits, results into ``arrived``; whether there was one. Socket lock held."""
        socket = self._socket
        assert socket is not None
        heard = False
        while readable(socket):  # asking EVENTS is cheaper than a receive failing with zmq.Again
            heard = True
            try:
                frames = recv_frames(socket, block=False)
            except zmq.Again:
                break
            try:
                message = decode(frames)
            except MalformedMessage as exc:
                logger.error("executor %r: dropped a malformed message from the interchange: %s", self.label, exc)
                continue
            if type(message) is ResultBatch:
                arrived.append(message.results)
                continue
            handler = self._handlers.get(type(message))
            if handler is None:
                logger.error("executor %r: dropped a %s from the interchange (not one it sends)", self.label,
                             type(message).kind)
                continue
            handler(message)
        return heard

    def _resolve_request(self, reply: Reply) -> None:
        with self._lock:
            waiter = self._replies.pop(reply.request_id, None)
        if waiter is not None:
            waiter.set_result(reply)

    def _fail_commands(self) -> None:
        with self._lock:
            waiters, self._replies = list(self._replies.values()), {}
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(InterchangeLost("the connection to the interchange is closed"))

