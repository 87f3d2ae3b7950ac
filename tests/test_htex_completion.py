"""Completion off the I/O thread (completion.py) and atomic submission and failure (executor.py).

The Completer alone with plain threads first, then the real executor:
interchange, pools and workers on a LocalProvider.
"""
from __future__ import annotations

import concurrent.futures
import operator
import queue
import threading
import time
from concurrent.futures import Future

import pytest

from parsl_lite import python_app
from parsl_lite.errors import ParslError
from parsl_lite.executors.htex.completion import Completer

from .conftest import wait_for
from .htex_helpers import interchange_processes, local_htex


@python_app
def double(x):
    return 2 * x


# ---------------------------------------------------------------- the Completer alone


def _completer(seen: list, name: str = "parsl_lite-test-completion") -> Completer:
    completer = Completer(name, lambda item: (seen.append, item))
    completer.start()
    return completer


def test_items_complete_in_order_on_the_completion_thread():
    seen: list = []
    threads: set = set()
    completer = Completer("parsl_lite-test-completion",
                          lambda item: (lambda v: (threads.add(threading.current_thread().name), seen.append(v)), item))
    completer.start()
    try:
        for start in range(0, 10_000, 100):
            completer.put(range(start, start + 100))
        wait_for(lambda: len(seen) == 10_000, what="every item")
    finally:
        assert completer.stop() == []
    assert seen == list(range(10_000))
    assert threads == {"parsl_lite-test-completion"}


def test_a_blocked_callback_does_not_hold_up_later_items():
    release = threading.Event()
    done: list = []

    def settle(value):
        if value == "blocker":
            release.wait(30)
        done.append(value)

    completer = Completer("parsl_lite-test-completion", lambda item: (settle, item))
    completer.start()
    try:
        completer.put(["blocker", 1, 2])
        completer.put([3])
        wait_for(lambda: done == [1, 2, 3], what="the items behind the blocked one")
        release.set()
        wait_for(lambda: len(done) == 4, what="the blocked callback to finish")
    finally:
        release.set()
        assert completer.stop() == []
    assert done == [1, 2, 3, "blocker"]


def test_a_callback_waiting_for_a_later_item_does_not_deadlock():
    later: Future = Future()
    got = queue.SimpleQueue()

    def settle(value):
        if value == "first":
            got.put(later.result(timeout=20))  # only a later item sets it
        else:
            later.set_result(value)

    completer = Completer("parsl_lite-test-completion", lambda item: (settle, item))
    completer.start()
    try:
        completer.put(["first"])
        completer.put(["second"])
        assert got.get(timeout=30) == "second"
    finally:
        assert completer.stop() == []


def test_takeovers_keep_every_item_once_and_in_order():
    """Callbacks that wait for later items, over and over: each item is entered once, in order."""
    import random

    count = 3000
    rng = random.Random(8)
    waits_for = {i: i + rng.randint(1, 40) for i in rng.sample(range(count - 50), 25)}
    settled = {i: threading.Event() for i in range(count)}
    entered: list[int] = []

    def settle(value):
        entered.append(value)  # list.append is atomic: the order in which setters began
        if value in waits_for:
            assert settled[waits_for[value]].wait(20)
        settled[value].set()

    completer = Completer("parsl_lite-test-completion", lambda item: (settle, item))
    completer.start()
    try:
        for start in range(0, count, 7):
            completer.put(range(start, min(count, start + 7)))
        wait_for(lambda: all(e.is_set() for e in settled.values()), timeout_s=40, what="every item")
    finally:
        assert completer.stop() == []
    assert entered == list(range(count))


def test_stop_processes_what_is_queued_even_from_a_completion_thread():
    seen: list = []
    stopped = queue.SimpleQueue()
    completer: Completer

    def settle(value):
        if value == "stop":
            stopped.put(completer.stop(timeout_s=10))
        seen.append(value)

    completer = Completer("parsl_lite-test-completion", lambda item: (settle, item))
    completer.start()
    completer.put(["stop", *range(50)])
    assert stopped.get(timeout=30) == []
    assert seen[-1] == "stop" and sorted(seen[:-1]) == list(range(50))
    completer.put([99])  # after stop: completed in the caller's thread
    assert seen[-1] == 99


# ---------------------------------------------------------------- the real executor


@pytest.fixture
def htex_dfk(make_dfk):
    return make_dfk(executors=[local_htex()], strategy="none")


def test_a_done_callback_may_block_on_another_htex_app(htex_dfk):
    """Before completion left the I/O thread, the callback held the socket and waited 20 s in vain."""
    gate: Future = Future()
    first = double(gate)
    got = queue.SimpleQueue()

    def callback(fut):
        try:
            got.put((threading.current_thread().name, double(fut.result()).result(timeout=20)))
        except BaseException as exc:  # the test reads it from the queue
            got.put((threading.current_thread().name, exc))

    first.add_done_callback(callback)
    gate.set_result(1)  # only now can the first task run: its callback runs where results complete
    thread, value = got.get(timeout=40)
    assert value == 4
    # A lone result completes on the I/O thread (retired while its callback blocks, a new one taking
    # over the socket); a result queued behind others, on the completion thread.
    assert thread.startswith(("parsl_lite-htex-io", "parsl_lite-htex-completion"))
    assert double(5).result(timeout=20) == 10


