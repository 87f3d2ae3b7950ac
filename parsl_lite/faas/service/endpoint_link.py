"""The service's ZMQ side of the endpoint wire: a CurveZMQ ROUTER, fed to the pure :mod:`dispatch` core.

::

    endpoint DEALER ──CurveZMQ──▶ ROUTER ─▶ receive loop: decode (bad frames: logged, dropped)
    (identity = its id)             ▲                │ MessageReceived
                                    │                ▼
                                    │  events ─▶ process loop ─▶ Dispatcher.handle ─▶ actions, in order:
                                    └──────────────────────────── Send         AsyncStore calls, on_final
               tick timer, notify_submitted / notify_cancelled ─▶ events     (answers fed back as events)

Only keys of registered endpoints pass the ZAP handshake (the store's keys at
start, plus :meth:`EndpointLink.allow_key` after each registration). Each
message carries the key its connection authenticated with (the ZAP User-Id
of the frame), and the dispatcher accepts a hello only when that key is the
one issued to the endpoint it names, so one endpoint cannot speak as another.
The routing identity only names the connection; an endpoint's newest accepted
hello wins. A new connection claiming an identity that a live one holds is
not handed it (no ``ROUTER_HANDOVER``), so a live endpoint's tasks are never
routed to whoever claims its identity; libzmq then parks the newcomer, which
is why endpoints should leave the identity to the ROUTER (or make it unique
per connection). ZMQ heartbeats drop dead connections within the threshold.

Events are handled one at a time, each with the store reads its actions
make (the endpoint's record, its tasks in flight, tasks to deliver), so the
dispatcher never sees the answer of one read after a later one. Store calls
are *submitted* in the order the dispatcher asked for them (AsyncStore runs
them on one thread, in order), but writes nobody waits for (seen, dispatched,
running, requeued) are not awaited: the next message is handled while the
disk syncs. Results are stored by one writer that takes every result waiting
at once (group commit): one ``set_results`` per burst, not per message; only
after it returns are they acknowledged (ResultsStored) and ``on_final`` called.
Everything here runs on the service's event loop; ``notify_*`` and
``allow_key`` must be called from it.
"""
from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Union

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

from parsl_lite.faas import protocol as p
from parsl_lite.faas.service import dispatch as d
from parsl_lite.faas.service.async_store import AsyncStore
from parsl_lite.faas.service.keys import service_keys

logger = logging.getLogger(__name__)

OnFinal = Callable[[list[str]], Union[None, Awaitable[None]]]
_BODY_CACHE_MAX = 1024          # function bodies kept in memory (a function never changes once registered)
_SNDHWM = 100_000               # deliveries are bounded by max_outstanding; never drop a ResultsStored
_LOG_EVERY = 1000               # after the first few, log one malformed message in this many


def send_now(router: zmq.asyncio.Socket, frames: list[bytes]) -> bool:
    """Send ``frames`` at once if the socket takes them (False: nothing sent, await ``send_multipart``).

    What pyzmq's asyncio ``send_multipart`` does first, without its per-frame ``enum`` flags (a delivery of
    a thousand tasks is two thousand frames); then, as it does, wake a receive that the send may have hidden.
    """
    shadow = getattr(router, "_shadow_sock", None)
    wake = getattr(router, "_schedule_remaining_events", None)
    if shadow is None or wake is None:   # another pyzmq: its own way
        return False
    try:
        p.send_nowait(shadow, frames)
    except zmq.Again:
        return False
    if getattr(router, "_recv_futures", None):
        wake()
    return True


