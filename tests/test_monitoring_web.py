"""``parsl-lite monitor --web`` in headless Chromium (Debian's), against a real monitored workflow.

The workflow runs in its own process on a local htex; its tasks wait for
gate files the test creates, so the run moves on only when the test says.
The page must show the task counts the store holds (read from the DOM,
compared with a direct SQL count), follow the run live without a reload,
show the failures with their error, and the report once the run ended. A
screenshot is saved in the test's tmp dir (and in ``$PLITE_ARTIFACTS``).
"""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
GATED, FAILING = 6, 2          # tasks per gate; tasks that raise

WORKFLOW = textwrap.dedent('''
    """A monitored run whose tasks wait for the test's gate files."""
    import os
    import sys

    import parsl_lite
    from parsl_lite import python_app
    from parsl_lite.config import Config
    from parsl_lite.executors import HighThroughputExecutor
    from parsl_lite.monitoring import MonitoringHub

    store_url, gates, n_gated, n_failing = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


    @python_app
    def gated(i, gate):
        import os
        import time
        while not os.path.exists(gate):   # the test opens the gate
            time.sleep(0.05)
        return i


    @python_app
    def divide(i):
        if i == 1:   # an error text with markup: the page must show it, never run it
            raise ValueError("<img src=x onerror=window.__xss=1> is not a number")
        return i / 0


    config = Config(executors=[HighThroughputExecutor(label="htex_local", max_workers_per_node=4)],
                    monitoring=MonitoringHub(logging_endpoint=store_url, batching_interval=0.05,
                                             resource_monitoring_interval=1.0, heartbeat_period=1.0),
                    run_dir=os.path.join(gates, "runinfo"))
    with parsl_lite.load(config):
        failing = [divide(i) for i in range(n_failing)]   # first: they fail before the gated ones take the workers
        first = [gated(i, os.path.join(gates, "first")) for i in range(n_gated)]
        second = [gated(i, os.path.join(gates, "second")) for i in range(n_gated)]
        print("results", sum(f.result() for f in first + second), flush=True)
        print("failures", sum(1 for f in failing if f.exception() is not None), flush=True)
''')


class Workflow:
    """The monitored workflow process and its gates."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "wf"
        self.dir.mkdir()
        self.db = tmp_path / "monitoring.db"
        self.url = f"sqlite:///{self.db}"
        script = self.dir / "gated_workflow.py"
        script.write_text(WORKFLOW)
        self.log = open(tmp_path / "workflow.out", "w")
        self.proc = subprocess.Popen([sys.executable, str(script), self.url, str(self.dir), str(GATED),
                                      str(FAILING)], cwd=self.dir, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=_env(tmp_path), start_new_session=True)   # its pools in its group

    def kill(self) -> None:
        """SIGKILL to the workflow and the worker pools it started (its process group, ours)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def open_gate(self, name: str) -> None:
        (self.dir / name).touch()

    def run_id(self) -> Optional[str]:
        rows = sql(self.db, "SELECT run_id FROM workflow")
        return rows[0][0] if rows else None

    def counts(self) -> dict[str, int]:
        """Tasks by their last state, straight from Parsl's ``status`` table (ties: the row written last)."""
        rows = sql(self.db, "SELECT task_status_name, count(*) FROM (SELECT task_status_name, ROW_NUMBER() "
                            "OVER (PARTITION BY task_id ORDER BY timestamp DESC, rowid DESC) AS rn FROM status) "
                            "WHERE rn = 1 GROUP BY task_status_name")
        return dict(rows)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.open_gate("first")
            self.open_gate("second")
            wait_or_kill(self.proc, 20)
        self.log.close()


def wait_or_kill(proc: subprocess.Popen, timeout_s: float) -> int:
    """The exit status of a process we asked to end; killed if it has not within ``timeout_s``."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def sql(db: Path, query: str) -> list[tuple]:
    """A direct read of the store (its own read-only connection), empty until the tables exist."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(query).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PARSL_LITE_HOME=str(tmp_path / "home"))
    env.pop("PYTHONSTARTUP", None)
    return env


