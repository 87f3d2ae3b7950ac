"""``MonitoringHub``: Parsl's monitoring configuration, and what runs it for one kernel.

``Config(monitoring=MonitoringHub(...))`` makes the kernel call :meth:`start`
when it loads: the store is opened (a store that cannot be written fails the
load, naming it), the ``workflow`` and ``pl_run`` rows are written, the writer
process is started (:mod:`~parsl_lite.monitoring.writer`) and a listener is
added to the kernel. The listener only puts a small tuple on a queue; the
sender thread ``parsl_lite-monitoring`` blocks on that queue (an idle run costs
no CPU), lets a burst gather for ``batching_interval`` and sends it to the
writer in one pickled frame. Everything else (rows, SQL, transactions) happens
in the writer process, off the kernel's interpreter lock. :meth:`close`, at
the end of the kernel's cleanup, sends what is left, marks the workflow
completed and waits for the writer to commit it.
"""
from __future__ import annotations

import getpass
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Optional

import psutil
from typeguard import typechecked

import parsl_lite
from parsl_lite.dataflow.states import States
from parsl_lite.errors import ConfigurationError
from parsl_lite.monitoring import schema
from parsl_lite.monitoring.recorder import ERROR, EXECUTOR
from parsl_lite.monitoring.remote import MonitoredResult, Wrappers
from parsl_lite.monitoring.sampler import ENV_SETTINGS
from parsl_lite.monitoring.store import Store, check_url
from parsl_lite.monitoring.frames import write_frame
from parsl_lite.representation import RepresentationMixin

logger = logging.getLogger(__name__)

_WRITER_EXIT_S = 120.0


