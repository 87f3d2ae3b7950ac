"""``MonitoringHub``: Parsl's monitoring configuration, and the run's writer thread.

``Config(monitoring=MonitoringHub(...))`` makes the kernel call :meth:`start`
when it loads: the store is opened (a store that cannot be written fails the
load, naming it), the ``workflow`` and ``pl_run`` rows are written, and a
listener is added to the kernel. The listener only puts a tuple on a queue;
the writer thread ``parsl_lite-monitoring`` blocks on that queue (an idle run
costs no CPU: it wakes once per ``heartbeat_period`` to say the run is alive),
lets a burst gather for ``batching_interval``, turns it into rows
(:class:`~parsl_lite.monitoring.recorder.Recorder`) and writes them in one
transaction. :meth:`close`, at the end of the kernel's cleanup, writes what is
left and marks the workflow completed.
"""
from __future__ import annotations

import getpass
import json
import logging
import os
import queue
import socket
import sys
import threading
import time
import uuid
from typing import Any, Optional

import psutil
from typeguard import typechecked

from parsl_lite.errors import ConfigurationError
from parsl_lite.monitoring import schema
from parsl_lite.monitoring.store import Store, check_url
from parsl_lite.monitoring.writer import Writer
from parsl_lite.representation import RepresentationMixin

logger = logging.getLogger(__name__)

ENV_SETTINGS = "PARSL_LITE_MONITORING"   # what worker pools started by a local provider read (resource samples)


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
        self._writer: Optional[Writer] = None
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()

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
        started = time.time()
        try:
            self._write_run_rows(store, kernel, started)
        except Exception as exc:
            store.close()
            raise ConfigurationError("logging_endpoint", f"cannot write the monitoring store {self.url!r}: {exc}") \
                from exc
        self._writer = Writer(store, self._queue, self.run_id, batching_interval=self.batching_interval,
                              heartbeat_period=self.heartbeat_period, debug=self.monitoring_debug)
        self._writer.start()
        kernel.add_listener(self._listener())
        if self.resource_monitoring_enabled:
            os.environ[ENV_SETTINGS] = json.dumps({"url": self.url, "run_id": self.run_id,
                                                   "interval": self.resource_monitoring_interval})
        logger.info("monitoring run %s into %s", self.run_id, self.url)

    def task_failed(self, record: Any, exc: BaseException) -> None:
        """The kernel's hook: the error a task finally failed with (its text goes into ``pl_try``)."""
        self._queue.put((time.time(), "error", record, type(exc).__name__, str(exc)))

    def close(self, kernel: Any, ok: bool = True) -> None:
        """Write what is queued, mark the workflow completed (``ok``: the cleanup did not raise)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        if str(self.run_id) in os.environ.get(ENV_SETTINGS, ""):
            del os.environ[ENV_SETTINGS]
        writer.finish(time.time(), "completed" if ok else "failed")
        logger.info("monitoring: %d events written for run %s", writer.events_written, self.run_id)

    @property
    def events_written(self) -> int:
        return self._writer.events_written if self._writer is not None else 0

    # ------------------------------------------------------------ helpers

    def _listener(self) -> Any:
        """The kernel's listener: a tuple on the queue, nothing else (it runs on the hot path)."""
        put = self._queue.put
        now = time.time
        graph_tasks = self._graph_tasks   # the kernel's unfinished tasks: an executor event's try number

        def on_event(event: Any) -> None:
            if event.kind == "task_state":
                record = event.record
                put((now(), event, record.try_id, record.depends))
            else:
                record = graph_tasks.get(event.task_id) if event.task_id is not None else None
                put((now(), event, record.try_id if record is not None else 0))

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


def new_run_id() -> str:
    """A run's id, as Parsl's (a UUID)."""
    return str(uuid.uuid4())
