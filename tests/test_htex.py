"""The high-throughput executor against real processes: interchange, pools, workers."""
from __future__ import annotations

import os
import signal
import socket
from concurrent.futures import Future

import pytest

from parsl_lite import python_app
from parsl_lite.errors import SerializationError
from parsl_lite.executors.htex.errors import InterchangeLost, ManagerLost, WorkerLost

from .conftest import wait_for
from .htex_helpers import local_htex, our_processes, running_on_a_worker


@pytest.fixture
def htex_dfk(make_dfk):
    dfk = make_dfk(executors=[local_htex()], strategy="none")
    yield dfk


@python_app
def double(x):
    return 2 * x


@python_app
def pid_of_worker():
    import os
    return os.getpid()


@python_app
def sleep_then(seconds, value=None):
    import time
    time.sleep(seconds)
    return value


@python_app
def crash(message):
    raise KeyError(message)


def test_apps_run_on_worker_processes(htex_dfk):
    assert [double(i).result(timeout=30) for i in range(5)] == [0, 2, 4, 6, 8]
    pids = {pid_of_worker().result(timeout=30) for _ in range(20)}
    assert os.getpid() not in pids
    assert add_many(200) == sum(2 * i for i in range(200))


def add_many(n):
    futs = [double(i) for i in range(n)]
    return sum(f.result(timeout=30) for f in futs)


def test_dependencies_and_remote_exceptions(htex_dfk):
    assert double(double(double(1))).result(timeout=30) == 8
    with pytest.raises(KeyError, match="far away") as info:
        crash("far away").result(timeout=30)
    assert any(entry.name == "crash" for entry in info.traceback)


def test_lambdas_and_closures_cross_the_wire(htex_dfk):
    factor = 7
    times = python_app(lambda x: x * factor)
    assert times(6).result(timeout=30) == 42


def test_unpicklable_argument_fails_at_once(htex_dfk):
    fut = double((x for x in range(3)))
    assert fut.done()
    with pytest.raises(SerializationError, match="positional argument 0 of type generator"):
        fut.result()


def test_unpicklable_result_is_reported_on_the_task(htex_dfk):
    @python_app
    def make_generator():
        return (x for x in range(3))

    with pytest.raises(SerializationError, match="result of task"):
        make_generator().result(timeout=30)
    assert double(1).result(timeout=30) == 2


def test_a_200_mb_result_arrives(make_dfk):
    # The default threshold (120 s), not the faults' 3 s: on a loaded machine, carrying and signing
    # 200 MB keeps the link busy for seconds, which is not the silence the threshold is for.
    make_dfk(executors=[local_htex(heartbeat_threshold=120)], strategy="none")

    @python_app
    def big():
        return b"x" * (200 * 2**20)

    assert len(big().result(timeout=60)) == 200 * 2**20


def test_unencrypted_executor_works(make_dfk):
    make_dfk(executors=[local_htex(encrypted=False)], strategy="none")
    assert double(21).result(timeout=30) == 42


def test_killed_worker_fails_its_task_with_worker_lost_and_is_replaced(htex_dfk, tmp_path):
    executor = htex_dfk.executors["htex"]
    fut = running_on_a_worker(tmp_path)
    workers = wait_for(lambda: len(w := our_processes("parsl_lite.executors.htex.worker ")) == 2 and w,
                       what="two workers")
    for proc in workers:
        proc.kill()
    with pytest.raises(WorkerLost, match="SIGKILL"):
        fut.result(timeout=30)
    killed = {p.pid for p in workers}
    wait_for(lambda: len([p for p in our_processes("parsl_lite.executors.htex.worker ") if p.pid not in killed]) == 2
             and executor.connected_workers == 2, what="two replacement workers")
    assert double(5).result(timeout=30) == 10

def test_worker_lost_is_retried_when_asked(make_dfk, tmp_path):
    make_dfk(executors=[local_htex()], strategy="none", retries=1)
    marker = tmp_path / "first"

    @python_app
    def die_once(path):
        import os
        import signal
        if not os.path.exists(path):
            open(path, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return "second try"

    assert die_once(str(marker)).result(timeout=30) == "second try"


def test_killed_pool_fails_tasks_with_manager_lost(htex_dfk, tmp_path):
    fut = running_on_a_worker(tmp_path)
    pools = wait_for(lambda: our_processes("htex.worker_pool"), what="the pool")
    for pool in pools:
        pool.kill()
    with pytest.raises((ManagerLost, WorkerLost)):
        fut.result(timeout=30)


def test_frozen_pool_is_declared_lost(htex_dfk, tmp_path):
    fut = running_on_a_worker(tmp_path)
    pools = wait_for(lambda: our_processes("htex.worker_pool"), what="the pool")
    for pool in pools:
        pool.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(ManagerLost, match="heartbeat"):
            fut.result(timeout=30)
    finally:
        for pool in pools:
            pool.send_signal(signal.SIGCONT)


def test_killed_interchange_fails_every_outstanding_future(htex_dfk):
    futs = [sleep_then(30) for _ in range(4)]
    [interchange] = wait_for(lambda: our_processes("htex.interchange"), what="the interchange")
    interchange.kill()
    for fut in futs:
        with pytest.raises(InterchangeLost):
            fut.result(timeout=30)


def test_garbage_on_the_ports_does_not_hurt(htex_dfk):
    executor = htex_dfk.executors["htex"]
    client = executor._client
    for port in (client.client_port, client.worker_port):
        for payload in (b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", os.urandom(512)):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(payload)
    assert double(4).result(timeout=30) == 8


def test_shutdown_leaves_no_process_behind(make_dfk):
    dfk = make_dfk(executors=[local_htex()], strategy="none")
    assert double(1).result(timeout=30) == 2
    assert our_processes("parsl_lite.executors.htex")
    dfk.cleanup()
    wait_for(lambda: not our_processes("parsl_lite.executors.htex"), 10, "processes to exit")


def test_running_time_limit_interrupts_the_task(htex_dfk):
    from parsl_lite.executors.htex.errors import TaskTimeout

    @python_app
    def spin(parsl_resource_specification=None):
        while True:
            pass

    with pytest.raises(TaskTimeout, match="running_time_limit of 0.5"):
        spin(parsl_resource_specification={"running_time_limit": 0.5}).result(timeout=30)
    assert double(2).result(timeout=30) == 4  # the worker survived


def test_bad_resource_specification_is_refused_by_name(htex_dfk):
    from parsl_lite.executors.htex.errors import InvalidResourceSpecification

    fut = double(1, parsl_resource_specification={"gpus": 2})
    with pytest.raises(InvalidResourceSpecification, match=r"unknown resource specification keys \['gpus'\]"):
        fut.result(timeout=5)
    with pytest.raises(InvalidResourceSpecification, match="'cores' must be a number"):
        double(1, parsl_resource_specification={"cores": "two"}).result(timeout=5)


def test_the_kernel_hands_the_htex_its_task_record_and_submit_still_returns_a_future(htex_dfk):
    executor = htex_dfk.executors["htex"]
    fut = sleep_then(1, "late")
    assert list(executor._futures.values()) == [fut.task_record]  # no executor future per task
    assert fut.result(timeout=30) == "late"
    direct = executor.submit(lambda: 7, {})  # the executor used alone, as Parsl's is
    assert isinstance(direct, Future) and direct.result(timeout=30) == 7
    assert crash("by record").exception(timeout=30).args == ("by record",)