class MonitoringHub(RepresentationMixin):
    """Record the workflow, its tasks, tries, states and resources into a store.

    Args:
        hub_address, hub_port, hub_port_range: accepted for Parsl compatibility,
            unused (Parsl no longer uses them either; a value is named in a warning).
        workflow_name: default: the script's file name.
        workflow_version: default: the time the run began.
        logging_endpoint: the store's URL, ``sqlite:///PATH`` (default
            ``sqlite:///<Config.run_dir>/monitoring.db``, as Parsl) or ``postgresql://...``.
        monitoring_debug: log every batch written (DEBUG) into the run's ``monitoring.log``.
        resource_monitoring_enabled: worker pools sample their workers' CPU and memory.
        resource_monitoring_interval: seconds between samples (> 0).
        batching_interval: at most one write transaction per this many seconds (ours).
        heartbeat_period: seconds between "still running" marks when idle (ours).
    """

    @typechecked
    def __init__(self, hub_address: Any = None, hub_port_range: Any = None, hub_port: Any = None,
                 workflow_name: Optional[str] = None, workflow_version: Optional[str] = None,
                 logging_endpoint: Optional[str] = None, monitoring_debug: bool = False,
                 resource_monitoring_enabled: bool = True, resource_monitoring_interval: float = 30,
                 batching_interval: float = 0.1, heartbeat_period: float = 30.0) -> None:
        if resource_monitoring_interval <= 0:
            raise ConfigurationError("resource_monitoring_interval",
                                     f"must be > 0 seconds, got {resource_monitoring_interval}")
        if batching_interval < 0:
            raise ConfigurationError("batching_interval", f"must be >= 0 seconds, got {batching_interval}")
        if heartbeat_period <= 0:
            raise ConfigurationError("heartbeat_period", f"must be > 0 seconds, got {heartbeat_period}")
        if logging_endpoint is not None:
            check_url(logging_endpoint)
        self.hub_address = hub_address
        self.hub_port_range = hub_port_range
        self.hub_port = hub_port
        self.workflow_name = workflow_name
        self.workflow_version = workflow_version
        self.logging_endpoint = logging_endpoint
        self.monitoring_debug = monitoring_debug
        self.resource_monitoring_enabled = resource_monitoring_enabled
        self.resource_monitoring_interval = resource_monitoring_interval
        self.batching_interval = batching_interval
        self.heartbeat_period = heartbeat_period
        self.run_id: Optional[str] = None
        self.url: Optional[str] = None
        self._sender: Optional[_Sender] = None
        self._ran: dict[int, tuple] = {}   # task id -> where and when its last try ran, until its next change

    def unused_parameters(self) -> list[str]:
        """Parsl parameters given a value that parsl_lite ignores (the kernel warns once)."""
        return [name for name in ("hub_address", "hub_port_range", "hub_port") if getattr(self, name) is not None]

    # ------------------------------------------------------------ the kernel's hooks

    def start(self, kernel: Any) -> None:
        """Open the store, write the run's rows, start the writer, listen to ``kernel``.

        Raises:
            ConfigurationError: the store cannot be opened or written (naming it).
        """
        self.run_id = kernel.run_id
        self.url = self.logging_endpoint or \
            f"sqlite:///{os.path.join(os.path.abspath(kernel.config.run_dir), 'monitoring.db')}"
        store = _open_for_writing(self.url)
        try:
            self._write_run_rows(store, kernel, time.time())
        except Exception as exc:
            raise ConfigurationError("logging_endpoint", f"cannot write the monitoring store {self.url!r}: {exc}") \
                from exc
        finally:
            store.close()
        self._sender = _Sender(self, os.path.join(kernel.run_dir, "monitoring.log"))
        kernel.add_listener(self._listener())
        if self.resource_monitoring_enabled:
            kernel._wrap, kernel._unwrap = Wrappers(), self._unwrapper()
            os.environ[ENV_SETTINGS] = json.dumps({"url": self.url, "run_id": self.run_id,
                                                   "interval": self.resource_monitoring_interval})
        logger.info("monitoring run %s into %s", self.run_id, self.url)

    def task_failed(self, record: Any, exc: BaseException) -> None:
        """The kernel's hook: the error a task finally failed with (its text goes into ``pl_try``)."""
        sender = self._sender
        if sender is not None:
            sender.queue.put((time.time(), record.id, ERROR, record.try_id, type(exc).__name__, str(exc)))

    def _unwrapper(self) -> Any:
        """The kernel's hook on a try's result: keep where and when it ran for the task's next change, return the value.

        The kernel publishes that change (``exec_done``) right after, on the same thread, and the
        listener takes it from ``self._ran``: one queued item per change, none extra per try.
        """
        ran = self._ran

        def unwrap(record: Any, result: Any) -> Any:
            if type(result) is not MonitoredResult:
                return result
            ran[record.id] = (result.start, result.hostname, result.worker, result.block_id)
            return result.value

        return unwrap

    def flush(self, timeout_s: float = 60.0) -> int:
        """Block until every event queued before this call is committed; return the events written so far."""
        sender = self._sender
        if sender is None:
            return 0
        done = threading.Event()
        sender.queue.put(("flush", done))
        if not done.wait(timeout_s):
            raise TimeoutError(f"monitoring: the store did not take the events within {timeout_s} s")
        return sender.events_written

    def close(self, kernel: Any, ok: bool = True) -> None:
        """Send what is queued, mark the workflow completed (``ok``: the cleanup did not raise), wait for the writer."""
        sender, self._sender = self._sender, None
        if sender is None:
            return
        if str(self.run_id) in os.environ.get(ENV_SETTINGS, ""):
            del os.environ[ENV_SETTINGS]
        sender.finish(time.time(), "completed" if ok else "failed")

    # ------------------------------------------------------------ helpers

    def _listener(self) -> Any:
        """The kernel's listener: a small tuple on the queue, nothing else (it runs on the hot path)."""
        put = self._sender.queue.put  # type: ignore[union-attr]
        now = time.time
        graph_tasks = self._graph_tasks   # the kernel's unfinished tasks: an executor event's try number
        pop_ran = self._ran.pop
        pending, launched, retryable = States.pending, States.launched, States.fail_retryable
        passing = (States.running, States.joining)

        def on_event(event: Any) -> None:
            if event.kind != "task_state":
                record = graph_tasks.get(event.task_id) if event.task_id is not None else None
                put((now(), -1 if event.task_id is None else event.task_id, EXECUTOR,
                     record.try_id if record is not None else 0, event.executor, event.what, event.detail))
                return
            new, r = event.new, event.record
            if new is launched:
                put((now(), r.id, 7, r.try_id, r.executor))
            elif new is pending:
                deps = r.depends
                put((now(), r.id, 0, 0, r.func_name, r.executor, r.memoize, r.time_invoked,
                     ",".join([str(d.tid) for d in deps if getattr(d, "tid", None) is not None]) if deps else ""))
            elif new in passing:
                put((now(), r.id, new.value, r.try_id))
            else:   # final, or failed and retried (the graph counted the next try before publishing)
                history = r.fail_history
                put((now(), r.id, new.value, r.try_id - 1 if new is retryable else r.try_id, r.fail_count,
                     r.fail_cost, r.hashsum, tuple(history) if history else None, pop_ran(r.id, None)))

        return on_event

    def _write_run_rows(self, store: Store, kernel: Any, started: float) -> None:
        self._graph_tasks = kernel._graph.tasks
        script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        name = self.workflow_name or (os.path.basename(script) if script else "interactive")
        version = self.workflow_version or time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        store.execute(store.insert_sql(schema.WORKFLOW, (
            "run_id", "workflow_name", "workflow_version", "time_began", "host", "user", "rundir",
            "tasks_failed_count", "tasks_completed_count")),
            (self.run_id, name, version, store.time(started), socket.gethostname(), getpass.getuser(),
             os.path.abspath(kernel.run_dir), 0, 0))
        me = psutil.Process()
        store.execute(store.insert_sql(schema.RUN, (
            "run_id", "pid", "pid_create_time", "hostname", "script", "config", "last_heartbeat",
            "heartbeat_period", "exit_status", "events_written", "schema_version")),
            (self.run_id, os.getpid(), me.create_time(), socket.gethostname(), script, repr(kernel.config),
             store.time(started), self.heartbeat_period, "running", 0, schema.SCHEMA_VERSION))
        store.commit()


