"""Monitoring's faults: a store that cannot be written, reading while a run writes, SIGKILL, 100,000 tasks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import parsl_lite
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.errors import ConfigurationError
from parsl_lite.executors import ThreadPoolExecutor
from parsl_lite.monitoring import MonitoringHub
from parsl_lite.monitoring.store import open_store, run_liveness

from .conftest import wait_for
from .htex_helpers import local_htex


@python_app
def noop():
    return None


def threads_config(tmp_path, url=None, **hub) -> Config:
    return Config(executors=[ThreadPoolExecutor(label="threads", max_threads=4)], run_dir=str(tmp_path / "runinfo"),
                  monitoring=MonitoringHub(logging_endpoint=url, **hub))


def test_a_store_path_that_cannot_be_written_fails_the_load_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / "monitoring.db"
    with pytest.raises(ConfigurationError) as info:
        parsl_lite.load(threads_config(tmp_path, f"sqlite:///{path}"))
    assert "logging_endpoint" in str(info.value) and str(path) in str(info.value)


def test_a_read_only_store_file_fails_the_load_naming_it(tmp_path):
    path = tmp_path / "ro.db"
    path.write_bytes(b"")
    os.chmod(path, 0o444)
    if os.geteuid() == 0:   # root writes any file: make it a database SQLite cannot open instead
        os.chmod(path, 0o644)
        path.write_bytes(b"this is not a SQLite database, it is text" * 100)
    with pytest.raises(ConfigurationError) as info:
        parsl_lite.load(threads_config(tmp_path, f"sqlite:///{path}"))
    assert str(path) in str(info.value)


def test_a_bad_store_url_is_refused_when_the_hub_is_built():
    with pytest.raises(ConfigurationError, match="logging_endpoint"):
        MonitoringHub(logging_endpoint="mysql://localhost/db")
    with pytest.raises(ConfigurationError, match="resource_monitoring_interval"):
        MonitoringHub(resource_monitoring_interval=0)


def test_the_store_read_during_a_run_never_fails_and_loses_nothing(tmp_path):
    """A reader hammers the store (as ``status`` and ``monitor`` do) while 5,000 tasks are written."""
    url = f"sqlite:///{tmp_path / 'mon.db'}"
    stop, errors, reads = threading.Event(), [], [0]
    dfk = parsl_lite.load(threads_config(tmp_path, url, batching_interval=0.01))

    def reader() -> None:
        store = open_store(url, read_only=True)
        while not stop.is_set():
            try:
                store.query('SELECT task_status_name, count(*) FROM "status" GROUP BY task_status_name')
                store.query('SELECT count(*) FROM "task" WHERE run_id = ?', (dfk.run_id,))
                reads[0] += 1
            except Exception as exc:   # "database is locked" would land here
                errors.append(repr(exc))
        store.close()

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        futures = [noop() for _ in range(5000)]
        for f in futures:
            f.result()
        wait_for(lambda: reads[0] > 10, 20, "the readers to read")
    finally:
        dfk.cleanup()
        parsl_lite.clear()
        stop.set()
        for t in readers:
            t.join()
    assert errors == []
    store = open_store(url)
    assert store.query('SELECT count(*) FROM "status" WHERE run_id = ?', (dfk.run_id,)) == [(15000,)]
    assert store.query('SELECT count(*) FROM "task" WHERE run_id = ?', (dfk.run_id,)) == [(5000,)]


KILLED_SCRIPT = textwrap.dedent("""
    import sys, time
    import parsl_lite
    from parsl_lite import python_app
    from parsl_lite.config import Config
    from parsl_lite.executors import ThreadPoolExecutor
    from parsl_lite.monitoring import MonitoringHub

    @python_app
    def noop():
        return None

    config = Config(executors=[ThreadPoolExecutor(label="threads")], run_dir=sys.argv[1],
                    monitoring=MonitoringHub(logging_endpoint=sys.argv[2]))
    dfk = parsl_lite.load(config)
    for f in [noop() for _ in range(200)]:
        f.result()
    print(dfk.run_id, flush=True)
    time.sleep(600)
""")


def test_a_run_killed_with_sigkill_leaves_a_readable_store_marked_ended_abnormally(tmp_path):
    url = f"sqlite:///{tmp_path / 'mon.db'}"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "runinfo"), url], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id, "the script did not start its run"
        store = open_store(url, read_only=True)
        row_sql = ('SELECT pid, pid_create_time, hostname, exit_status, last_heartbeat, heartbeat_period '
                   'FROM "pl_run" WHERE run_id = ?')
        assert run_liveness(*store.query(row_sql, (run_id,))[0], now=time.time()) == "running"
        wait_for(lambda: store.query('SELECT count(*) FROM "status" WHERE run_id = ?', (run_id,)) == [(600,)], 20,
                 "the 200 tasks' states in the store")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    store = open_store(url, read_only=True)   # readable after the kill: WAL, every batch a transaction
    assert store.query('SELECT count(*) FROM "task" WHERE run_id = ?', (run_id,)) == [(200,)]
    assert store.query('SELECT time_completed FROM "workflow" WHERE run_id = ?', (run_id,)) == [(None,)]
    assert run_liveness(*store.query(row_sql, (run_id,))[0], now=time.time()) == "ended abnormally"


def test_heartbeat_liveness_for_a_run_on_another_host():
    now = time.time()
    from parsl_lite.monitoring.schema import to_db_time
    assert run_liveness(1, 0.0, "elsewhere", "running", to_db_time(now - 10), 30.0, now) == "running"
    assert run_liveness(1, 0.0, "elsewhere", "running", to_db_time(now - 100), 30.0, now) == "ended abnormally"
    assert run_liveness(1, 0.0, "elsewhere", "completed", to_db_time(now - 1000), 30.0, now) == "completed"


def test_100000_htex_tasks_lose_no_event(tmp_path):
    url = f"sqlite:///{tmp_path / 'mon.db'}"
    config = Config(executors=[local_htex(max_workers_per_node=2)], run_dir=str(tmp_path / "runinfo"),
                    strategy="none", monitoring=MonitoringHub(logging_endpoint=url))
    dfk = parsl_lite.load(config)
    try:
        futures = [noop() for _ in range(100_000)]
        for f in futures:
            f.result()
    finally:
        dfk.cleanup()
        parsl_lite.clear()
    store = open_store(url, read_only=True)
    run_id = dfk.run_id
    assert store.query('SELECT count(*) FROM "task" WHERE run_id = ?', (run_id,)) == [(100_000,)]
    assert store.query('SELECT count(*) FROM "try" WHERE run_id = ? AND task_try_time_returned IS NOT NULL',
                       (run_id,)) == [(100_000,)]
    assert store.query('SELECT task_status_name, count(*) FROM "status" WHERE run_id = ? GROUP BY task_status_name '
                       'ORDER BY task_status_name', (run_id,)) == [
        ("exec_done", 100_000), ("launched", 100_000), ("pending", 100_000)]
    assert store.query('SELECT tasks_completed_count, tasks_failed_count FROM "workflow" WHERE run_id = ?',
                       (run_id,)) == [(100_000, 0)]
