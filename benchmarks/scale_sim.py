"""Simulated worker pools that speak the real htex wire, many in one process.

``python -m benchmarks.scale_sim --port P --secret-file F --pools M --workers W``
connects M pools of W workers each to the interchange at ``127.0.0.1:P``.
Each pool is one DEALER (identity: its manager id) that says ``Register`` with
:data:`PROTOCOL_VERSION`, waits for the ``RegisterReply``, then opens one
DEALER per worker slot, each saying ``WorkerHello``, and reports
``WorkerStarted`` for the slot, as ``worker_pool.py`` and ``worker.py`` do. A
pool heartbeats at the period the reply names. A worker decodes every
``TaskBatch`` (the real decoder) and answers at once with a ``ResultBatch`` of
``serialize(None)`` payloads. Every message sent carries the run's proof
(``wire_auth.Signer``), so the interchange treats these pools as its own; with
``--cert-dir`` every socket is a CurveZMQ client with the executor's keys, as
the real ones are when ``encrypted=True``.

Thousands of sockets live in one loop: ``select.epoll`` on the sockets' ZMQ
descriptors, so a wake-up costs in proportion to the sockets with news, not
to all of them. A ZMQ descriptor only signals a change (edge), and a send
may consume the signal, so a socket is drained until its ``EVENTS`` shows no
input after every wake-up and after every send on it, and every socket is
swept twice a second as a safety net.

Control on stdin, one word a line; answers are JSON lines on stdout:
``stats`` (the counters now; ``heartbeat_rtt_s_max`` is the longest
heartbeat round trip since the previous ``stats``, ``heartbeat_gap_s_max`` the longest a pool went without
an answer, the silence a real pool holds against its threshold), ``quit`` (the counters, then exit). The first
line written is ``{"event": "registered", ...}`` once every pool got its reply.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import select
import sys
import time
import uuid
from collections import deque
from typing import Any, Optional

import zmq

from parsl_lite.executors.htex import curve
from parsl_lite.executors.htex.errors import MalformedMessage
from parsl_lite.executors.htex.messages import (
    PROTOCOL_VERSION, Heartbeat, HeartbeatAck, Message, Register, RegisterReply, ResultBatch, ResultMessage, Shutdown,
    TaskBatch, WorkerHello, WorkerStarted, decode, encode,
)
from parsl_lite.executors.htex.wire_auth import WORKERS, Signer, read_secret_file
from parsl_lite.serialize import serialize

logger = logging.getLogger(__name__)

_SWEEP_S = 0.5


class SimWorker:
    """One worker slot: its own connection, answering every task at once."""

    __slots__ = ("pool", "index", "sock")

    def __init__(self, pool: "SimPool", index: int, sock: zmq.Socket) -> None:
        self.pool, self.index, self.sock = pool, index, sock


class SimPool:
    """One pool: registers, heartbeats, owns its workers' slots."""

    def __init__(self, number: int, sock: zmq.Socket, manager_id: bytes) -> None:
        self.number = number
        self.sock = sock
        self.manager_id = manager_id
        self.registered = False
        self.next_beat = float("inf")
        self.period = 1.0
        self.workers: list[SimWorker] = []
        self.beats_out: deque[float] = deque()   # send times of heartbeats not yet answered
        self.last_ack = float("inf")              # when the last heartbeat answer came (a pool's "last contact")
        self.shutdown_reason: Optional[str] = None


