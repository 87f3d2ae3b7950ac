"""Adapters of the ``faas`` group: the function service end to end, and our own htex beside it.

Each adapter starts, in its child's run directory (``PARSL_LITE_HOME`` there,
never the real home), a real service process and a real endpoint daemon
(``parsl-lite endpoint configure`` + ``start``: an htex of W workers on a
LocalProvider) through :mod:`benchmarks.faas_stack`, then reaches them the way
a user does:

| adapter | submit | result |
|---|---|---|
| ``parsl_lite-htex-ref`` | ``python_app`` on a local htex (the ``latency`` case's adapter) | ``future.result()`` |
| ``parsl_lite-faas-sync`` | ``fxc.run(endpoint_id=, function_id=)`` | polling ``get_result`` (``get_batch_result`` for many): funcX's way |
| ``parsl_lite-faas-async`` | ``FuncXClient(asynchronous=True).run(...)`` | ``await`` (results over the WebSocket) |
| ``parsl_lite-faas-executor`` | ``FuncXExecutor(fxc, endpoint_id=...).submit`` | ``future.result()`` (WebSocket) |
| ``parsl_lite-faas-executor-b1000`` | the same with ``batch_size=1000, batch_interval=0.01`` | the same |
| ``parsl_lite-faas-workflow`` | ``python_app`` on ``FaaSExecutor(endpoints=[ep])`` in a loaded ``Config`` | ``future.result()`` |
| ``parsl_lite-faas-sim`` | as ``-async``, to simulated endpoints (:mod:`benchmarks.faas_sim`) | ``await``: the service alone, no executor |
| ``parsl_lite-faas-routing`` | two endpoints of 1 and 4 workers; ``FaaSExecutor(policy=...)`` per measurement | ``future.result()`` |

Functions are registered (``register_function``) in ``app``, before any clock
starts. Batches: :meth:`_Faas.run_batch` is each client's idiom for many tasks
(``batch_run`` + ``get_batch_result``, ``batch_run`` + awaitables, ``submit`` x n).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Optional

from benchmarks.adapters.base import Adapter, Submit, register_adapter
from benchmarks.adapters.parsl_family import ParslLiteHtex

GROUP = "faas"


class _Lost:
    """The outcome of a task that was not final in time."""

    def __repr__(self) -> str:
        return "LOST"


LOST = _Lost()


@register_adapter
class FaasHtexRef(ParslLiteHtex):
    """parsl_lite's htex at its defaults, the same as ``parsl_lite-htex``, competing in the ``faas`` group."""

    name = "parsl_lite-htex-ref"
    executor = GROUP


