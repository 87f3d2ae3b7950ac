"""A worker process: runs tasks the interchange sends it, sends results straight back.

Started by its pool (``worker_pool.py``), one per slot. It holds no state but
the functions it has been sent (by digest), so the pool can replace it at any
time. It exits when told to, when its pool dies (Linux's parent-death signal,
so even in the middle of a long task; elsewhere it checks its parent between
tasks), or when a task calls ``sys.exit()``: as in Parsl, that ends the worker,
the pool reports the exit code and the task fails with ``WorkerLost``.

Before each task it writes the task's id into its slot of the pool's slot file
(one int64 per worker, shared through ``mmap``); after it, :data:`NO_TASK`.
When the worker dies, the pool reads which task was running: only that one is
lost, the others it held go back to the queue.

Every message it sends starts with a proof of the run's secret
(``wire_auth.py``), which it gets from its environment (never ``argv``).
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import time
from typing import Any, Callable, Optional

import zmq

from parsl_lite.deadline import call_with_deadline
from parsl_lite.errors import SerializationError
from parsl_lite.executors.htex import curve
from parsl_lite.executors.htex.errors import MalformedMessage, ResultTooLarge, TaskTimeout
from parsl_lite.executors.htex.messages import (
    NO_TASK, PROTOCOL_VERSION, ResultBatch, ResultMessage, Shutdown, TaskBatch, TaskMessage, WorkerHello, decode,
    encode,
)
from parsl_lite.executors.htex.slots import SlotFile
from parsl_lite.executors.htex.wire_auth import SECRET_ENV, WORKERS, Signer
from parsl_lite.executors.htex.wire_io import recv_frames, send_frames
from parsl_lite.serialize import FunctionStore, serialize, unpack_apply_message, wrap_current_exception

logger = logging.getLogger("parsl_lite.executors.htex.worker")

_FLUSH_AFTER_S = 0.005  # results of a long batch go home at least this often
_PR_SET_PDEATHSIG = 1
_REFUSED = 3  # the interchange refused this worker (e.g. another protocol version)


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL us when our parent (the pool) dies; exit now if it is already gone.

    The ``getppid`` check right after closes the race of a parent that died
    before the request took effect. Elsewhere than Linux this does nothing and
    the worker's loop notices the parent between tasks.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != parent_pid:
        logger.warning("pool process %d is gone already; exiting", parent_pid)
        os._exit(1)


def run_task(task: TaskMessage, store: FunctionStore, max_result_bytes: int) -> ResultMessage:
    """Run one task; every outcome but ``SystemExit`` (which ends the worker) becomes a result."""
    try:
        if task.fn_body is not None and task.fn_digest not in store:
            store.add(task.fn_digest, task.fn_body)
        func = store.get(task.fn_digest)
        args, kwargs = unpack_apply_message(task.args)
    except Exception:
        return ResultMessage(task.task_id, "error", serialize(wrap_current_exception()))
    limit = task.resource_spec.get("running_time_limit") if task.resource_spec else None
    try:
        if limit:
            value = call_with_deadline(func, args, kwargs, float(limit), TaskTimeout,
                                       f"task {task.task_id} ran past its running_time_limit of {limit} s")
        else:
            value = func(*args, **kwargs)
    except SystemExit:
        raise  # the task ends its worker, as in Parsl: the pool reports the exit code (WorkerLost)
    except BaseException:  # the task's own failure, KeyboardInterrupt included, goes to its future
        return ResultMessage(task.task_id, "error", serialize(wrap_current_exception()))
    try:
        payload = serialize(value, f"the result of task {task.task_id} ({type(value).__qualname__})")
        if len(payload) > max_result_bytes:
            raise ResultTooLarge(task.task_id, len(payload), max_result_bytes)
    except (SerializationError, ResultTooLarge):
        return ResultMessage(task.task_id, "error", serialize(wrap_current_exception()))
    return ResultMessage(task.task_id, "ok", payload)


class Worker:
    """The socket loop around :func:`run_task`."""

    def __init__(self, args: argparse.Namespace, secret: str) -> None:
        self.args = args
        self.manager_id = bytes.fromhex(args.manager_id)
        self.store = FunctionStore()
        self.proof = Signer(secret, WORKERS)
        self.slots = SlotFile.attach(args.slot_fd) if args.slot_fd is not None else None
        self._handlers: dict[type, Callable[[Any], bool]] = {TaskBatch: self._run_batch, Shutdown: self._shutdown}
        self.exit_code = 0
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.IDENTITY, os.urandom(8))
        curve.make_client(self.socket, args.cert_dir)
        self.socket.connect(f"tcp://{args.address}:{args.port}")

    def run(self) -> None:
        self._send(WorkerHello(PROTOCOL_VERSION, self.manager_id, self.args.index, os.getpid()))
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while True:
            if not poller.poll(1000):
                if os.getppid() != self.args.parent_pid:
                    logger.warning("worker %d: pool process %d is gone; exiting", self.args.index,
                                   self.args.parent_pid)
                    return
                continue
            try:
                message = decode(recv_frames(self.socket))
            except MalformedMessage as exc:
                logger.warning("worker %d: dropped a malformed message: %s", self.args.index, exc)
                continue
            handler = self._handlers.get(type(message))
            if handler is None:
                logger.warning("worker %d: ignored a %s (not one workers get)", self.args.index, type(message).kind)
            elif handler(message):
                return

    def _shutdown(self, message: Shutdown) -> bool:
        refused = message.reason.startswith("refused")
        logger.log(logging.ERROR if refused else logging.INFO, "worker %d: shutdown (%s)", self.args.index,
                   message.reason)
        self.exit_code = _REFUSED if refused else 0  # non-zero: the pool counts it as a failed start
        return True

    def _run_batch(self, batch: TaskBatch) -> bool:
        done: list[ResultMessage] = []
        first_done: Optional[float] = None
        busy = 0.0  # seconds spent running the tasks of ``done``: the ledger batches short tasks by it
        for task in batch.tasks:
            self._mark(task.task_id)
            began = time.monotonic()
            try:
                done.append(run_task(task, self.store, self.args.max_result_bytes))
            except SystemExit as exc:
                logger.error("worker %d: task %d called sys.exit(%r): the worker exits", self.args.index,
                             task.task_id, exc.code)
                if done:  # the results of the tasks before it are not lost with it
                    self._send_results(done, busy)
                self.socket.setsockopt(zmq.LINGER, 5000)
                raise
            self._mark(NO_TASK)
            now = time.monotonic()
            busy += now - began
            if first_done is None:
                first_done = now
            elif now - first_done > _FLUSH_AFTER_S:
                self._send_results(done, busy)
                done, first_done, busy = [], None, 0.0
        if done:
            self._send_results(done, busy)
        return False

    def _mark(self, task_id: int) -> None:
        if self.slots is not None:
            self.slots.write(self.args.index, task_id)

    def _send_results(self, results: list[ResultMessage], busy_s: float) -> None:
        send_frames(self.socket, self.proof.sign(encode(ResultBatch(tuple(results), busy_s))), copy=False)

    def _send(self, message: WorkerHello) -> None:
        send_frames(self.socket, self.proof.sign(encode(message)))

    def close(self) -> None:
        self.socket.close()  # with the linger set: 0, or a few seconds after a task's sys.exit()
        self.context.term()
        if self.slots is not None:
            self.slots.close()


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="parsl_lite htex worker (started by a worker pool)")
    parser.add_argument("--manager-id", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-dir", default=None)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--max-result-bytes", type=int, default=2**31)
    parser.add_argument("--slot-fd", type=int, default=None,
                        help="descriptor of the pool's slot file (running task ids, one int64 a worker)")
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    die_with_parent(args.parent_pid)
    os.makedirs(args.log_dir, exist_ok=True)
    from parsl_lite.log_utils import set_file_logger

    set_file_logger(os.path.join(args.log_dir, f"worker_{args.index}.log"),
                    level=logging.DEBUG if args.debug else logging.INFO)
    secret = os.environ.pop(SECRET_ENV, "")  # popped: the tasks and their subprocesses need not see it
    if not secret:
        logger.error("worker %d: no run secret in $%s; its pool must set it", args.index, SECRET_ENV)
        return 2
    worker = Worker(args, secret)
    logger.info("worker %d (pid %d) connecting to %s:%d", args.index, os.getpid(), args.address, args.port)
    try:
        worker.run()
    finally:
        worker.close()
    return worker.exit_code


if __name__ == "__main__":
    sys.exit(main())
