"""Faults on the pool and worker side of htex, against real processes: deaths, exits, drains."""
from __future__ import annotations

import functools
import os
import shlex
import signal
import subprocess
import sys
import time

import psutil
import pytest

from parsl_lite import python_app
from parsl_lite.executors.htex.errors import WorkerLost
from parsl_lite.providers import LocalProvider

from .conftest import wait_for
from .htex_helpers import local_htex, mark_then_sleep

# pools may drain and be replaced: two blocks; faults here are seen by the sockets, not the heartbeats
htex = functools.partial(local_htex, max_blocks=2, heartbeat_threshold=10, encrypted=False)


@python_app
def after_marker(marker, value):
    """Returns ``value`` once ``marker`` exists, so a test decides when the batch ahead of it moves."""
    import os
    import time
    while not os.path.exists(marker):
        time.sleep(0.01)
    return value


@python_app
def exit_after_marker(marker, how):
    import os
    import sys
    import time
    while not os.path.exists(marker):
        time.sleep(0.01)
    if how == "os._exit":
        os._exit(1)
    sys.exit(3)


@python_app
def worker_pid():
    import os
    return os.getpid()


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pools_and_workers() -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            line = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "htex.worker_pool" in line or "htex.worker " in line + " ":
            found.append(proc)
    return found


def start_marker(tmp_path, seconds=60):
    """A task running on a worker when this returns (it wrote its marker): (future, worker process)."""
    marker = tmp_path / f"running-{os.urandom(4).hex()}"
    fut = mark_then_sleep(str(marker), seconds)
    wait_for(lambda: marker.exists() and marker.read_text(), 30, "the task to start on a worker")
    return fut, psutil.Process(int(marker.read_text()))


def test_killing_the_interchange_takes_every_pool_and_worker_with_it(make_dfk, tmp_path):
    # heartbeat_threshold far beyond the wait below: the dropped connection must be what the pool sees. The
    # pool is started here, not by the provider, so that the executor cannot cancel it: it must go by itself.
    executor = htex(heartbeat_threshold=120, provider=LocalProvider(init_blocks=0, min_blocks=0, max_blocks=1))
    make_dfk(executors=[executor], strategy="none", strategy_period=0.2)
    pool = subprocess.Popen(executor._launch_command("outside"), shell=True, start_new_session=True)
    try:
        fut, busy_worker = start_marker(tmp_path)
        ours = [psutil.Process(pool.pid), *psutil.Process(pool.pid).children(recursive=True)]
        assert busy_worker in ours and len(ours) >= 3  # the shell or the pool, the pool, its two workers
        os.kill(executor._client.process.pid, signal.SIGKILL)
        wait_for(lambda: not any(alive(p) for p in ours), 15, "the pool and its workers to exit")
        with pytest.raises(Exception):
            fut.result(timeout=30)
    finally:
        if pool.poll() is None:
            os.killpg(pool.pid, signal.SIGKILL)
        pool.wait()
    log = (tmp_path / "runinfo").rglob("block-outside/worker_pool.log")
    assert "lost the connection to the interchange" in next(log).read_text()


def test_killing_the_interchange_leaves_no_pool_or_worker_of_the_providers_blocks(make_dfk, tmp_path):
    executor = htex(heartbeat_threshold=120)
    make_dfk(executors=[executor], strategy="none", strategy_period=0.2)
    fut, busy_worker = start_marker(tmp_path)
    ours = pools_and_workers()
    assert busy_worker in ours and any("worker_pool" in " ".join(p.cmdline()) for p in ours)
    os.kill(executor._client.process.pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(p) for p in ours), 15, "every pool and worker of the dead interchange to exit")
    with pytest.raises(Exception):
        fut.result(timeout=30)


def test_a_worker_dies_with_its_pool_even_in_the_middle_of_a_task(make_dfk, tmp_path):
    # the pool is started here, not by the provider, which would kill its job's leftovers itself
    executor = htex(max_workers_per_node=1, provider=LocalProvider(init_blocks=0, min_blocks=0, max_blocks=1))
    make_dfk(executors=[executor], strategy="none", strategy_period=0.2)
    command = shlex.split(executor._launch_command("outside"))
    pool_started = time.time()
    pool = subprocess.Popen(command, start_new_session=True)
    try:
        fut, busy_worker = start_marker(tmp_path)
        assert busy_worker.ppid() == pool.pid
        pool.kill()  # no chance to stop its workers: the parent-death signal must
        wait_for(lambda: not alive(busy_worker), 10, "the worker to die with its pool")
        if os.path.isdir("/dev/shm"):  # its slot file was unlinked at once: nothing left behind
            assert not [n for n in os.listdir("/dev/shm") if n.startswith("parsl_lite-slots-")
                        and os.stat(os.path.join("/dev/shm", n)).st_uid == os.getuid()
                        and os.stat(os.path.join("/dev/shm", n)).st_mtime > pool_started]
    finally:
        pool.kill()
        pool.wait()


