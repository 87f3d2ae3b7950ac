"""The interchange process: routes tasks from the executor to workers and results back.

A single-threaded ZMQ loop around the pure :class:`~parsl_lite.executors.htex.ledger.Ledger`:
messages in are turned into ledger events, the ledger's actions are turned
into messages out. It keeps only what the ledger cannot: task payloads until
they are dispatched, function bodies by digest (for workers that join later),
and which socket identity is which worker.

Every message in must first carry a valid proof of the run's secret
(``wire_auth.py``): a peer without it is refused, counted and logged before
a byte of its message is read. What is left is decoded and dispatched through
tables keyed on the message's type; a result batch is only peeked at (its task
ids, for the ledger) and forwarded to the executor as it came. The executor
must say ``ClientHello`` (with its protocol version) before anything else.
It exits within a second of its executor's death (its parent pid changes),
telling pools and workers to shut down.

Started by the executor as ``python -m parsl_lite.executors.htex.interchange``
with its settings as JSON on stdin; it answers with one JSON line on stdout
(its ports, or an error) and then logs to ``<logdir>/interchange.log``.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from functools import partial
from typing import Any, Callable, Optional, Sequence

import zmq
from zmq.backend import zmq_poll

from parsl_lite.executors.htex import curve
from parsl_lite.executors.htex.errors import MalformedMessage, NotAuthenticated, VersionMismatch, WorkerLost
from parsl_lite.executors.htex.ledger import (
    AcceptManager, Dispatch, DropResults, FailTasks, ForgetManager, HeartbeatReceived, HoldManager, Ledger, LedgerConfig,
    LoadChanged, ManagerDraining, ManagerGone, ManagerRegistered, RejectManager, ResultsArrived, TasksArrived, Tick,
    WorkerConnected, WorkerDied as WorkerDiedEvent,
)
from parsl_lite.executors.htex.messages import (
    PROTOCOL_VERSION, UNKNOWN_TASK, Ack, BlockLost, ClientHello, Drain, ErrorReply, Heartbeat, HeartbeatAck, HoldBlocks,
    Ping, Register, RegisterReply, Reply, ResultBatch, ResultFrames, ResultMessage, Shutdown, ShutdownRequest,
    StatusReply, StatusRequest, TaskBatch, WorkerDied, WorkerHello, WorkerStarted, decode, encode, peek_results,
)
from parsl_lite.executors.htex.settings import InterchangeSettings
from parsl_lite.executors.htex.wire_auth import CLIENT, WORKERS, Signer
from parsl_lite.executors.htex.wire_io import readable, recv_frames, send_frames

logger = logging.getLogger("parsl_lite.executors.htex.interchange")


def serialize(obj: Any) -> bytes:
    """``parsl_lite.serialize.serialize``, imported on first use: dill is not loaded at start-up for a rare error."""
    from parsl_lite.serialize import serialize as _serialize

    return _serialize(obj)


_LOG_EVERY_REFUSAL_UP_TO = 20   # then one line per 1000, so a flood cannot fill the disk
_DRAIN_MOST = 1000              # messages read from one socket per wake-up, so one busy side cannot starve the other
_SATURATED_AT = 64              # messages read in one wake-up that say a backlog waits for us (LoadChanged)
_FREE_BELOW = 8                 # ... and fewer than this say it is gone
_POLLIN = int(zmq.POLLIN)


class Interchange:
    """Sockets, payloads and identities around the ledger."""

    def __init__(self, settings: InterchangeSettings) -> None:
        self.settings = settings
        self.context = zmq.Context()
        self.auth = curve.start_authenticator(self.context, settings.cert_dir) if settings.cert_dir else None
        self.client_proof = Signer(settings.secret, CLIENT)
        self.worker_proof = Signer(settings.secret, WORKERS)
        self.client = self._bind(settings.client_address, None, settings.interchange_port_range)
        self.workers = self._bind(settings.worker_address, settings.worker_port, settings.worker_port_range)
        self.client_port = int(self.client.last_endpoint.decode().rsplit(":", 1)[1])
        self.worker_port = int(self.workers.last_endpoint.decode().rsplit(":", 1)[1])
        self.ledger = Ledger(LedgerConfig(prefetch_capacity=settings.prefetch_capacity, max_batch=settings.max_batch,
                                          heartbeat_threshold_s=settings.heartbeat_threshold_s))
        self.registering: set[bytes] = set()
        self.manager_identity: dict[bytes, bytes] = {}           # manager id -> its socket identity
        self.client_identity: Optional[bytes] = None             # set by an authenticated ClientHello only
        self.worker_of: dict[bytes, tuple[bytes, int]] = {}     # socket identity -> (manager, index)
        self.identity_of: dict[tuple[bytes, int], bytes] = {}   # (manager, index) -> socket identity
        self.hosts: dict[bytes, str] = {}
        self.arrived: list[Any] = []      # tasks of this wake-up's TaskBatches, given to the ledger as one event
        self.arrived_frames: Optional[Sequence[bytes]] = None  # the frames of ``arrived`` if one batch brought all
        self.saturated = False
        self.running = True
        self.dropped = 0
        self.refused = 0
        self._from_client_table: dict[type, Callable[[bytes, Any], None]] = {
            ClientHello: self._on_client_hello,
            **{kind: partial(self._on_request, handler) for kind, handler in (
                (Ping, self._on_ping), (StatusRequest, self._on_status), (HoldBlocks, self._on_hold_blocks),
                (BlockLost, self._on_block_lost), (ShutdownRequest, self._on_shutdown))},
        }
        self._from_workers: dict[type, Callable[[bytes, Any], None]] = {
            Register: self._on_register, Heartbeat: self._on_heartbeat, WorkerHello: self._on_worker_hello,
            WorkerStarted: self._on_worker_started, WorkerDied: self._on_worker_died, Drain: self._on_drain,
            ResultFrames: self._on_results,
        }
        self._actions: dict[type, Callable[[Any], None]] = {
            Dispatch: self._dispatch, FailTasks: self._fail_tasks, AcceptManager: self._accept_manager,
            RejectManager: self._reject_manager, ForgetManager: self._forget_manager,
            DropResults: self._drop_results,
        }

    def _bind(self, address: str, port: Optional[int], port_range: tuple[int, int]) -> zmq.Socket:
        socket = self.context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a vanished peer raises instead of vanishing
        curve.make_server(socket, self.settings.cert_dir)
        if port is not None:
            socket.bind(f"tcp://{address}:{port}")
        else:
            socket.bind_to_random_port(f"tcp://{address}", min_port=port_range[0], max_port=port_range[1],
                                       max_tries=200)
        return socket

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        items = [(self.client, _POLLIN), (self.workers, _POLLIN)]  # zmq_poll itself: no Poller, no dict per wake-up
        tick_s = min(self.settings.heartbeat_period_s, 1.0)
        next_tick = time.monotonic() + tick_s
        while self.running:
            handled = 0
            for socket, _ in zmq_poll(items, max(0, int((next_tick - time.monotonic()) * 1000))):
                if socket is self.client:
                    handled += self._drain(self.client, self._from_client)
                    self._flush_tasks()
                else:
                    handled += self._drain(self.workers, self._from_worker)
            self._note_load(handled)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + tick_s
                self._apply(self.ledger.handle(Tick(now)))
                if os.getppid() != self.settings.parent_pid:
                    logger.error("the executor (pid %d) is gone: shutting down", self.settings.parent_pid)
                    self._shutdown_managers("the executor is gone")
                    return

    def _drain(self, socket: zmq.Socket, handle: Callable[[list[bytes]], None]) -> int:
        """Handle the messages waiting on the socket (at most ``_DRAIN_MOST``); return how many there were.

        The poll said one waits; after it, asking costs less than a failed receive (wire_io.py).
        """
        for count in range(_DRAIN_MOST):
            if count and not readable(socket):
                return count
            try:
                frames = recv_frames(socket, block=False)
            except zmq.Again:
                return count
            try:
                handle(frames)
            except NotAuthenticated as exc:
                self._refuse(frames, exc)
            except MalformedMessage as exc:
                self.dropped += 1
                logger.warning("dropped a malformed message (%d so far): %s", self.dropped, exc)
        return _DRAIN_MOST

    def _note_load(self, handled: int) -> None:
        """Tell the ledger when a backlog appears or goes (it batches by fair share meanwhile)."""
        saturated = handled >= _SATURATED_AT or (self.saturated and handled >= _FREE_BELOW)
        if saturated != self.saturated:
            self.saturated = saturated
            self._apply(self.ledger.handle(LoadChanged(saturated)))

    def _refuse(self, frames: list[bytes], exc: NotAuthenticated) -> None:
        """A message without this run's proof: count it, log it (not a flood of it), answer a hello."""
        self.refused += 1
        if self.refused <= _LOG_EVERY_REFUSAL_UP_TO or self.refused % 1000 == 0:
            logger.warning("refused an unauthenticated message (%d so far) from peer %s: %s", self.refused,
                           frames[0].hex(), exc)
        if b"register" in frames[1:3]:  # a pool of another run, or started with the wrong secret: tell it why
            self._send_worker(frames[0], RegisterReply(False, str(exc), self.settings.heartbeat_period_s))

    def _apply(self, actions: list) -> None:
        for action in actions:
            self._actions[type(action)](action)

    # ------------------------------------------------------------ from the executor

    def _from_client(self, frames: list[bytes]) -> None:
        identity = frames[0]
        body = self.client_proof.verify(frames[1:])  # before anything is read
        try:
            message = decode(body)
        except VersionMismatch as exc:
            self._reply(identity, ErrorReply(0, f"executor refused: {exc}"))
            raise
        if type(message) is not TaskBatch:
            self._flush_tasks()  # the ledger sees the executor's messages in the order sent
        if identity != self.client_identity and type(message) is not ClientHello:
            raise MalformedMessage(type(message).kind, "from a client that did not say ClientHello first")
        if type(message) is TaskBatch:  # the hot path; its frames are kept, to forward as they came
            self.arrived_frames = None if self.arrived else body
            self.arrived.extend(message.tasks)  # dispatched after this wake-up's batches are all read
            return
        handler = self._from_client_table.get(type(message))
        if handler is None:
            raise MalformedMessage(type(message).kind, "not a message the executor sends")
        handler(identity, message)

    def _on_client_hello(self, identity: bytes, hello: ClientHello) -> None:
        if hello.protocol_version != PROTOCOL_VERSION:
            mismatch = VersionMismatch(hello.protocol_version, PROTOCOL_VERSION, ClientHello.kind)
            logger.error("refusing executor %r: %s", hello.label, mismatch)
            self._reply(identity, ErrorReply(hello.request_id, f"executor {hello.label!r} refused: {mismatch}"))
            return
        if self.client_identity not in (None, identity):
            logger.info("executor %r connected again (new socket)", hello.label)
        self.client_identity = identity
        self._reply(identity, Ack(hello.request_id))

    def _flush_tasks(self) -> None:
        """Give the ledger the tasks read so far as one event: a deeper queue, so fuller batches.

        When the ledger sends the one batch that came, to one worker and unchanged (no body attached or left
        out), the executor's frames go on as they came: not encoded again.
        """
        if self.arrived:
            tasks, self.arrived = self.arrived, []
            frames, self.arrived_frames = self.arrived_frames, None
            actions = self.ledger.handle(TasksArrived(tasks))
            if frames is not None and len(actions) == 1 and type(actions[0]) is Dispatch:
                action = actions[0]
                identity = self.identity_of.get((action.manager_id, action.worker_index))
                if identity is not None and action.tasks == tuple(tasks):
                    self._send_worker_frames(identity, frames, TaskBatch)
                    return
            self._apply(actions)

    def _on_request(self, handler: Callable[[Any], Reply], identity: bytes, request: Any) -> None:
        self._reply(identity, handler(request))

    def _reply(self, identity: bytes, reply: Reply) -> None:
        send_frames(self.client, [identity, *encode(reply)])

    def _on_ping(self, request: Ping) -> Reply:
        return Ack(request.request_id)

    def _on_status(self, request: StatusRequest) -> Reply:
        ledger, now = self.ledger, time.monotonic()
        idle: dict[str, float] = {}
        for manager in ledger.idle_managers(now):
            idle[manager.block_id] = min(idle.get(manager.block_id, manager.idle_s), manager.idle_s)
        return StatusReply(request.request_id, ledger.pending_count, ledger.outstanding_count,
                           ledger.connected_workers, ledger.manager_statuses(), idle, ledger.block_task_counts(),
                           self.refused, self.dropped)

    def _on_hold_blocks(self, request: HoldBlocks) -> Reply:
        for manager_id in self._pools_of(set(request.block_ids)):
            self._apply(self.ledger.handle(HoldManager(manager_id)))
        return Ack(request.request_id)

    def _on_block_lost(self, request: BlockLost) -> Reply:
        for manager_id in self._pools_of({request.block_id}):
            self._apply(self.ledger.handle(ManagerGone(manager_id, request.reason, time.monotonic())))
        return Ack(request.request_id)

    def _pools_of(self, block_ids: set[str]) -> list[bytes]:
        """The registered pools (manager ids) running in these blocks."""
        return [info.manager_id for info in self.ledger.managers() if info.block_id in block_ids]

    def _on_shutdown(self, request: ShutdownRequest) -> Reply:
        self._shutdown_managers("the executor shut down")
        self.running = False
        return Ack(request.request_id)

    # ------------------------------------------------------------ from pools and workers

    def _from_worker(self, frames: list[bytes]) -> None:
        identity = frames[0]
        body = self.worker_proof.verify(frames[1:])  # before anything is read
        try:
            message = peek_results(body)  # a result batch: ids read, payloads forwarded untouched
        except VersionMismatch as exc:
            self._refuse_hello(identity, exc.kind, str(exc))
            raise
        handler = self._from_workers.get(type(message))
        if handler is None:
            raise MalformedMessage(type(message).kind, "not a message pools or workers send")
        handler(identity, message)

    def _refuse_hello(self, identity: bytes, kind: Optional[str], reason: str) -> None:
        logger.error("refusing a %s from peer %s: %s", kind, identity.hex(), reason)
        refusal = RegisterReply(False, reason, self.settings.heartbeat_period_s) if kind == Register.kind \
            else Shutdown(f"refused: {reason}")
        self._send_worker(identity, refusal)

    def _on_register(self, identity: bytes, message: Register) -> None:
        self.hosts[message.manager_id] = message.hostname
        self.manager_identity[message.manager_id] = identity
        logger.info("pool %s registering: host %s, block %s, %d workers, protocol %d, python %s",
                    message.manager_id.hex(), message.hostname, message.block_id, message.worker_count,
                    message.protocol_version, message.python_version)
        self.registering.add(message.manager_id)
        try:
            self._apply(self.ledger.handle(ManagerRegistered(message.manager_id, message.block_id, message.hostname,
                                                             message.worker_count, message.protocol_version,
                                                             time.monotonic())))
        finally:
            self.registering.discard(message.manager_id)

    def _on_heartbeat(self, identity: bytes, message: Heartbeat) -> None:
        self._apply(self.ledger.handle(HeartbeatReceived(message.manager_id, time.monotonic())))
        self._send_worker(identity, HeartbeatAck())

    def _on_worker_hello(self, identity: bytes, message: WorkerHello) -> None:
        if message.protocol_version != PROTOCOL_VERSION:
            mismatch = VersionMismatch(message.protocol_version, PROTOCOL_VERSION, WorkerHello.kind)
            self._refuse_hello(identity, WorkerHello.kind, f"worker {message.worker_index} of pool "
                                                           f"{message.manager_id.hex()}: {mismatch}")
            return
        key = (message.manager_id, message.worker_index)
        self.worker_of[identity] = key
        self.identity_of[key] = identity
        self._apply(self.ledger.handle(WorkerConnected(message.manager_id, message.worker_index, time.monotonic(),
                                                       message.pid)))

    def _on_worker_started(self, identity: bytes, message: WorkerStarted) -> None:
        logger.debug("pool %s started worker %d", message.manager_id.hex(), message.worker_index)

    def _on_worker_died(self, identity: bytes, message: WorkerDied) -> None:
        self._apply(self.ledger.handle(WorkerDiedEvent(message.manager_id, message.worker_index, message.exitcode,
                                                       time.monotonic(), message.pid,
                                                       None if message.running_task == UNKNOWN_TASK
                                                       else message.running_task)))

    def _on_drain(self, identity: bytes, message: Drain) -> None:
        logger.info("pool %s is draining (its drain_period is over)", message.manager_id.hex())
        self._apply(self.ledger.handle(ManagerDraining(message.manager_id)))

    def _on_results(self, identity: bytes, message: ResultFrames) -> None:
        key = self.worker_of.get(identity)
        if key is None:
            raise MalformedMessage("result_batch", "results from a worker that never said hello")
        arrived = ResultsArrived(key[0], key[1], message.task_ids, time.monotonic(), message.busy_s)
        if self.ledger.holds(key[0], key[1], message.task_ids):  # none dropped: on their way before the books
            self._forward_raw(message.frames)
            self._apply(self.ledger.handle(arrived))
            return
        actions = self.ledger.handle(arrived)
        if not actions or type(actions[0]) is not DropResults:  # the ledger puts a DropResults first
            self._forward_raw(message.frames)
        else:  # rare: only now are the payloads cut apart (still never unpickled)
            dropped = set(actions[0].task_ids)
            batch = decode(message.frames)
            assert isinstance(batch, ResultBatch)
            kept = tuple(r for r in batch.results if r.task_id not in dropped)
            if kept:
                self._to_client(ResultBatch(kept, batch.busy_s))
        self._apply(actions)

    # ------------------------------------------------------------ actions

    def _dispatch(self, action: Dispatch) -> None:
        identity = self.identity_of.get((action.manager_id, action.worker_index))
        if identity is None:  # cannot happen while the ledger and the routing agree; never strand tasks
            error = WorkerLost(-1, self.hosts.get(action.manager_id, "?"), action.worker_index,
                               "the interchange lost its route to this worker")
            logger.error("dispatch to unknown worker %s/%d: failing %d tasks", action.manager_id.hex(),
                         action.worker_index, len(action.tasks))
            self._to_client(ResultBatch(tuple(ResultMessage(t.task_id, "lost", serialize(error))
                                              for t in action.tasks)))
            return
        self._send_worker(identity, TaskBatch(action.tasks))

    def _fail_tasks(self, action: FailTasks) -> None:
        results = tuple(ResultMessage(tid, "lost", serialize(action.exception_for(tid))) for tid in action.task_ids)
        logger.error("failing %d tasks: %s on %s: %s", len(results), action.reason, action.hostname or "?",
                     action.details)
        self._to_client(ResultBatch(results))

    def _accept_manager(self, action: AcceptManager) -> None:
        self._send_manager(action.manager_id, RegisterReply(True, "", self.settings.heartbeat_period_s))

    def _reject_manager(self, action: RejectManager) -> None:
        logger.error("refusing pool %s: %s", action.manager_id.hex(), action.reason)
        if action.manager_id in self.registering:
            self._send_manager(action.manager_id, RegisterReply(False, action.reason, self.settings.heartbeat_period_s))
        else:
            self._send_manager(action.manager_id, Shutdown(action.reason))
        self.manager_identity.pop(action.manager_id, None)

    def _forget_manager(self, action: ForgetManager) -> None:
        logger.info("forgetting pool %s: %s", action.manager_id.hex(), action.reason)
        self._send_manager(action.manager_id, Shutdown(action.reason))
        self.manager_identity.pop(action.manager_id, None)
        for key in [k for k in self.identity_of if k[0] == action.manager_id]:
            self.worker_of.pop(self.identity_of.pop(key), None)

    def _drop_results(self, action: DropResults) -> None:
        logger.warning("dropped results of tasks %s from %s/%d: %s", list(action.task_ids),
                       action.manager_id.hex(), action.worker_index, action.reason)

    # ------------------------------------------------------------ sending

    def _to_client(self, message: Any) -> None:
        self._forward_raw(encode(message))

    def _forward_raw(self, frames: Sequence[bytes]) -> None:
        if self.client_identity is None:
            logger.error("no executor connected: dropping a message for it")
            return
        send_frames(self.client, [self.client_identity, *frames], copy=False)

    def _send_manager(self, manager_id: bytes, message: Any) -> None:
        self._send_worker(self.manager_identity.get(manager_id, manager_id), message)

    def _send_worker(self, identity: bytes, message: Any) -> None:
        self._send_worker_frames(identity, encode(message), type(message))

    def _send_worker_frames(self, identity: bytes, frames: Sequence[bytes], kind: type) -> None:
        try:
            send_frames(self.workers, [identity, *frames], copy=False)
        except zmq.ZMQError as exc:  # the peer is gone; the ledger learns it from heartbeats or the pool
            level = logging.DEBUG if kind is Shutdown else logging.WARNING  # gone is what we wanted
            logger.log(level, "could not send %s to %r: %s", kind.__name__, identity, exc)

    def _shutdown_managers(self, reason: str) -> None:
        for manager_id in self.ledger.manager_ids():
            self._send_manager(manager_id, Shutdown(reason))
        for identity in list(self.worker_of):
            self._send_worker(identity, Shutdown(reason))

    def close(self) -> None:
        if self.auth is not None:
            self.auth.stop()
        self.client.close(linger=0)
        self.workers.close(linger=100)
        self.context.term()


def main() -> int:
    settings = InterchangeSettings.from_json(sys.stdin.readline())
    os.makedirs(settings.logdir, exist_ok=True)
    from parsl_lite.log_utils import set_file_logger

    set_file_logger(os.path.join(settings.logdir, "interchange.log"),
                    level=logging.DEBUG if settings.debug else logging.INFO)
    try:
        interchange = Interchange(settings)
    except Exception as exc:
        logger.exception("interchange failed to start")
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps({"client_port": interchange.client_port, "worker_port": interchange.worker_port}), flush=True)
    logger.info("interchange up: pid %d, client port %d, worker port %d", os.getpid(), interchange.client_port,
                interchange.worker_port)
    try:
        interchange.run()
    finally:
        interchange.close()
        logger.info("interchange down (%d unauthenticated messages refused, %d malformed ones dropped)",
                    interchange.refused, interchange.dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