def _open_for_writing(url: str) -> Store:
    """The writer's connection; any failure is a ConfigurationError naming the store."""
    try:
        return Store(url, create=True)
    except ConfigurationError:
        raise
    except Exception as exc:   # PostgreSQL refused, unreachable, no such database
        raise ConfigurationError("logging_endpoint", f"cannot open the monitoring store {url!r}: {exc}") from exc


class _Sender:
    """The writer process, and the thread that feeds it batches from the listener's queue."""

    def __init__(self, hub: MonitoringHub, logfile: str) -> None:
        self.queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self.batching_interval = hub.batching_interval
        self.events_written = 0
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(parsl_lite.__file__)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        command = [sys.executable, "-m", "parsl_lite.monitoring.writer", "--url", str(hub.url), "--run-id",
                   str(hub.run_id), "--heartbeat-period", str(hub.heartbeat_period), "--logfile", logfile]
        if hub.monitoring_debug:
            command.append("--debug")
        # Its own session: Ctrl-C in the terminal must not kill it before it has written what it holds.
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                        start_new_session=True, bufsize=0)
        self._end: Optional[tuple] = None
        self._broken = False
        self._thread = threading.Thread(target=self._run, name="parsl_lite-monitoring", daemon=True)
        self._thread.start()

    def finish(self, end_time: float, exit_status: str) -> None:
        self.queue.put(("end", end_time, exit_status))
        self._thread.join(_WRITER_EXIT_S)
        try:
            self.process.wait(_WRITER_EXIT_S)
        except subprocess.TimeoutExpired:
            logger.error("monitoring writer (pid %d) did not finish within %.0f s; stopping it",
                         self.process.pid, _WRITER_EXIT_S)
            self.process.kill()
            self.process.wait()

    def _run(self) -> None:
        last_send = 0.0
        while True:
            first = self.queue.get()
            if type(first) is tuple and type(first[0]) is float:   # an event: let a burst gather
                wait = self.batching_interval - (time.monotonic() - last_send)
                if wait > 0:
                    time.sleep(wait)
            items, controls = self._drain(first)
            self._send(items)
            last_send = time.monotonic()
            for control in controls:
                if control[0] == "flush":
                    self._flush(control[1])
                else:
                    self._send_end(control)
                    return

    def _drain(self, first: Any) -> tuple[list, list]:
        """Everything queued now: events, and the controls (flush, end) that came with them, in order."""
        items, controls, get = [], [], self.queue.get_nowait
        item = first
        while True:
            if type(item[0]) is str:
                controls.append(item)
                if item[0] == "end":
                    return items, controls
            else:
                items.append(item)
            try:
                item = get()
            except queue.Empty:
                return items, controls

    def _send(self, payload: Any) -> None:
        if self._broken or (isinstance(payload, list) and not payload):
            return
        try:
            write_frame(self.process.stdin, payload)  # type: ignore[arg-type]
        except (BrokenPipeError, OSError) as exc:
            self._broken = True
            logger.error("monitoring writer (pid %d) is gone (%r, exit code %s): later events are not recorded; "
                         "see its monitoring.log", self.process.pid, exc, self.process.poll())

    def _flush(self, done: threading.Event) -> None:
        self._send(("flush",))
        if not self._broken:
            line = self.process.stdout.readline()  # type: ignore[union-attr]
            if line:
                self.events_written = int(line)
        done.set()

    def _send_end(self, control: tuple) -> None:
        self._send(control)
        try:
            self.process.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
