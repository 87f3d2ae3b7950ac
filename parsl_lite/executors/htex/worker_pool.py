"""A worker pool: one per node of a block. Registers the node, keeps its workers alive.

The pool ("manager") does not carry tasks: its workers talk to the interchange
directly. It registers (protocol version, host, cores, memory, worker count),
heartbeats, forks one worker process per slot (``forked.py``), and when a worker dies says so
(``WorkerDied`` with the exit code or signal and the task it was running, read
from the slot file the workers write, so only that task fails with
``WorkerLost``) and starts a replacement. It exits, taking its workers with it,
when the interchange says so, when its connection to the interchange drops and
does not come back within a couple of seconds (the interchange died: a ZMQ
socket monitor sees the disconnect), or when the interchange falls silent past
the heartbeat threshold. Workers die with it even mid-task (parent-death signal).

``--drain-period S``: S seconds after it started, the pool sends ``Drain``; the
interchange gives it no new task and, once its workers hold none, tells it to
shut down; it exits and its block's job ends, for the strategy to replace.

Every message it sends starts with a proof of the run's secret
(``wire_auth.py``), read from ``--secret-file`` (or ``$PARSL_LITE_HTEX_SECRET``)
and handed to its workers through their environment.

Started by a provider through a launcher, e.g.::

    python -m parsl_lite.executors.htex.worker_pool --address 127.0.0.1 --port 54001 \\
        --block-id 0 --max-workers-per-node 2 --secret-file runinfo/000/htex/htex.secret \\
        --logdir runinfo/000/htex/block-0
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import Any, Callable, Optional

import zmq
from zmq.utils.monitor import recv_monitor_message

from parsl_lite.executors.htex import curve
from parsl_lite.executors.htex.errors import MalformedMessage, describe_exit
from parsl_lite.executors.htex.messages import (
    NO_TASK, PROTOCOL_VERSION, UNKNOWN_TASK, Drain, Heartbeat, HeartbeatAck, Message, Register, RegisterReply,
    Shutdown, WorkerDied, WorkerStarted, decode, encode,
)
from parsl_lite.executors.htex.forked import ForkedWorker, fork_worker
from parsl_lite.executors.htex.slots import SlotFile
from parsl_lite.executors.htex.wire_auth import SECRET_ENV, WORKERS, Signer, read_secret_file

logger = logging.getLogger("parsl_lite.executors.htex.worker_pool")

_CHECK_WORKERS_S = 0.05      # how often dead workers are looked for where a worker's exit cannot wake the loop
_FAST_DEATHS_BEFORE_GIVING_UP = 5
_RECONNECT_IVL_MS = 10        # first redial after a refused connect (ZMQ's default: 100 ms)
_RECONNECT_IVL_MAX_MS = 200   # then backing off to this
_RECONNECT_GRACE_S = 2.0     # a dropped connection that is not back by then: the interchange is gone


def worker_count(max_workers_per_node: Optional[int], cores_per_worker: float,
                 mem_per_worker: Optional[float], cores: int, mem_bytes: int) -> int:
    """How many workers this node gets: the smallest of the three limits, at least one."""
    limits = [max(1, math.floor(cores / cores_per_worker))]
    if max_workers_per_node is not None:
        limits.append(max_workers_per_node)
    if mem_per_worker:
        limits.append(max(1, math.floor(mem_bytes / (mem_per_worker * 2**30))))
    return max(1, min(limits))


class WorkerPool:
    """The pool's socket loop and its worker processes."""

    def __init__(self, args: argparse.Namespace, secret: str) -> None:
        self.args = args
        self.secret = secret
        self.proof = Signer(secret, WORKERS)
        self.manager_id = uuid.uuid4().bytes
        # a container's share of the node (PARSL_CORES, set by providers that know it) wins over the node's count
        self.cores = int(float(os.environ.get("PARSL_CORES") or 0)) or os.cpu_count() or 1
        self.mem_bytes = _memory_bytes()
        self.count = worker_count(args.max_workers_per_node, args.cores_per_worker, args.mem_per_worker,
                                  self.cores, self.mem_bytes)
        self.workers: dict[int, ForkedWorker] = {}
        # a pidfd per worker, polled beside the socket: readable when it exits, so an idle pool sleeps until
        # the next heartbeat instead of looking for dead workers every _CHECK_WORKERS_S (pidfd_open: Linux 5.3+)
        self.pidfds: dict[int, int] = {}
        self.exit_wakes = hasattr(os, "pidfd_open")
        self.fast_deaths = 0
        self.slots = SlotFile.create(self.count)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.IDENTITY, self.manager_id)
        # a pool may start before its interchange listens (executor.py's _start_interchange): dial again soon
        self.socket.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_IVL_MS)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, _RECONNECT_IVL_MAX_MS)
        curve.make_client(self.socket, args.cert_dir)
        # connected / disconnected events of the link: a dead interchange is seen at once, not after the threshold
        self.monitor = self.socket.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self.socket.connect(f"tcp://{args.address}:{args.port}")
        self.started = time.monotonic()
        self.drain_at = self.started + args.drain_period if args.drain_period else None
        # what the interchange sends a pool, by type; a handler returning an exit code ends the pool
        self._handlers: dict[type, Callable[[Any], Optional[int]]] = {
            Shutdown: self._shutdown, HeartbeatAck: lambda message: None}
        self.poller = zmq.Poller()
        self.poller.register(self.socket, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)

    # ------------------------------------------------------------ life cycle

    def run(self) -> int:
        try:
            if not self._register():
                return 1
            for index in range(self.count):
                self._start_worker(index)
            sampler = self._start_sampler()
            try:
                return self._loop()
            finally:
                if sampler is not None:
                    sampler.stop()
        finally:
            self._stop_workers()

    def _start_sampler(self) -> Any:
        """Monitoring's resource samples of this pool's workers, if the run asked for them (``$PARSL_LITE_MONITORING``)."""
        from parsl_lite.monitoring.sampler import ResourceSampler, settings_from_env

        settings = settings_from_env()
        if settings is None:
            return None
        label = os.path.basename(os.path.dirname(os.path.abspath(self.args.logdir))) or "htex"  # <run>/<label>/block-N
        sampler = ResourceSampler(settings, label, str(self.args.block_id), self.manager_id.hex(), self.cores,
                                  self.mem_bytes, lambda: {i: w.pid for i, w in list(self.workers.items())})
        sampler.start()
        return sampler

    def _send(self, message: Message) -> None:
        self.socket.send_multipart(self.proof.sign(encode(message)))

    def _register(self) -> bool:
        hello = Register(PROTOCOL_VERSION, self.manager_id, self.args.block_id, socket.gethostname(), os.getpid(),
                         self.cores, self.mem_bytes, self.count, platform.python_version())
        self._send(hello)
        from parsl_lite.executors.htex import worker  # noqa: F401  (loaded while the interchange answers: see forked.py)

        if not self.socket.poll(int(self.args.heartbeat_threshold * 1000)):
            logger.error("no answer from the interchange at %s:%d within %.1f s", self.args.address,
                         self.args.port, self.args.heartbeat_threshold)
            return False
        reply = decode(self.socket.recv_multipart())
        if not isinstance(reply, RegisterReply) or not reply.accepted:
            logger.error("interchange refused this pool: %s", getattr(reply, "reason", reply))
            return False
        logger.info("registered as %s with %d workers", self.manager_id.hex(), self.count)
        return True

    def _loop(self) -> int:
        period = self.args.heartbeat_period
        next_beat = time.monotonic() + period
        last_contact = time.monotonic()
        disconnected_at: Optional[float] = None
        while True:
            due = min(next_beat, last_contact + self.args.heartbeat_threshold)
            if self.drain_at is not None:
                due = min(due, self.drain_at)
            if disconnected_at is not None:
                due = min(due, disconnected_at + _RECONNECT_GRACE_S)
            events = dict(self.poller.poll(self._poll_ms(due)))
            if self.monitor in events:
                disconnected_at = self._link_events(disconnected_at)
            if self.socket in events:
                try:
                    message = decode(self.socket.recv_multipart())
                except MalformedMessage as exc:
                    logger.warning("dropped a malformed message: %s", exc)
                    continue
                last_contact = time.monotonic()
                handler = self._handlers.get(type(message))
                if handler is None:
                    logger.warning("unexpected %s from the interchange", type(message).__name__)
                elif handler(message) is not None:
                    return 0
            now = time.monotonic()
            if disconnected_at is not None and now - disconnected_at > _RECONNECT_GRACE_S:
                logger.error("lost the connection to the interchange (not back after %.1f s): it is gone; exiting",
                             now - disconnected_at)
                return 2
            if now - last_contact > self.args.heartbeat_threshold:
                logger.error("interchange silent for %.1f s (threshold %.1f s): exiting",
                             now - last_contact, self.args.heartbeat_threshold)
                return 2
            if now >= next_beat:
                self._send(Heartbeat(self.manager_id))
                next_beat = now + period
            if self.drain_at is not None and now >= self.drain_at:
                logger.info("drain_period of %s s is over: draining (no new tasks; exit once idle)",
                            self.args.drain_period)
                self._send(Drain(self.manager_id))
                self.drain_at = None
            if not self._replace_dead_workers():
                return 3

    def _poll_ms(self, due: float) -> int:
        """How long the loop may sleep: until ``due`` (the next timed duty), or a worker's exit wakes it."""
        wait_s = max(0.0, due - time.monotonic())
        if not self.exit_wakes:
            wait_s = min(wait_s, _CHECK_WORKERS_S)
        return math.ceil(wait_s * 1000)

    def _shutdown(self, message: Shutdown) -> int:
        logger.info("interchange asked for shutdown: %s", message.reason)
        return 0

    def _link_events(self, disconnected_at: Optional[float]) -> Optional[float]:
        """Read the socket monitor: when the link dropped (None: it is up)."""
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            if event == zmq.EVENT_DISCONNECTED:
                logger.warning("the connection to the interchange dropped")
                disconnected_at = disconnected_at or time.monotonic()
            elif event == zmq.EVENT_CONNECTED:
                disconnected_at = None
        return disconnected_at

    # ------------------------------------------------------------ workers

    def _start_worker(self, index: int) -> None:
        """Fork worker ``index`` (see ``forked.py``: the worker module is already imported here)."""
        argv = ["--manager-id", self.manager_id.hex(), "--index", str(index), "--address", self.args.address,
                "--port", str(self.args.port), "--log-dir", self.args.logdir, "--parent-pid", str(os.getpid()),
                "--max-result-bytes", str(self.args.max_result_bytes), "--slot-fd", str(self.slots.fd)]
        if self.args.cert_dir:
            argv += ["--cert-dir", self.args.cert_dir]
        if self.args.debug:
            argv.append("--debug")
        self.slots.write(index, NO_TASK)
        # Parsl's names: apps (and monitoring's record of where a try ran) read them
        proc = fork_worker(argv, {SECRET_ENV: self.secret, "PARSL_WORKER_RANK": str(index),
                                  "PARSL_WORKER_COUNT": str(self.count), "PARSL_WORKER_POOL_ID": self.manager_id.hex(),
                                  "PARSL_WORKER_BLOCK_ID": str(self.args.block_id)})
        self.workers[index] = proc
        self._watch_exit(index, proc.pid)
        self._send(WorkerStarted(self.manager_id, index, proc.pid))

    def _watch_exit(self, index: int, pid: int) -> None:
        """Let worker ``index``'s exit wake the loop (its pidfd in the poller); else fall back to polling."""
        self._unwatch_exit(index)
        if not self.exit_wakes:
            return
        try:
            fd = os.pidfd_open(pid)
        except OSError as exc:  # e.g. a kernel older than 5.3, or a seccomp filter: poll as before
            logger.warning("pidfd_open(%d) failed (%s): looking for dead workers every %.0f ms", pid, exc,
                           _CHECK_WORKERS_S * 1000)
            self.exit_wakes = False
            return
        self.pidfds[index] = fd
        self.poller.register(fd, zmq.POLLIN)

    def _unwatch_exit(self, index: int) -> None:
        fd = self.pidfds.pop(index, None)
        if fd is not None:
            self.poller.unregister(fd)
            os.close(fd)

    def _replace_dead_workers(self) -> bool:
        for index, proc in list(self.workers.items()):
            code = proc.poll()
            if code is None:
                continue
            running = self.slots.read(index)
            logger.error("worker %d (pid %d) died: %s%s", index, proc.pid, describe_exit(code),
                         f", running task {running}" if running != NO_TASK else ", between tasks")
            self._send(WorkerDied(self.manager_id, index, code, proc.pid, running if running >= NO_TASK
                                  else UNKNOWN_TASK))
            self.fast_deaths = self.fast_deaths + 1 if code != 0 else 0
            if self.fast_deaths > _FAST_DEATHS_BEFORE_GIVING_UP * self.count:
                logger.error("workers keep dying (%d in a row): giving up", self.fast_deaths)
                return False
            self._start_worker(index)
        return True

    def _stop_workers(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 2
        for proc in self.workers.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for index in list(self.pidfds):
            self._unwatch_exit(index)
        self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)
        self.context.term()
        self.slots.close()