class WebServer:
    """``parsl-lite monitor RUN --web --port 0`` as a user starts it; its URL read from what it prints."""

    def __init__(self, tmp_path: Path, store_url: str, run: Optional[str] = None) -> None:
        self.out_path = tmp_path / "web.out"
        self.out = open(self.out_path, "w")
        args = [sys.executable, "-m", "parsl_lite.cli", "monitor", *([run] if run else []), "--db", store_url,
                "--web", "--port", "0", "--interval", "0.2"]
        self.proc = subprocess.Popen(args, cwd=tmp_path, stdout=self.out, stderr=subprocess.STDOUT,
                                     env=_env(tmp_path))
        self.url = wait_for(self._url, timeout_s=30, what="the web view's URL")

    def _url(self) -> Optional[str]:
        assert self.proc.poll() is None, f"monitor --web exited: {self.out_path.read_text()}"
        for line in self.out_path.read_text().splitlines():
            if "serving on " in line:
                return line.split("serving on ", 1)[1].split()[0]
        return None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            wait_or_kill(self.proc, 10)
        self.out.close()
        return self.proc.returncode


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def workflow(tmp_path: Path) -> Iterator[Workflow]:
    wf = Workflow(tmp_path)
    try:
        yield wf
    finally:
        wf.stop()


DOM_COUNTS = """() => Object.fromEntries([...document.querySelectorAll('#counts tr[data-state]')]
    .map(tr => [tr.dataset.state, Number(tr.querySelector('.n').textContent)]))"""


def dom_counts(page: Any) -> dict[str, int]:
    return {state: n for state, n in page.evaluate(DOM_COUNTS).items() if n}


def save_screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    artifacts = os.environ.get("PLITE_ARTIFACTS")
    if artifacts:
        os.makedirs(artifacts, exist_ok=True)
        shutil.copy(path, os.path.join(artifacts, name))
    return path


def _counts_match(page: Any, workflow: Workflow, **at_least: int) -> Optional[dict[str, int]]:
    """The store's counts, once the page shows exactly them and they reach ``at_least``."""
    assert workflow.proc.poll() in (None, 0), (workflow.dir.parent / "workflow.out").read_text()
    store = workflow.counts()
    if sum(store.values()) != 2 * GATED + FAILING or any(store.get(s, 0) < n for s, n in at_least.items()):
        return None
    return store if dom_counts(page) == store else None


def _pools_and_blocks_shown(page: Any, workflow: Workflow) -> Optional[str]:
    """The executors' text, once it has every worker pool (``node``) and each block's latest state (``block``)."""
    pools = sql(workflow.db, "SELECT uid FROM node")
    blocks = sql(workflow.db, "SELECT job_id, status FROM block b WHERE timestamp = (SELECT max(timestamp) "
                              "FROM block WHERE block_id = b.block_id)")
    text = page.inner_text("#executors")
    if not pools or not blocks or any(uid not in text for (uid,) in pools):
        return None
    return text if all(status in text and (job_id or "") in text for job_id, status in blocks) else None


def wait_counts(page: Any, workflow: Workflow, when: str, **at_least: int) -> dict[str, int]:
    try:
        return wait_for(lambda: _counts_match(page, workflow, **at_least), timeout_s=40,
                        what=f"the page's counts to equal the store's ({when})")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: page {dom_counts(page)}, store {workflow.counts()}") from None


