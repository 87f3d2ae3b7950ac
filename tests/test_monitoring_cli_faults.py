"""The monitoring CLI's faults: reading the store while a run writes it, a run killed with SIGKILL."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from parsl_lite.monitoring import queries, views

from .conftest import wait_for
from .monitoring_cli_helpers import cli, env, parse_output, start_workflow, status_json, wait_until_ready


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def test_status_and_monitor_read_the_store_while_a_run_writes_it(tmp_path):
    proc = start_workflow(tmp_path, "hold", "threads", n=40)
    try:
        store = tmp_path / "runinfo" / "monitoring.db"
        wait_for(store.exists, 30, "the run's store")
        db = wait_for(lambda: _open(store), 30, "a readable store with the run")
        live = subprocess.Popen([sys.executable, "-m", "parsl_lite.cli", "monitor", "--interval", "0.1"],
                                cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        reader = queries.SnapshotReader(db)   # what the live views keep: re-reads only unsettled tasks
        seen = []
        for _ in range(40):   # in-process readers: every query of the monitor, as fast as they go
            view = reader.read()
            seen.append(view.total)
        wait_for(lambda: reader.read().total > seen[0], 30, "more tasks written while reading")
        for command in (["status"], ["monitor", "--once"], ["status", "--json"], ["report", view.run.run_id]):
            done = cli(tmp_path, *command)
            assert done.returncode == 0, done.stderr   # no "database is locked", no error
        assert seen == sorted(seen)   # counts only grow
        page = (tmp_path / "report.html").read_text()   # a report of the run so far
        data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
        assert data["run"]["state"] == "running" and data["stream"]["s"] and data["run"]["completed"] is None
        assert live.poll() is None, live.communicate()   # the live monitor kept redrawing
        live.send_signal(signal.SIGINT)   # Ctrl-C
        shown, errors = live.communicate(timeout=30)
        assert live.returncode == 0 and view.run.run_id in shown, errors
        (tmp_path / "stop").write_text("")
        out, err = proc.communicate(timeout=50)
        assert proc.returncode == 0, err
    finally:
        for child in (proc, locals().get("live")):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
    facts = parse_output(out)
    code, listing = status_json(tmp_path, facts["run_id"])
    (run,) = listing["runs"]
    assert sum(run["counts"].values()) == facts["tasks"]   # every task's last state is there: no event lost
    assert run["counts"]["failed"] == facts["failed"] and run["state"] == "failed" and code == 1
    final = reader.read()   # the incremental reader ends where a fresh read does
    assert final.counts == queries.read_snapshot(db, facts["run_id"]).counts == views.ordered_counts(run["counts"])
    assert final.executors[0].tasks == facts["tasks"] and len(final.failures) == min(views.FAILURE_ROWS, facts["failed"])
    db.close()


def _open(path):
    try:
        db = queries.open_store("sqlite:///" + str(path))
    except queries.StoreUnreadable:
        return None
    if not db.runs():
        db.close()
        return None
    return db


def test_a_run_killed_with_sigkill_shows_as_ended_abnormally(tmp_path):
    proc = start_workflow(tmp_path, "kill", "threads", n=10)
    try:
        facts = wait_until_ready(proc)
        db = wait_for(lambda: _open(tmp_path / "runinfo" / "monitoring.db"), 20, "the store")
        wait_for(lambda: sum(db.state_counts(facts["run_id"]).values()) == facts["tasks"], 20, "its tasks stored")
        code, listing = status_json(tmp_path, facts["run_id"])
        assert listing["runs"][0]["state"] == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    done = cli(tmp_path, "status", facts["run_id"])
    assert done.returncode == 1 and "state     ended abnormally" in done.stdout, done.stdout + done.stderr
    # marked in the store at that status: Parsl's readers see it ended, ours read it back without the pid
    row = db.query("SELECT exit_status FROM pl_run WHERE run_id = ?", (facts["run_id"],))
    assert row == [(queries.ENDED_ABNORMALLY,)]
    (run,) = db.runs()
    assert run.completed is not None and run.state() == queries.ENDED_ABNORMALLY
    code, listing = status_json(tmp_path)
    assert listing["runs"][0]["state"] == "ended abnormally"
    assert sum(listing["runs"][0]["counts"].values()) == facts["tasks"]   # the store stays readable
    db.close()
