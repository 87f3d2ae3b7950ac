"""Resource samples of a worker pool's workers (CPU, memory; psutil), written straight into the store.

A pool started while monitoring is on (``$PARSL_LITE_MONITORING``: the store's
URL, the run id, the interval; set by the hub for the providers that start
pools with the run's environment) starts a :class:`ResourceSampler`: one
``node`` row (Parsl's) when it starts, then every ``interval`` seconds one
``pl_worker_resource`` row per worker process (and one ``node`` heartbeat).
It sleeps on an Event between samples; a store it cannot reach (a pool on
another host with a SQLite URL) is logged once and sampling stops: the run
goes on.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import socket
import threading
import time
from typing import Callable, Optional

import psutil

from parsl_lite.monitoring import schema
from parsl_lite.monitoring.store import Store

logger = logging.getLogger(__name__)

ENV_SETTINGS = "PARSL_LITE_MONITORING"
_SAMPLE_COLUMNS = ("run_id", "executor_label", "block_id", "hostname", "worker", "pid", "timestamp", "cpu_percent",
                   "cpu_user", "cpu_system", "memory_resident", "memory_virtual")


def settings_from_env() -> Optional[dict]:
    """The hub's settings, or None when monitoring (or its resource sampling) is off."""
    raw = os.environ.get(ENV_SETTINGS)
    if not raw:
        return None
    try:
        settings = json.loads(raw)
        return settings if settings.get("url") and settings.get("run_id") else None
    except ValueError:
        logger.warning("ignoring a malformed $%s", ENV_SETTINGS)
        return None


class ResourceSampler:
    """Samples the processes ``workers()`` names ({index: pid}) every ``interval`` seconds, on its own thread."""

    def __init__(self, settings: dict, executor_label: str, block_id: str, pool_id: str, cores: int,
                 memory_bytes: int, workers: Callable[[], dict[int, int]]) -> None:
        self.url = settings["url"]
        self.run_id = settings["run_id"]
        self.interval = float(settings.get("interval", 30))
        self.executor_label = executor_label
        self.block_id = block_id
        self.pool_id = pool_id
        self.cores = cores
        self.memory_bytes = memory_bytes
        self.workers = workers
        self.hostname = socket.gethostname()
        self._stop = threading.Event()
        self._procs: dict[int, psutil.Process] = {}
        self._node_id: Optional[int] = None
        self._thread = threading.Thread(target=self._run, name="parsl_lite-resource-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            store = Store(self.url, create=False)
        except Exception as exc:
            logger.warning("resource monitoring off: cannot open the store %s from %s: %s", self.url,
                           self.hostname, exc)
            return
        try:
            self._node(store, active=True)
            while not self._stop.wait(self.interval):
                self.sample(store)
            self._node(store, active=False)
        except Exception:
            logger.exception("resource sampling stopped")
        finally:
            store.close()

    def sample(self, store: Store) -> int:
        """One row per live worker; returns how many."""
        now = time.time()
        rows = []
        for index, pid in sorted(self.workers().items()):
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                    proc.cpu_percent(None)   # the first call only starts psutil's interval
                with proc.oneshot():
                    cpu, mem = proc.cpu_times(), proc.memory_info()
                    percent = proc.cpu_percent(None)
            except psutil.Error:
                self._procs.pop(pid, None)
                continue
            rows.append((self.run_id, self.executor_label, self.block_id, self.hostname,
                         f"{self.hostname}:{self.pool_id[:8]}:{index}:{pid}", pid, store.time(now), percent,
                         cpu.user, cpu.system, mem.rss, mem.vms))
        store.executemany(store.insert_sql(schema.WORKER_RESOURCE, _SAMPLE_COLUMNS, "ignore"), rows)
        if self._node_id is not None:
            store.execute('UPDATE "node" SET last_heartbeat = ?, worker_count = ? WHERE id = ?',
                          (store.time(now), len(rows), self._node_id))
        store.commit()
        return len(rows)

    def _node(self, store: Store, active: bool) -> None:
        """Parsl's ``node`` row: this pool's host, block, cores, memory (inserted at start, updated at the end)."""
        now = store.time(time.time())
        if self._node_id is not None:
            store.execute('UPDATE "node" SET active = ?, last_heartbeat = ? WHERE id = ?',
                          (active, now, self._node_id))
        else:
            columns = ("run_id", "hostname", "uid", "block_id", "cpu_count", "total_memory", "active",
                       "worker_count", "python_v", "timestamp", "last_heartbeat")
            sql = store.insert_sql(schema.NODE, columns) + ' RETURNING "id"'
            cursor = store.execute(sql.replace("%s", "?"), (
                self.run_id, self.hostname, self.pool_id, self.block_id, self.cores, self.memory_bytes, active,
                len(self.workers()), platform.python_version(), now, now))
            self._node_id = cursor.fetchone()[0]
        store.commit()