class _Faas(Adapter):
    """A service, an endpoint and a client; subclasses say which endpoint and which client."""

    library: ClassVar[str] = "parsl_lite"
    executor: ClassVar[str] = GROUP
    retry_s: ClassVar[float] = 0.05
    """Pause before asking again while the service is unreachable (it is being restarted)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: Any = None
        self.token = ""
        self.endpoint_id = ""
        self.endpoint_ids: list[str] = []
        self.client: Any = None
        self.done_count = 0
        """Tasks of the current :meth:`run_batch` known finished (read by a thread that kills the service)."""
        self.track_done = True
        """Count ``done_count`` (a callback per future); ``faas_throughput`` turns it off when nothing reads it,
        as the htex reference, which has no such callback, is measured."""
        self.unreachable = 0
        """Times a request found the service down (during a restart) and was tried again."""
        self._functions: dict[Callable[..., Any], str] = {}

    def prepare(self) -> None:
        """Import the SDK, the service's CLI helpers and zmq (not start-up)."""
        import zmq  # noqa: F401

        import parsl_lite.faas.sdk.client  # noqa: F401
        import parsl_lite.faas.sdk.executor  # noqa: F401
        import parsl_lite.faas.service.cli  # noqa: F401
        from benchmarks import faas_stack  # noqa: F401

    def start(self, workers: int, run_dir: Path) -> None:
        """Service (``service_s``), user, endpoint (``endpoint_s``), client, then W workers ready."""
        from benchmarks.faas_stack import FaasStack
        sdk_log = logging.getLogger("parsl_lite.faas.sdk")   # the client's log beside the service's
        sdk_log.addHandler(logging.FileHandler(run_dir / "client.log"))
        sdk_log.setLevel(logging.INFO)
        t0 = time.perf_counter()
        self.stack = FaasStack(run_dir)
        self.stack.start_service()
        self.startup_figures["service_s"] = time.perf_counter() - t0
        self.token = self.stack.add_user("bench")
        t1 = time.perf_counter()
        self.endpoint_ids = self._start_endpoints(workers)
        self.endpoint_id = self.endpoint_ids[0]
        self.startup_figures["endpoint_s"] = time.perf_counter() - t1
        self._open_client()
        self.wait_ready(workers)

    def _start_endpoints(self, workers: int) -> list[str]:
        """The real endpoint daemon, W workers; its id."""
        endpoint_id = self.stack.start_endpoint("bench", self.token, workers)
        self.stack.wait_online(endpoint_id, self.token)
        return [endpoint_id]

    def _open_client(self) -> None:
        from parsl_lite.faas import FuncXClient
        self.client = FuncXClient(self.stack.url, self.token)

    def function_id(self, fn: Callable[..., Any]) -> str:
        """``fn`` registered once (``register_function``)."""
        if fn not in self._functions:
            self._functions[fn] = self.client.register_function(fn)
        return self._functions[fn]

    def app(self, fn: Callable[..., Any]) -> Submit:
        """``submit(*args)`` runs the registered ``fn`` on the endpoint through ``fxc.run``."""
        function_id = self.function_id(fn)
        run = self.client.run
        endpoint_id = self.endpoint_id

        def submit(*args: Any) -> Any:
            return run(*args, endpoint_id=endpoint_id, function_id=function_id)
        return submit

    def run_batch(self, fn: Callable[..., Any], n: int, endpoint_ids: Optional[Sequence[str]] = None,
                  timeout_s: float = 600.0) -> list[Any]:
        """``n`` calls ``fn()`` in this client's idiom for many tasks (round robin over ``endpoint_ids``).

        Returns:
            One outcome per task, in order: its value, the exception it failed with (an instance), or
            :data:`LOST` if it was not final after ``timeout_s``.
        """
        raise NotImplementedError

    def _batch(self, fn: Callable[..., Any], n: int, endpoint_ids: Optional[Sequence[str]]) -> Any:
        self.done_count = 0
        function_id = self.function_id(fn)
        targets = list(endpoint_ids or [self.endpoint_id])
        batch = self.client.create_batch()
        for i in range(n):
            batch.add(endpoint_id=targets[i % len(targets)], function_id=function_id)
        return batch

    def _count_done(self, futures: Sequence[Any]) -> None:
        """Count ``futures`` into ``done_count`` as they resolve (their callbacks run on the SDK's thread)."""
        if not self.track_done:
            return
        lock = threading.Lock()

        def count(_: Any) -> None:
            with lock:
                self.done_count += 1
        for future in futures:
            future.add_done_callback(count)

    def midway(self, n: int) -> bool:
        """Whether a batch of ``n`` is half done as this client sees it (when ``faas_restart`` kills)."""
        return self.done_count >= n // 2

    def restart_service(self) -> float:
        """SIGKILL the service and start it again (same store and ports); seconds until it is up."""
        t0 = time.perf_counter()
        self.stack.kill_service()
        self.stack.restart_service()
        return time.perf_counter() - t0

    @property
    def service_pid(self) -> int:
        """The service process's pid now (it changes with :meth:`restart_service`)."""
        return int(self.stack.pid)

    def _close_client(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def stop(self) -> None:
        """Close the client, stop the endpoints and the service."""
        try:
            self._close_client()
        finally:
            if self.stack is not None:
                self.stack.stop()
                self.stack = None


@register_adapter
class FaasSync(_Faas):
    """The synchronous ``FuncXClient``: ``run``, then ``get_result`` polled until no ``TaskPending``."""

    name = "parsl_lite-faas-sync"
    poll_s: ClassVar[float] = 0.0005
    """Pause between two ``get_result`` calls of one task (each is one HTTP request)."""
    batch_poll_s: ClassVar[float] = 0.02
    """Pause between two rounds of ``get_batch_result`` over the tasks still pending."""

    def __init__(self) -> None:
        super().__init__()
        self._submitted = threading.Event()

    def result(self, future: Any) -> Any:
        """Poll ``get_result(task_id)`` until the task is final (``TaskPending`` until then)."""
        from parsl_lite.faas.errors import ServiceUnreachable, TaskPending
        get_result = self.client.get_result
        while True:
            try:
                return get_result(future)
            except TaskPending:
                time.sleep(self.poll_s)
            except ServiceUnreachable:
                self.unreachable += 1
                time.sleep(self.retry_s)

    def gather(self, futures: Sequence[Any]) -> list[Any]:
        """Poll ``get_batch_result`` over the pending task ids until none is pending."""
        from parsl_lite.faas.sdk.decode import task_value
        ids = list(futures)
        final = self._poll(ids, None)
        return [task_value(final[t]) for t in ids]

    def _poll(self, ids: Sequence[str], timeout_s: Optional[float]) -> dict[str, dict]:
        """Final task dicts by id, from ``get_batch_result`` rounds (until all are final, or the timeout)."""
        from parsl_lite.faas.errors import ServiceError, ServiceUnreachable
        pending = list(dict.fromkeys(ids))
        final: dict[str, dict] = {}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while pending and (deadline is None or time.monotonic() < deadline):
            try:
                tasks = self.client.get_batch_result(pending)
            except (ServiceUnreachable, ServiceError) as exc:
                if isinstance(exc, ServiceError) and exc.http_status < 500:
                    raise
                self.unreachable += 1
                time.sleep(self.retry_s)
                continue
            final.update((t, task) for t, task in tasks.items() if not task["pending"])
            pending = [t for t in pending if t not in final]
            self.done_count = len(final)
            if pending:
                time.sleep(self.batch_poll_s)
        return final

    def midway(self, n: int) -> bool:
        """``batch_run`` has returned (every task accepted) and no poll has begun: a polling client
        learns of results in jumps (its first round often finds them all final), so this is its midpoint."""
        return self._submitted.is_set()

    def run_batch(self, fn: Callable[..., Any], n: int, endpoint_ids: Optional[Sequence[str]] = None,
                  timeout_s: float = 600.0) -> list[Any]:
        """``batch_run`` of ``n`` tasks, then ``get_batch_result`` rounds until all are final."""
        from parsl_lite.faas.sdk.decode import task_value
        self._submitted.clear()
        ids = self.client.batch_run(self._batch(fn, n, endpoint_ids))
        self._submitted.set()
        time.sleep(self.batch_poll_s)
        final = self._poll(ids, timeout_s)
        out: list[Any] = []
        for task_id in ids:
            if task_id not in final:
                out.append(LOST)
                continue
            try:
                out.append(task_value(final[task_id]))
            except Exception as exc:  # the task's own failure is its outcome
                out.append(exc)
        return out


@register_adapter
class FaasAsync(_Faas):
    """``FuncXClient(asynchronous=True)``: ``await fxc.run(...)``, results over the WebSocket."""

    name = "parsl_lite-faas-async"

    def __init__(self) -> None:
        super().__init__()
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    def _open_client(self) -> None:
        from parsl_lite.faas import FuncXClient
        self.loop = asyncio.new_event_loop()
        self.client = FuncXClient(self.stack.url, self.token, asynchronous=True, loop=self.loop)

    def result(self, future: Any) -> Any:
        """``await`` the task (the caller's loop runs until it resolves)."""
        assert self.loop is not None
        return self.loop.run_until_complete(_awaited(future))

    def gather(self, futures: Sequence[Any]) -> list[Any]:
        """``await asyncio.gather(*tasks)``, counting results as they come (``done_count``)."""
        assert self.loop is not None
        self._count_done(futures)
        return list(self.loop.run_until_complete(_gathered(futures)))

    def run_batch(self, fn: Callable[..., Any], n: int, endpoint_ids: Optional[Sequence[str]] = None,
                  timeout_s: float = 600.0) -> list[Any]:
        """``batch_run`` of ``n`` tasks (awaitables), then awaiting them all."""
        assert self.loop is not None
        futures = self.client.batch_run(self._batch(fn, n, endpoint_ids))
        self._count_done(futures)
        self.loop.run_until_complete(_waited(futures, timeout_s))
        return [_outcome(f) for f in futures]

    def _close_client(self) -> None:
        super()._close_client()
        if self.loop is not None:
            self.loop.close()
            self.loop = None


def _outcome(future: Any) -> Any:
    """A done future's value or exception; :data:`LOST` if not done (FuncXTask and concurrent futures)."""
    if not future.done():
        return LOST
    try:
        exc = future.exception(0)
    except concurrent.futures.CancelledError as cancelled:
        return cancelled
    return exc if exc is not None else future.result(0)


async def _waited(futures: Sequence[Any], timeout_s: float) -> None:
    """Await every task (awaitables of any kind), for at most ``timeout_s``."""
    await asyncio.wait([asyncio.ensure_future(f) for f in futures], timeout=timeout_s)


async def _awaited(future: Any) -> Any:
    return await future


async def _gathered(futures: Sequence[Any]) -> list[Any]:
    return await asyncio.gather(*futures)


@register_adapter
class FaasExecutor(_Faas):
    """``FuncXExecutor(fxc, endpoint_id=..., batch_enabled=True)`` at its defaults (batches of 128)."""

    name = "parsl_lite-faas-executor"

    def __init__(self) -> None:
        super().__init__()
        self.fx: Any = None

    executor_options: ClassVar[dict[str, Any]] = {}
    """``FuncXExecutor`` arguments besides the client, endpoint and ``batch_enabled`` (none: its defaults)."""

    def _open_client(self) -> None:
        from parsl_lite.faas import FuncXExecutor
        super()._open_client()
        self.fx = FuncXExecutor(self.client, endpoint_id=self.endpoint_id, batch_enabled=True,
                                **self.executor_options)

    def app(self, fn: Callable[..., Any]) -> Submit:
        """``fx.submit(fn, *args)`` (registered once, before the clock)."""
        self.fx.register_function(fn)
        submit = self.fx.submit

        def run(*args: Any) -> Any:
            return submit(fn, *args)
        return run

    def gather(self, futures: Sequence[Any]) -> list[Any]:
        """Each future's ``result()``, counting them as they resolve (``done_count``)."""
        self._count_done(futures)
        return [future.result() for future in futures]

    def run_batch(self, fn: Callable[..., Any], n: int, endpoint_ids: Optional[Sequence[str]] = None,
                  timeout_s: float = 600.0) -> list[Any]:
        """``n`` × ``fx.submit(fn)`` (to the executor's endpoint), then waiting for every future."""
        self.done_count = 0
        submit = self.app(fn)
        futures = [submit() for _ in range(n)]
        self._count_done(futures)
        deadline = time.monotonic() + timeout_s
        if futures:  # waiting on a future sends the last, partial batch at once (not after batch_interval)
            try:
                futures[-1].exception(timeout=timeout_s)
            except concurrent.futures.TimeoutError:
                pass
        concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        return [_outcome(f) for f in futures]

    def _close_client(self) -> None:
        if self.fx is not None:
            self.fx.shutdown(wait=False)
            self.fx = None
        super()._close_client()


@register_adapter
class FaasExecutorBig(FaasExecutor):
    """``FuncXExecutor(..., batch_size=1000, batch_interval=0.01)``: the SDK's advice for many small tasks."""

    name = "parsl_lite-faas-executor-b1000"
    executor_options = {"batch_size": 1000, "batch_interval": 0.01}


@register_adapter
class FaasWorkflow(_Faas):
    """The FaaS executor inside a workflow: ``load(Config(executors=[FaaSExecutor(endpoints=[ep])]))``,
    ``python_app``s on it (TARGETS.md: ≥ 0.5× the local htex of the same run)."""

    name = "parsl_lite-faas-workflow"

    def __init__(self) -> None:
        super().__init__()
        self._parsl: Any = None

    def prepare(self) -> None:
        super().prepare()
        import parsl_lite.executors.faas.executor  # noqa: F401

    def _open_client(self) -> None:
        import parsl_lite
        from parsl_lite.config import Config
        from parsl_lite.executors import FaaSExecutor
        from parsl_lite.faas import FuncXClient
        self.client = FuncXClient(self.stack.url, self.token)
        executor = FaaSExecutor(label="funcX", endpoints=[self.endpoint_id], client=self.client)
        parsl_lite.load(Config(executors=[executor], strategy="none", run_dir=str(Path(self.stack.root) / "runinfo")))
        self._parsl = parsl_lite

    def app(self, fn: Callable[..., Any]) -> Submit:
        """``python_app(fn, executors=["funcX"])``."""
        submit: Submit = self._parsl.python_app(fn, executors=["funcX"])
        return submit

    def result(self, future: Any) -> Any:
        return future.result()

    def run_batch(self, fn: Callable[..., Any], n: int, endpoint_ids: Optional[Sequence[str]] = None,
                  timeout_s: float = 600.0) -> list[Any]:
        """``n`` app calls, then waiting for every future."""
        self.done_count = 0
        submit = self.app(fn)
        futures = [submit() for _ in range(n)]
        self._count_done(futures)
        deadline = time.monotonic() + timeout_s
        for future in futures:   # in order, as the htex reference gathers (a finished future takes no lock)
            try:
                future.exception(timeout=max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                break            # the rest are LOST unless done already
            except concurrent.futures.CancelledError:
                continue
        return [_outcome(f) for f in futures]

    def _close_client(self) -> None:
        if self._parsl is not None:
            self._parsl.dfk().cleanup()
            self._parsl = None
        super()._close_client()


@register_adapter
class FaasRouting(_Faas):
    """Two real endpoints, ``small`` with 1 worker and ``big`` with 4 (W is ignored): the ``faas_routing``
    case loads a workflow on both with each policy in turn (:meth:`load_policy`)."""

    name = "parsl_lite-faas-routing"
    WORKERS: ClassVar[dict[str, int]] = {"small": 1, "big": 4}

    def __init__(self) -> None:
        super().__init__()
        self._parsl: Any = None

    def prepare(self) -> None:
        super().prepare()
        import parsl_lite.executors.faas.executor  # noqa: F401

    def _start_endpoints(self, workers: int) -> list[str]:
        ids = [self.stack.start_endpoint(name, self.token, count, cores_per_worker=0.25)
               for name, count in self.WORKERS.items()]
        for endpoint_id in ids:
            self.stack.wait_online(endpoint_id, self.token)
        return ids

    def wait_ready(self, workers: int, timeout_s: float = 60.0, probe_s: float = 0.02) -> None:
        """Until each endpoint's status report counts its workers (what ``least_loaded`` reads)."""
        deadline = time.monotonic() + timeout_s
        for endpoint_id, count in zip(self.endpoint_ids, self.WORKERS.values()):
            while (self.client.get_endpoint_status(endpoint_id).get("details") or {}).get(
                    "connected_workers", 0) < count:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"endpoint {endpoint_id}: fewer than {count} workers after {timeout_s:g} s")
                time.sleep(0.05)

    def load_policy(self, policy: str) -> Any:
        """A fresh workflow whose ``funcX`` executor routes over both endpoints with ``policy``; its kernel."""
        import parsl_lite
        from parsl_lite.config import Config
        from parsl_lite.executors import FaaSExecutor
        self.unload()
        executor = FaaSExecutor(label="funcX", endpoints=list(self.endpoint_ids), client=self.client,
                                policy=policy, status_period=0.2)
        run_dir = Path(self.stack.root) / f"runinfo-{policy}"
        self._parsl = parsl_lite
        return parsl_lite.load(Config(executors=[executor], strategy="none", run_dir=str(run_dir)))

    def app(self, fn: Callable[..., Any]) -> Submit:
        submit: Submit = self._parsl.python_app(fn, executors=["funcX"])
        return submit

    def unload(self) -> None:
        if self._parsl is not None:
            self._parsl.clear()
            self._parsl = None

    def _close_client(self) -> None:
        self.unload()
        super()._close_client()


@register_adapter
class FaasSim(FaasAsync):
    """As ``-async``, but to simulated endpoints that answer at once: the service's own cost."""

    name = "parsl_lite-faas-sim"

    def __init__(self) -> None:
        super().__init__()
        self.fleet: Any = None

    def _start_endpoints(self, workers: int) -> list[str]:
        from benchmarks.faas_sim import SimFleet
        self.fleet = SimFleet(self.stack, self.token)
        return self.fleet.add(1)

    def add_endpoints(self, count: int, per_process: int = 25) -> list[str]:
        """``count`` more simulated endpoints (registered through the API), all connected; their ids."""
        ids = self.fleet.add(count, per_process=per_process)
        self.endpoint_ids.extend(ids)
        return ids

    def wait_ready(self, workers: int, timeout_s: float = 120.0, probe_s: float = 0.02) -> None:
        """One round trip: a simulated endpoint has no worker processes to count."""
        from benchmarks import tasks
        self.result(self.app(tasks.noop)())

    def stop(self) -> None:
        """The client, the simulators, then the service."""
        try:
            self._close_client()
        finally:
            if self.fleet is not None:
                self.fleet.stop()
            if self.stack is not None:
                self.stack.stop()
                self.stack = None
