"""``cleanup()`` with tasks in flight: one exception, ``KernelShutdown``, whatever the executor.

Every task not done when cleanup begins fails with it, its dependants too
(not ``DependencyError``), and the retry handler is neither called nor are
retries made. Real thread pools and a real htex (interchange, pool, workers).
"""
from __future__ import annotations

import threading

import pytest

from parsl_lite import python_app
from parsl_lite.dataflow.errors import DependencyError, KernelShutdown
from parsl_lite.dataflow.kernel import KernelShutdown as KernelShutdownFromKernel
from parsl_lite.executors import ThreadPoolExecutor

from .htex_helpers import local_htex


@python_app
def hold(started, release):
    started.set()
    release.wait(30)
    return "released"


@python_app
def sleep_then(seconds, value=None):
    import time
    time.sleep(seconds)
    return value


@python_app
def plus_one(x):
    return x + 1


@python_app
def fail(message):
    raise ValueError(message)


class Recorder:
    """A retry handler that remembers what it was asked about."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, exc: BaseException, record: object) -> float:
        self.calls.append(type(exc).__name__)
        return 1.0


def assert_abandoned(fut) -> KernelShutdown:
    with pytest.raises(KernelShutdown, match="did not finish: the kernel was cleaned up") as caught:
        fut.result(timeout=30)
    return caught.value


def test_kernel_shutdown_is_importable_from_both_paths():
    assert KernelShutdownFromKernel is KernelShutdown


def test_threads_unfinished_tasks_and_dependants_fail_with_kernel_shutdown(make_dfk):
    handler = Recorder()
    dfk = make_dfk(executors=[ThreadPoolExecutor(max_threads=1)], retries=2, retry_handler=handler)
    started, release = threading.Event(), threading.Event()
    running = hold(started, release)    # holds the only thread past the 2 s grace
    assert started.wait(10)
    queued = plus_one(1)                # never starts: the executor cancels it
    child_of_queued = plus_one(queued)  # pending on an abandoned parent
    child_of_running = plus_one(running)
    try:
        dfk.cleanup()
    finally:
        release.set()
    for fut in (running, queued, child_of_queued, child_of_running):
        assert_abandoned(fut)
    assert handler.calls == []  # no retry handler, hence no retries, during shutdown


def test_a_real_failure_before_cleanup_keeps_its_error(make_dfk):
    dfk = make_dfk(executors=[ThreadPoolExecutor(max_threads=2)])
    failed = fail("before")
    child = plus_one(failed)
    with pytest.raises(DependencyError):
        child.result(timeout=10)
    dfk.cleanup()
    with pytest.raises(ValueError, match="before"):
        failed.result(timeout=1)


def test_htex_unfinished_tasks_and_dependants_fail_with_kernel_shutdown(make_dfk):
    handler = Recorder()
    dfk = make_dfk(executors=[local_htex()], strategy="none", retries=2, retry_handler=handler)
    assert sleep_then(0, "up").result(timeout=30) == "up"  # the pool is connected
    running = [sleep_then(30, i) for i in range(2)]  # one per worker
    queued = sleep_then(30, "queued")
    dependants = [plus_one(running[0]), plus_one(queued)]
    grandchild = plus_one(dependants[0])
    dfk.cleanup()
    for fut in (*running, queued, *dependants, grandchild):
        assert_abandoned(fut)
    assert handler.calls == []
