"""The web view's server against a real store written by a real monitored run (threads, in this process).

What a browser gets on ``/events`` (the whole document, then merge patches
of what changed, which rebuild exactly the server's document), no store read
while nobody watches, the report only once the run ended, bad arguments.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import socket
import subprocess
import textwrap
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from parsl_lite import python_app
from parsl_lite.monitoring import MonitoringHub
from parsl_lite.monitoring.web import serve
from parsl_lite.monitoring.web.feed import apply_patch
from parsl_lite.monitoring.web.server import WebMonitor
from parsl_lite.monitoring.web.source import StoreSource
from tests.conftest import wait_for
from tests.test_monitoring_parsl_visualize import get   # (status, body) of a GET
from tests.test_monitoring_store import pg_url  # noqa: F401  (the fixture: PostgreSQL, a schema per test)

GATE = threading.Event()
PARSL_PYTHON = Path(__file__).resolve().parents[1] / ".venv-parsl" / "bin" / "python"


@python_app
def gated(i: int) -> int:
    GATE.wait(30)
    return i


@python_app
def gated_by(event: threading.Event, i: int) -> int:
    event.wait(30)
    return i


@python_app
def double(i: int) -> int:
    return 2 * i


class ServerThread:
    """A WebMonitor on its own event loop in a thread (the test thread stays synchronous)."""

    def __init__(self, url: str, run: Optional[str] = None, interval_s: float = 0.05) -> None:
        self.source = StoreSource(url, run)
        self.monitor = WebMonitor(self.source, interval_s)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-web-loop", daemon=True)
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self.monitor.start(), self.loop).result(10)
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.monitor.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.source.close()


class EventStream:
    """``GET /events``, read event by event."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", "/events")
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type", "").startswith("text/event-stream")

    def next(self) -> tuple[str, Any]:
        event, data = "", ""
        while True:
            line = self.response.readline().decode()
            assert line, "the stream ended"
            if line == "\n" and event:
                return event, json.loads(data)
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: "):
                data += line[6:].strip()

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'monitoring.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store_url(request: Any, tmp_path: Path) -> str:
    """Both stores: a SQLite file, and the PostgreSQL backend (a schema of this test's, dropped after)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitoring.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def monitored(any_store_url: str, make_dfk: Any) -> Any:
    GATE.clear()
    yield make_dfk(monitoring=MonitoringHub(logging_endpoint=any_store_url, batching_interval=0.02,
                                            heartbeat_period=1.0))
    GATE.set()


@pytest.fixture
def server(monitored: Any) -> Iterator[ServerThread]:
    srv = ServerThread(monitored.monitoring.url, monitored.run_id)
    yield srv
    srv.stop()


def test_stream_sends_the_document_then_only_what_changed(monitored: Any, server: ServerThread) -> None:
    futures = [gated(i) for i in range(5)]
    stream = EventStream(server.port)
    try:
        kind, first = stream.next()
        assert kind == "snapshot" and first["doc"]["run"]["run_id"] == monitored.run_id
        doc, version = first["doc"], first["version"]
        GATE.set()
        assert [f.result(timeout=30) for f in futures] == list(range(5))
        patches = []
        while doc["counts"].get("exec_done") != 5:
            kind, message = stream.next()
            assert kind == "patch" and message["version"] == version + 1, (kind, message)
            patches.append(message["patch"])
            doc, version = apply_patch(doc, message["patch"]), message["version"]
        assert patches, "no patch came"
        for patch in patches:   # only what changed: never the run's id, nor the whole document
            assert "run_id" not in patch.get("run", {}) and "clock_offset_s" not in patch
            assert len(json.dumps(patch)) < len(json.dumps(doc))
        status, body = get(server.url + "snapshot")
        assert status == 200
        current = json.loads(body)
        if current["version"] == version:   # the server's document, rebuilt from the patches alone
            assert current["doc"] == doc
    finally:
        stream.close()


def test_a_patch_carries_only_the_tries_that_changed(monitored: Any, server: ServerThread) -> None:
    first, second = threading.Event(), threading.Event()
    try:
        a = [gated_by(first, i) for i in range(2)]
        b = [gated_by(second, i) for i in range(2)]
        stream = EventStream(server.port)
        kind, message = stream.next()
        doc, version = message["doc"], message["version"]
        keys = {f"{f.tid}.0" for f in a + b}
        while set(doc.get("stream", {})) != keys:      # all four tries started, none ended
            kind, message = stream.next()
            doc, version = apply_patch(doc, message["patch"]), message["version"]
        assert all(doc["stream"][k].get("end") is None for k in keys)
        first.set()
        assert [f.result(timeout=30) for f in a] == [0, 1]
        changed: set[str] = set()
        while any(doc["stream"][f"{f.tid}.0"].get("end") is None for f in a):
            kind, message = stream.next()
            changed |= set(message["patch"].get("stream", {}))
            doc = apply_patch(doc, message["patch"])
        assert changed == {f"{f.tid}.0" for f in a}    # b's tries, unchanged, were not sent again
        stream.close()
    finally:
        first.set()
        second.set()


def test_nobody_watching_means_no_store_reads(monitored: Any, server: ServerThread) -> None:
    assert [double(i).result(timeout=30) for i in range(20)] == [2 * i for i in range(20)]
    db = server.source._open()
    wait_for(lambda: db.state_counts(monitored.run_id).get("exec_done") == 20, what="the tasks in the store")
    assert server.monitor.reads == 0, "the store was read with no browser watching"
    server.monitor.keepalive_s = 0.1
    stream = EventStream(server.port)
    try:
        kind, message = stream.next()
        assert kind == "snapshot" and message["doc"]["counts"]["exec_done"] == 20
        assert server.monitor.reads >= 1
        assert server.monitor.watchers == 1
    finally:
        stream.close()
    # a closed tab is noticed (the keep-alive write fails) and the store is left alone again
    wait_for(lambda: server.monitor.watchers == 0, what="the closed stream to be dropped")
    reads = server.monitor.reads
    assert [double(i).result(timeout=30) for i in range(5)] == [2 * i for i in range(5)]
    wait_for(lambda: db.state_counts(monitored.run_id).get("exec_done") == 25, what="the new tasks in the store")
    assert server.monitor.reads == reads, "the store was read after the last browser left"


def test_report_comes_once_the_run_ended(make_dfk, store_url: str) -> None:
    dfk = make_dfk(monitoring=MonitoringHub(logging_endpoint=store_url, batching_interval=0.02))
    assert [double(i).result(timeout=30) for i in range(10)] == [2 * i for i in range(10)]
    srv = ServerThread(store_url, dfk.run_id)
    try:
        status, body = get(srv.url + "report")
        assert status == 409 and "not ended" in body
        dfk.cleanup()
        status, body = get(srv.url + "report")
        assert status == 200, body
        assert "<html" in body.lower() and dfk.run_id in body
        status, page = get(srv.url)
        assert status == 200 and 'id="counts"' in page
        assert "http://" not in page and "https://" not in page   # nothing fetched from elsewhere
    finally:
        srv.stop()


def test_without_a_run_id_the_view_follows_the_latest_run(make_dfk, store_url: str) -> None:
    first = make_dfk(monitoring=MonitoringHub(logging_endpoint=store_url, batching_interval=0.02))
    assert double(1).result(timeout=30) == 2
    srv = ServerThread(store_url)
    stream = EventStream(srv.port)
    try:
        kind, message = stream.next()
        assert message["doc"]["run"]["run_id"] == first.run_id
        first.cleanup()
        second = make_dfk(monitoring=MonitoringHub(logging_endpoint=store_url, batching_interval=0.02))
        assert double(2).result(timeout=30) == 4
        doc = message["doc"]
        while doc["run"]["run_id"] != second.run_id or doc["counts"]["exec_done"] != 1:
            kind, message = stream.next()
            assert kind == "patch"
            doc = apply_patch(doc, message["patch"])
        assert doc["total"] == 1
    finally:
        stream.close()
        srv.stop()


def test_bad_arguments_are_named_before_anything_listens(make_dfk, store_url: str, tmp_path: Path,
                                                         capsys: Any) -> None:
    from parsl_lite.monitoring.queries import StoreUnreadable, UnknownRun
    dfk = make_dfk(monitoring=MonitoringHub(logging_endpoint=store_url))
    assert double(1).result(timeout=30) == 2
    with pytest.raises(UnknownRun, match="no-such-run"):
        serve(store_url, "no-such-run")
    with pytest.raises(StoreUnreadable, match="missing.db"):
        serve(f"sqlite:///{tmp_path / 'missing.db'}")
    with pytest.raises(ValueError, match="port"):
        serve(store_url, port=70000)
    with pytest.raises(ValueError, match="interval_s"):
        serve(store_url, interval_s=0)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        out = tmp_path / "out.txt"
        with open(out, "w") as f:
            assert serve(store_url, dfk.run_id, port=taken.getsockname()[1], out=f) == 2
        assert "serving" not in out.read_text()
        assert f"cannot listen on 127.0.0.1:{taken.getsockname()[1]}" in capsys.readouterr().err
    finally:
        taken.close()


PARSL_WORKFLOW = textwrap.dedent('''
    import sys

    import parsl
    from parsl.config import Config
    from parsl.executors import ThreadPoolExecutor
    from parsl.monitoring.monitoring import MonitoringHub


    @parsl.python_app
    def square(x):
        return x * x


    @parsl.python_app
    def lookup():
        raise KeyError("no such key")


    if __name__ == "__main__":
        config = Config(executors=[ThreadPoolExecutor(label="parsl_threads", max_threads=2)],
                        monitoring=MonitoringHub(logging_endpoint=sys.argv[1]), run_dir=sys.argv[2])
        with parsl.load(config):
            futures = [square(i) for i in range(8)] + [lookup()]
            for f in futures:
                f.exception()
''')


def test_a_store_written_by_parsl_itself(tmp_path: Path) -> None:
    """Parsl's own monitoring database (Parsl 2026.10.26 in its venv) opens in the web view unchanged."""
    url = f"sqlite:///{tmp_path / 'parsl.db'}"
    script = tmp_path / "parsl_workflow.py"
    script.write_text(PARSL_WORKFLOW)
    done = subprocess.run([str(PARSL_PYTHON), str(script), url, str(tmp_path / "runinfo")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr[-3000:]
    srv = ServerThread(url)
    try:
        status, body = get(srv.url + "snapshot")
        assert status == 200
        doc = json.loads(body)["doc"]
        assert doc["counts"]["exec_done"] == 8 and doc["counts"]["failed"] == 1 and doc["total"] == 9
        assert doc["run"]["state"] == "failed"
        assert [e["label"] for e in doc["executors"]] == ["parsl_threads"]
        assert "no such key" in doc["failures"][0]["error"]
        status, report = get(srv.url + "report")
        assert status == 200 and "parsl_threads" in report
    finally:
        srv.stop()
