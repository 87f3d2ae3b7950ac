"""The DataFlowKernel: turns app calls into tasks and tasks into executor work.

The decisions (states, dependency counts, retries) are made by the pure
:class:`~parsl_lite.dataflow.graph.TaskGraph` under ``self._lock``; this
module is the shell that feeds it events from futures' callbacks and carries
out the actions it returns, outside the lock. Nothing polls: a task launches
from the callback of its last dependency. The failure paths (retries, refused
launches, abandonment at shutdown) are in ``failures.py``, the join apps' in
``joins.py``: mixins of the kernel.
"""
from __future__ import annotations

import atexit
import functools
import itertools
import logging
import os
import random
import threading
import time
import uuid
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, Optional, Sequence, cast

from parsl_lite.config import Config
from parsl_lite.dataflow import arguments
from parsl_lite.dataflow.dependency_resolvers import SHALLOW_DEPENDENCY_RESOLVER, is_builtin_shallow
from parsl_lite.dataflow.errors import AppExit, DependencyError, KernelShutdown
from parsl_lite.dataflow.failures import HandlesFailures
from parsl_lite.dataflow.futures import AppFuture
from parsl_lite.dataflow.joins import AwaitsJoins
from parsl_lite.dataflow.graph import (
    AwaitJoin, CheckMemo, DependencyDone, ExecStarted, ExecSucceeded, Finish, JoinStarted,
    Launch, MemoChecked, StateChanged, TaskGraph, TaskId, TaskRecord,
    TaskRejected, TaskSubmitted,
)
from parsl_lite.dataflow.rundirs import make_rundir
from parsl_lite.dataflow.signals import SigtermCleanup
from parsl_lite.dataflow.states import States
from parsl_lite.errors import ConfigurationError
from parsl_lite.jobs.job_status_poller import JobStatusPoller
from parsl_lite.executors.base import ParslExecutor
from parsl_lite.log_utils import remove_handler, set_file_logger
from parsl_lite.serialize.remote_error import RemoteExceptionWrapper

logger = logging.getLogger(__name__)

# Shared, never mutated: most calls have no keyword arguments or resource
# specification, and one object fewer per task is one less for the GC to walk.
_NO_KWARGS: dict = {}
_NO_RESOURCES: dict = {}

__all__ = ["DataFlowKernel", "KernelShutdown"]  # KernelShutdown lives in dataflow/errors.py; importable here too


def _dependency_functions(config: Config) -> tuple[Callable[[tuple, dict], list[Future]],
                                                    Callable[[tuple, dict], tuple[tuple, dict]]]:
    """How this kernel finds and resolves dependencies: the fast default loops unless configured otherwise."""
    resolver = config.dependency_resolver or SHALLOW_DEPENDENCY_RESOLVER
    if is_builtin_shallow(resolver):
        return arguments.find_dependencies, arguments.resolve_arguments
    logger.info("dependencies found and resolved by %r", resolver)
    return (functools.partial(arguments.gather_with, resolver),
            functools.partial(arguments.unwrap_with, resolver))


class _Task(TaskRecord):
    """A task record its executor can settle itself (``executor.submit_to(record, ...)``).

    An executor with ``submit_to`` calls ``set_result`` or ``set_exception``
    on the record where it would set a future's, so the kernel makes no
    executor future per task: one object fewer for every task in flight (for
    the garbage collector, which walks them all) and no callback hop.
    """

    __slots__ = ()

    def set_result(self, result: Any) -> None:
        self.kernel._exec_returned(self, result)

    def set_exception(self, exc: BaseException) -> None:
        self.kernel._exec_raised(self, exc)


