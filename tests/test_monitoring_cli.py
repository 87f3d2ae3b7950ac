"""``parsl-lite status`` and ``monitor`` against real monitored runs (a real kernel with a MonitoringHub)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from parsl_lite.monitoring import queries, views

from .conftest import wait_for
from .test_monitoring_cli_helpers import (cli, parse_output, run_workflow, start_workflow, status_json,
                                          wait_until_ready)


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


def test_status_and_monitor_read_the_store_while_a_run_writes_it(tmp_path):
    proc = start_workflow(tmp_path, "hold", "threads", n=40)
    try:
        store = tmp_path / "runinfo" / "monitoring.db"
        wait_for(store.exists, 30, "the run's store")
        db = wait_for(lambda: _open(store), 30, "a readable store with the run")
        reader = queries.SnapshotReader(db)   # what the live views keep: re-reads only unsettled tasks
        seen = []
        for _ in range(40):   # in-process readers: every query of the monitor, as fast as they go
            view = reader.read()
            seen.append(view.total)
        wait_for(lambda: reader.read().total > seen[0], 30, "more tasks written while reading")
        for command in (["status"], ["monitor", "--once"], ["status", "--json"]):
            done = cli(tmp_path, *command)
            assert done.returncode == 0, done.stderr   # no "database is locked", no error
        assert seen == sorted(seen)   # counts only grow
        (tmp_path / "stop").write_text("")
        out, err = proc.communicate(timeout=50)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
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
