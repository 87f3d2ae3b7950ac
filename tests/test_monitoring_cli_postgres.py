"""``status``, ``monitor`` and ``report`` on a PostgreSQL store (the real backend), as on SQLite."""
from __future__ import annotations

import json
import re
import signal
from urllib.parse import urlparse

import pytest

from .monitoring_cli_helpers import cli, run_workflow, start_workflow, status_json, wait_until_ready
from .test_monitoring_store import pg_url  # noqa: F401  (the fixture: a schema of its own per test)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "home"))


def test_status_monitor_and_report_read_a_postgresql_store(tmp_path, pg_url):
    facts = run_workflow(tmp_path, "ok", "threads", n=12, store_url=pg_url)
    code, listing = status_json(tmp_path, facts["run_id"], "--db", pg_url)
    (run,) = listing["runs"]
    assert code == 1 and run["state"] == "failed"
    assert run["counts"]["exec_done"] == 14 and run["counts"]["failed"] == 1
    password = urlparse(pg_url).password
    assert not password or f":{password}@" not in json.dumps(listing)   # the store named without its password
    shown = cli(tmp_path, "monitor", "--once", "--db", pg_url)
    assert shown.returncode == 0 and "ZeroDivisionError: division by zero" in shown.stdout, shown.stderr
    done = cli(tmp_path, "report", facts["run_id"], "--db", pg_url, "-o", "pg.html")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "pg.html").read_text()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
    assert len(data["stream"]["s"]) == facts["tasks"] and data["counts"]["exec_done"] == 14
    assert data["states_over_time"]["series"]["failed"][-1] == 1


def test_a_killed_run_in_postgresql_is_marked_ended_abnormally(tmp_path, pg_url):
    proc = start_workflow(tmp_path, "kill", "threads", n=5, store_url=pg_url)
    try:
        facts = wait_until_ready(proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    done = cli(tmp_path, "status", facts["run_id"], "--db", pg_url)
    assert done.returncode == 1 and "ended abnormally" in done.stdout, done.stdout + done.stderr
    code, listing = status_json(tmp_path, "--db", pg_url)
    assert listing["runs"][0]["state"] == "ended abnormally" and listing["runs"][0]["completed"] is not None
