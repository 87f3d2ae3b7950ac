"""``parsl-lite status`` and ``monitor`` against real monitored runs (a real kernel with a MonitoringHub)."""
from __future__ import annotations

import os
import sqlite3
import time

import pytest

from parsl_lite.monitoring import queries

from .monitoring_cli_helpers import cli, run_workflow, status_json


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def test_status_counts_match_the_tasks(tmp_path):
    facts = run_workflow(tmp_path, "ok", "threads", n=20)   # 20 squares + 1/-1, 1/0, 1/1: one failure
    assert facts["tasks"] == 23 and facts["failed"] == 1
    code, listing = status_json(tmp_path)
    assert code == 0   # listing every run: 0 whatever the runs did
    (run,) = listing["runs"]
    assert run["run_id"] == facts["run_id"] and run["state"] == "failed"
    assert run["counts"]["exec_done"] == 22 and run["counts"]["failed"] == 1
    assert sum(run["counts"].values()) == facts["tasks"]
    assert listing["store"] == str(tmp_path / "runinfo" / "monitoring.db")   # the default store, as Parsl's

    text = cli(tmp_path, "status")
    assert text.returncode == 0 and facts["run_id"] in text.stdout and "exec_done=22 failed=1" in text.stdout
    one = cli(tmp_path, "status", facts["run_id"][:8])   # a prefix names the run; it failed: exit 1
    assert one.returncode == 1, one.stderr
    assert "state     failed" in one.stdout and "ZeroDivisionError: division by zero" in one.stdout
    by_dir = cli(tmp_path, "status", "000", "--db", "runinfo/monitoring.db")   # its run dir, a plain path
    assert by_dir.returncode == 1 and facts["run_id"] in by_dir.stdout


def test_monitor_once_shows_counts_executor_and_failures_of_a_store_given_by_url(tmp_path):
    script_dir = tmp_path / "elsewhere"
    script_dir.mkdir()
    facts = run_workflow(script_dir, "ok", "threads", n=5)
    url = "sqlite:///" + str(script_dir / "runinfo" / "monitoring.db")
    shown = cli(tmp_path, "monitor", "--once", "--db", url)
    assert shown.returncode == 0, shown.stderr
    assert facts["run_id"] in shown.stdout and "exec_done 7" in shown.stdout and "failed 1" in shown.stdout
    assert "ZeroDivisionError: division by zero" in shown.stdout and "recent failures" in shown.stdout
    assert "threads" in shown.stdout   # the executor
    clean = run_workflow(tmp_path, "clean", "threads", n=5)
    code, listing = status_json(tmp_path, clean["run_id"])
    assert code == 0 and listing["runs"][0]["state"] == "completed"
    assert listing["runs"][0]["counts"]["exec_done"] == 5


def test_unknown_run_and_missing_store_get_clear_errors_and_exit_codes(tmp_path):
    empty = cli(tmp_path, "status")
    assert empty.returncode == 3
    assert str(tmp_path / "runinfo" / "monitoring.db") in empty.stderr and "--db" in empty.stderr
    facts = run_workflow(tmp_path, "ok", "threads", n=2)
    for command in (["status", "nosuchrun"], ["monitor", "--once", "nosuchrun"]):
        done = cli(tmp_path, *command)
        assert done.returncode == 2, done.stderr
        assert "'nosuchrun' is not a run" in done.stderr and facts["run_id"] in done.stderr
    bad = cli(tmp_path, "status", "--db", "mysql://localhost/x")
    assert bad.returncode == 3 and "--db" in bad.stderr
    (tmp_path / "notes.db").write_text("not a database, just text\n" * 100)
    text = cli(tmp_path, "monitor", "--once", "--db", "notes.db")
    assert text.returncode == 3 and "notes.db" in text.stderr and "not a database" in text.stderr
    other = sqlite3.connect(tmp_path / "other.db")   # a SQLite file of another program's tables
    other.execute("CREATE TABLE workflow (x INTEGER)")
    other.commit()
    other.close()
    foreign = cli(tmp_path, "status", "--db", "other.db")
    assert foreign.returncode == 3 and "cannot read the monitoring store" in foreign.stderr
    usage = cli(tmp_path, "monitor", "--interval", "0")
    assert usage.returncode == 2 and "--interval" in usage.stderr


@pytest.mark.parametrize("command", ["status", "monitor", "report"])
def test_help_on_every_command_documents_the_exit_codes(tmp_path, command):
    done = cli(tmp_path, command, "--help")
    assert done.returncode == 0
    assert "exit status:" in done.stdout and "--db" in done.stdout and "runinfo/monitoring.db" in done.stdout
    top = cli(tmp_path, "--help")
    assert command in top.stdout


def test_heartbeat_timestamps_and_elapsed_time_are_on_one_scale(tmp_path):
    facts = run_workflow(tmp_path, "ok", "threads", n=1)
    with queries.open_store(queries.resolve_store_url(None, str(tmp_path))) as db:
        run = db.find_run(None)
        assert run.run_id == facts["run_id"]
        assert 0 <= queries.naive_now() - run.began < 120 and run.completed >= run.began
        assert abs(run.began_raw_epoch() - time.time()) < 120
    assert os.path.basename(run.rundir) == "000"
