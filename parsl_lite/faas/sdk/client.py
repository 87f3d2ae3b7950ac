"""``FuncXClient``: register functions, run them on endpoints, fetch results (funcX's names and semantics).

    fxc = FuncXClient()                        # URL + token from the env, else ~/.parsl_lite/faas/client.json
    func_id = fxc.register_function(double, description="doubles")
    task_id = fxc.run(50, endpoint_id=ep_id, function_id=func_id)
    fxc.get_result(task_id)                    # TaskPending while pending, then the value

    fxc = FuncXClient(asynchronous=True)       # run() returns an awaitable resolving to the result
    result = await fxc.run(50, endpoint_id=ep_id, function_id=func_id)

All I/O runs on a private loop thread (``loop_thread.py``) through one
aiohttp session, for the synchronous client too, so the caller's loop (a
notebook's) never waits on a socket. The asynchronous client's awaitables
(:class:`FuncXTask`) are fed from there and may be awaited in any loop; runs
made while a submission is in flight go out together in the next request.
Results of awaited tasks come over the WebSocket (``results_ws.py``).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
import weakref
from typing import Any, Callable, Iterable, Optional, Sequence

from parsl_lite.faas import api, protocol
from parsl_lite.faas.errors import MaxResultSizeExceeded, ServiceError, VersionMismatch
from parsl_lite.faas.sdk.batch import BODY_OVERHEAD, Batch, request_bytes_for
from parsl_lite.faas.sdk.decode import check_id, decode_task, task_exception, task_value
from parsl_lite.faas.sdk.http import ServiceSession, resolve_credentials
from parsl_lite.faas.sdk.loop_thread import LoopThread
from parsl_lite.faas.sdk.results_ws import ResultWatcher
from parsl_lite.faas.sdk.submit import DEFAULT_RETRY_S, Submitter
from parsl_lite.serialize import FunctionCache

logger = logging.getLogger(__name__)

_BATCH_STATUS_CHUNK = 1000


def settle(future: concurrent.futures.Future, task: dict) -> None:
    """Resolve ``future`` from a final task dict: its value, or the exception it stands for."""
    if future.done():
        return
    try:
        exc = task_exception(task)
        if exc is None:
            future.set_result(task["result"])
        else:
            future.set_exception(exc)
    except concurrent.futures.InvalidStateError:  # cancelled by the user meanwhile
        pass


class FuncXTask:
    """What the asynchronous client's ``run`` returns: ``await`` it for the task's result (funcX's name).

    It may be awaited in any running loop (a notebook's, ``asyncio.run``'s, ``fxc.loop``), gathered,
    or passed to ``run_until_complete``. ``task_id`` is set once the service accepted the task.
    """

    __slots__ = ("_future", "task_id")

    def __init__(self, future: concurrent.futures.Future) -> None:
        self._future = future
        self.task_id: Optional[str] = None

    def __await__(self) -> Any:
        return asyncio.wrap_future(self._future).__await__()   # bound to the loop that awaits

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: Optional[float] = None) -> Any:
        """Block until the result is there (outside a running loop)."""
        return self._future.result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        return self._future.exception(timeout)

    def cancel(self) -> bool:
        return self._future.cancel()

    def add_done_callback(self, callback: Callable[["FuncXTask"], Any]) -> None:
        self._future.add_done_callback(lambda _: callback(self))

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"FuncXTask(task_id={self.task_id}, {state})"


def _awaitable(future: concurrent.futures.Future) -> FuncXTask:
    task = FuncXTask(future)
    future.funcx_task = task  # type: ignore[attr-defined]  # _submit_into gives it the task id
    return task


def _fail_submission(futures: Sequence[concurrent.futures.Future], exc: BaseException) -> None:
    """Every future of a submission that failed says why; re-raises what is not an ``Exception`` (cancelled)."""
    error = exc if isinstance(exc, Exception) else \
        RuntimeError("the client was closed before the service answered the submission")
    for future in futures:
        try:
            future.set_exception(error)
        except concurrent.futures.InvalidStateError:  # done already (cancelled by its owner)
            pass
    if error is not exc:
        raise exc


def _one_request_runs(origins: list, limit: int, max_tasks: int = 10_000) -> list[list]:
    """``origins`` (batch, futures) cut into runs of whole batches whose tasks fit in one request of ``limit``
    bytes and ``max_tasks`` tasks (as ``Batch.requests`` cuts; a batch bigger than that alone: it is split)."""
    runs: list[list] = []
    size = count = 0
    for origin in origins:
        need, tasks = origin[0].encoded_bytes(), len(origin[0])
        if not runs or size + need > limit or count + tasks > max_tasks:
            runs.append([])
            size, count = BODY_OVERHEAD, 0
        runs[-1].append(origin)
        size += need
        count += tasks
    return runs


def _callers_loop(loop: Optional[asyncio.AbstractEventLoop]) -> asyncio.AbstractEventLoop:
    """The loop the async client's awaitables belong to: given, running (a notebook), or a new one."""
    if loop is not None:
        return loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    new = asyncio.new_event_loop()
    asyncio.set_event_loop(new)
    return new


def _close(io: LoopThread, session: ServiceSession, watcher: ResultWatcher) -> None:
    """Close the WebSocket and the session on the loop, then stop it (a finalizer: holds no client)."""
    async def close() -> None:
        await watcher.close()
        await session.close()
    io.stop(before=close)


class FuncXClient:
    """A user's connection to the function service.

    Args:
        service_url: the service's URL; default ``$PARSL_LITE_FAAS_URL``, else the credentials file.
        token: the user's token; default ``$PARSL_LITE_FAAS_TOKEN``, else the credentials file.
        asynchronous: ``run`` returns an awaitable resolving to the task's result (funcX's mode).
        loop: ``self.loop``, for ``fxc.loop.run_until_complete(fxc.run(...))`` (default: the running
            loop, else a new one, set current); the awaitables may be awaited in any loop.
        task_group_id: the group ``run`` and ``create_batch`` put tasks in (default: a new UUID).
        do_version_check: ask the service's version (and payload limit) now.
        http_timeout: seconds one request may wait for its answer.
        submit_retry_s: how long a submission waits for an unreachable service to come back (it then
            learns from the task group whether the tasks were stored: none is lost or sent twice).

    Raises:
        CredentialsNotFound: no URL or token anywhere, saying how to get one.
    """

    def __init__(self, service_url: Optional[str] = None, token: Optional[str] = None,
                 asynchronous: bool = False, loop: Optional[asyncio.AbstractEventLoop] = None, *,
                 task_group_id: Optional[str] = None, do_version_check: bool = True,
                 http_timeout: float = 300.0, submit_retry_s: float = DEFAULT_RETRY_S) -> None:
        self.service_url, token = resolve_credentials(service_url, token)
        self.session_task_group_id = (check_id(task_group_id, "task_group_id") if task_group_id
                                      else str(uuid.uuid4()))
        self.asynchronous = bool(asynchronous)
        self.payload_limit = api.DEFAULT_PAYLOAD_LIMIT
        self.max_request_bytes: Optional[int] = None   # the service's, learnt by version_check
        self.versions = protocol.versions_string()
        self._functions = FunctionCache()
        self._task_table: dict[str, dict] = {}
        self._io = LoopThread()
        self._session = ServiceSession(self.service_url, token, http_timeout)
        self._watcher = ResultWatcher(self._session)
        self._submitter = Submitter(self._session, self.versions, submit_retry_s)
        if not task_group_id:
            self._submitter.new_group(self.session_task_group_id)
        self._coalescing: dict[str, list] = {}   # task group -> async batches waiting for the next request
        self._sending: set[str] = set()          # task groups with a coalesced request in flight
        self._finalizer = weakref.finalize(self, _close, self._io, self._session, self._watcher)
        self.loop = _callers_loop(loop) if self.asynchronous else None
        if do_version_check:
            try:
                self.version_check()
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------ plumbing
    def _call(self, method: str, path: str, body: Any = None, idempotent: bool = False) -> Any:
        return self._io.run(self._session.call(method, path, body, idempotent))

    def close(self) -> None:
        """Close the session and stop the I/O thread (also done at exit)."""
        self._finalizer()

    def __enter__(self) -> "FuncXClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = ", asynchronous" if self.asynchronous else ""
        return f"FuncXClient({self.service_url}{mode})"

    # ------------------------------------------------------------ service
    def version_check(self) -> dict:
        """The service's ``/v1/version``; learns its payload limit.

        Raises:
            VersionMismatch: the service speaks another API version.
        """
        info = self._call("GET", "/version")
        expected = api.API_PREFIX.strip("/")
        if info.get("api") != expected:
            raise VersionMismatch(f"the service at {self.service_url} speaks API {info.get('api')!r}; "
                                  f"this client ({self.versions}) speaks {expected!r}")
        if isinstance(info.get("payload_limit"), int):
            self.payload_limit = info["payload_limit"]
        if isinstance(info.get("max_request_bytes"), int):
            self.max_request_bytes = self._submitter.max_request_bytes = info["max_request_bytes"]
        return info

    def whoami(self) -> dict:
        """``{"user_id", "username", "is_admin"}`` of this client's token."""
        return self._call("GET", "/whoami")

    # ------------------------------------------------------------ functions
    def register_function(self, function: Callable, function_name: Optional[str] = None,
                          description: Optional[str] = None, public: bool = False,
                          shared_with: Iterable[str] = ()) -> str:
        """Register ``function`` (serialized here, dill for ``__main__``) and return its id.

        Args:
            function: the function to run remotely.
            function_name: its name in the service (default ``function.__name__``).
            description: free text.
            public: every user may run it.
            shared_with: usernames that may run it.
        """
        if not callable(function):
            raise TypeError(f"register_function: expected a function, got {type(function).__name__}")
        users = [shared_with] if isinstance(shared_with, str) else list(shared_with)
        if any(not isinstance(u, str) for u in users):
            raise TypeError("register_function: shared_with must be usernames (strings)")
        _digest, body = self._functions.get(function)
        if len(body) > self.payload_limit:
            raise MaxResultSizeExceeded(len(body), self.payload_limit, what="function")
        name = function_name or getattr(function, "__name__", type(function).__name__)
        reply = self._call("POST", "/functions", {
            "function_name": name, "function_code": api.b64(body), "description": description or "",
            "public": bool(public), "shared_with": users, "versions": self.versions})
        return reply["function_id"]

    def get_function(self, function_id: str) -> dict:
        """The service's record of a function (name, description, owner, public, created)."""
        return self._call("GET", f"/functions/{check_id(function_id, 'function_id')}")

    # ------------------------------------------------------------ running
    def create_batch(self, task_group_id: Optional[str] = None) -> Batch:
        """An empty batch; its tasks join ``task_group_id`` (default: the client's session group)."""
        return Batch(task_group_id or self.session_task_group_id, self.payload_limit)

    def run(self, *args: Any, endpoint_id: Any = None, function_id: Any = None, **kwargs: Any) -> Any:
        """Run ``function_id(*args, **kwargs)`` on ``endpoint_id``.

        Returns:
            the task id; with ``asynchronous=True``, a :class:`FuncXTask`: an awaitable resolving
            to the task's result, or raising what it failed with.
        """
        batch = self.create_batch()
        batch.add(*args, endpoint_id=endpoint_id, function_id=function_id, **kwargs)
        return self.batch_run(batch)[0]

    def batch_run(self, batch: Batch) -> list:
        """Submit every task of ``batch``: their ids (``asynchronous=True``: awaitables of their results)."""
        if not isinstance(batch, Batch):
            raise TypeError(f"batch_run: expected a Batch (create_batch()), got {type(batch).__name__}")
        if not batch.tasks:
            raise ValueError("batch_run: the batch is empty (add tasks with batch.add(...))")
        if not self.asynchronous:
            return self._io.run(self._submit(batch))
        futures: list[concurrent.futures.Future] = [concurrent.futures.Future() for _ in batch.tasks]
        tasks = [_awaitable(f) for f in futures]  # before the I/O thread can give them their ids
        self._io.call_soon(self._submit_soon, batch, futures)
        return tasks

    async def _submit(self, batch: Batch) -> list[str]:
        """POST the batch (in order; across a service restart, neither lost nor doubled); the task ids."""
        return await self._submitter.submit(batch)

    async def _submit_into(self, batch: Batch, futures: Sequence[concurrent.futures.Future]) -> None:
        """Submit ``batch`` and resolve ``futures`` (one per task) from the WebSocket; errors on all of them."""
        try:
            task_ids = await self._submit(batch)
        except BaseException as exc:  # refused (ServiceError), unreachable, cancelled: every future says so
            _fail_submission(futures, exc)
            return
        self._watch_submitted(task_ids, futures)

    def _watch_submitted(self, task_ids: Sequence[str], futures: Sequence[concurrent.futures.Future]) -> None:
        """On the loop: give each future its task id, and resolve it when its task is final."""
        by_id = dict(zip(task_ids, futures))
        for task_id, future in by_id.items():
            future.task_id = task_id  # type: ignore[attr-defined]
            if hasattr(future, "funcx_task"):
                future.funcx_task.task_id = task_id

        def on_task(task: dict) -> None:   # not kept in the task table: the future holds the result
            future = by_id.pop(task["task_id"], None)
            if future is not None:
                settle(future, task)

        self._watcher.watch(list(task_ids), on_task)

    def _submit_soon(self, batch: Batch, futures: list[concurrent.futures.Future]) -> None:
        """On the loop: send ``batch`` now, or, while a submission of its group is in flight, with the
        others that arrive meanwhile in one request (``run``s gathered cost a few round trips, not one each)."""
        gid = batch.task_group_id
        self._coalescing.setdefault(gid, []).append((batch, futures))
        if gid not in self._sending:
            self._send_coalesced(gid)

    def _send_coalesced(self, gid: str) -> None:
        origins = self._coalescing.pop(gid, None)
        if not origins:
            return
        self._sending.add(gid)
        sent = asyncio.get_running_loop().create_task(self._submit_origins(origins))

        def next_round(_: asyncio.Task) -> None:
            self._sending.discard(gid)
            self._send_coalesced(gid)
        sent.add_done_callback(next_round)

    async def _submit_origins(self, origins: list[tuple[Batch, list[concurrent.futures.Future]]]) -> None:
        """As few requests as fit (each holds whole batches); if the service refuses one (one bad id), each of
        its batches alone, so only that batch fails. A refused request stored nothing (the service checks
        every task first), so sending its batches again doubles nothing."""
        limit = self.max_request_bytes or request_bytes_for(self.payload_limit)
        for run in _one_request_runs(origins, limit):
            if len(run) == 1:
                await self._submit_into(*run[0])
                continue
            merged = Batch(run[0][0].task_group_id, self.payload_limit)
            for batch, _futures in run:
                merged.tasks.extend(batch.tasks)
            futures = [f for _batch, batch_futures in run for f in batch_futures]
            try:
                task_ids = await self._submit(merged)
            except ServiceError as exc:
                logger.debug("a coalesced submission was refused (%s); sending its batches one by one", exc)
                for batch, batch_futures in run:
                    await self._submit_into(batch, batch_futures)
            except BaseException as exc:  # unreachable, cancelled: every future says so
                _fail_submission(futures, exc)
            else:
                self._watch_submitted(task_ids, futures)

    def watch_futures(self, task_ids: Sequence[str], futures: Sequence[concurrent.futures.Future]) -> None:
        """Resolve ``futures`` from the WebSocket as ``task_ids`` become final (any thread)."""
        by_id = dict(zip(task_ids, futures))

        def on_task(task: dict) -> None:   # not kept in the task table: the future holds the result
            future = by_id.pop(task["task_id"], None)
            if future is not None:
                settle(future, task)

        self._io.call_soon(self._watcher.watch, list(task_ids), on_task)

    def _remember(self, task: dict) -> None:
        """Keep a final task fetched by ``get_task`` / ``get_batch_result`` (funcX's task status table)."""
        if not task["pending"] and task["status"] in ("success", "failed", "cancelled", "purged"):
            self._task_table[task["task_id"]] = task

    # ------------------------------------------------------------ results
    def get_task(self, task_id: str) -> dict:
        """The task: ``status``, ``pending``, ``endpoint_id``, ``timings`` and, once final, its
        ``result`` or ``exception`` (a ``RemoteExceptionWrapper``) and ``completion_t``; a purged
        task (the service's 410) is ``{"status": "purged", "reason": ...}``."""
        task_id = check_id(task_id, "task_id")
        known = self._task_table.get(task_id)
        if known is not None:
            return known
        try:
            raw = self._call("GET", f"/tasks/{task_id}")
        except ServiceError as exc:
            if exc.http_status != 410:
                raise
            raw = {"task_id": task_id, "status": "purged", "pending": False, "reason": exc.reason}
        task = decode_task(raw)
        self._remember(task)
        return task

    def get_result(self, task_id: str) -> Any:
        """The task's result.

        Raises:
            TaskPending: not finished yet (``reason`` is its status).
            Exception: the remote function's exception, with its type and traceback.
            TaskPurged / TaskCancelled: no result to give.
        """
        return task_value(self.get_task(task_id))

    def get_batch_result(self, task_ids: Sequence[str]) -> dict[str, dict]:
        """``{task_id: task dict}`` (funcX's ``pending``, ``status``, ``result`` | ``exception``,
        ``completion_t``) of each task, in one request per 1,000 tasks not known final yet."""
        if isinstance(task_ids, str) or not isinstance(task_ids, (list, tuple)):
            raise TypeError("get_batch_result expects a list of task ids")
        ids = [check_id(t, "task_ids[]") for t in task_ids]
        results = {t: self._task_table[t] for t in ids if t in self._task_table}
        ask = [t for t in dict.fromkeys(ids) if t not in results]
        for start in range(0, len(ask), _BATCH_STATUS_CHUNK):
            chunk = ask[start:start + _BATCH_STATUS_CHUNK]
            reply = self._call("POST", "/batch_status", {"task_ids": chunk}, idempotent=True)
            for task_id in chunk:
                raw = reply["results"].get(task_id) or {"task_id": task_id, "status": "unknown", "pending": False,
                                                        "reason": f"the service did not answer for task {task_id}"}
                task = decode_task(raw)
                self._remember(task)
                results[task_id] = task
        return {t: results[t] for t in ids}

    def cancel(self, task_id: str) -> dict:
        """Cancel a task that has not started; its task dict afterwards (``status`` ``"cancelled"`` if it was)."""
        task = decode_task(self._call("POST", f"/tasks/{check_id(task_id, 'task_id')}/cancel", idempotent=True))
        self._remember(task)
        return task

    def get_task_group(self, task_group_id: Optional[str] = None) -> list[str]:
        """The ids of the tasks of a group (default: the session's), in submission order."""
        group = check_id(task_group_id or self.session_task_group_id, "task_group_id")
        return list(self._call("GET", f"/task_groups/{group}")["task_ids"])

    # ------------------------------------------------------------ endpoints
    def get_endpoints(self) -> list[dict]:
        """The endpoints this user may send to: ``endpoint_id``, ``name``, ``owner``, ``status``, ..."""
        return list(self._call("GET", "/endpoints")["endpoints"])

    def get_endpoint_status(self, endpoint_id: str) -> dict:
        """``{"status": "online" | "offline", "details": its last status report, "last_seen"}``."""
        return self._call("GET", f"/endpoints/{check_id(endpoint_id, 'endpoint_id')}/status")


Client = FuncXClient