class Simulator:
    """The pools of this process, their sockets and one epoll loop around them."""

    def __init__(self, port: int, secret: str, pools: int, workers: int, first_block: int,
                 cert_dir: Optional[str] = None) -> None:
        self.cert_dir = cert_dir
        self.address = f"tcp://127.0.0.1:{port}"
        self.proof = Signer(secret, WORKERS)
        self.workers_per_pool = workers
        self.context = zmq.Context()
        self.context.set(zmq.MAX_SOCKETS, 2 * pools * (workers + 1) + 64)
        self.epoll = select.epoll()
        self.owner: dict[int, Any] = {}     # ZMQ descriptor -> SimPool or SimWorker
        self.payload = serialize(None)
        self.counts = {"tasks": 0, "task_batches": 0, "heartbeats_sent": 0, "heartbeat_acks": 0,
                       "unexpected": 0, "malformed": 0, "heartbeat_rtt_s_sum": 0.0, "heartbeat_rtt_s_max": 0.0,
                       "heartbeat_gap_s_max": 0.0}
        self.pools = [self._new_pool(first_block + i) for i in range(pools)]
        self.running = True
        self.announced = False

    # ------------------------------------------------------------ sockets

    def _socket(self, identity: bytes, owner: Any) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IDENTITY, identity)
        curve.make_client(sock, self.cert_dir)  # as the real pools and workers: CurveZMQ when encrypted
        sock.connect(self.address)
        fd = sock.getsockopt(zmq.FD)
        self.owner[fd] = owner
        self.epoll.register(fd, select.EPOLLIN)
        return sock

    def _new_pool(self, block: int) -> SimPool:
        manager_id = uuid.uuid4().bytes
        pool = SimPool(block, None, manager_id)  # type: ignore[arg-type]
        pool.sock = self._socket(manager_id, pool)
        self._send(pool.sock, Register(PROTOCOL_VERSION, manager_id, str(block), "sim", os.getpid(),
                                       self.workers_per_pool, 2**34, self.workers_per_pool, "3"))
        return pool

    def _send(self, sock: zmq.Socket, message: Message) -> None:
        sock.send_multipart(self.proof.sign(encode(message)), copy=False)

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        """Serve until ``quit`` on stdin (or stdin closes)."""
        self.epoll.register(sys.stdin.fileno(), select.EPOLLIN)
        next_sweep = time.monotonic() + _SWEEP_S
        while self.running:
            now = time.monotonic()
            timeout = min(next_sweep, *(p.next_beat for p in self.pools)) - now
            for fd, _ in self.epoll.poll(max(0.0, min(timeout, _SWEEP_S)), 512):
                owner = self.owner.get(fd)
                if owner is None:
                    self._command(sys.stdin.readline().strip())
                else:
                    self._service(owner)
            now = time.monotonic()
            for pool in self.pools:
                if now >= pool.next_beat:
                    self._send(pool.sock, Heartbeat(pool.manager_id))
                    pool.beats_out.append(now)
                    self.counts["heartbeats_sent"] += 1
                    pool.next_beat = now + pool.period
                    self._service(pool)
            if now >= next_sweep:
                next_sweep = now + _SWEEP_S
                for owner in list(self.owner.values()):
                    self._service(owner)
            if not self.announced and all(p.registered or p.shutdown_reason for p in self.pools):
                self.announced = True
                self._say({**self.stats(), "event": "registered"})

    def _service(self, owner: Any) -> None:
        """Read every message waiting on the owner's socket (and what sending its answers uncovers)."""
        sock = owner.sock
        on_message = self._on_worker if type(owner) is SimWorker else self._on_pool
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frames = sock.recv_multipart(copy=True)
            try:
                message = decode(frames)
            except MalformedMessage:
                self.counts["malformed"] += 1
                continue
            on_message(owner, message)

    def _on_worker(self, worker: SimWorker, message: Message) -> None:
        if type(message) is TaskBatch:
            payload = self.payload
            results = tuple(ResultMessage(task.task_id, "ok", payload) for task in message.tasks)
            self._send(worker.sock, ResultBatch(results))
            self.counts["tasks"] += len(results)
            self.counts["task_batches"] += 1
        elif type(message) is Shutdown:
            worker.pool.shutdown_reason = worker.pool.shutdown_reason or f"worker: {message.reason}"
        else:
            self.counts["unexpected"] += 1

    def _on_pool(self, pool: SimPool, message: Message) -> None:
        if type(message) is HeartbeatAck:
            now = time.monotonic()
            rtt = now - pool.beats_out.popleft() if pool.beats_out else 0.0
            counts = self.counts
            counts["heartbeat_gap_s_max"] = max(counts["heartbeat_gap_s_max"], now - pool.last_ack)
            pool.last_ack = now
            counts["heartbeat_acks"] += 1
            counts["heartbeat_rtt_s_sum"] += rtt
            counts["heartbeat_rtt_s_max"] = max(counts["heartbeat_rtt_s_max"], rtt)
        elif type(message) is RegisterReply:
            if not message.accepted:
                pool.shutdown_reason = f"refused: {message.reason}"
                return
            pool.registered = True
            pool.last_ack = time.monotonic()
            pool.period = message.heartbeat_period_s
            pool.next_beat = time.monotonic() + pool.period * (pool.number % 10 + 1) / 10  # spread the beats
            self._start_workers(pool)
        elif type(message) is Shutdown:
            pool.shutdown_reason = message.reason
            logger.info("pool %d told to shut down: %s", pool.number, message.reason)
        else:
            self.counts["unexpected"] += 1

    def _start_workers(self, pool: SimPool) -> None:
        for index in range(self.workers_per_pool):
            worker = SimWorker(pool, index, None)  # type: ignore[arg-type]
            worker.sock = self._socket(os.urandom(8), worker)
            pool.workers.append(worker)
            self._send(worker.sock, WorkerHello(PROTOCOL_VERSION, pool.manager_id, index, 0))
            self._send(pool.sock, WorkerStarted(pool.manager_id, index, 0))

    # ------------------------------------------------------------ control

    def stats(self) -> dict[str, Any]:
        lost = {str(p.number): p.shutdown_reason for p in self.pools if p.shutdown_reason}
        now = time.monotonic()
        silent = max((now - p.last_ack for p in self.pools if p.registered), default=0.0)  # not answered yet
        self.counts["heartbeat_gap_s_max"] = max(self.counts["heartbeat_gap_s_max"], silent)
        return {"event": "stats", "time": time.monotonic(), "pools": len(self.pools),
                "registered": sum(p.registered for p in self.pools),
                "workers": sum(len(p.workers) for p in self.pools), "lost": lost, **self.counts}

    def _command(self, word: str) -> None:
        if word == "stats":
            self._say(self.stats())
            self.counts["heartbeat_rtt_s_max"] = self.counts["heartbeat_gap_s_max"] = 0.0  # maxima per window
        elif word in ("quit", ""):
            self._say(self.stats())
            self.running = False

    @staticmethod
    def _say(record: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        for owner in self.owner.values():
            owner.sock.close(linger=0)
        self.epoll.close()
        self.context.term()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="simulated htex worker pools (benchmarks)")
    parser.add_argument("--port", type=int, required=True, help="the interchange's worker port")
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--pools", type=int, required=True)
    parser.add_argument("--workers", type=int, default=32, help="worker slots per pool")
    parser.add_argument("--first-block", type=int, default=0, help="block id of the first pool")
    parser.add_argument("--cert-dir", default=None, help="the executor's CurveZMQ keys (encrypted=True)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sim = Simulator(args.port, read_secret_file(args.secret_file), args.pools, args.workers, args.first_block,
                    args.cert_dir)
    try:
        sim.run()
    finally:
        sim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
