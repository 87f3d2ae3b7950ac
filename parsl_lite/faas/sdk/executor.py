"""``FuncXExecutor``: a ``concurrent.futures.Executor`` whose tasks run on function-service endpoints.

    fx = FuncXExecutor(fxc, endpoint_id=ep_id, batch_enabled=True, batch_interval=1.0)
    future = fx.submit(double, 50)           # a concurrent.futures.Future; result() == 100

``submit`` registers each function once (by the digest of its serialized
body), serializes the arguments (refusing a payload over the limit at once)
and queues the task; a batch goes out when ``batch_size`` tasks are queued,
``batch_interval`` seconds after the first of them, or as soon as someone
waits on one of its futures (``result()``), whichever comes first; batches
that are ready while a request is on its way go together in the next one
(each holds whole batches, as many as fit in one request). Results
arrive over the client's WebSocket. ``reload_tasks`` gives the futures of
every task of a task group, so a restarted script re-attaches to its work.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import uuid
from typing import Any, Callable, Optional

from parsl_lite.fast_future import FastFuture
from parsl_lite.faas.sdk.batch import Batch, pack_payload
from parsl_lite.faas.sdk.batching import Next, SubmitQueue
from parsl_lite.faas.sdk.client import FuncXClient
from parsl_lite.faas.sdk.decode import check_id

logger = logging.getLogger(__name__)


class FuncXFuture(FastFuture):
    """A task's future; ``task_id`` is set once the service accepted the task.

    A ``concurrent.futures.Future`` whose Condition is made only if someone blocks on it (``FastFuture``):
    a workflow of many tasks waits on few of them.

    Waiting on it (``result()``, ``exception()``) sends its batch at once rather
    than after the batch interval.
    """

    def __init__(self, task_id: Optional[str] = None, flush: Optional[Callable[[], None]] = None,
                 on_cancel: Optional[Callable[[str], None]] = None) -> None:
        super().__init__()
        self.task_id = task_id
        self._flush = flush
        self._on_cancel = on_cancel

    def cancel(self) -> bool:
        """Cancel the future; a task the service holds already is cancelled there too (if not started)."""
        cancelled = super().cancel()
        if cancelled and self.task_id is not None and self._on_cancel is not None:
            self._on_cancel(self.task_id)
        return cancelled

    def _send_now(self) -> None:
        """Someone waits: if this future's task is still queued, send its batch now (once)."""
        flush, self._flush = self._flush, None
        if flush is not None and self.task_id is None and not self.done():
            flush()

    def result(self, timeout: Optional[float] = None) -> Any:
        self._send_now()
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        self._send_now()
        return super().exception(timeout)


