"""The endpoint's wire loop: one thread owns the DEALER socket to the service; the task book decides.

::

    service ROUTER <══ CurveZMQ, opened by us ══> DEALER (a fresh routing id per socket; the key says who we are)
                                                    │ decode -> handler (table by type)
    TaskDelivery -> TaskBook.delivered -> executor.submit(run_faas_task) -> TasksAccepted
    future done (completion thread) -> deque + wake pipe ─┐
                                                    ▼ loop: book.completed -> TaskResults -> held in memory
    ResultsStored -> book.stored -> forgotten (spool.delete if it reached the disk)
    not acknowledged within _SPOOL_AFTER_S, not sent, disconnected, stopping -> spool (one fsync per batch)
    every heartbeat: StatusReport + status.json; silence past the threshold -> Disconnected (keep going)

Sends never block (``ZMQ_IMMEDIATE`` + ``NOBLOCK``): with no connection a
result simply stays in the spool and goes again after the next accepted hello.
"""
from __future__ import annotations

import collections
import itertools
import logging
import math
import os
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Optional

import zmq

from parsl_lite.executors.errors import ExecutorShutdown
from parsl_lite.faas import protocol as p
from parsl_lite.faas.api import DEFAULT_PAYLOAD_LIMIT
from parsl_lite.faas.endpoint import status as st
from parsl_lite.faas.endpoint.runner import run_faas_task
from parsl_lite.faas.endpoint.spool import ResultSpool
from parsl_lite.faas.endpoint.tasks import (
    Accept, Action, ForgetResults, Refuse, ResendResults, ResultWindow, Run, StoreResults, TaskBook,
)
from parsl_lite.faas.errors import EndpointLost, MalformedMessage
from parsl_lite.serialize import RemoteExceptionWrapper, serialize

logger = logging.getLogger(__name__)

_DEFAULT_PERIOD_S = 2.0      # hello retries, until the service says its heartbeat period
_HELLO_RETRY_S = 0.02       # a hello that found no connection (ZMQ_IMMEDIATE) goes again this soon, then later
_AUTH_FAILURES_FATAL = 3     # handshakes refused in a row before the endpoint gives up (exit 1, reason said)
_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                     | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
_RESULTS_WINDOW = 2          # TaskResults messages unacknowledged at once; more results wait and go together
_MAX_BATCH_BYTES = 16 * 1024 * 1024   # payload bytes per TaskResults (and per spool file), about
_RESEND_CHUNK = 512          # spooled results per TaskResults when re-sending
_SPOOL_AFTER_S = 0.25        # a result sent and not acknowledged this long goes to the disk too


