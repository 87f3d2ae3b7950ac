"""``HighThroughputExecutor``: the user-side half of the high-throughput executor.

It serializes each task (the function body once, then its digest), hands it
to the :class:`~parsl_lite.executors.htex.client.InterchangeClient`, and
resolves the task's future when its result comes back: the client's I/O
thread only queues results, the completion thread of ``completion.py``
deserializes them and sets the futures (running their callbacks). Blocks of
worker pools come from the provider; the scaling strategy decides how many.
A lost interchange is replaced, with new blocks (``restart.py``).

Submission and failure are atomic: ``submit`` checks "broken" and registers
its future in one critical section, and every failure (``_fail``, a lost
interchange, shutdown) marks the executor and takes the futures map in the
same lock, then fails each future it took (``restart.fail_all``).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import os
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

from typeguard import typechecked

from parsl_lite.errors import ConfigurationError
from parsl_lite.executors.base import ParslExecutor, ResultSink
from parsl_lite.executors.errors import ExecutorError, ExecutorShutdown
from parsl_lite.executors.htex import curve
from parsl_lite.executors.htex.blocks import ManagesBlocks
from parsl_lite.executors.htex.client import InterchangeClient
from parsl_lite.executors.htex.completion import Completer, Settle
from parsl_lite.executors.htex.errors import InvalidResourceSpecification, TaskTooLarge
from parsl_lite.executors.htex.messages import (
    ErrorReply, ResultMessage, StatusReply, StatusRequest, TaskMessage,
)
from parsl_lite.executors.htex.restart import Lost, RestartBudget, RestartsInterchange, fail_all, fail_all_of
from parsl_lite.executors.htex.settings import InterchangeSettings, check_port_range, pick_free_port
from parsl_lite.executors.htex.wire_auth import write_secret_file
from parsl_lite.fast_future import FastFuture
from parsl_lite.serialize import FunctionCache, deserialize, pack_apply_message

logger = logging.getLogger(__name__)

_RESTART_JOIN_S = 40.0  # a new interchange may take 30 s to start; shutdown waits for that at most
_NO_RESOURCES: dict = {}  # shared by the tasks that have none; never mutated
_task_message: Callable[[tuple], TaskMessage] = functools.partial(tuple.__new__, TaskMessage)  # no NamedTuple __new__



# What a task's parsl_resource_specification may say here. running_time_limit is
# enforced by the worker (TaskTimeout); cores, memory and disk are checked and
# recorded but each task takes one worker slot: size slots with cores_per_worker
# and mem_per_worker. priority is accepted (tasks run in submission order).
RESOURCE_KEYS = frozenset({"cores", "memory", "disk", "running_time_limit", "priority"})


def check_resource_specification(spec: dict) -> None:
    """Refuse unknown keys and non-numeric values, naming them.

    Raises:
        InvalidResourceSpecification: what is wrong and what is accepted.
    """
    if "endpoints" in spec:
        raise InvalidResourceSpecification("resource specification key 'endpoints' routes tasks among function "
                                           "service endpoints: only a FaaSExecutor takes it, not a "
                                           "HighThroughputExecutor (pin the app with executors=[<its label>])")
    unknown = sorted(set(spec) - RESOURCE_KEYS)
    if unknown:
        raise InvalidResourceSpecification(f"unknown resource specification keys {unknown}; "
                                           f"accepted: {sorted(RESOURCE_KEYS)}")
    for key, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InvalidResourceSpecification(f"resource specification {key!r} must be a number >= 0, "
                                               f"got {value!r}")


def _start_client(client: InterchangeClient, failed: list[BaseException]) -> None:
    """``client.start()`` on a thread of its own; what it raised goes into ``failed``."""
    try:
        client.start()
    except BaseException as exc:
        failed.append(exc)


class PoolConnection(NamedTuple):
    """What a pool started outside the provider (by hand, or a benchmark's simulated one) needs to join."""

    address: str
    worker_port: int
    secret_file: str
    cert_dir: Optional[str]
    interchange_pid: int


class HighThroughputExecutor(RestartsInterchange, ManagesBlocks, ParslExecutor):
    """Runs tasks on worker pools through a ZMQ interchange. Parameters follow Parsl's.

    Args:
        label: the executor's name.
        provider: where blocks of worker pools run. None: the config's default (a
            ``LocalProvider``), filled in by ``Config`` (:meth:`use_default_provider`).
        launch_cmd: the command that starts a pool; ``{}`` fields as in ``blocks.DEFAULT_LAUNCH_CMD``.
        address: the address pools use to reach the interchange (default: ``loopback_address``).
        loopback_address: the address the executor uses to reach its interchange.
        worker_port: a fixed port for pools; otherwise one from ``worker_port_range``.
        worker_port_range: ports the interchange may listen on for pools.
        interchange_port_range: ports the interchange may listen on for this executor.
        cores_per_worker: cores each worker needs; a node gets ``cores // cores_per_worker`` workers.
        mem_per_worker: GiB each worker needs (limits workers per node too).
        max_workers_per_node: an upper bound on workers per node.
        prefetch_capacity: tasks a worker may hold beyond the one it runs (see ledger.py:
            deep queues are also sent in fair-share batches).
        heartbeat_threshold: seconds of silence after which a pool is declared lost.
        heartbeat_period: seconds between heartbeats.
        drain_period: seconds after which a pool drains (takes no new task, finishes what it
            holds, exits; the strategy replaces it), as in Parsl. None: never.
        poll_period: accepted for Parsl compatibility (the I/O is event driven).
        encrypted: CurveZMQ on every connection; only holders of this executor's keys connect.
        max_payload_bytes: the largest serialized arguments or result of one task.
        interchange_restarts: how many times a lost interchange (dead or silent) is replaced
            by a new one, with new blocks, within 10 minutes before the executor gives up.
            Its tasks in flight fail with ``InterchangeLost`` (``Config(retries=)`` re-runs
            them); 0 makes the first loss final, as it was before.
        worker_debug: workers and pools log at DEBUG.
        worker_logdir_root: where pools write logs (default: the executor's run dir).

    ``interchange_launch_cmd``, ``storage_access``, ``working_dir``, ``cpu_affinity``,
    ``available_accelerators``, ``address_probe_timeout``, ``manager_selector``,
    ``poll_period`` and ``remote_monitoring_radio`` are accepted so that Parsl configs
    load, and are not used; ``block_error_handler`` is a switch (a callable is not called).
    Set to anything but their defaults, they are named in a warning when the kernel
    starts (:meth:`unused_parameters`).
    """

    needs_serialization = True

    @typechecked
    def __init__(
        self,
        label: str = "HighThroughputExecutor",
        provider: Optional[Any] = None,
        launch_cmd: Optional[str] = None,
        interchange_launch_cmd: Optional[Sequence[str]] = None,
        address: Optional[str] = None,
        loopback_address: str = "127.0.0.1",
        worker_port: Optional[int] = None,
        worker_port_range: tuple[int, int] = (54000, 55000),
        interchange_port_range: tuple[int, int] = (55000, 56000),
        storage_access: Optional[list] = None,
        working_dir: Optional[str] = None,
        worker_debug: bool = False,
        cores_per_worker: Union[float, int] = 1.0,
        mem_per_worker: Optional[Union[float, int]] = None,
        max_workers_per_node: Optional[int] = None,
        cpu_affinity: str = "none",
        available_accelerators: Union[int, Sequence[str]] = (),
        prefetch_capacity: int = 0,
        heartbeat_threshold: Union[int, float] = 120,
        heartbeat_period: Union[int, float] = 30,
        drain_period: Optional[int] = None,
        poll_period: int = 10,
        address_probe_timeout: Optional[int] = None,
        worker_logdir_root: Optional[str] = None,
        manager_selector: Optional[Any] = None,
        block_error_handler: Union[bool, Callable] = True,
        encrypted: bool = True,
        remote_monitoring_radio: Optional[Any] = None,
        max_payload_bytes: int = 2**30,
        max_batch: int = 64,
        interchange_restarts: int = 3,
    ) -> None:
        check_port_range("worker_port_range", worker_port_range)
        check_port_range("interchange_port_range", interchange_port_range)
        if cores_per_worker <= 0:
            raise ConfigurationError("cores_per_worker", f"must be > 0, got {cores_per_worker}")
        if max_workers_per_node is not None and max_workers_per_node < 1:
            raise ConfigurationError("max_workers_per_node", f"must be >= 1, got {max_workers_per_node}")
        if interchange_restarts < 0:
            raise ConfigurationError("interchange_restarts", f"must be >= 0, got {interchange_restarts}")
        if heartbeat_threshold <= heartbeat_period:
            raise ConfigurationError("heartbeat_threshold", f"must be greater than heartbeat_period "
                                     f"({heartbeat_period}), got {heartbeat_threshold}")
        self.label = label
        self._provider = provider
        self.launch_cmd = launch_cmd
        self.interchange_launch_cmd = interchange_launch_cmd
        self.address = address
        self.loopback_address = loopback_address
        self.worker_port = worker_port
        self.worker_port_range = worker_port_range
        self.interchange_port_range = interchange_port_range
        self.storage_access = storage_access
        self.working_dir = working_dir
        self.worker_debug = worker_debug
        self.cores_per_worker = cores_per_worker
        self.mem_per_worker = mem_per_worker
        self.max_workers_per_node = max_workers_per_node
        self.cpu_affinity = cpu_affinity
        self.available_accelerators = available_accelerators
        self.prefetch_capacity = prefetch_capacity
        self.heartbeat_threshold = heartbeat_threshold
        self.heartbeat_period = heartbeat_period
        self.drain_period = drain_period
        self.poll_period = poll_period
        self.address_probe_timeout = address_probe_timeout
        self.worker_logdir_root = worker_logdir_root
        self.manager_selector = manager_selector
        self.block_error_handler = block_error_handler
        self.encrypted = encrypted
        self.remote_monitoring_radio = remote_monitoring_radio
        self.max_payload_bytes = max_payload_bytes
        self.max_batch = max_batch
        self.interchange_restarts = interchange_restarts
        self._functions = FunctionCache()
        self._sent_digests: set[bytes] = set()
        self._futures: dict[int, ResultSink] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._broken: Optional[BaseException] = None
        self._client: Optional[InterchangeClient] = None
        self._settings: Optional[InterchangeSettings] = None
        self._completer: Optional[Completer] = None
        # While a lost interchange is being replaced: the tasks submitted meanwhile
        # (id, digest, body, arguments, resources), sent to the new one when it is up.
        self._held: Optional[list[tuple]] = None
        self._restarts = RestartBudget(interchange_restarts)
        self._restart_thread: Optional[threading.Thread] = None
        self.blocks: dict[str, str] = {}  # block id -> provider job id
        self._block_ids = itertools.count()
        self.cert_dir: Optional[str] = None
        self._block_submitted: dict[str, float] = {}
        self._failed_blocks = 0
        self._status_cache = StatusReply.empty()
        self._status_time = float("-inf")

    # ------------------------------------------------------------ life cycle

    @property
    def provider(self) -> Any:
        return self._provider

    def use_default_provider(self, make_provider: Callable[[], Any]) -> None:
        if self._provider is None:
            self._provider = make_provider()

    # Parsl parameters accepted so that Parsl configs load, each with its "not asked for" value.
    _UNUSED_DEFAULTS: dict[str, Any] = {
        "interchange_launch_cmd": None, "storage_access": None, "working_dir": None, "cpu_affinity": "none",
        "available_accelerators": (), "address_probe_timeout": None, "manager_selector": None,
        "poll_period": 10, "remote_monitoring_radio": None,
    }

    def unused_parameters(self) -> list[str]:
        """Accepted Parsl parameters set to something other than their default, which we ignore.

        ``block_error_handler`` is used as a switch (True/False); a callable is
        not called (the built-in handler runs), so it counts as unused.
        """
        unused = []
        for name, default in self._UNUSED_DEFAULTS.items():
            value = getattr(self, name)
            if not (value == default or (default == () and not value)):
                unused.append(name)
        if callable(self.block_error_handler):
            unused.append("block_error_handler")
        return unused

    def start(self) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        if self.encrypted:
            self.cert_dir = curve.create_keys(os.path.join(self.run_dir, "certificates"))
        settings = InterchangeSettings(
            client_address=self.loopback_address,
            worker_address=self._worker_bind_address(),
            worker_port=self.worker_port,
            worker_port_range=self.worker_port_range,
            interchange_port_range=self.interchange_port_range,
            heartbeat_period_s=float(self.heartbeat_period),
            heartbeat_threshold_s=float(self.heartbeat_threshold),
            prefetch_capacity=self.prefetch_capacity,
            max_batch=self.max_batch,
            cert_dir=self.cert_dir,
            logdir=self.run_dir,
            parent_pid=os.getpid(),
            debug=self.worker_debug,
        )
        self._settings = settings  # a replacement interchange gets the same settings (keys, secret)
        self._completer = Completer(f"parsl_lite-{self.label}-completion", self._prepare)
        self._completer.start()
        if self._provider is not None:  # its blocks are scaled by the kernel's job status poller
            self._provider.script_dir = self.run_dir
        try:
            self._start_interchange(settings)
        except BaseException:
            self._completer.stop()
            raise
        logger.info("executor %r: interchange up (client port %d, worker port %d)", self.label,
                    self._client.client_port, self._client.worker_port)

    def _start_interchange(self, settings: InterchangeSettings) -> None:
        """Start the interchange and, while it starts, the provider's initial blocks.

        Their pools dial a worker port chosen here ahead and retry until the
        interchange listens on it, so a pool's start (a Python process and its
        imports) overlaps the interchange's instead of following it. Should that
        port be taken meanwhile, those blocks are cancelled and the interchange
        is started the plain way, on a port of its choosing (the kernel's job
        status poller then starts the initial blocks, as it does for any
        executor that started none).
        """
        port = settings.worker_port
        if port is None and self._initial_blocks() > 0:
            port = pick_free_port(settings.worker_address, settings.worker_port_range)
        if port is not None and self._initial_blocks() > 0:
            self._settings = dataclasses.replace(settings, worker_port=port)  # this start only: a replacement
            self._client = self._new_client(self._futures)                   # interchange picks its own
            self._settings = settings
            write_secret_file(settings.logdir, settings.secret)  # what the pools read; the client writes it again
            client, failed = self._client, []
            starter = threading.Thread(target=_start_client, args=(client, failed), daemon=True,
                                       name=f"parsl_lite-{self.label}-interchange-start")
            starter.start()
            while client.process is None and starter.is_alive():  # the interchange is launched first (a ms):
                time.sleep(0.001)                                   # a provider that hangs leaves one to stop
            try:
                early = self._start_initial_blocks()
            finally:  # even on Ctrl-C: the interchange comes up (or fails) before shutdown may stop it
                starter.join()
            if not failed:
                return
            self._cancel_blocks(early)
            if not isinstance(failed[0], ExecutorError) or settings.worker_port is not None:
                raise failed[0]
            logger.warning("executor %r: the interchange could not start on worker port %d chosen ahead (%s); "
                           "starting it on a port of its choosing", self.label, port, failed[0])
        self._client = self._new_client(self._futures)
        self._client.start()

    def _start_initial_blocks(self) -> list[str]:
        """``scale_out`` by the initial blocks; on a provider error, none (the poller's first round tries again)."""
        try:
            return self.scale_out(self._initial_blocks())
        except Exception as exc:
            self._failed_blocks -= 1  # counted by scale_out; the poller's own try counts (as it did before)
            logger.warning("executor %r: starting the initial blocks failed (%s); the job status poller "
                           "tries again", self.label, exc)
            return []

    def _initial_blocks(self) -> int:
        """The blocks the strategy starts first (``min(init_blocks, max_blocks)``); 0 without a provider."""
        provider = self._provider
        if provider is None or not hasattr(provider, "submit"):
            return 0
        return max(0, min(int(getattr(provider, "init_blocks", 0)), int(getattr(provider, "max_blocks", 0))))

    def shutdown(self) -> None:
        """Stop the interchange and every block; fail what is still pending. Idempotent."""
        with self._lock:
            if isinstance(self._broken, ExecutorShutdown):
                return
            self._broken = ExecutorShutdown(self.label, "shut down")
            restart = self._restart_thread
        if restart is not None and restart is not threading.current_thread():
            restart.join(_RESTART_JOIN_S)  # it sees the shutdown and stops what it started
        if self._client is not None:
            self._client.stop()
        self._cancel_blocks(list(self.blocks))
        close = getattr(self._provider, "close", None)  # e.g. SSH connections and tunnels, after the cancel
        if callable(close):
            try:
                close()
            except Exception:
                logger.exception("executor %r: closing the provider failed", self.label)
        shut = ExecutorShutdown(self.label, "shut down before the task finished")
        if self._completer is not None:  # results already received still complete; then the rest fails
            for futures, _ in self._completer.stop():
                fail_all(futures, shut)
        self._fail_pending(shut)
        logger.info("executor %r shut down", self.label)

    # ------------------------------------------------------------ tasks

    def submit(self, func: Callable, resource_specification: dict, *args: Any, **kwargs: Any) -> Future:
        future: Future = FastFuture()
        self.submit_to(future, func, resource_specification, *args, **kwargs)
        return future

    def submit_to(self, sink: ResultSink, func: Callable, resource_specification: dict, *args: Any,
                  **kwargs: Any) -> None:
        """:meth:`submit`, settling ``sink`` (its ``set_result`` / ``set_exception``, once) instead of a new future.

        The kernel passes its task record, so a task in flight costs no
        executor future. Raises what :meth:`submit` raises; a task refused
        before it is registered (too large, the executor broken) leaves
        ``sink`` unsettled.
        """
        if resource_specification:
            check_resource_specification(resource_specification)
        digest, body = self._functions.get(func)
        packed = pack_apply_message(args, kwargs)
        if len(packed) > self.max_payload_bytes:
            raise TaskTooLarge(len(packed), self.max_payload_bytes)
        resources = resource_specification or _NO_RESOURCES
        # One critical section with _fail and _interchange_lost: a future is either
        # refused here or registered where their failure will find it.
        with self._lock:
            broken = self._broken
            if broken is not None:
                raise broken
            task_id = next(self._ids)
            self._futures[task_id] = sink
            if self._held is not None:  # a new interchange is starting; it gets the task when up
                self._held.append((task_id, digest, body, packed, resources))
                return
            send_body = None
            if digest not in self._sent_digests:
                self._sent_digests.add(digest)
                send_body = body
            client = self._client
            alone = len(self._futures) == 1  # nothing else out: no batch to wait for
        assert client is not None
        client.send_task(_task_message((task_id, digest, send_body, packed, resources)), alone)

    # ------------------------------------------------------------ completion (see completion.py)

    def _new_client(self, futures: dict[int, ResultSink]) -> InterchangeClient:
        """A client whose results and loss are tied to ``futures``, the tasks sent through it."""
        assert self._settings is not None
        completer = self._completer
        assert completer is not None

        def on_results(results: tuple[ResultMessage, ...]) -> None:  # the I/O thread: hand over, return
            completer.put(zip(itertools.repeat(futures), results))

        return InterchangeClient(self._settings, self.label, on_results,
                                 lambda cause: self._interchange_lost(futures, cause), lambda: bool(futures))

    def _prepare(self, item: tuple[dict, Any]) -> Settle:
        """On the completion thread: deserialize one result; say which future to set with what."""
        futures, result = item
        if type(result) is Lost:
            return fail_all_of, (futures, result.cause)
        future = futures.pop(result.task_id, None)
        if future is None:  # already failed (executor broken or shut down): its late result is dropped
            return None
        try:
            value = deserialize(result.payload)
            status = result.status
            if status == "ok":
                return future.set_result, value
            if status == "error":
                return future.set_exception, value.get_exception()
            return future.set_exception, value
        except Exception as exc:  # a result we cannot load fails its task, not the executor
            return future.set_exception, exc

    def _fail(self, cause: BaseException) -> None:
        """Mark the executor broken and fail every pending future with ``cause``. Idempotent.

        Marking broken and taking the futures is one critical section with
        ``submit``'s check-and-register, so no future is registered after the
        failure has taken the map (STYLE §9's order).
        """
        with self._lock:
            if self._broken is not None:
                return
            self._broken = cause
            pending = self._take_pending()
        count = fail_all(pending, cause)
        logger.error("executor %r failed %d pending tasks: %s", self.label, count, cause)

    def _fail_pending(self, cause: BaseException) -> int:
        with self._lock:
            pending = self._take_pending()
        return fail_all(pending, cause)

    def _take_pending(self) -> dict[int, ResultSink]:
        """Under ``_lock``: every registered future, taken; held tasks are dropped (they fail with them)."""
        pending, self._futures = self._futures, {}
        self._held = None
        return pending

    # ------------------------------------------------------------ scaling

    @property
    def outstanding(self) -> int:
        return len(self._futures)

    def pool_connection(self) -> PoolConnection:
        """Where the current interchange listens for pools, and the credentials they need.

        Raises:
            ExecutorError: no interchange is running (not started, restarting, or shut down).
        """
        client = self._client
        if client is None or client.process is None:
            raise ExecutorError(self.label, "no interchange is running")
        return PoolConnection(self.address or self.loopback_address, client.worker_port, client.secret_file,
                              self.cert_dir, client.process.pid)

    @property
    def connected_workers(self) -> int:
        return self._status(max_age_s=0.0).connected_workers

    def command(self, request: Any, timeout_s: float = 10.0) -> Any:
        """Send the interchange a typed request and return its typed reply.

        Args:
            request: a request of ``messages.py``, e.g. ``StatusRequest(0)`` or
                ``HoldBlocks(0, ("3",))`` (the request id is assigned on sending).
            timeout_s: how long to wait for the reply.

        Returns:
            ``Ack``, ``StatusReply`` or ``ErrorReply`` (also when the executor is
            not running: nothing is asked then).
        """
        client = self._client
        if client is None or self._broken is not None:
            return ErrorReply(0, f"executor {self.label!r} is not running")
        return client.request(request, timeout_s)

    def _status(self, max_age_s: float) -> StatusReply:
        """The interchange's ``StatusReply``, at most ``max_age_s`` old; an empty one if it cannot be asked."""
        now = time.monotonic()
        if now - self._status_time > max_age_s:
            try:
                reply = self.command(StatusRequest(0))
            except Exception as exc:
                logger.warning("executor %r: status query failed: %r", self.label, exc)
            else:
                self._status_cache = reply if isinstance(reply, StatusReply) else StatusReply.empty()
            self._status_time = now
        return self._status_cache

    def _worker_bind_address(self) -> str:
        address = self.address or self.loopback_address
        return address if address.startswith("127.") or address == "localhost" else "0.0.0.0"