def test_one_dead_worker_loses_only_the_task_it_was_running(make_dfk, tmp_path):
    executor = htex(prefetch_capacity=7)  # each worker holds up to 8 tasks: a batch waits behind the killer
    make_dfk(executors=[executor], strategy="none", strategy_period=0.2)
    assert worker_pid().result(timeout=30)
    wait_for(lambda: executor.connected_workers == 2, 30, "two workers")
    go = tmp_path / "go"
    killer = exit_after_marker(str(go), "os._exit")
    others = [after_marker(str(go), i) for i in range(12)]
    # every task is on a worker before any moves: 8 on one, the rest (and the killer) on the other
    wait_for(lambda: (lambda s: s.outstanding == 13 and s.pending == 0)(executor._status(max_age_s=0.0)), 30,
             "all tasks dispatched")
    busy = {m.manager_id: m.tasks for m in executor._status(max_age_s=0.0).managers}
    assert sum(busy.values()) == 13
    go.write_text("")
    with pytest.raises(WorkerLost, match="exit code 1"):
        killer.result(timeout=30)
    assert [f.result(timeout=30) for f in others] == list(range(12))  # they went back to the queue and ran


def test_sys_exit_in_an_app_is_the_death_of_its_worker(make_dfk, tmp_path):
    executor = htex(max_workers_per_node=1)
    make_dfk(executors=[executor], strategy="none", strategy_period=0.2)
    first = worker_pid().result(timeout=30)
    go = tmp_path / "go"
    go.write_text("")
    with pytest.raises(WorkerLost, match=r"exit code 3 .*sys\.exit\(3\)") as info:
        exit_after_marker(str(go), "sys.exit").result(timeout=30)
    assert info.value.exitcode_or_signal_text == 3
    assert worker_pid().result(timeout=30) != first  # the pool replaced it


@python_app
def mark_then_wait_for(marker, go, value):
    import os
    import time
    with open(marker, "w") as handle:
        handle.write(str(os.getpid()))
    while not os.path.exists(go):
        time.sleep(0.01)
    return value


def test_a_draining_pool_finishes_its_task_then_exits_and_a_new_block_takes_over(make_dfk, tmp_path):
    executor = htex(max_workers_per_node=1, drain_period=5)
    make_dfk(executors=[executor], strategy="none", strategy_period=0.2)
    marker, go = tmp_path / "running", tmp_path / "go"
    fut = mark_then_wait_for(str(marker), str(go), "done")
    wait_for(lambda: marker.exists() and marker.read_text(), 30, "the task to run")
    pool = psutil.Process(int(marker.read_text())).parent()
    log = os.path.join(executor.run_dir, "interchange.log")
    wait_for(lambda: "is draining" in open(log).read(), 30, "the pool to drain")
    assert alive(pool) and not fut.done()  # draining: it still holds its task
    waiting = worker_pid()  # submitted while the only pool drains: waits for a new block
    go.write_text("")
    assert fut.result(timeout=30) == "done"  # finished, not lost
    wait_for(lambda: not alive(pool), 20, "the drained pool to exit")
    wait_for(lambda: not executor.blocks, 20, "its block's job to end")
    assert "drained: its drain_period is over" in open(log).read() and not waiting.done()
    executor.drain_period = None  # the replacement need not drain during the test
    later = [worker_pid() for _ in range(4)]
    executor.scale_out(1)
    assert all(f.result(timeout=30) for f in [waiting, *later])


SCRIPT = """
import sys, time
import parsl_lite
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.executors.htex.executor import HighThroughputExecutor
from parsl_lite.providers import LocalProvider

@python_app
def sleep_long(marker):
    import time
    open(marker, "w").close()
    time.sleep(120)

executor = HighThroughputExecutor(label="htex", max_workers_per_node=1, heartbeat_period=1, heartbeat_threshold=120,
                                  encrypted=False, provider=LocalProvider(init_blocks=1, max_blocks=1))
parsl_lite.load(Config(executors=[executor], run_dir=sys.argv[1], strategy="none"))
sleep_long(sys.argv[2])
time.sleep(300)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_the_script_killed_takes_interchange_pools_and_workers_with_it(tmp_path, sig):
    marker = tmp_path / "running"
    script = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "runinfo"), str(marker)])
    ours: list[psutil.Process] = []
    try:
        wait_for(marker.exists, 45, "the task to run on a worker")
        ours = psutil.Process(script.pid).children(recursive=True)
        lines = [" ".join(p.cmdline()) for p in ours]
        assert any("interchange" in line for line in lines) and any("htex.worker " in line + " " for line in lines)
        script.send_signal(sig)
        script.wait(30)
        wait_for(lambda: not any(alive(p) for p in ours), 15, "interchange, pool and workers to exit")
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
        for proc in ours:  # never leave one behind, even on failure
            try:
                proc.kill()
            except psutil.Error:
                pass