class Session:
    """The conversation with the service, for as long as the daemon runs.

    Args:
        identity: ``endpoint.json`` (id, zmq_url, keys).
        settings: the ``[endpoint]`` table.
        executor: a started ``HighThroughputExecutor``.
        directory: the endpoint's directory (spool, status.json).
    """

    def __init__(self, identity: dict, settings: Any, executor: Any, directory: Path) -> None:
        self.endpoint_id: str = identity["endpoint_id"]
        self.identity = identity
        self.settings = settings
        self.executor = executor
        self.directory = Path(directory)
        self.spool = ResultSpool(self.directory / "unacked_results")
        self.book = TaskBook(self.endpoint_id, settings.max_retries_on_system_failure,
                             settings.allowed_functions, spooled=self.spool.task_ids())
        self.versions = p.versions_string()
        self.max_result_bytes = DEFAULT_PAYLOAD_LIMIT  # until the HelloReply says the service's
        self.period_s = settings.heartbeat_period or _DEFAULT_PERIOD_S
        self.threshold_s = settings.heartbeat_threshold or 5 * self.period_s
        self.state = st.STARTING
        self.refused: Optional[str] = None      # the service refused our hello: why
        self._stopping = False
        self._connected = False
        self._last_heard = 0.0
        self._hello_at = float("-inf")
        self._hello_unsent = False             # the last hello found no connection: retry soon
        self._hello_retry_s = _HELLO_RETRY_S / 2
        self._next_beat = 0.0
        self._sent_at: dict[str, float] = {}   # spooled results: when last sent
        self._unspooled: dict[str, tuple[float, p.TaskResult]] = {}   # sent, not acknowledged, not on disk yet
        self.window = ResultWindow(_RESULTS_WINDOW)   # results waiting to go together (not spooled yet)
        self._futures: dict[str, Future] = {}
        self._done: collections.deque[tuple[str, Future]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._clock = st.BlockClock()
        self._created_at = time.monotonic()
        self._last_report: dict = {}
        self._context = zmq.Context()
        self._poller = zmq.Poller()
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._socket_since = 0.0
        self._auth_failures = 0
        self._retry_socket_at = math.inf
        self.socket = self._connect()
        self._handlers: dict[type, Callable[[Any], None]] = {
            p.HelloReply: self._on_hello_reply, p.ServiceHeartbeat: self._on_heartbeat,
            p.TaskDelivery: self._on_delivery, p.ResultsStored: self._on_stored,
            p.CancelTasks: self._on_cancel, p.HelloRequired: self._on_hello_required,
        }

    def _connect(self) -> zmq.Socket:
        sock = self._context.socket(zmq.DEALER)
        # No fixed routing id: a reconnect under the same id is parked by the ROUTER while the old
        # connection lingers. The service knows us by our CurveZMQ key.
        sock.setsockopt(zmq.IMMEDIATE, 1)        # no queueing for a peer that is not there
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(self.period_s * 1000))       # ZMQ drops a dead connection
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.threshold_s * 1000))  # and dials again
        sock.curve_secretkey = self.identity["endpoint_secret_key"].encode()
        sock.curve_publickey = self.identity["endpoint_public_key"].encode()
        sock.curve_serverkey = self.identity["service_public_key"].encode()
        self._monitor = sock.get_monitor_socket(_HANDSHAKE_EVENTS)
        sock.connect(self.identity["zmq_url"])
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._socket_since = time.monotonic()
        logger.info("endpoint %s: connecting to %s", self.endpoint_id, self.identity["zmq_url"])
        return sock

    def _reconnect(self) -> None:
        """A new socket: libzmq does not retry a connection refused at the CurveZMQ handshake, and the
        service parks a second connection of our identity while the first lives (close it, linger 0, first)."""
        self._close_socket(linger_ms=0)
        self.socket = self._connect()

    def _close_socket(self, linger_ms: int) -> None:
        self._poller.unregister(self.socket)
        self._poller.unregister(self._monitor)
        self.socket.disable_monitor()
        self._monitor.close(linger=0)
        self.socket.close(linger=linger_ms)

    def _on_monitor(self) -> None:
        """CurveZMQ handshake outcomes: a refused key is said clearly, and fatal once it keeps happening."""
        from zmq.utils.monitor import recv_monitor_message

        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._auth_failures = 0
                continue
            self._auth_failures += 1
            reason = ("the service refused this endpoint's CurveZMQ key at the handshake: the endpoint was deleted "
                      "or registered again elsewhere (parsl-lite endpoint delete NAME, then configure it again)"
                      if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH else
                      "the CurveZMQ handshake with the service failed (is zmq_url a parsl_lite service?)")
            logger.error("%s (%d time(s) in a row)", reason, self._auth_failures)
            if self._auth_failures >= _AUTH_FAILURES_FATAL:
                self.refused = reason
                self.state = st.FAILED
                self._stopping = True
                return
            self._retry_socket_at = time.monotonic() + 0.2  # libzmq does not dial again after a refusal

    # ------------------------------------------------------------ the loop

    def stop(self) -> None:
        """Ask the loop to end (from a signal handler: only a flag and a byte on the wake pipe)."""
        self._stopping = True
        self._wake()

    def run(self) -> None:
        """Talk to the service until :meth:`stop` or a refused hello."""
        self._write_status()
        while not self._stopping:
            now = time.monotonic()
            if now >= self._next_beat:
                self._beat(now)
                self._next_beat = now + self.period_s
            elif self._hello_unsent and now - self._hello_at >= self._hello_retry_s:
                self._hello()
            wake_at = min(self._next_beat, self._retry_socket_at,
                          self._hello_at + self._hello_retry_s if self._hello_unsent else math.inf,
                          self._spool_due())
            timeout_ms = max(0, int((wake_at - time.monotonic()) * 1000)) + 1
            events = dict(self._poller.poll(timeout_ms))
            if self._wake_r in events:
                self._drain_wake()
            if self.socket in events:
                self._receive()
            if self._monitor in events:
                self._on_monitor()
            if time.monotonic() >= self._retry_socket_at:
                self._retry_socket_at = math.inf
                self._reconnect()
            self._collect_done()
            self._spool_overdue(time.monotonic())

    def report_soon(self) -> None:
        """Send the status report now, not at the next heartbeat (blocks or workers changed); any thread."""
        self._next_beat = 0.0
        self._wake()

    def say_bye(self, reason: str) -> None:
        """``EndpointBye`` (if connected): the service records a clean stop, not a lost endpoint."""
        if self._connected:
            self._send(p.EndpointBye(reason))
            self._connected = False

    def finish(self) -> None:
        """Spool whatever completed meanwhile, then close; call after the executor stopped."""
        self._collect_done(send=False)
        self._connected = False
        self._flush()  # whatever waited for an acknowledgement: to the spool, re-sent at the next start
        self._spool_overdue(math.inf)
        self._close_socket(linger_ms=500)
        self._context.term()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):  # the pipe is full: the loop wakes anyway
            pass

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _receive(self) -> None:
        while True:
            try:
                frames = p.recv_nowait(self.socket)
            except zmq.Again:
                return
            try:
                message = p.decode(frames)
            except MalformedMessage as exc:
                logger.error("dropped a malformed message from the service: %s", exc)
                continue
            self._last_heard = time.monotonic()
            handler = self._handlers.get(type(message))
            if handler is None:
                logger.error("dropped an unexpected %s from the service", type(message).kind)
                continue
            try:
                handler(message)
            except Exception:  # one bad step must not end the endpoint; what it held is re-delivered
                logger.exception("handling %s from the service failed", type(message).kind)

    def _send(self, message: p.Message) -> bool:
        """Send without blocking; False if there is no connection now (the caller keeps what it must)."""
        try:
            p.send_nowait(self.socket, p.encode(message))
            return True
        except zmq.Again:
            return False

    # ------------------------------------------------------------ heartbeats and hello

    def _beat(self, now: float) -> None:
        if self._connected and now - self._last_heard > self.threshold_s:
            logger.warning("the service has been silent for %.1f s (threshold %.1f s): Disconnected; "
                           "results stay spooled, reconnecting", now - self._last_heard, self.threshold_s)
            self._connected = False
            self.state = st.DISCONNECTED
            self._flush()  # to the spool, for as long as it takes
            self._spool_overdue(math.inf)
        report = self._report()
        if not self._connected:
            if self.state == st.STARTING and now - self._created_at >= self.threshold_s:
                self.state = st.DISCONNECTED  # never answered yet: say so in `endpoint list`
            if now - self._socket_since >= max(self.threshold_s, 1.0) and now - self._last_heard >= self.threshold_s:
                self._reconnect()  # nothing back on this socket for a threshold: start afresh
            if now - self._hello_at >= self.threshold_s:
                self._hello()  # a hello on the wire and no answer for a threshold (a second hello makes the
                #                 service re-deliver what we hold, so not sooner)
        else:
            self._send(p.StatusReport(report))
            self._resend_stale(now)
        self._write_status()

    def hello_outstanding(self, now: float) -> bool:
        """A hello went out on this connection less than a threshold ago and is not answered yet.

        Each hello the service accepts re-delivers every task this endpoint holds, counting an attempt,
        so a second one is sent only when the first went unanswered for a threshold.
        """
        return not self._connected and not self._hello_unsent and now - self._hello_at < self.threshold_s

    def _hello(self) -> None:
        """Say hello; while there is no connection to say it on, try again every few milliseconds."""
        self._hello_at = time.monotonic()
        hello = p.EndpointHello(p.PROTOCOL_VERSION, self.endpoint_id, self.versions, len(self.book.spooled))
        self._hello_unsent = not self._send(hello)
        # no connection yet: retry soon, backing off to the heartbeat period while the service stays away
        self._hello_retry_s = min(self._hello_retry_s * 2, self.period_s) if self._hello_unsent else _HELLO_RETRY_S

    def _on_hello_reply(self, reply: p.HelloReply) -> None:
        if not reply.accepted:
            logger.error("the service refused this endpoint: %s", reply.reason)
            self.refused = reply.reason
            self.state = st.FAILED
            self._stopping = True
            return
        self._connected = True
        self._hello_unsent = False
        self.state = st.RUNNING
        self.max_result_bytes = reply.max_result_bytes
        self.period_s = self.settings.heartbeat_period or reply.heartbeat_period_s
        self.threshold_s = self.settings.heartbeat_threshold or reply.heartbeat_threshold_s
        self.book.set_allowed_functions(reply.allowed_functions)
        logger.info("connected to the service as endpoint %s (heartbeat %.1f s, threshold %.1f s, "
                    "%d results to re-send)", self.endpoint_id, self.period_s, self.threshold_s,
                    len(self.book.spooled))
        self.window.reset()  # what was on the way to the last connection goes again now
        self._apply(self.book.hello_accepted())
        self._flush()
        self._send(p.StatusReport(self._report()))
        self._next_beat = time.monotonic() + self.period_s
        self._write_status()

    def _on_heartbeat(self, message: p.ServiceHeartbeat) -> None:
        pass  # _receive noted the time

    def _on_hello_required(self, message: p.HelloRequired) -> None:
        if self.hello_outstanding(time.monotonic()):
            return  # one per message the service did not know (a burst after its restart): one hello answers all
        logger.info("the service asks for a hello (%s)", message.reason)
        self._connected = False
        self._flush()
        self._spool_overdue(math.inf)
        self.state = st.DISCONNECTED if self.state == st.RUNNING else self.state
        self._hello()

    # ------------------------------------------------------------ tasks and results

    def _on_delivery(self, message: p.TaskDelivery) -> None:
        self._apply(self.book.delivered(message.tasks))

    def _on_stored(self, message: p.ResultsStored) -> None:
        for task_id in message.task_ids:
            self._sent_at.pop(task_id, None)
            self._unspooled.pop(task_id, None)   # stored there before it needed the disk here
        self.window.stored(message.task_ids)
        self._apply(self.book.stored(message.task_ids))
        self._flush()

    def _on_cancel(self, message: p.CancelTasks) -> None:
        logger.info("the service cancelled %d task(s); those held by the executor run to the end",
                    len(message.task_ids))

    def _apply(self, actions: list[Action]) -> None:
        submitted: list[str] = []
        refused = []
        for action in actions:
            if isinstance(action, Run):
                if self._submit(action.item):
                    submitted.append(action.item.task_id)
            elif isinstance(action, Refuse):
                refused.append(self._refusal(action))
            elif isinstance(action, Accept):
                self._send(p.TasksAccepted(action.task_ids))
            elif isinstance(action, StoreResults):
                self._store_and_send(action.results)
            elif isinstance(action, ResendResults):
                self._resend(action.task_ids)
            elif isinstance(action, ForgetResults):
                self.spool.delete(action.task_ids)
        if submitted:
            self._apply(self.book.submitted(submitted))
        if refused:
            self._apply(self.book.completed(refused))

    def _submit(self, item: p.TaskItem) -> bool:
        """Hand the task to the executor; a refusal (executor broken) becomes the task's failed result."""
        try:
            future = self.executor.submit(run_faas_task, {}, item.function_body, item.payload,
                                          item.client_versions, self.max_result_bytes)
        except Exception as exc:
            logger.error("task %s: the executor refused it: %r", item.task_id, exc)
            now = time.time()
            self._apply(self.book.completed([p.TaskResult(item.task_id, "failed", _exception_bytes(exc), 0.0, now)]))
            return False
        self._futures[item.task_id] = future
        future.add_done_callback(lambda f, task_id=item.task_id: self._future_done(task_id, f))
        return True

    def _future_done(self, task_id: str, future: Future) -> None:
        """On the executor's completion thread: hand over to the loop."""
        self._done.append((task_id, future))
        self._wake()

    def _collect_done(self, send: bool = True) -> None:
        """Turn finished futures into results, all at once: one spool write and one ``TaskResults``."""
        results = []
        while self._done:
            task_id, future = self._done.popleft()
            self._futures.pop(task_id, None)
            result = _result_of(task_id, future)
            if result is not None:
                results.append(result)
            else:
                self.book.held.discard(task_id)  # the executor stopped under it: re-delivered at the next start
        if not results:
            return
        actions = self.book.completed(results)
        if send:
            self._apply(actions)
        else:
            for action in actions:
                if isinstance(action, StoreResults):
                    self.spool.write(action.results)

    def _store_and_send(self, results: tuple[p.TaskResult, ...]) -> None:
        self.window.add(results)
        self._flush()

    def _flush(self) -> None:
        """Send what the window lets go as one ``TaskResults`` (tasks.ResultWindow); spool what could not go.

        A sent result stays in memory; only if no ``ResultsStored`` comes within ``_SPOOL_AFTER_S`` does it
        go to the spool too (:meth:`_spool_overdue`). At-least-once does not rest on the spool: the service
        re-delivers every task it holds no stored result for (and drops a duplicate result by task id), so
        the spool only saves re-running a task whose result the service missed, and the common case (stored
        within milliseconds) costs no disk write, fsync and unlink (most of the endpoint's time per result).
        """
        while True:
            batch = self.window.take(self._connected, _MAX_BATCH_BYTES)
            if not batch:
                return
            if self._connected and self._send(p.TaskResults(batch)):
                now = time.monotonic()
                for result in batch:
                    self._sent_at[result.task_id] = now
                    self._unspooled[result.task_id] = (now, result)
                self.window.sent(batch)
            else:
                self.spool.write(batch)

    def _spool_due(self) -> float:
        """When the oldest result held only in memory is due on the disk (inf: none)."""
        for sent, _result in self._unspooled.values():
            return sent + _SPOOL_AFTER_S
        return math.inf

    def _spool_overdue(self, now: float) -> None:
        """Write the results sent more than ``_SPOOL_AFTER_S`` before ``now`` and not acknowledged (one file)."""
        due = []
        for sent, result in self._unspooled.values():
            if sent + _SPOOL_AFTER_S > now:
                break   # held in the order they were sent
            due.append(result)
        if not due:
            return
        for result in due:
            del self._unspooled[result.task_id]
        self.spool.write(due)

    def _resend(self, task_ids: tuple[str, ...]) -> None:
        """Send spooled results again, in messages of at most ``_RESEND_CHUNK`` results or about
        ``_MAX_BATCH_BYTES``."""
        now = time.monotonic()
        chunk: list[p.TaskResult] = []
        size = 0
        held = [self._unspooled[t][1] for t in task_ids if t in self._unspooled]
        for result in itertools.chain(held, self.spool.read_all(t for t in task_ids if t not in self._unspooled)):
            chunk.append(result)
            size += len(result.payload)
            if len(chunk) >= _RESEND_CHUNK or size >= _MAX_BATCH_BYTES:
                self._resend_chunk(chunk, now)
                chunk, size = [], 0
        if chunk:
            self._resend_chunk(chunk, now)

    def _resend_chunk(self, chunk: list[p.TaskResult], now: float) -> None:
        if self._send(p.TaskResults(tuple(chunk))):
            for result in chunk:
                self._sent_at[result.task_id] = now

    def _resend_stale(self, now: float) -> None:
        """Results sent but not acknowledged within the threshold (a lost message) go again."""
        stale = tuple(t for t in sorted(self.book.spooled) if now - self._sent_at.get(t, float("-inf"))
                      > self.threshold_s)
        if stale:
            self.window.reset()  # a message lost on the way must not hold the window shut
            self._resend(stale)
            self._flush()

    def _refusal(self, action: Refuse) -> p.TaskResult:
        if action.why == "endpoint_lost":
            payload = serialize(EndpointLost(self.endpoint_id, action.detail))
        else:
            payload = _exception_bytes(PermissionError(action.detail))
        logger.warning("task %s refused: %s", action.task_id, action.detail)
        return p.TaskResult(action.task_id, "failed", payload, 0.0, time.time())

    # ------------------------------------------------------------ status

    def _report(self) -> dict:
        try:
            report = st.executor_report(self.executor, self._clock, time.time())
        except Exception:
            logger.exception("cannot build the status report; sending the last one")
            return self._last_report
        report["spooled_results"] = len(self.book.spooled)
        self._last_report = report
        return report

    def _write_status(self) -> None:
        report = self._last_report
        st.write_status(self.directory, self.state, endpoint_id=self.endpoint_id, reason=self.refused or "",
                        workers=report.get("connected_workers", 0), queue=self.book.outstanding,
                        spooled=len(self.book.spooled), report=report, zmq_url=self.identity["zmq_url"],
                        last_heard=time.time() - (time.monotonic() - self._last_heard) if self._last_heard else None)


def _result_of(task_id: str, future: Future) -> Optional[p.TaskResult]:
    """The task's result from its future; None if the executor was shut down under it (not a task failure)."""
    if future.cancelled():
        return None
    exc = future.exception()
    if exc is None:
        state, payload, started, finished = future.result()
        return p.TaskResult(task_id, state, payload, started, finished)
    if isinstance(exc, ExecutorShutdown):
        return None
    logger.error("task %s failed in the executor: %r", task_id, exc)
    return p.TaskResult(task_id, "failed", _exception_bytes(exc), 0.0, time.time())


def _exception_bytes(exc: BaseException) -> bytes:
    """An exception raised here (not in the user's function), as the client re-raises it."""
    return serialize(RemoteExceptionWrapper(type(exc), exc, exc.__traceback__))
