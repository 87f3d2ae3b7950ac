"""Monitoring end to end on real kernels: every task, try and state change lands in the store.

Each test compares the store with what a listener of its own saw on the same
kernel (the kernel's events are the truth), on threads and on the local htex,
with SQLite and with the PostgreSQL backend.
"""
from __future__ import annotations

import collections
import socket
import threading

import pytest

import parsl_lite
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.executors import ThreadPoolExecutor
from parsl_lite.monitoring import MonitoringHub
from parsl_lite.monitoring.store import open_store

from .conftest import wait_for
from .htex_helpers import local_htex
from .test_faas_service_tasks import pg_url  # noqa: F401  (the PostgreSQL backend, a schema per test)


@python_app
def double(x):
    return 2 * x


@python_app
def add(a, b):
    return a + b


@python_app
def fails_first(marker_dir, name):
    """Fails on its first try, succeeds on the second (a file remembers the first)."""
    import os
    path = os.path.join(marker_dir, name)
    if not os.path.exists(path):
        open(path, "w").close()
        raise RuntimeError(f"first try of {name}")
    return name


@python_app
def always_fails(n):
    raise ValueError(f"bad input {n}")


class Seen:
    """A listener of the test's own: every state change the kernel published, per task."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changes: dict[int, list[str]] = collections.defaultdict(list)

    def __call__(self, event) -> None:
        if event.kind == "task_state":
            with self.lock:
                self.changes[event.task_id].append(event.new.name)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.changes.values())


def status_by_task(url: str, run_id: str) -> dict[int, list[str]]:
    store = open_store(url, read_only=url.startswith("sqlite"))
    try:
        rows = store.query('SELECT task_id, task_status_name FROM "status" WHERE run_id = ? ORDER BY timestamp',
                           (run_id,))
    finally:
        store.close()
    found: dict[int, list[str]] = collections.defaultdict(list)
    for tid, name in rows:
        found[tid].append(name)
    return found


def one(url: str, sql: str, params=()) -> tuple:
    store = open_store(url)
    try:
        return store.query(sql, params)[0]
    finally:
        store.close()


def run_mixed_workflow(config: Config, tmp_path) -> tuple[Seen, str, str]:
    """Plain tasks, a dependency chain, a retried task and a failing one; returns (seen, url, run_id)."""
    seen = Seen()
    dfk = parsl_lite.load(config)
    dfk.add_listener(seen)
    try:
        doubled = [double(i) for i in range(50)]
        total = add(doubled[0], doubled[1])
        retried = fails_first(str(tmp_path), "r1")
        failed = always_fails(7)
        assert [f.result() for f in doubled] == [2 * i for i in range(50)]
        assert total.result() == 2 and retried.result() == "r1"
        with pytest.raises(ValueError):
            failed.result()
    finally:
        dfk.cleanup()
        parsl_lite.clear()
    return seen, dfk.monitoring.url, dfk.run_id


def check_mixed_workflow(seen: Seen, url: str, run_id: str, executor: str) -> None:
    assert status_by_task(url, run_id) == dict(seen.changes)
    n_tasks = len(seen.changes)
    assert one(url, 'SELECT count(*) FROM "task" WHERE run_id = ?', (run_id,)) == (n_tasks,)
    name, completed, failed, ended = one(url, 'SELECT workflow_name, tasks_completed_count, tasks_failed_count, '
                                              'time_completed FROM "workflow" WHERE run_id = ?', (run_id,))
    assert (completed, failed) == (n_tasks - 1, 1) and ended is not None
    # the retried task: two tries, the first with its error text, on the configured executor
    tid = one(url, """SELECT task_id FROM "task" WHERE run_id = ? AND task_func_name = 'fails_first'""", (run_id,))[0]
    tries = open_store(url).query('SELECT try_id, task_executor, task_try_time_launched, task_try_time_returned, '
                                  'task_fail_history FROM "try" WHERE run_id = ? AND task_id = ? ORDER BY try_id',
                                  (run_id, tid))
    assert [t[:2] for t in tries] == [(0, executor), (1, executor)]
    assert all(t[2] is not None and t[3] is not None for t in tries)
    # where and when the successful try ran (the worker side of monitoring, resource_monitoring_enabled)
    ran = open_store(url).query('SELECT t.task_try_time_running, t.hostname, t.block_id, d.worker FROM "try" t '
                                'JOIN "pl_try" d ON d.run_id = t.run_id AND d.task_id = t.task_id AND d.try_id = t.try_id '
                                'WHERE t.run_id = ? AND t.task_id = ? AND t.try_id = 1', (run_id, tid))
    assert ran and ran[0][0] is not None and ran[0][1] == socket.gethostname() and ran[0][3]
    if executor == "htex":
        assert ran[0][2] == "0" and ":0:" in ran[0][3] or ":1:" in ran[0][3]   # block 0, worker rank 0 or 1
    assert "first try of r1" in tries[0][4]
    detail = open_store(url).query('SELECT try_id, final_state, error FROM "pl_try" WHERE run_id = ? AND task_id = ? '
                                   'ORDER BY try_id', (run_id, tid))
    assert detail[0][:2] == (0, "fail_retryable") and "first try of r1" in detail[0][2]
    assert detail[1][:2] == (1, "exec_done")
    # the failed task: its error type and text
    error = one(url, """SELECT d.error_type, d.error FROM "pl_try" d JOIN "task" t ON t.task_id = d.task_id
                        AND t.run_id = d.run_id WHERE d.run_id = ? AND t.task_func_name = 'always_fails'
                        AND d.final_state = 'failed'""", (run_id,))
    assert error == ("ValueError", "bad input 7")
    # the dependency chain is Parsl's task_depends
    depends = one(url, """SELECT task_depends FROM "task" WHERE run_id = ? AND task_func_name = 'add'""", (run_id,))
    assert sorted(depends[0].split(",")) == ["0", "1"]
    live = one(url, 'SELECT exit_status, events_written FROM "pl_run" WHERE run_id = ?', (run_id,))
    assert live[0] == "completed" and live[1] >= seen.total


def test_threads_every_task_and_state_change_is_stored(tmp_path):
    config = Config(executors=[ThreadPoolExecutor(label="threads", max_threads=4)], retries=1,
                    run_dir=str(tmp_path / "runinfo"), monitoring=MonitoringHub(workflow_name="mixed"))
    seen, url, run_id = run_mixed_workflow(config, tmp_path)
    assert url == f"sqlite:///{tmp_path / 'runinfo' / 'monitoring.db'}"   # Parsl's default place
    check_mixed_workflow(seen, url, run_id, "threads")
    assert one(url, 'SELECT workflow_name FROM "workflow"') == ("mixed",)


def test_htex_every_task_and_state_change_is_stored(tmp_path):
    url = f"sqlite:///{tmp_path / 'store' / 'mon.db'}"
    config = Config(executors=[local_htex()], retries=1, run_dir=str(tmp_path / "runinfo"), strategy="none",
                    monitoring=MonitoringHub(logging_endpoint=url))
    seen, stored_url, run_id = run_mixed_workflow(config, tmp_path)
    assert stored_url == url
    check_mixed_workflow(seen, url, run_id, "htex")


def test_two_runs_share_one_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'mon.db'}"
    runs = []
    for _ in range(2):
        config = Config(executors=[ThreadPoolExecutor(label="threads")], run_dir=str(tmp_path / "runinfo"),
                        monitoring=MonitoringHub(logging_endpoint=url))
        with parsl_lite.load(config) as dfk:
            assert [double(i).result() for i in range(5)] == [0, 2, 4, 6, 8]
        runs.append(dfk.run_id)
    assert len(set(runs)) == 2
    for run_id in runs:
        assert one(url, 'SELECT count(*) FROM "task" WHERE run_id = ?', (run_id,)) == (5,)


def test_postgresql_store_against_the_real_backend(tmp_path, pg_url):
    config = Config(executors=[ThreadPoolExecutor(label="threads", max_threads=4)], retries=1,
                    run_dir=str(tmp_path / "runinfo"), monitoring=MonitoringHub(logging_endpoint=pg_url))
    seen, url, run_id = run_mixed_workflow(config, tmp_path)
    assert url == pg_url
    check_mixed_workflow(seen, url, run_id, "threads")


@python_app
def busy(seconds):
    """Burn CPU for ``seconds`` (so a sample sees a busy worker)."""
    import time
    end = time.time() + seconds
    while time.time() < end:
        pass
    return seconds


def test_htex_pools_sample_their_workers_and_register_their_node(tmp_path):
    url = f"sqlite:///{tmp_path / 'mon.db'}"
    config = Config(executors=[local_htex(heartbeat_threshold=30)], run_dir=str(tmp_path / "runinfo"),
                    strategy="none", monitoring=MonitoringHub(logging_endpoint=url, resource_monitoring_interval=0.2))
    dfk = parsl_lite.load(config)
    store = open_store(url, read_only=True)
    try:
        running = [busy(1.0), busy(1.0)]
        assert [f.result() for f in running] == [1.0, 1.0]
        samples = 'SELECT count(DISTINCT worker), max(cpu_user) FROM "pl_worker_resource" WHERE run_id = ?'
        wait_for(lambda: (lambda r: r[0] == 2 and r[1] is not None and r[1] > 0.05)(store.query(samples, (dfk.run_id,))[0]),
                 30, "samples of both workers, one having used CPU")
    finally:
        dfk.cleanup()
        parsl_lite.clear()
    node = store.query('SELECT hostname, block_id, worker_count, cpu_count, total_memory, active FROM "node" '
                       'WHERE run_id = ?', (dfk.run_id,))
    assert len(node) == 1 and node[0][:3] == (socket.gethostname(), "0", 2) and node[0][4] > 0
    rows = store.query('SELECT executor_label, block_id, memory_resident FROM "pl_worker_resource" WHERE run_id = ?',
                       (dfk.run_id,))
    assert {r[:2] for r in rows} == {("htex", "0")} and all(r[2] > 0 for r in rows)
    blocks = store.query('SELECT executor_label, block_id, job_id, status FROM "block" WHERE run_id = ? '
                         'ORDER BY timestamp', (dfk.run_id,))   # from the job status poller
    assert [b[3] for b in blocks][:1] == ["PENDING"] and blocks[-1][3] == "SCALED_IN" and "RUNNING" in [b[3] for b in blocks]
    assert {b[:2] for b in blocks} == {("htex", "0")} and len({b[2] for b in blocks if b[2]}) == 1   # its job id