def test_page_follows_a_running_workflow_live(tmp_path: Path, workflow: Workflow, browser: Any) -> None:
    wait_for(workflow.run_id, timeout_s=30, what="the run in the store")
    server = WebServer(tmp_path, workflow.url)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url)
        page.evaluate("() => { window.__same_page = true; }")   # a reload would lose it

        # gates shut: every task recorded, the page shows what the store holds
        store = wait_counts(page, workflow, "first gate shut", failed=FAILING)
        assert store.get("exec_done", 0) == 0
        assert page.inner_text("#run-id") == f"run {workflow.run_id()}"
        failures = wait_for(lambda: page.locator("#failures tbody tr").count() >= FAILING
                            and page.inner_text("#failures"), what="the failures with their error")
        assert "ZeroDivisionError: division by zero" in failures
        assert "ValueError: <img src=x onerror=window.__xss=1> is not a number" in failures
        assert page.locator("#failures img").count() == 0 and page.evaluate("() => window.__xss") is None

        workflow.open_gate("first")   # the first half finishes while the page stays open
        store = wait_counts(page, workflow, "the first half finished", exec_done=GATED)
        assert store["exec_done"] >= GATED and store.get("failed") == FAILING
        assert page.evaluate("() => window.__same_page === true"), "the page was reloaded"
        assert page.locator("#stream svg rect").count() >= GATED
        executors = wait_for(lambda: _pools_and_blocks_shown(page, workflow), what="the pools and blocks")
        assert "htex_local" in executors
        save_screenshot(page, tmp_path, "monitor_web_running.png")

        workflow.open_gate("second")
        assert workflow.proc.wait(timeout=40) == 0, (tmp_path / "workflow.out").read_text()
        wait_for(lambda: page.inner_text("#run-state") in ("failed", "completed") and
                 _counts_match(page, workflow, exec_done=2 * GATED), timeout_s=30, what="the run's end on the page")
        assert page.evaluate("() => window.__same_page === true"), "the page was reloaded"

        # the finished run: the report's plots, in the page
        frame = wait_for(lambda: page.frame_locator("#report-frame").locator("body").count() and
                         page.frame_locator("#report-frame"), timeout_s=40, what="the report frame")
        wait_for(lambda: frame.locator("svg, canvas, img").count() > 0, timeout_s=40, what="the report's plots")
        shot = save_screenshot(page, tmp_path, "monitor_web_finished.png")
        assert shot.stat().st_size > 10_000
        assert not errors, errors
    finally:
        status = server.stop()
    assert status == 0, server.out_path.read_text()   # Ctrl-C ends the server cleanly


def test_a_killed_run_shows_as_ended_abnormally(tmp_path: Path, workflow: Workflow, browser: Any) -> None:
    wait_for(workflow.run_id, timeout_s=30, what="the run in the store")
    server = WebServer(tmp_path, workflow.url, workflow.run_id())
    try:
        page = browser.new_page()
        page.goto(server.url)
        wait_counts(page, workflow, "before the kill", failed=FAILING)
        assert page.inner_text("#run-state") == "running"
        workflow.kill()
        # nothing more reaches the store: the page learns it from the run's process, gone
        wait_for(lambda: page.inner_text("#run-state") == "ended abnormally", timeout_s=30,
                 what="the page to say the run ended abnormally")
        assert dom_counts(page) == workflow.counts()
        save_screenshot(page, tmp_path, "monitor_web_killed.png")
    finally:
        status = server.stop()
    assert status == 0, server.out_path.read_text()


def test_the_page_applies_patches_as_the_server_makes_them(browser: Any) -> None:
    """The page's script and feed.py agree on RFC 7386 merge patches, for many random documents."""
    import random

    from parsl_lite.monitoring.web.feed import apply_patch, merge_patch
    from parsl_lite.monitoring.web.page import PAGE_HTML
    from tests.test_monitoring_web_feed import _drop_nulls, _random_doc
    rng = random.Random(5)
    cases = []
    for _ in range(500):
        old, new = _drop_nulls(_random_doc(rng)), _random_doc(rng)
        cases.append((old, merge_patch(old, new) or {}))
    page = browser.new_page()
    page.set_content(PAGE_HTML)   # no server: the stream fails to open, the functions are there
    got = page.evaluate("cases => cases.map(([doc, patch]) => applyPatch(doc, patch))", cases)
    assert got == [apply_patch(old, patch) for old, patch in cases]