class _RegisteredKeys:
    """The ZAP credentials provider: a connection gets in only with the key of a registered endpoint."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key.decode("ascii", "replace") in self.keys
        if not allowed:
            logger.warning("refused a CurveZMQ connection: key %s is not a registered endpoint's",
                           key[:8].decode("ascii", "replace") + "...")
        return allowed


class EndpointLink:
    """The ROUTER endpoints connect to; see the module docstring.

    Args:
        astore: the service's store, awaited.
        service_dir: where the service's CurveZMQ keypair lives (made there once, then reused).
        host: the interface to bind (127.0.0.1 unless told otherwise).
        port: the TCP port; 0 picks a free one (``start`` returns the URL).
        heartbeat_period_s: how often endpoints report and how often silence is checked.
        max_result_bytes: the result limit told to endpoints (bigger results are stored as failed).
        on_final: called on the loop with the ids of tasks whose final state was just stored (an id may
            come again, e.g. for a duplicate result); may be a coroutine function.
        heartbeat_threshold_s: silence after which an endpoint is offline (default 4 periods).
        max_retries_on_system_failure: re-deliveries of a task whose endpoint went away holding it.
        chunk_size, max_outstanding: tasks per delivery message; tasks out at one endpoint at most.
    """

    def __init__(self, astore: AsyncStore, service_dir: Union[str, Path], host: str = "127.0.0.1", port: int = 0,
                 heartbeat_period_s: float = 10.0, max_result_bytes: int = 10 * 1024 * 1024,
                 on_final: Optional[OnFinal] = None, *, heartbeat_threshold_s: Optional[float] = None,
                 max_retries_on_system_failure: int = 3, chunk_size: int = 500, max_outstanding: int = 5000) -> None:
        if heartbeat_period_s <= 0:
            raise ValueError(f"heartbeat_period_s must be > 0, got {heartbeat_period_s}")
        self.astore = astore
        self.host, self.port = host, port
        self.service_id = str(uuid.uuid4())
        self.service_public_key, self._secret_key = service_keys(service_dir)
        self.heartbeat_period_s = heartbeat_period_s
        self.heartbeat_threshold_s = heartbeat_threshold_s or 4 * heartbeat_period_s
        self.max_result_bytes = max_result_bytes
        self._on_final = on_final
        self.dispatcher = d.Dispatcher(d.DispatchSettings(
            service_id=self.service_id, heartbeat_period_s=heartbeat_period_s,
            heartbeat_threshold_s=self.heartbeat_threshold_s, max_result_bytes=max_result_bytes,
            chunk_size=chunk_size, max_outstanding=max_outstanding,
            max_retries_on_system_failure=max_retries_on_system_failure))
        self._keys = _RegisteredKeys()
        self._bodies: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._events: asyncio.Queue[d.Event] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._context: Optional[zmq.asyncio.Context] = None
        self._auth: Optional[AsyncioAuthenticator] = None
        self._router: Optional[zmq.asyncio.Socket] = None
        self._malformed = 0
        self._writes: set[asyncio.Task] = set()              # store writes submitted, not yet done
        self._results_waiting: list[d.StoreResults] = []     # for the results writer's next transaction
        self._results_writer: Optional[asyncio.Task] = None
        self.zmq_url: Optional[str] = None
        self._do: dict[type, Callable[[Any], Awaitable[Optional[d.Event]]]] = {
            d.Send: self._send, d.LookUpEndpoint: self._look_up, d.RecordSeen: self._record_seen,
            d.LoadInFlight: self._load_in_flight, d.Requeue: self._requeue, d.FailTasks: self._fail,
            d.FetchTasks: self._fetch, d.MarkDispatched: self._mark_dispatched, d.MarkRunning: self._mark_running,
            d.StoreResults: self._store_results, d.NotifyFinal: self._notify_final,
        }

    # ------------------------------------------------------------ the interface the service calls
    async def start(self) -> str:
        """Load the registered keys, bind the ROUTER, start the loops; return the URL endpoints connect to."""
        await self.astore.disconnect_all_endpoints()
        self._keys.keys = {e.public_key for e in await self.astore.list_endpoints()}
        self._context = zmq.asyncio.Context()
        self._context.setsockopt(zmq.LINGER, 0)   # every socket of it (the ZAP one too): exit never waits on a peer
        self._auth = AsyncioAuthenticator(self._context)
        self._auth.start()
        self._auth.configure_curve_callback("*", credentials_provider=self._keys)
        try:
            self._router = self._make_router()
        except BaseException:
            await self.stop()
            raise
        self.zmq_url = self._router.getsockopt(zmq.LAST_ENDPOINT).decode()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._receive_loop(), name="faas-link-receive"),
                       loop.create_task(self._process_loop(), name="faas-link-process"),
                       loop.create_task(self._tick_loop(), name="faas-link-tick")]
        logger.info("endpoint link %s listening on %s (%d registered keys)", self.service_id, self.zmq_url,
                    len(self._keys.keys))
        return self.zmq_url

    def _make_router(self) -> zmq.asyncio.Socket:
        assert self._context is not None
        router = self._context.socket(zmq.ROUTER)
        router.curve_server = True
        router.curve_secretkey = self._secret_key.encode()
        router.curve_publickey = self.service_public_key.encode()
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.SNDHWM, _SNDHWM)
        router.setsockopt(zmq.RCVHWM, _SNDHWM)
        router.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_result_bytes + 16 * 1024 * 1024)
        router.setsockopt(zmq.HEARTBEAT_IVL, int(self.heartbeat_period_s * 1000))
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.heartbeat_threshold_s * 1000))
        try:
            router.bind(f"tcp://{self.host}:{self.port or '*'}")
        except zmq.ZMQError as exc:
            router.close()
            raise OSError(f"endpoint link: cannot bind tcp://{self.host}:{self.port or '*'}: {exc}") from exc
        return router

    async def stop(self) -> None:
        """Stop the loops, record every connected endpoint as offline, close the socket. Idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._results_writer is not None:
            await asyncio.gather(self._results_writer, return_exceptions=True)   # results received are stored
        await asyncio.gather(*self._writes, return_exceptions=True)
        now = time.time()
        for endpoint_id in self.dispatcher.online_endpoints():
            try:
                await self.astore.set_endpoint_seen(endpoint_id, now, False, None)
            except Exception:
                logger.exception("endpoint link: could not record endpoint %s offline at stop", endpoint_id)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None
            self._router = None
        logger.info("endpoint link %s stopped", self.service_id)

    def notify_submitted(self, endpoint_id: str) -> None:
        """New tasks for ``endpoint_id`` are in the store: deliver them if it is online."""
        self._events.put_nowait(d.Submitted(endpoint_id))

    def notify_cancelled(self, endpoint_id: str, task_ids: list[str]) -> None:
        """The store cancelled these tasks: tell their endpoint (if online) not to run them."""
        self._events.put_nowait(d.Cancelled(endpoint_id, tuple(task_ids)))

    def allow_key(self, public_z85: str) -> None:
        """Let connections with this (newly registered) endpoint key through the handshake."""
        self._keys.keys.add(public_z85)

    def is_online(self, endpoint_id: str) -> bool:
        return self.dispatcher.is_online(endpoint_id)

    # ------------------------------------------------------------ loops
    async def _receive_loop(self) -> None:
        assert self._router is not None
        while True:
            frames = await self._router.recv_multipart(copy=False)
            now = time.time()
            try:
                identity = frames[0].bytes
                key = frames[0].get("User-Id")
                message = p.decode([f.bytes for f in frames[1:]])
            except Exception as exc:   # MalformedMessage, or anything else: a peer's bytes never end the loop
                self._log_malformed(frames, exc)
                continue
            self._events.put_nowait(d.MessageReceived(identity, key, message, now))

    def _log_malformed(self, frames: list, exc: BaseException) -> None:
        self._malformed += 1
        if self._malformed <= 10 or self._malformed % _LOG_EVERY == 0:
            who = bytes(frames[0].bytes[:64]) if frames else b"?"
            logger.warning("endpoint link: dropped a malformed message from %r (%d so far): %s",
                           who, self._malformed, exc)

    async def _process_loop(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._feed(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("endpoint link: handling %s failed", type(event).__name__)

    async def _feed(self, event: d.Event) -> None:
        """Handle ``event`` and, before any other event, the answers of the store calls it leads to."""
        pending = collections.deque([event])
        while pending:
            for action in self.dispatcher.handle(pending.popleft()):
                follow = await self._do[type(action)](action)
                if follow is not None:
                    pending.append(follow)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_period_s)
            self._events.put_nowait(d.Tick(time.time()))

    # ------------------------------------------------------------ store calls, in order
    def _call(self, name: str, *args: Any) -> "asyncio.Task[Any]":
        """Submit ``astore.<name>(*args)``: tasks take their first step in creation order, so every call
        made through here reaches the store thread in the order it was made."""
        return asyncio.get_running_loop().create_task(getattr(self.astore, name)(*args))

    def _write(self, name: str, *args: Any) -> None:
        """A store write nobody waits for (a failure is logged)."""
        task = self._call(name, *args)
        self._writes.add(task)
        task.add_done_callback(self._write_done)

    def _write_done(self, task: "asyncio.Task[Any]") -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("endpoint link: a store write failed: %r", task.exception(), exc_info=task.exception())

    # ------------------------------------------------------------ actions
    async def _send(self, a: d.Send) -> None:
        if self._router is None:
            return
        frames = [a.identity, *p.encode(a.message)]
        try:
            if not send_now(self._router, frames):
                await self._router.send_multipart(frames, copy=False)
        except zmq.ZMQError as exc:   # the peer went away: at-least-once delivery re-sends at its hello
            logger.info("endpoint link: could not send %s to %r: %s", a.message.kind, a.identity[:64], exc)

    async def _look_up(self, a: d.LookUpEndpoint) -> d.Event:
        record = await self._call("get_endpoint", a.hello.endpoint_id)
        return d.EndpointLookedUp(a.identity, a.key, a.hello, record, time.time())

    async def _record_seen(self, a: d.RecordSeen) -> None:
        self._write("set_endpoint_seen", a.endpoint_id, a.at, a.connected, a.status)
        if a.status is None:
            logger.info("endpoint %s %s", a.endpoint_id, "connected" if a.connected else
                        f"offline: silent for more than {self.heartbeat_threshold_s:g} s")
        elif not a.connected:
            logger.info("endpoint %s stopped: %s", a.endpoint_id, a.status.get("reason", ""))

    async def _load_in_flight(self, a: d.LoadInFlight) -> d.Event:
        try:
            tasks = await self._call("tasks_in_flight", a.endpoint_id)
        except Exception:   # deliver what waits at least; the tasks in flight come again at its next hello
            logger.exception("endpoint link: loading the tasks in flight at endpoint %s failed", a.endpoint_id)
            tasks = []
        return d.InFlightLoaded(a.endpoint_id, tuple((t.task_id, t.attempts) for t in tasks), time.time())

    async def _requeue(self, a: d.Requeue) -> None:
        self._write("requeue", list(a.task_ids))
        logger.info("%d tasks in flight at a lost endpoint are delivered again", len(a.task_ids))

    async def _fail(self, a: d.FailTasks) -> None:
        await self._call("fail_tasks", list(a.task_ids), a.result, a.at)   # awaited: on_final reads them next
        logger.error("failed tasks %s", ", ".join(a.task_ids[:20]) + (" ..." if len(a.task_ids) > 20 else ""))

    async def _fetch(self, a: d.FetchTasks) -> d.Event:
        try:
            tasks = await self._call("tasks_to_deliver", a.endpoint_id, a.limit)
            bodies: dict[str, bytes] = {}
            for function_id in {t.function_id for t in tasks}:
                body = await self._body(function_id)
                if body is not None:
                    bodies[function_id] = body
        except Exception:   # nothing fetched, nothing marked: try again a heartbeat period later
            logger.exception("endpoint link: fetching tasks for endpoint %s failed", a.endpoint_id)
            asyncio.get_running_loop().call_later(self.heartbeat_period_s, self.notify_submitted, a.endpoint_id)
            return d.TasksFetched(a.endpoint_id, (), {}, time.time())
        return d.TasksFetched(a.endpoint_id, tuple(tasks), bodies, time.time())

    async def _body(self, function_id: str) -> Optional[bytes]:
        body = self._bodies.get(function_id)
        if body is not None:
            self._bodies.move_to_end(function_id)
            return body
        record = await self._call("get_function", function_id)
        if record is None:
            return None
        self._bodies[function_id] = record.body
        if len(self._bodies) > _BODY_CACHE_MAX:
            self._bodies.popitem(last=False)
        return record.body

    async def _mark_dispatched(self, a: d.MarkDispatched) -> None:
        self._write("mark_dispatched", list(a.task_ids), a.at)

    async def _mark_running(self, a: d.MarkRunning) -> None:
        self._write("mark_running", list(a.task_ids), a.at)

    async def _store_results(self, a: d.StoreResults) -> None:
        """Hand the results to the writer; its ResultsSaved events come back through the queue."""
        self._results_waiting.append(a)
        if self._results_writer is None or self._results_writer.done():
            self._results_writer = asyncio.get_running_loop().create_task(self._write_results())

    async def _write_results(self) -> None:
        """Store every waiting batch of results in one transaction, until none waits."""
        while self._results_waiting:
            batches, self._results_waiting = self._results_waiting, []
            try:
                saved = await self._save_results(batches)
            except Exception:   # not acknowledged: the endpoint keeps them spooled and re-sends after its next hello
                logger.exception("endpoint link: storing %d results failed", sum(len(b.rows) for b in batches))
                continue
            for event in saved:
                self._events.put_nowait(event)

    async def _save_results(self, batches: list[d.StoreResults]) -> list[d.ResultsSaved]:
        verify = [t for b in batches for t in b.verify]
        records = await self._call("get_tasks", verify) if verify else {}
        rejected: dict[int, list[str]] = {}
        rows: list[d.ResultRow] = []
        for i, b in enumerate(batches):
            rejected[i] = [t for t in b.verify if t not in records or records[t].endpoint_id != b.endpoint_id]
            if rejected[i]:
                logger.warning("endpoint %s sent results for tasks that are not its own (dropped): %s",
                               b.endpoint_id, ", ".join(rejected[i][:10]))
            dropped = set(rejected[i])
            rows.extend(row for row in b.rows if row[0] not in dropped)
        final = set(await self._call("set_results", rows)) if rows else set()
        return [d.ResultsSaved(b.identity, b.endpoint_id, tuple(r[0] for r in b.rows if r[0] in final),
                               tuple(rejected[i])) for i, b in enumerate(batches)]

    async def _notify_final(self, a: d.NotifyFinal) -> None:
        if self._on_final is None:
            return
        try:
            outcome = self._on_final(list(a.task_ids))
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            logger.exception("endpoint link: on_final failed for %d tasks", len(a.task_ids))