class FuncXExecutor(concurrent.futures.Executor):
    """Run functions on endpoints through the function service.

    Args:
        client: the ``FuncXClient`` (synchronous or not) whose session and WebSocket it uses;
            default a new ``FuncXClient()``. ``funcx_client=`` is accepted too (funcX's name).
        endpoint_id: where ``submit`` sends tasks unless told otherwise.
        batch_enabled: queue submissions and send them in batches (False: each one at once).
        batch_interval: the longest a queued task waits for its batch, in seconds.
        batch_size: the most tasks in one batch.
        task_group_id: the group the tasks join (default a new UUID); ``reload_tasks`` reads it.
        label: a name for logs and ``repr``.
    """

    def __init__(self, client: Optional[FuncXClient] = None, endpoint_id: Optional[str] = None,
                 batch_enabled: bool = True, batch_interval: float = 1.0, batch_size: int = 128,
                 task_group_id: Optional[str] = None, *, funcx_client: Optional[FuncXClient] = None,
                 label: str = "") -> None:
        if isinstance(client, str):  # funcX 1.x order: FuncXExecutor(endpoint_id, ...)
            client, endpoint_id = None, client
        if batch_interval < 0 or batch_size < 1:  # refused before any thread or client is made
            raise ValueError(f"batch_interval ({batch_interval}) must be >= 0 and batch_size ({batch_size}) >= 1")
        self.client = client or funcx_client or FuncXClient()
        self.endpoint_id = check_id(endpoint_id, "endpoint_id") if endpoint_id else None
        self.task_group_id = check_id(task_group_id, "task_group_id") if task_group_id else str(uuid.uuid4())
        if not task_group_id:
            self.client._submitter.new_group(self.task_group_id)
        self.batch_interval = batch_interval
        self.label = label
        self.task_count_submitted = 0
        self._io = self.client._io
        self._lock = threading.Lock()
        self._register_lock = threading.Lock()
        self._queue: SubmitQueue[tuple[FuncXFuture, str, str, bytes]] = SubmitQueue(batch_size, batch_enabled)
        self._timer: Optional[asyncio.TimerHandle] = None
        self._registry: dict[bytes, str] = {}   # function body digest -> function id
        self._futures: list[FuncXFuture] = []   # every future not seen done yet (pruned now and then)
        self._futures_pruned = 0                 # its length after the last pruning
        self._stopped = False
        self._checked_ids: set[str] = set()   # ids already found to be UUID strings (checked once each)

    def __repr__(self) -> str:
        label = f"{self.label}, " if self.label else ""
        return f"FuncXExecutor<{label}ep_id:{self.endpoint_id}, tg_id:{self.task_group_id}>"

    # ------------------------------------------------------------ functions
    def register_function(self, fn: Callable, function_id: Optional[str] = None, **register_kwargs: Any) -> str:
        """The function id of ``fn`` (registered on first use; ``function_id`` says it is registered already)."""
        if not callable(fn):
            raise TypeError(f"submit: expected a function, got {type(fn).__name__}")
        digest, _body = self.client._functions.get(fn)
        with self._register_lock:
            known = self._registry.get(digest)
            if known is None:
                known = check_id(function_id, "function_id") if function_id else \
                    self.client.register_function(fn, **register_kwargs)
                self._registry[digest] = known
            return known

    # ------------------------------------------------------------ submitting
    def submit(self, fn: Callable, /, *args: Any, endpoint_id: Optional[str] = None, **kwargs: Any
               ) -> FuncXFuture:
        """Run ``fn(*args, **kwargs)`` on ``endpoint_id`` (default: the executor's); its future.

        Raises:
            RuntimeError: after ``shutdown``.
            ValueError: no endpoint id (here nor at construction), or not a UUID.
            MaxResultSizeExceeded: the arguments are over the payload limit.
        """
        if self._stopped:
            raise RuntimeError(f"{self!r} is shut down; no new tasks may be submitted")
        function_id = self.register_function(fn)
        return self.submit_to_registered_function(function_id, args, kwargs, endpoint_id=endpoint_id)

    def submit_to_registered_function(self, function_id: str, args: tuple = (), kwargs: Optional[dict] = None,
                                      endpoint_id: Optional[str] = None) -> FuncXFuture:
        """Run an already registered (maybe public or shared) function; its future."""
        if self._stopped:
            raise RuntimeError(f"{self!r} is shut down; no new tasks may be submitted")
        if self._io.loop.is_closed():
            raise RuntimeError(f"{self!r}: its client was closed; no new tasks may be submitted")
        target = endpoint_id or self.endpoint_id
        if target is None:
            raise ValueError("no endpoint_id: pass submit(..., endpoint_id=...) or FuncXExecutor(endpoint_id=...)")
        if target not in self._checked_ids:
            self._checked_ids.add(check_id(target, "endpoint_id"))
        if function_id not in self._checked_ids:
            self._checked_ids.add(check_id(function_id, "function_id"))
        payload = pack_payload(tuple(args), dict(kwargs or {}), self.client.payload_limit)
        future = FuncXFuture(flush=self._flush_soon, on_cancel=self._cancel_remote)
        with self._lock:
            next_step = self._queue.add((future, function_id, target, payload))
            self._futures.append(future)
        if next_step is Next.SEND_ALL:
            self._flush_soon()
        elif next_step is Next.SEND_FULL:
            self._io.call_soon(self._flush, True)
        elif next_step is Next.ARM_TIMER:
            self._io.call_soon(self._arm_timer)
        return future

    @property
    def batch_size(self) -> int:
        return self._queue.batch_size

    @property
    def batch_enabled(self) -> bool:
        return self._queue.batch_enabled

    def _flush_soon(self) -> None:
        self._io.call_soon(self._flush)

    def _arm_timer(self) -> None:
        """On the loop: send the queue ``batch_interval`` seconds from now, unless it goes earlier."""
        if self._timer is None and self._queue.timer_armed:
            self._timer = asyncio.get_running_loop().call_later(self.batch_interval, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._flush()

    def _flush(self, full_only: bool = False) -> None:
        """On the loop: send the queued tasks, ``batch_size`` per batch (a cancelled future is dropped).

        ``full_only`` (a batch filled up): send only full batches; the rest waits for its interval.
        """
        with self._lock:
            if len(self._futures) >= 2 * self._futures_pruned + 1024:  # amortized: each future checked O(1) times
                self._futures = [f for f in self._futures if not f.done()]
                self._futures_pruned = len(self._futures)
            batches = self._queue.take(full_only)
            timer_needed = self._queue.timer_armed
        if self._timer is not None and not timer_needed:
            self._timer.cancel()
            self._timer = None
        for entries in batches:
            chunk = [entry for entry in entries if not entry[0].cancelled()]
            if not chunk:
                continue
            batch = Batch(self.task_group_id, self.client.payload_limit)
            for _future, function_id, endpoint_id, payload in chunk:
                batch.add_packed(function_id, endpoint_id, payload)
            self.task_count_submitted += len(chunk)
            logger.debug("%r: submitting a batch of %d tasks", self, len(chunk))
            # batches ready while one is on its way go together in one request (client._submit_soon)
            self.client._submit_soon(batch, [entry[0] for entry in chunk])

    def _cancel_remote(self, task_id: str) -> None:
        """Ask the service to cancel ``task_id`` (best effort: a started task runs to its end)."""
        async def cancel() -> None:
            try:
                await self.client._session.call("POST", f"/tasks/{task_id}/cancel")
            except Exception as exc:
                logger.info("cancelling task %s at the service: %r", task_id, exc)
        self._io.call_soon(lambda: asyncio.get_running_loop().create_task(cancel()))

    def map(self, fn: Callable, *iterables: Any, timeout: Optional[float] = None, chunksize: int = 1) -> Any:
        """``fn`` over the iterables, results in order (each call one task; ``chunksize`` is ignored)."""
        return super().map(fn, *iterables, timeout=timeout)

    # ------------------------------------------------------------ re-attaching
    def reload_tasks(self, task_group_id: Optional[str] = None) -> list[FuncXFuture]:
        """The futures of every task of ``task_group_id`` (default: the executor's), in submission order.

        Finished tasks' futures resolve at once; the others when their results come.

        Raises:
            ServiceError: 404 if the service knows no task of yours in that group.
        """
        group = check_id(task_group_id or self.task_group_id, "task_group_id")
        task_ids = self.client.get_task_group(group)
        self.client._submitter.group_grew(group, len(task_ids))
        futures = [FuncXFuture(task_id=task_id, on_cancel=self._cancel_remote) for task_id in task_ids]
        with self._lock:
            self._futures.extend(futures)
        if task_ids:
            self.client.watch_futures(task_ids, futures)
        return futures

    # ------------------------------------------------------------ stopping
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new tasks; send what is queued (or, ``cancel_futures``, cancel every unfinished future).

        ``wait``: return once every future of this executor is done. The client stays open.
        """
        self._stopped = True
        if cancel_futures:
            with self._lock:
                self._queue.clear()
                pending = list(self._futures)
            for future in pending:
                concurrent.futures.Future.cancel(future)  # locally: the service keeps what it holds
        else:
            self._flush_soon()
        if wait:
            with self._lock:
                pending = [f for f in self._futures if not f.done()]
            concurrent.futures.wait(pending)


Executor = FuncXExecutor