def test_a_slow_callback_does_not_stop_other_results(htex_dfk):
    gate: Future = Future()
    release = threading.Event()
    entered = threading.Event()
    first = double(gate)
    first.add_done_callback(lambda fut: (entered.set(), release.wait(60)))
    gate.set_result(1)
    executor = htex_dfk.executors["htex"]
    [interchange] = wait_for(interchange_processes, what="the interchange")
    try:
        assert entered.wait(30)
        blocked_at = time.monotonic()
        # The callback still blocks; results keep arriving...
        assert [double(i).result(timeout=20) for i in range(20)] == [2 * i for i in range(20)]
        assert first.result() == 2
        # ...and the socket keeps moving past the heartbeat threshold (3 s): the interchange still
        # answers, and it was never taken for lost (the same process).
        wait_for(lambda: time.monotonic() - blocked_at > 2 * executor.heartbeat_threshold
                 and executor.connected_workers == 2, what="the interchange to answer after the threshold")
        assert [p.pid for p in interchange_processes()] == [interchange.pid]
        assert double(7).result(timeout=20) == 14
    finally:
        release.set()


def test_shutdown_while_a_callback_is_stuck_resolves_everything(make_dfk):
    dfk = make_dfk(executors=[local_htex()], strategy="none")
    gate: Future = Future()
    release = threading.Event()
    first = double(gate)
    first.add_done_callback(lambda fut: release.wait(60))
    gate.set_result(1)
    try:
        assert first.result(timeout=30) == 2
        waiting = [double(i) for i in range(5)]
        dfk.cleanup()
        done, not_done = concurrent.futures.wait(waiting, timeout=30)
        assert not not_done
    finally:
        release.set()


# ---------------------------------------------------------------- atomic submission and failure


class SlowToPickle:
    """An argument whose pickling lets other threads run: it widens the window inside ``submit``.

    (Without it the race is real but rare.) It arrives on the worker as a plain int.
    """

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self):
        time.sleep(0.0005)
        return int, (self.value,)


def test_a_result_racing_the_failure_of_its_future_resolves_it_once():
    """The completion thread pops a future while a failure drains the same map: each is set exactly once."""
    from parsl_lite.executors.htex.messages import ResultMessage
    from parsl_lite.executors.htex.restart import fail_all
    from parsl_lite.serialize import serialize

    executor = local_htex()  # not started: only its result path is used
    payload = serialize("value")
    for _ in range(20):
        futures = {i: Future() for i in range(2000)}
        watched = list(futures.values())
        errors: list[BaseException] = []

        def complete_all() -> None:
            try:
                for task_id in range(2000):
                    settle = executor._prepare((futures, ResultMessage(task_id, "ok", payload)))
                    if settle is not None:  # None: the failure took it first (a late result)
                        settle[0](settle[1])
            except BaseException as exc:  # e.g. InvalidStateError if a future were set twice
                errors.append(exc)

        completer = threading.Thread(target=complete_all)
        completer.start()
        fail_all(futures, RuntimeError("interchange lost"))
        completer.join()
        assert not errors
        assert all(f.done() for f in watched)
        assert all(isinstance(f.exception(), RuntimeError) or f.result() == "value" for f in watched)


@pytest.mark.parametrize("restarts", [0, 3])
def test_submits_racing_a_killed_interchange_all_resolve(tmp_path, restarts):
    """Eight threads submit while the interchange is SIGKILLed: every future ends, none hangs.

    With ``interchange_restarts=0`` the executor breaks and refuses later
    submits; with restarts it holds them for a new interchange, which runs them.
    """
    executor = local_htex(label="race", interchange_restarts=restarts)
    executor.set_run_dir(str(tmp_path))
    executor.start()
    futures: list[Future] = []
    refused: list[BaseException] = []
    stop = threading.Event()

    def submit_until_stopped() -> None:
        value = 0
        while not stop.is_set():
            try:
                futures.append(executor.submit(operator.neg, {}, SlowToPickle(value)))
            except ParslError as exc:  # broken: refused at the edge
                refused.append(exc)
                return
            value += 1

    submitters = [threading.Thread(target=submit_until_stopped) for _ in range(8)]
    try:
        executor.scale_out(1)
        [interchange] = wait_for(interchange_processes, what="the interchange")
        for thread in submitters:
            thread.start()
        wait_for(lambda: len(futures) > 500, what="submissions before the kill")
        interchange.kill()
        if restarts:
            wait_for(lambda: any(p.pid != interchange.pid for p in interchange_processes()),
                     what="a new interchange")
            count = len(futures)
            wait_for(lambda: len(futures) > count + 500, what="submissions after the restart")
        else:
            wait_for(lambda: len(refused) == len(submitters), what="every submitter refused")
        stop.set()
        for thread in submitters:
            thread.join(30)
        done, not_done = concurrent.futures.wait(futures, timeout=45)
        assert not not_done, f"{len(not_done)} of {len(futures)} futures never resolved"
        results = [f for f in futures if f.exception() is None]
        assert all(f.result() <= 0 for f in results)
        if restarts:
            assert results, "tasks submitted after the restart ran"
    finally:
        stop.set()
        executor.shutdown()
