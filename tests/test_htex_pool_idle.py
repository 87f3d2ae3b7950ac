"""An idle pool sleeps until its next heartbeat, yet a worker's death still wakes it at once."""
from __future__ import annotations

import os
import signal

from parsl_lite import python_app

from .conftest import wait_for
from .htex_helpers import local_htex, our_processes


@python_app
def worker_pid():
    import os
    return os.getpid()


def worker_pids() -> set[int]:
    return {proc.pid for proc in our_processes("parsl_lite.executors.htex.worker ")}


def test_a_worker_killed_while_the_pool_is_idle_is_replaced_before_the_next_heartbeat(make_dfk):
    # a heartbeat a minute apart: only the worker's exit (its pidfd) can wake the pool within the wait below
    executor = local_htex(heartbeat_period=60, heartbeat_threshold=180, encrypted=False)
    make_dfk(executors=[executor], strategy="none")
    wait_for(lambda: executor.connected_workers == 2 and len(worker_pids()) == 2, 30, "two workers connected")
    before = worker_pids()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: (lambda now: len(now) == 2 and victim not in now)(worker_pids()), 30,
             "the pool to start a replacement")
    wait_for(lambda: executor.connected_workers == 2, 30, "the replacement to connect")
    survivor = (before - {victim}).pop()
    assert survivor in worker_pids()
    assert worker_pid().result(timeout=30) in worker_pids()
