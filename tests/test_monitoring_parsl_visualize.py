"""Parsl's own ``parsl-visualize`` (Parsl 2026.10.26, its own venv, a subprocess) reads our store unchanged."""
from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import parsl_lite
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.executors import ThreadPoolExecutor
from parsl_lite.monitoring import MonitoringHub

from .conftest import wait_for

VISUALIZE = Path(__file__).resolve().parents[1] / ".venv-parsl" / "bin" / "parsl-visualize"


@python_app
def square(x):
    return x * x


@python_app
def total(*values):
    return sum(values)


@python_app
def broken():
    raise RuntimeError("this one fails")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def answers(url: str):
    try:
        return get(url)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@pytest.fixture
def visualize():
    """Start ``parsl-visualize DB_URL --port P`` and stop it (by its pid) after the test."""
    started = []

    def start(db_url: str, log: Path) -> str:
        assert VISUALIZE.exists(), f"{VISUALIZE} is missing: the test environment installs Parsl's visualization"
        port = free_port()
        handle = open(log, "w")
        proc = subprocess.Popen([str(VISUALIZE), db_url, "--port", str(port)], stdout=handle,
                                stderr=subprocess.STDOUT)
        started.append((proc, handle))
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: proc.poll() is not None or answers(base + "/"), 40, "parsl-visualize to answer")
        assert proc.poll() is None, f"parsl-visualize exited: {log.read_text()[-2000:]}"
        return base

    yield start
    for proc, handle in started:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        handle.close()


def test_parsl_visualize_lists_our_run_and_opens_its_pages(tmp_path, visualize):
    db = tmp_path / "monitoring.db"
    config = Config(executors=[ThreadPoolExecutor(label="threads", max_threads=2)], run_dir=str(tmp_path / "runinfo"),
                    monitoring=MonitoringHub(logging_endpoint=f"sqlite:///{db}", workflow_name="viz-check"))
    with parsl_lite.load(config) as dfk:
        squares = [square(i) for i in range(10)]
        assert total(*squares).result() == 285
        with pytest.raises(RuntimeError):
            broken().result()
    run_id = dfk.run_id
    base = visualize(f"sqlite:///{db}", tmp_path / "visualize.log")
    status, page = get(base + "/")
    assert status == 200 and run_id in page and "viz-check" in page and "Completed" in page
    status, page = get(f"{base}/workflow/{run_id}/")
    assert status == 200, page[-3000:]
    assert "viz-check" in page and dfk.run_dir in page and "square" in page   # its name, run dir and apps
    assert "cannot be generated" not in page, page[-3000:]   # both plots drew from our rows
    # (its DAG pages need Graphviz's ``dot`` program, which this machine lacks: they fail for Parsl's own runs too)
    for path in (f"/workflow/{run_id}/task/", f"/workflow/{run_id}/app/square", f"/workflow/{run_id}/task/0",
                 f"/workflow/{run_id}/resource_usage"):
        status, page = get(base + path)
        assert status == 200, (path, page[-3000:])
        assert "could not be found" not in page, path
