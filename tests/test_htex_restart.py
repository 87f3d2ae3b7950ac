"""A lost interchange is replaced: its tasks fail with InterchangeLost (and retry), later apps run.

Real processes throughout: the interchange is SIGKILLed (found among our
children with psutil), pools and workers run on a LocalProvider.
"""
from __future__ import annotations

import shutil

import psutil
import pytest

from parsl_lite import python_app
from parsl_lite.executors.htex.errors import InterchangeLost
from parsl_lite.executors.htex.restart import RestartBudget

from .conftest import wait_for
from .htex_helpers import interchange_processes, local_htex


@python_app
def double(x):
    return 2 * x


@python_app
def count_runs(path, seconds):
    """Append a line when it starts; return how many runs started (a re-run returns 2)."""
    import time
    with open(path, "a") as runs:
        runs.write("run\n")
    time.sleep(seconds)
    with open(path) as runs:
        return len(runs.readlines())


def our_htex_processes() -> list[psutil.Process]:
    """Interchange, pools and workers among our descendants (zombies skipped)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and "parsl_lite.executors.htex" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def gone(processes: list[psutil.Process]) -> bool:
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def kill_interchange_while_running(path) -> tuple[psutil.Process, list[psutil.Process]]:
    """Wait until the task runs, SIGKILL the interchange; return it and every old process."""
    wait_for(path.exists, what="the task to start on a worker")
    old = our_htex_processes()
    [interchange] = interchange_processes()
    assert len(old) >= 3, "interchange, pool and workers"
    interchange.kill()
    return interchange, old


def new_interchange(old: psutil.Process) -> psutil.Process:
    return wait_for(lambda: [p for p in interchange_processes() if p.pid != old.pid], what="a new interchange")[0]


# ---------------------------------------------------------------- the pure rule


def test_restart_budget_allows_so_many_within_the_window():
    budget = RestartBudget(max_restarts=2, window_s=60.0)
    assert budget.try_restart(0.0) is None
    assert budget.try_restart(10.0) is None
    refusal = budget.try_restart(20.0)
    assert refusal is not None and "2 times within 60 s" in refusal and "giving up" in refusal
    assert budget.try_restart(60.0) is None  # the first restart left the window
    assert "disabled" in RestartBudget(0).try_restart(0.0)


# ---------------------------------------------------------------- against real processes


def test_with_retries_the_lost_task_runs_again_on_new_blocks(make_dfk, tmp_path):
    make_dfk(executors=[local_htex()], retries=1, strategy="none")
    path = tmp_path / "runs"
    fut = count_runs(str(path), 3)
    interchange, old = kill_interchange_while_running(path)
    submitted_while_restarting = [double(i) for i in range(10)]
    assert fut.result(timeout=45) == 2  # run twice: lost with the interchange, then re-run
    assert [f.result(timeout=20) for f in submitted_while_restarting] == [2 * i for i in range(10)]
    assert double(21).result(timeout=20) == 42
    new_interchange(interchange)
    wait_for(lambda: gone(old), what="the old interchange, pools and workers to be gone")


def test_a_silent_interchange_is_replaced_too(make_dfk, tmp_path):
    """SIGSTOP: alive but mute. Past heartbeat_threshold (3 s here) it is lost, killed and replaced."""
    make_dfk(executors=[local_htex()], retries=1, strategy="none")
    path = tmp_path / "runs"
    fut = count_runs(str(path), 1)
    wait_for(path.exists, what="the task to start on a worker")
    old = our_htex_processes()
    [interchange] = interchange_processes()
    interchange.suspend()
    try:
        assert fut.result(timeout=45) == 2
        assert double(3).result(timeout=20) == 6
    finally:
        try:
            interchange.resume()
        except psutil.NoSuchProcess:
            pass
    new_interchange(interchange)
    wait_for(lambda: gone(old), what="the old interchange, pools and workers to be gone")


def test_without_retries_the_task_fails_with_interchange_lost_and_later_apps_run(make_dfk, tmp_path):
    make_dfk(executors=[local_htex()], strategy="none")
    path = tmp_path / "runs"
    fut = count_runs(str(path), 30)
    interchange, old = kill_interchange_while_running(path)
    with pytest.raises(InterchangeLost, match="exited with code -9"):
        fut.result(timeout=30)
    assert [double(i).result(timeout=30) for i in range(5)] == [0, 2, 4, 6, 8]
    new_interchange(interchange)
    wait_for(lambda: gone(old), what="the old interchange, pools and workers to be gone")


def test_a_crash_loop_ends_with_a_clear_error(make_dfk, tmp_path):
    make_dfk(executors=[local_htex(interchange_restarts=1)], strategy="none")
    assert double(1).result(timeout=30) == 2
    [first] = interchange_processes()
    first.kill()
    second = new_interchange(first)
    assert double(2).result(timeout=30) == 4
    old = our_htex_processes()
    second.kill()
    with pytest.raises(InterchangeLost, match="already restarted 1 times .* giving up"):
        double(3).result(timeout=30)
    wait_for(lambda: gone(old), what="every process of the executor to be gone")


def test_a_failed_restart_breaks_the_executor_naming_why(make_dfk, tmp_path):
    dfk = make_dfk(executors=[local_htex()], strategy="none")
    executor = dfk.executors["htex"]
    assert double(1).result(timeout=30) == 2
    old = our_htex_processes()
    shutil.rmtree(executor.cert_dir)  # the new interchange cannot load its keys
    [interchange] = interchange_processes()
    interchange.kill()

    def refused() -> BaseException | None:  # an app submitted before the loss is noticed fails as lost
        exc = double(2).exception(timeout=30)
        return exc if "could not be started" in str(exc) else None

    exc = wait_for(refused, what="apps to be refused with the restart's failure")
    assert isinstance(exc, InterchangeLost) and "exited with code -9" in str(exc)
    wait_for(lambda: gone(old), what="every process of the executor to be gone")
