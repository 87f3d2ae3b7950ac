"""``FaaSExecutor`` (also ``FuncXExecutor``): apps of a workflow run on endpoints of the function service.

    Config(executors=[FuncXExecutor(label="funcX", endpoints=[ep1, ep2]),
                      HighThroughputExecutor(label="local")])

It is only a client of the service (DESIGN rule 1): the SDK's ``FuncXExecutor``
registers each function once (by digest), sends tasks in batches and gets
results over the WebSocket; this class picks the endpoint of each task
(``parsl_resource_specification={"endpoints": [...]}`` narrows the choice, the
policy of ``policies.py`` makes it), checks that the user may use the
endpoints (asking the service once per id), and reads the endpoints' status
reports on a thread of its own, off the submit path. An endpoint offline for
longer than ``endpoint_lost_after`` loses its tasks: they fail with
``EndpointLost`` naming it, which ``Config(retries=N)`` retries elsewhere. A
task submitted while every endpoint it may use is offline waits here, unsent,
and goes to the first of them that comes back, or fails with
``EndpointsOffline`` naming them all after ``offline_timeout`` seconds.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import replace
import time
from collections import Counter
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

from parsl_lite.errors import ConfigurationError
from parsl_lite.executors.base import ExecutorEvent, ParslExecutor
from parsl_lite.executors.errors import ExecutorShutdown
from parsl_lite.executors.faas.errors import EndpointNotAllowed, EndpointsOffline, InvalidFaaSResourceSpecification
from parsl_lite.executors.faas.policies import (
    EndpointStatus, LossTracker, Policy, RoundRobin, candidates, resolve_policy, status_from_report,
)
from parsl_lite.fast_future import FastFuture

logger = logging.getLogger(__name__)

RESOURCE_KEYS = frozenset({"endpoints"})


class FaaSExecutor(ParslExecutor):
    """Runs apps on endpoints of the function service, chosen per task.

    Args:
        label: the executor's name in the config.
        endpoints: endpoint ids tasks may go to unless their resource specification says
            otherwise; None: every endpoint the user may use (asked at start).
        client: a ``FuncXClient``; None: ``FuncXClient()`` (arguments, environment, client.json).
        batch_size: the most tasks in one submission.
        batch_interval: the longest a task waits for its batch, in seconds.
        policy: ``"round_robin"``, ``"least_loaded"`` or a callable ``policy(task_spec, statuses) -> id``.
        status_period: seconds between two reads of the endpoints' status reports.
        endpoint_lost_after: seconds offline after which an endpoint's tasks fail with
            ``EndpointLost`` (None: they wait for it to return).
        stale_after: seconds without a report after which an endpoint gets no new task.
        offline_timeout: seconds a task waits, unsent, while every endpoint it may use is offline (or
            silent), before it fails with ``EndpointsOffline`` naming them (None: it waits until one
            returns). It goes to the first of them that comes back.
    """

    needs_serialization = True
    routes_to_endpoints = True

    def __init__(self, label: str = "funcX", endpoints: Optional[Sequence[str]] = None, client: Any = None,
                 batch_size: int = 128, batch_interval: float = 0.01,
                 policy: Union[str, Callable[..., str]] = "round_robin", status_period: float = 1.0,
                 endpoint_lost_after: Optional[float] = 60.0, stale_after: float = 30.0,
                 offline_timeout: Optional[float] = 60.0) -> None:
        if batch_size < 1 or batch_interval < 0:
            raise ConfigurationError("batch_size/batch_interval", f"must be >= 1 and >= 0, got {batch_size}, "
                                     f"{batch_interval}")
        if status_period <= 0 or (endpoint_lost_after is not None and endpoint_lost_after <= 0):
            raise ConfigurationError("status_period/endpoint_lost_after", "must be > 0")
        if offline_timeout is not None and offline_timeout < 0:
            raise ConfigurationError("offline_timeout", f"must be >= 0 seconds or None, got {offline_timeout}")
        try:
            self._policy: Policy = resolve_policy(policy)
        except ValueError as exc:
            raise ConfigurationError("policy", str(exc)) from None
        if endpoints is not None and (isinstance(endpoints, str) or not all(isinstance(e, str) for e in endpoints)):
            raise ConfigurationError("endpoints", f"must be a list of endpoint ids, got {endpoints!r}")
        self.label = label
        self.endpoints = list(endpoints) if endpoints is not None else None
        self.client = client
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        self.policy = policy
        self.status_period = status_period
        self.endpoint_lost_after = endpoint_lost_after
        self.stale_after = stale_after
        self.offline_timeout = offline_timeout
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._fx: Any = None
        self._owns_client = False
        self._verdicts: dict[str, Optional[str]] = {}      # endpoint id -> None (usable) or why not
        self._reports: dict[str, dict] = {}                # endpoint id -> last get_endpoint_status answer
        self._announced: dict[str, Optional[str]] = {}     # endpoint id -> the status last told to listeners
        # endpoint id -> {our future: the SDK's future}; our future's submitted_at says when it went
        self._in_flight: dict[str, dict[Future, Any]] = {}
        self._tracker = LossTracker(self.endpoint_lost_after)
        self._snapshot: dict[str, EndpointStatus] = {}     # the statuses as of the last refresh (in_flight 0)
        self._version = 0                                  # bumped with each new snapshot
        self._routes: dict[tuple, tuple[int, list[str], dict[str, EndpointStatus]]] = {}
        self._parked: list[_Parked] = []                   # tasks whose every endpoint is offline: not sent yet
        self._finished: Counter[str] = Counter()           # endpoint id -> tasks of ours finished there
        self._finished_at_report: dict[str, int] = {}      # endpoint id -> that count when its report was read
        self._wants_load = not isinstance(self._policy, RoundRobin)
        self._stop = threading.Event()
        self._done: SimpleQueue = SimpleQueue()   # the SDK's futures as they finish (then None: stop)
        self._put_done = self._done.put           # each SDK future's one callback (no closure per task)
        self._threads: list[threading.Thread] = []
        self._broken: Optional[BaseException] = None
        self.default_endpoints: list[str] = []

    # ------------------------------------------------------------ starting
    def start(self) -> None:
        """Connect (the client), check the configured endpoints, start the status and completion threads.

        Raises:
            EndpointNotAllowed: a configured endpoint is unknown or not this user's (named).
            ConfigurationError: no endpoint at all.
        """
        from parsl_lite.faas.sdk import executor as sdk_executor
        from parsl_lite.faas.sdk.client import FuncXClient

        self._reset()
        if self.client is None:
            self.client, self._owns_client = FuncXClient(), True
        if self.endpoints is None:
            self.default_endpoints = [e["endpoint_id"] for e in self.client.get_endpoints()]
            self._verdicts.update({e: None for e in self.default_endpoints})
        else:
            self.default_endpoints = list(self.endpoints)
            for endpoint_id in self.default_endpoints:
                self._check_endpoint(endpoint_id)
        if not self.default_endpoints:
            raise ConfigurationError(f"{self.label}.endpoints", "no endpoint: name some, or register one")
        self._fx = sdk_executor.FuncXExecutor(self.client, batch_size=self.batch_size,
                                              batch_interval=self.batch_interval, label=self.label)
        self._refresh_statuses()
        for target, name in ((self._status_loop, "status"), (self._completion_loop, "completion")):
            thread = threading.Thread(target=target, name=f"parsl_lite-{self.label}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("executor %r started: endpoints %s, policy %r", self.label, self.default_endpoints, self.policy)

    def _check_endpoint(self, endpoint_id: Any) -> None:
        """Raise ``EndpointNotAllowed`` unless the service lets this user send to ``endpoint_id`` (cached)."""
        if endpoint_id not in self._verdicts:
            self._verdicts[endpoint_id] = self._ask_access(endpoint_id)
        why = self._verdicts[endpoint_id]
        if why is not None:
            raise EndpointNotAllowed(self.label, str(endpoint_id), why)

    def _ask_access(self, endpoint_id: Any) -> Optional[str]:
        from parsl_lite.faas.errors import ServiceError

        try:
            self._reports[endpoint_id] = self.client.get_endpoint_status(endpoint_id)
        except ValueError as exc:   # not a UUID: refused by the SDK before sending
            return str(exc)
        except ServiceError as exc:
            if exc.http_status in (400, 403, 404):
                return f"the service says {exc}"
            raise
        return None

    # ------------------------------------------------------------ submitting
    def submit(self, func: Callable, resource_specification: dict, *args: Any, **kwargs: Any) -> Future:
        """Send ``func(*args, **kwargs)`` to the endpoint the policy picks among the allowed ones.

        Raises:
            EndpointNotAllowed: the resource specification names an endpoint this user may not use.
            InvalidFaaSResourceSpecification: a key other than ``endpoints``, or a malformed list.
            ExecutorShutdown: after shutdown (or before start).
        """
        if self._broken is not None or self._fx is None:
            raise self._broken or ExecutorShutdown(self.label, "not started")
        allowed = self._allowed(resource_specification)
        future: Future = FastFuture()
        if not self._any_online(allowed):
            with self._lock:
                self._parked.append(_Parked(future, func, resource_specification, allowed, args, kwargs, time.time()))
            logger.info("executor %r: every endpoint of a task is offline (%s): it waits", self.label, allowed)
            return future
        self._send(future, func, resource_specification, allowed, args, kwargs)
        return future

    def _any_online(self, allowed: list[str]) -> bool:
        """Whether one of these endpoints is online and reporting (as of the last status refresh)."""
        snapshot = self._snapshot
        for endpoint_id in allowed:
            status = snapshot.get(endpoint_id)
            if status is None or (status.online and status.reporting):
                return True
        return False

    def _send(self, future: Future, func: Callable, spec: Optional[dict], allowed: list[str], args: tuple,
              kwargs: dict) -> None:
        """Route the task and hand it to the SDK's executor; ``future`` follows the SDK's."""
        endpoint_id = self._route(allowed, func, spec)
        idle = not any(self._in_flight.values())
        sdk_future = self._fx.submit(func, *args, endpoint_id=endpoint_id, **kwargs)
        if idle:   # a lone task (or a burst's first) goes at once; the rest batch while it is on its way
            self._fx._flush_soon()
        future.endpoint_id = endpoint_id  # type: ignore[attr-defined]  # which endpoint ran it, for views
        future.faas_future = sdk_future  # type: ignore[attr-defined]  # its task_id once the service took it
        with self._lock:
            self._in_flight.setdefault(endpoint_id, {})[future] = sdk_future
        future.submitted_at = time.time()  # type: ignore[attr-defined]
        sdk_future.parsl_future = future
        sdk_future.add_done_callback(self._put_done)

    def _route(self, allowed: list[str], func: Callable, spec: Optional[dict]) -> str:
        """``policies.choose`` on the hot path: candidates cached per status refresh, live in-flight counts."""
        key = tuple(allowed)
        route = self._routes.get(key)
        if route is None or route[0] != self._version:
            options = candidates(allowed, self._snapshot)
            route = (self._version, options, {e: self._snapshot.get(e) or EndpointStatus(e) for e in options})
            self._routes[key] = route
        options, statuses = route[1], route[2]
        if len(options) == 1:
            return options[0]
        if self._wants_load:   # least_loaded and callables see what is in flight now
            statuses = {e: replace(s, in_flight=len(self._in_flight.get(e, ()))) for e, s in statuses.items()}
        task_spec = {"endpoints": options, "function_name": getattr(func, "__name__", "?"),
                     "resource_specification": spec or {}}
        chosen = self._policy(task_spec, statuses)
        if chosen not in key:
            raise ValueError(f"policy {getattr(self._policy, '__name__', self._policy)!r} chose endpoint "
                             f"{chosen!r}, not among the task's endpoints {allowed}")
        return chosen

    def _allowed(self, spec: Optional[dict]) -> list[str]:
        if not spec:
            return self.default_endpoints
        unknown = sorted(set(spec) - RESOURCE_KEYS)
        if unknown:
            raise InvalidFaaSResourceSpecification(
                self.label, f"unknown resource specification keys {unknown}; accepted: {sorted(RESOURCE_KEYS)}")
        endpoints = spec.get("endpoints")
        if endpoints is None:
            return self.default_endpoints
        if isinstance(endpoints, str) or not isinstance(endpoints, (list, tuple)) or not endpoints:
            raise InvalidFaaSResourceSpecification(
                self.label, f"resource specification 'endpoints' must be a non-empty list of ids, got {endpoints!r}")
        for endpoint_id in endpoints:
            if not isinstance(endpoint_id, str):
                raise InvalidFaaSResourceSpecification(
                    self.label, f"resource specification 'endpoints' holds {endpoint_id!r}, not an endpoint id")
            self._check_endpoint(endpoint_id)
        return list(endpoints)

    def _new_snapshot(self) -> None:
        known = [e for e, why in list(self._verdicts.items()) if why is None]
        snapshot = self.statuses(known)
        self._snapshot = {e: replace(s, in_flight=0) for e, s in snapshot.items()}
        self._version += 1

    def statuses(self, endpoint_ids: Sequence[str]) -> dict[str, EndpointStatus]:
        """What the policy sees of these endpoints now (the last reports, the live in-flight counts)."""
        now = time.time()
        out = {}
        for endpoint_id in endpoint_ids:
            reply = self._reports.get(endpoint_id)
            in_flight = len(self._in_flight.get(endpoint_id, ()))
            lost = self._tracker.recently_lost(endpoint_id, now)
            if reply is None:
                out[endpoint_id] = EndpointStatus(endpoint_id, in_flight=in_flight, recently_lost=lost)
            else:
                finished = self._finished[endpoint_id] - self._finished_at_report.get(endpoint_id, 0)
                out[endpoint_id] = status_from_report(endpoint_id, reply, in_flight, now, self.stale_after, lost,
                                                      finished)
        return out

    # ------------------------------------------------------------ background threads
    def _completion_loop(self) -> None:
        """Resolve our futures from the SDK's, off the SDK's I/O loop (the kernel's callbacks may submit)."""
        from parsl_lite.faas.errors import EndpointLost

        while True:
            sdk_future = self._done.get()
            if sdk_future is None:
                return
            future, sdk_future.parsl_future = sdk_future.parsl_future, None   # no cycle left for the GC
            endpoint_id = future.endpoint_id
            with self._lock:
                self._in_flight.get(endpoint_id, {}).pop(future, None)
            self._finished[endpoint_id] += 1
            if future.done():
                continue   # failed already (its endpoint was lost, or shutdown)
            try:
                if sdk_future.cancelled():
                    future.set_exception(ExecutorShutdown(self.label, "the task was cancelled"))
                    continue
                exc = sdk_future.exception()
                if isinstance(exc, EndpointLost):
                    self._tracker.mark_lost(endpoint_id, time.time())
                    self._new_snapshot()
                self._placed(future, endpoint_id, exc)
                if exc is None:
                    future.set_result(sdk_future.result())
                else:
                    future.set_exception(exc)
            except BaseException:  # a callback of the kernel failed (even SystemExit): this thread must carry on
                logger.exception("executor %r: completing a task raised", self.label)

    def _placed(self, future: Future, endpoint_id: str, exc: Optional[BaseException]) -> None:
        """Tell the kernel's listeners which endpoint ran the task (and with what outcome)."""
        record = getattr(future, "parsl_record", None)   # set by the kernel on the futures it launched
        self.emit(ExecutorEvent(self.label, "task_placed", {
            "endpoint_id": endpoint_id, "task_id": getattr(sdk_future_of(future), "task_id", None),
            "ok": exc is None}, getattr(record, "id", None)))

    def _status_loop(self) -> None:
        while not self._stop.wait(self.status_period):
            try:
                self._refresh_statuses()
            except Exception:
                logger.exception("executor %r: reading endpoint statuses failed", self.label)

    def _refresh_statuses(self) -> None:
        """Read every known endpoint's status report; fail the tasks of endpoints lost meanwhile."""
        known = [e for e, why in list(self._verdicts.items()) if why is None]
        for endpoint_id in known:
            if self._stop.is_set():
                return
            try:
                reply = self.client.get_endpoint_status(endpoint_id)
            except Exception as exc:  # the service is down or restarting: keep the last report
                logger.info("executor %r: status of endpoint %s: %r", self.label, endpoint_id, exc)
                continue
            before = self._announced.get(endpoint_id)
            if _report_time(reply) != _report_time(self._reports.get(endpoint_id)):   # a new report
                self._finished_at_report[endpoint_id] = self._finished[endpoint_id]
            self._reports[endpoint_id] = reply
            self._announced[endpoint_id] = reply.get("status")
            self._tracker.observe(endpoint_id, reply.get("status") == "online", time.time())
            if reply.get("status") != before:
                details = reply.get("details") or {}
                self.emit(ExecutorEvent(self.label, "endpoint_status", {
                    "endpoint_id": endpoint_id, "status": reply.get("status"), "last_seen": reply.get("last_seen"),
                    **{k: details.get(k) for k in ("connected_workers", "idle_workers", "pending_tasks")}}))
        now = time.time()
        self._tracker.newly_lost(now)   # remembered as just lost: retries go elsewhere
        self._new_snapshot()
        for endpoint_id in list(self._in_flight):
            if self._tracker.offline_for(endpoint_id, now) > 0:
                self._fail_endpoint(endpoint_id, now)
        if self._parked:
            self._release_parked(now)

    def _release_parked(self, now: float) -> None:
        """Send the waiting tasks one of whose endpoints is back; fail those that waited ``offline_timeout``."""
        with self._lock:
            parked, self._parked = self._parked, []
        keep = []
        for task in parked:
            if task.future.done():
                continue
            if self._any_online(task.allowed):
                try:
                    self._send(task.future, task.func, task.spec, task.allowed, task.args, task.kwargs)
                except Exception as exc:   # shut down meanwhile, a policy's error, an unpicklable argument
                    task.future.set_exception(exc)
            elif self.offline_timeout is not None and now - task.parked_at >= self.offline_timeout:
                cause = EndpointsOffline(self.label, task.allowed, now - task.parked_at)
                logger.warning("%s", cause)
                task.future.set_exception(cause)
            else:
                keep.append(task)
        with self._lock:
            self._parked[:0] = keep

    def _fail_endpoint(self, endpoint_id: str, now: float) -> None:
        """Fail the tasks that waited ``endpoint_lost_after`` on this offline endpoint."""
        from parsl_lite.faas.errors import EndpointLost

        with self._lock:
            held = self._in_flight.get(endpoint_id, {})
            tasks = {f: sdk_future for f, sdk_future in held.items()
                     if self._tracker.gives_up(endpoint_id, f.submitted_at, now)}
            for future in tasks:
                del held[future]
        if not tasks:
            return
        cause = EndpointLost(endpoint_id, f"offline for more than {self.endpoint_lost_after} s "
                                          f"(executor {self.label!r}, endpoint_lost_after) with the task in flight")
        logger.warning("executor %r: %s: failing %d tasks", self.label, cause, len(tasks))
        for future, sdk_future in tasks.items():
            if not future.done():
                future.set_exception(cause)
            sdk_future.cancel()   # then at the service too, if it has not started; a late result is ignored

    # ------------------------------------------------------------ what the kernel asks
    @property
    def outstanding(self) -> int:
        with self._lock:
            return sum(len(tasks) for tasks in self._in_flight.values()) + len(self._parked)

    @property
    def connected_workers(self) -> int:
        return sum(s.connected_workers for s in self.statuses(self.default_endpoints).values() if s.usable)

    def shutdown(self) -> None:
        """Stop the threads, fail what is pending with ``ExecutorShutdown``, close a client made here."""
        if self._broken is not None:
            return
        self._broken = ExecutorShutdown(self.label, "shut down")
        self._stop.set()
        if self._fx is not None:
            self._fx.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            pending = [f for tasks in self._in_flight.values() for f in tasks] + [t.future for t in self._parked]
            self._in_flight.clear()
            self._parked.clear()
        for future in pending:
            if not future.done():
                future.set_exception(ExecutorShutdown(self.label, "shut down before the task finished"))
        self._done.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(10)
        self._threads.clear()
        if self._owns_client:
            self.client.close()
            self.client, self._owns_client = None, False
        logger.info("executor %r shut down", self.label)


class _Parked(NamedTuple):
    """A task waiting for one of its endpoints to come online (nothing sent yet)."""
    future: Future
    func: Callable
    spec: Optional[dict]
    allowed: list[str]
    args: tuple
    kwargs: dict
    parked_at: float


def _report_time(reply: Optional[dict]) -> Any:
    """When the endpoint made this status report (its own timestamp, else when the service last heard it)."""
    if not reply:
        return None
    return (reply.get("details") or {}).get("timestamp", reply.get("last_seen"))


def sdk_future_of(future: Future) -> Any:
    """The SDK's ``FuncXFuture`` behind one of this executor's futures (its ``task_id`` at the service)."""
    return getattr(future, "faas_future", None)


FuncXExecutor = FaaSExecutor
