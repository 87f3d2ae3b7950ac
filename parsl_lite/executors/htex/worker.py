"""A worker process: runs tasks the interchange sends it, sends results straight back.

Started by its pool (``worker_pool.py``), one per slot. It holds no state but
the functions it has been sent (by digest), so the pool can replace it at any
time. It exits when told to, when its pool dies, or when the interchange has
been silent for longer than the heartbeat threshold.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Optional

import zmq

from parsl_lite.errors import SerializationError
from parsl_lite.executors.htex import curve
from parsl_lite.deadline import call_with_deadline
from parsl_lite.executors.htex.errors import MalformedMessage, TaskTimeout
from parsl_lite.executors.htex.messages import (
    ResultBatch, ResultMessage, Shutdown, TaskBatch, TaskMessage, WorkerHello, decode, encode,
)
from parsl_lite.serialize import FunctionStore, serialize, unpack_apply_message, wrap_current_exception

logger = logging.getLogger("parsl_lite.executors.htex.worker")

_FLUSH_AFTER_S = 0.005  # results of a long batch go home at least this often


def run_task(task: TaskMessage, store: FunctionStore, max_result_bytes: int) -> ResultMessage:
    """Run one task; every outcome, including a failure to load it, becomes a result."""
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
    except BaseException:  # the task's own failure, SystemExit included, goes to its future
        return ResultMessage(task.task_id, "error", serialize(wrap_current_exception()))
    try:
        payload = serialize(value, f"the result of task {task.task_id} ({type(value).__qualname__})")
        if len(payload) > max_result_bytes:
            raise SerializationError(f"the result of task {task.task_id}",
                                     f"{len(payload)} bytes is over the limit of {max_result_bytes} bytes")
    except SerializationError:
        return ResultMessage(task.task_id, "error", serialize(wrap_current_exception()))
    return ResultMessage(task.task_id, "ok", payload)


class Worker:
    """The socket loop around :func:`run_task`."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.manager_id = bytes.fromhex(args.manager_id)
        self.store = FunctionStore()
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.IDENTITY, os.urandom(8))
        curve.make_client(self.socket, args.cert_dir)
        self.socket.connect(f"tcp://{args.address}:{args.port}")

    def run(self) -> None:
        self.socket.send_multipart(encode(WorkerHello(self.manager_id, self.args.index, os.getpid())))
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
                message = decode(self.socket.recv_multipart())
            except MalformedMessage as exc:
                logger.warning("worker %d: dropped a malformed message: %s", self.args.index, exc)
                continue
            if isinstance(message, TaskBatch):
                self._run_batch(message)
            elif isinstance(message, Shutdown):
                logger.info("worker %d: shutdown (%s)", self.args.index, message.reason)
                return

    def _run_batch(self, batch: TaskBatch) -> None:
        done: list[ResultMessage] = []
        first_done: Optional[float] = None
        for task in batch.tasks:
            done.append(run_task(task, self.store, self.args.max_result_bytes))
            now = time.monotonic()
            if first_done is None:
                first_done = now
            elif now - first_done > _FLUSH_AFTER_S:
                self._send(done)
                done, first_done = [], None
        if done:
            self._send(done)

    def _send(self, results: list[ResultMessage]) -> None:
        self.socket.send_multipart(encode(ResultBatch(tuple(results))), copy=False)

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


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
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    os.makedirs(args.log_dir, exist_ok=True)
    from parsl_lite.log_utils import set_file_logger

    set_file_logger(os.path.join(args.log_dir, f"worker_{args.index}.log"),
                    level=logging.DEBUG if args.debug else logging.INFO)
    worker = Worker(args)
    logger.info("worker %d (pid %d) connecting to %s:%d", args.index, os.getpid(), args.address, args.port)
    try:
        worker.run()
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