def _memory_bytes() -> int:
    """The node's memory; from ``sysconf`` where it can (importing psutil costs start-up time)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        import psutil

        return int(psutil.virtual_memory().total)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="parsl_lite htex worker pool")
    parser.add_argument("--address", required=True, help="the interchange's address")
    parser.add_argument("--port", type=int, required=True, help="the interchange's worker port")
    parser.add_argument("--block-id", default="0")
    parser.add_argument("--max-workers-per-node", type=int, default=None)
    parser.add_argument("--cores-per-worker", type=float, default=1.0)
    parser.add_argument("--mem-per-worker", type=float, default=None, help="GiB")
    parser.add_argument("--heartbeat-period", type=float, default=30.0)
    parser.add_argument("--heartbeat-threshold", type=float, default=120.0)
    parser.add_argument("--max-result-bytes", type=int, default=2**30, help="the largest serialized result")
    parser.add_argument("--drain-period", type=float, default=None,
                        help="seconds after start to stop taking tasks and exit once idle")
    parser.add_argument("--secret-file", default=None, help=f"the run's secret (else ${SECRET_ENV})")
    parser.add_argument("--cert-dir", default=None)
    parser.add_argument("--broker-file", default=None,
                        help="the messaging broker's URL and token for the workers (parsl_lite.messaging)")
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    os.makedirs(args.logdir, exist_ok=True)
    from parsl_lite.log_utils import set_file_logger

    set_file_logger(os.path.join(args.logdir, "worker_pool.log"), level=logging.DEBUG if args.debug else logging.INFO)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # runs the finally that stops the workers
    logger.info("worker pool starting: pid %d, host %s, args %s", os.getpid(), socket.gethostname(), vars(args))
    try:
        secret = read_secret_file(args.secret_file) if args.secret_file else os.environ.get(SECRET_ENV, "")
    except OSError as exc:
        logger.error("cannot read the run's secret from %s: %s (is the run directory shared with this node?)",
                     args.secret_file, exc)
        return 1
    if not secret:
        logger.error("no run secret: pass --secret-file or set $%s", SECRET_ENV)
        return 1
    if args.broker_file:
        from parsl_lite.messaging.paths import apply_worker_file
        if not apply_worker_file(args.broker_file):
            logger.warning("cannot read the broker file %s: apps here find no messaging broker", args.broker_file)
    return WorkerPool(args, secret).run()


if __name__ == "__main__":
    sys.exit(main())
