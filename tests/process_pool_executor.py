"""A small executor that runs tasks in other processes through ``parsl_lite.serialize``.

Not a fake: each task crosses a real process boundary, so the kernel's
serialization path (functions by digest, arguments packed, remote exceptions
wrapped) is exercised end to end before the high-throughput executor exists.
"""
from __future__ import annotations

import concurrent.futures
from concurrent.futures import Future
from typing import Any, Callable

from parsl_lite.executors.base import ParslExecutor
from parsl_lite.serialize import (
    FunctionCache, FunctionStore, pack_apply_message, serialize, unpack_apply_message, wrap_current_exception,
)

_store = FunctionStore()


def _run(digest: bytes, body: bytes | None, packed: bytes) -> bytes:
    if digest not in _store:
        if body is None:
            raise LookupError("function body never sent")
        _store.add(digest, body)
    func = _store.get(digest)
    args, kwargs = unpack_apply_message(packed)
    try:
        return serialize(func(*args, **kwargs))
    except Exception:
        return serialize(wrap_current_exception())


class ProcessPoolTestExecutor(ParslExecutor):
    needs_serialization = True

    def __init__(self, label: str = "procs", workers: int = 1) -> None:
        self.label = label
        self.workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._cache = FunctionCache()
        self._sent: set[bytes] = set()
        self.bodies_sent = 0

    def start(self) -> None:
        import multiprocessing

        self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"))

    def submit(self, func: Callable, resource_specification: dict, *args: Any, **kwargs: Any) -> Future:
        digest, body = self._cache.get(func)
        packed = pack_apply_message(args, kwargs)  # raises SerializationError naming the argument
        send_body = None if digest in self._sent else body
        if send_body is not None:
            self._sent.add(digest)
            self.bodies_sent += 1
        assert self._pool is not None
        inner = self._pool.submit(_run, digest, send_body, packed)
        outer: Future = Future()

        def done(f: Future) -> None:
            from parsl_lite.serialize import deserialize

            if f.exception() is not None:
                outer.set_exception(f.exception())
            else:
                outer.set_result(deserialize(f.result()))

        inner.add_done_callback(done)
        return outer

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