class DataFlowKernel(HandlesFailures, AwaitsJoins):
    """Runs a workflow of apps on the executors of one :class:`Config`.

    Args:
        config: the configuration; ``Config()`` (one thread pool) if omitted.

    Loaded from the main thread, the kernel turns SIGTERM into ``SystemExit``
    until its cleanup, so ``kill`` runs the same cleanup as the end of the
    script (:mod:`parsl_lite.dataflow.signals`).
    """

    def __init__(self, config: Optional[Config] = None) -> None:
        self.config = config if config is not None else Config()
        self.run_dir = make_rundir(self.config.run_dir)
        self.run_id = str(uuid.uuid4())  # Parsl's: the monitoring store's key of this run
        self._log_handler = (set_file_logger(os.path.join(self.run_dir, "parsl.log"))
                             if self.config.initialize_logging else None)
        logger.info("parsl_lite kernel starting, run dir %s, pid %d", self.run_dir, os.getpid())
        # Honest parameters: a Parsl parameter we accept and ignore is named once, when the kernel starts.
        self.monitoring = self.config.monitoring
        self._wrap: Optional[Callable] = None    # set by monitoring: what executors run instead of an app's function
        self._unwrap: Optional[Callable] = None  # ... and what turns its result back into the app's
        for owner, names in [("Config", self.config.unused_parameters())] + [
                (f"executor {e.label!r}", e.unused_parameters()) for e in self.config.executors] + (
                [("MonitoringHub", self.monitoring.unused_parameters())] if self.monitoring is not None else []):
            for name in names:
                logger.warning("%s: parameter %r is accepted for Parsl compatibility but parsl_lite does not "
                               "use it; its value has no effect", owner, name)
        self._lock = threading.Lock()
        self._graph = TaskGraph(self.config.retries)
        self._unfinished_tasks = self._graph.tasks  # the graph's own dict (read only): len() without a Python call
        self._ids = cast(Iterator[TaskId], itertools.count())
        self._listeners: list[Callable[[StateChanged], None]] = []
        self._cleanup_listeners: list[Callable[["DataFlowKernel"], None]] = []
        self._finished: dict[TaskId, TaskRecord] = {}
        self._keep_finished = not self.config.garbage_collect
        self._cleanup_called = False
        self._retry_handler = self.config.retry_handler
        self._find_dependencies, self._resolve_arguments = _dependency_functions(self.config)
        self.executors: dict[str, ParslExecutor] = {}
        # Join apps only wire more apps, so their bodies run here, on a plain
        # thread pool that is not one of the user's executors (Parsl's _parsl_internal).
        self._join_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="parsl_lite-join")
        self.memoizer = self.config.get_memoizer()
        self._poller = JobStatusPoller(strategy=self.config.strategy, max_idletime=self.config.max_idletime,
                                       strategy_period=self.config.strategy_period)
        self._sigterm = SigtermCleanup()
        try:
            self._sigterm.install()  # first: a SIGTERM during a slow start cleans up too
            if self.monitoring is not None:  # before the executors: a store that cannot be written fails the load
                self.monitoring.start(self)
            self.memoizer.start(run_dir=self.run_dir, config_run_dir=self.config.run_dir)
            for executor in self.config.executors:
                executor.set_run_dir(self.run_dir)
                executor.event_sink = self._publish  # ExecutorEvents (e.g. which endpoint ran a task) reach listeners
                self.executors[executor.label] = executor  # before start: a start cut short is shut down too
                executor.start()
            self._poller.add_executors(list(self.executors.values()))  # starts the initial blocks now
        except BaseException as exc:  # leave nothing running behind a failed load
            logger.error("kernel failed to start: %r", exc)
            self._poller.close()
            self._shutdown_executors()
            self._close_monitoring(ok=False)
            self._sigterm.restore()
            self._detach_log()
            raise
        self._labels = tuple(self.executors)
        self._only_label = self._labels[0] if len(self._labels) == 1 else ""  # the common case: no choice to make
        self._max_pending = self.config.max_pending_tasks
        self._room = threading.Condition(self._lock)
        self._room_waiters = 0
        self._callback = self._exec_done  # bound once: the hot path adds it to every future
        # Executors that settle the task itself (``submit_to``): no executor future per task.
        self._submit_to: dict[str, Callable] = {
            label: e.submit_to for label, e in self.executors.items() if hasattr(e, "submit_to")}
        atexit.register(self._atexit_cleanup)

    # ------------------------------------------------------------ public API

    @property
    def tasks(self) -> dict[TaskId, TaskRecord]:
        """Records of unfinished tasks (and finished ones when ``garbage_collect=False``)."""
        if self.config.garbage_collect:
            return dict(self._graph.tasks)
        return {**self._finished, **self._graph.tasks}

    def add_listener(self, listener: Callable[[StateChanged], None]) -> None:
        """Call ``listener(StateChanged)`` on every task state transition (from kernel threads)."""
        self._listeners.append(listener)
        self._graph.observed = True

    def add_cleanup_listener(self, listener: Callable[["DataFlowKernel"], None]) -> None:
        """Call ``listener(kernel)`` at the end of :meth:`cleanup` (the loader forgets the kernel then).

        The kernel does not know who loaded it; whoever holds it registers here
        (no kernel -> loader import).
        """
        self._cleanup_listeners.append(listener)

    def submit(self, func: Callable, app_args: tuple, executors: "str | Sequence[str]" = "all",
               cache: bool = False, ignore_for_cache: Sequence[str] = (), app_kwargs: Optional[dict] = None,
               join: bool = False, executable: Optional[Callable] = None,
               resource_specification: Optional[dict] = None,
               prepare: Optional[Callable[[TaskRecord, AppFuture], None]] = None) -> AppFuture:
        """Create a task and return its future; it launches when its dependencies are done.

        Args:
            func: the user's function (named and hashed for memoization).
            app_args: positional arguments (futures among them are dependencies).
            executors: ``'all'`` or labels the task may run on.
            cache: memoize this task.
            ignore_for_cache: keyword arguments left out of the memo hash.
            app_kwargs: keyword arguments (``inputs``' futures are dependencies).
            join: the function returns futures to wait for (a join app).
            executable: what the executor runs, if not ``func`` (a bash or walltime wrapper).
            resource_specification: passed to the executor.
            prepare: called as ``prepare(record, app_fu)`` once the task has its id, when
                there are keyword arguments: the app layer's check of the call (streams,
                ``outputs``: :func:`parsl_lite.app.call.prepare_call`). What it raises
                fails the task's future.

        Raises:
            ConfigurationError: ``executors`` names a label this config lacks.
            KernelShutdown: the kernel was cleaned up.
        """
        if self._cleanup_called:
            raise KernelShutdown("the DataFlowKernel was cleaned up; load a new config to submit more apps")
        if self._max_pending is not None and len(self._unfinished_tasks) >= self._max_pending:
            self._wait_for_room()
        kwargs = app_kwargs if app_kwargs else _NO_KWARGS
        label = (self._only_label if executors == "all" and not resource_specification and self._only_label
                 else self._choose_executor(executors, resource_specification))
        record = _Task(next(self._ids), func.__name__, cache and self._memoize_on(), join, label, func,
                       func if executable is None else executable, app_args, kwargs,
                       resource_specification or _NO_RESOURCES,
                       ignore_for_cache if type(ignore_for_cache) is tuple else tuple(ignore_for_cache),
                       time.time(), self)
        app_fu = AppFuture(record)
        record.app_fu = app_fu
        if kwargs and prepare is not None:
            try:
                prepare(record, app_fu)
            except Exception as exc:
                with self._lock:
                    actions = self._graph.handle(TaskRejected(record))
                self._apply(actions, exc=exc)
                return app_fu
        deps = self._find_dependencies(app_args, kwargs) if app_args or kwargs else ()
        if deps:
            record.depends = deps
        else:
            with self._lock:
                ready = self._graph.launch_at_once(record)
            if ready:
                self._launch(record)
                return app_fu
        with self._lock:
            actions = self._graph.handle(TaskSubmitted(record, len(deps)))
        if actions:
            self._apply(actions)
        tid = record.id
        for dep in deps:
            dep.add_done_callback(lambda done, _tid=tid: self._dependency_done(_tid, done))
        return app_fu

    def wait_for_current_tasks(self) -> None:
        """Block until every task submitted so far has finished (results or errors).

        Ctrl-C (``KeyboardInterrupt``) and SIGTERM's ``SystemExit`` stop the wait.
        """
        while True:
            with self._lock:
                pending = [r.app_fu for r in self._graph.tasks.values()]
            if not pending:
                return
            for fut in pending:
                try:
                    fut.exception()
                except CancelledError:  # a cancelled future still counts as finished
                    pass

    def checkpoint(self) -> Optional[str]:
        """Write the memo table's new results to this run's checkpoint; return its path."""
        return self.memoizer.checkpoint()

    def cleanup(self) -> None:
        """Fail unfinished tasks, shut executors down, close the memoizer. Idempotent.

        Order (one failure path): refuse new submissions, shut the executors
        down, fail whatever the graph still holds, close the memoizer
        (``dfk_exit`` checkpoints), put SIGTERM's handler back, detach the log.

        Every task not done by then fails with :class:`KernelShutdown`, whatever
        the executor: from the moment cleanup begins a failure reported by an
        executor (``ExecutorShutdown``, a lost worker) becomes the
        ``__cause__`` of a ``KernelShutdown``, the retry handler is not called
        and nothing is retried or launched; dependants of such tasks fail with
        ``KernelShutdown`` too, not ``DependencyError``. Results that arrive
        during the cleanup (thread-pool tasks already running) still count.
        """
        with self._lock:
            if self._cleanup_called:
                return
            self._cleanup_called = True
        self._sigterm.cleaning()
        logger.info("kernel cleanup: %d unfinished tasks", len(self._graph))
        ok = False
        try:
            self._poller.close()
            self._shutdown_executors()
            self._abandon_unfinished()
            self.memoizer.close()
            ok = True
        finally:
            atexit.unregister(self._atexit_cleanup)
            self._close_monitoring(ok)
            self._sigterm.restore()
            for listener in self._cleanup_listeners:
                try:
                    listener(self)
                except Exception:
                    logger.exception("cleanup listener %r failed", listener)
            logger.info("kernel cleanup done")
            self._detach_log()

    def __enter__(self) -> "DataFlowKernel":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        mode = self.config.exit_mode
        if exc_type is None and mode == "wait":
            try:
                self.wait_for_current_tasks()
            except BaseException:  # Ctrl-C or SIGTERM while waiting: clean up, then let it propagate
                self.cleanup()
                raise
        if exc_type is not None or mode in ("cleanup", "wait"):
            self.cleanup()

    # ------------------------------------------------------------ events in

    def _dependency_done(self, tid: TaskId, dep: Future) -> None:
        exc = dep.exception()
        if type(exc) is KernelShutdown:  # the parent was abandoned: so is this task
            self._abandon(tid, None)
            return
        failed = exc is not None
        with self._lock:
            actions = self._graph.handle(DependencyDone(tid, failed))
        if actions:
            self._apply(actions)

    def _exec_done(self, exec_fu: Future) -> None:
        record: TaskRecord = exec_fu.parsl_record  # type: ignore[attr-defined]
        record.exec_fu = None  # break the future <-> record cycle so refcounting frees both
        try:
            result = exec_fu.result()
        except BaseException as exc:
            self._exec_raised(record, exc)
            return
        self._exec_returned(record, result)

    def _exec_raised(self, record: TaskRecord, exc: BaseException) -> None:
        if isinstance(exc, Exception):  # whatever the task raised belongs to its future
            self._task_failed(record, exc)
        else:  # SystemExit/KeyboardInterrupt from an in-process app must not end the script
            self._task_failed(record, AppExit(record.id, record.func_name, exc))

    def _exec_returned(self, record: TaskRecord, result: Any) -> None:
        try:
            if type(result) is RemoteExceptionWrapper:
                result.reraise()
            if self._unwrap is not None:  # monitoring: where and when the try ran
                result = self._unwrap(record, result)
        except BaseException as exc:
            self._exec_raised(record, exc)
            return
        with self._lock:
            done = self._graph.succeed_at_once(record)
            if not done:
                actions = self._graph.handle(JoinStarted(record.id) if record.join else ExecSucceeded(record.id))
        if done:
            self._finish(record, States.exec_done, result, None)
        else:
            self._apply(actions, result)

    # ------------------------------------------------------------ actions out

    def _apply(self, actions: list, result: Any = None, exc: Optional[BaseException] = None) -> None:
        for action in actions:
            kind = type(action)
            if kind is Launch:
                self._launch(action.record)
            elif kind is Finish:
                self._finish(action.record, action.state, result, exc)
            elif kind is CheckMemo:
                self._check_memo(action.record)
            elif kind is AwaitJoin:
                self._await_join(action.record, result)
            elif kind is StateChanged:
                self._publish(action)

    def _launch(self, record: TaskRecord) -> None:
        if self._cleanup_called:  # a dependant made ready, or a retry, during cleanup
            self._abandon(record.id, None)
            return
        try:
            if record.depends:
                self._resolve_dependencies(record)
            submit_to = self._submit_to.get(record.executor) if self._wrap is None else None
            if record.join:
                exec_fu = self._join_pool.submit(record.exec_func, *record.args, **record.kwargs)
            elif submit_to is not None:  # the executor settles the record itself
                submit_to(record, record.exec_func, record.resource_specification, *record.args, **record.kwargs)
                return
            else:
                func = record.exec_func if self._wrap is None else self._wrap(record.exec_func)
                exec_fu = self.executors[record.executor].submit(
                    func, record.resource_specification, *record.args, **record.kwargs)
        except BaseException as exc:  # refused at the edge: fail the task, not its caller's thread
            logger.error("task %d (%s) could not be launched on %r: %r",
                         record.id, record.func_name, record.executor, exc)
            self._launch_failed(record, exc)
            if not isinstance(exc, Exception):
                raise  # Ctrl-C in the user's thread: the task has failed, the interrupt goes on
            return
        exec_fu.parsl_record = record  # type: ignore[attr-defined]
        record.exec_fu = exec_fu
        exec_fu.add_done_callback(self._callback)

    def _resolve_dependencies(self, record: TaskRecord) -> None:
        """Put the dependencies' results in place; a resolver's unwrap that raises is Parsl's DependencyError."""
        try:
            record.args, record.kwargs = self._resolve_arguments(record.args, record.kwargs)
        except arguments.UnwrapFailed as failed:
            pairs = [(exc, arguments.describe_future(arg, self)) for exc, arg in failed.failures]
            raise DependencyError(pairs, record.id) from None
        record.depends = None

    def _check_memo(self, record: TaskRecord) -> None:
        """Ask the memo table; a hit finishes the task with the memoized result or the same exception.

        An argument the memo hash cannot encode fails the task with that
        ``ValueError`` (Parsl's rule), without retries.
        """
        try:
            if record.depends:
                self._resolve_dependencies(record)
            memo_fu = self.memoizer.check_memo(record)
        except Exception as exc:
            logger.error("task %d (%s): cannot resolve or memoize its arguments: %s", record.id, record.func_name, exc)
            self._launch_failed(record, exc)
            return
        memo_exc = memo_fu.exception() if memo_fu is not None else None
        with self._lock:
            actions = self._graph.handle(MemoChecked(record.id, memo_fu is not None, memo_exc is not None))
        if memo_fu is None:
            self._apply(actions)
            return
        record.from_memo = True
        self._apply(actions, None if memo_exc is not None else memo_fu.result(), memo_exc)

    def _finish(self, record: TaskRecord, state: States, result: Any, exc: Optional[BaseException]) -> None:
        record.time_returned = time.time()
        if self._room_waiters:
            with self._room:
                self._room.notify_all()
        if self._keep_finished:
            self._finished[record.id] = record
        app_fu: AppFuture = record.app_fu
        record.app_fu = None  # the future keeps its record; the record need not keep the future
        if state is States.exec_done or state is States.memo_done:
            if record.memoize and state is States.exec_done:
                self.memoizer.update_memo_result(record, result)
            app_fu.set_result(result)
            return
        if state is States.dep_fail:
            exc = DependencyError(arguments.failed_dependencies(record.depends or [], self), record.id)
        elif exc is None:
            exc = self._shutdown_error(record, None)
        elif type(exc) is not KernelShutdown:
            if record.memoize and not record.from_memo:
                self.memoizer.update_memo_exception(record, exc)
        logger.info("task %d (%s) %s: %s: %s", record.id, record.func_name, state.name, type(exc).__name__, exc)
        if self.monitoring is not None:
            self.monitoring.task_failed(record, exc)
        app_fu.set_exception(exc)

    def _publish(self, change: Any) -> None:
        """A ``StateChanged`` (or an executor's ``ExecutorEvent``) to every listener."""
        for listener in self._listeners:
            try:
                listener(change)
            except (Exception, SystemExit):
                logger.exception("task state listener %r failed", listener)

    def report_running(self, tid: TaskId) -> None:
        """For executors that learn when a task starts (``launched`` -> ``running``)."""
        with self._lock:
            actions = self._graph.handle(ExecStarted(tid))
        self._apply(actions)

    # ------------------------------------------------------------ helpers

    def _wait_for_room(self) -> None:
        """Backpressure: block the user's thread until the graph drops below 90% of the limit.

        Our own threads (executor I/O, join bodies) never block here: they are
        the ones that make room.
        """
        if threading.current_thread().name.startswith("parsl_lite"):
            return
        low_water = int(self._max_pending * 0.9)  # type: ignore[operator]
        with self._room:
            self._room_waiters += 1
            try:
                while len(self._graph) > low_water and not self._cleanup_called:
                    self._room.wait(1.0)
            finally:
                self._room_waiters -= 1

    def _memoize_on(self) -> bool:
        return bool(getattr(self.memoizer, "memoize", True))

    def _choose_executor(self, executors: "str | Sequence[str]", resources: Optional[dict] = None) -> str:
        if executors == "all":
            labels = self._labels
            if resources and "endpoints" in resources:   # only executors that route to endpoints take it
                routing = tuple(l for l in labels if getattr(self.executors[l], "routes_to_endpoints", False))
                labels = routing or labels                 # none: the executor refuses it, naming the key
        else:
            labels = (executors,) if isinstance(executors, str) else tuple(executors)
            unknown = [label for label in labels if label not in self.executors]
            if unknown:
                raise ConfigurationError("executors", f"unknown executor label(s) {unknown}; "
                                                      f"this config has {list(self._labels)}")
        return labels[0] if len(labels) == 1 else random.choice(labels)

    def _shutdown_executors(self) -> None:
        self._join_pool.shutdown(wait=False, cancel_futures=True)
        for label, executor in list(self.executors.items()):
            try:
                executor.shutdown()
            except Exception:
                logger.exception("executor %r failed to shut down", label)

    def _close_monitoring(self, ok: bool) -> None:
        """Write the monitoring events still queued and the workflow's end (after every task is final)."""
        if self.monitoring is not None:
            try:
                self.monitoring.close(self, ok)
            except Exception:
                logger.exception("closing monitoring failed")

    def _detach_log(self) -> None:
        if self._log_handler is not None:
            remove_handler(self._log_handler)
            self._log_handler = None

    def _atexit_cleanup(self) -> None:
        if not self._cleanup_called:
            logger.info("interpreter exiting: cleaning up the kernel")
            self.cleanup()
