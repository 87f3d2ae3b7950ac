"""FastFuture behaves as a stock Future and stays small (no instance dict, no lists for one callback)."""
from __future__ import annotations

import gc
import threading
from concurrent.futures import FIRST_COMPLETED, InvalidStateError, as_completed, wait

import pytest

from parsl_lite.dataflow.futures import AppFuture
from parsl_lite.dataflow.graph import TaskId, TaskRecord
from parsl_lite.fast_future import FastFuture


def _has_instance_dict(obj: object) -> bool:
    """Whether the object carries a materialized ``__dict__`` (asking ``obj.__dict__`` would make one)."""
    return any(type(ref) is dict for ref in gc.get_referents(obj))


def test_callbacks_run_in_order_once_each_and_late_ones_at_once() -> None:
    fut = FastFuture()
    seen: list[str] = []
    for name in "abc":
        fut.add_done_callback(lambda f, name=name: seen.append(name))
    fut.set_result(7)
    fut.add_done_callback(lambda f: seen.append("late"))
    assert seen == ["a", "b", "c", "late"]
    assert fut.result() == 7


def test_a_callback_added_after_a_waiter_made_the_condition_still_runs() -> None:
    fut = FastFuture()
    seen: list[int] = []
    fut.add_done_callback(lambda f: seen.append(1))
    waiter = threading.Thread(target=fut.result)
    waiter.start()
    while fut._cond is None:  # the waiter made the Condition: from now on the stock paths run
        threading.Event().wait(0.001)
    fut.add_done_callback(lambda f: seen.append(2))
    fut.set_result(None)
    waiter.join(10)
    assert seen == [1, 2] and not waiter.is_alive()


def test_wait_and_as_completed_see_a_fast_future_finish() -> None:
    futs = [FastFuture() for _ in range(3)]
    threading.Timer(0.01, futs[1].set_result, (1,)).start()
    done, _ = wait(futs, timeout=10, return_when=FIRST_COMPLETED)
    assert done == {futs[1]}
    futs[0].set_exception(ValueError("x"))
    futs[2].set_result(2)
    assert set(as_completed(futs, timeout=10)) == set(futs)
    with pytest.raises(ValueError):
        futs[0].result()


def test_setting_twice_is_refused() -> None:
    fut = FastFuture()
    fut.set_result(1)
    with pytest.raises(InvalidStateError):
        fut.set_result(2)


def test_futures_keep_their_attributes_inline() -> None:
    """Many live futures, then callbacks and results: none of them grows an instance dict (GC load)."""
    keep = [FastFuture() for _ in range(200)]
    apps = [AppFuture(TaskRecord(TaskId(i), "f")) for i in range(200)]
    for fut in keep + apps:
        fut.add_done_callback(lambda f: None)
        fut.set_result(None)
    assert not any(_has_instance_dict(fut) for fut in keep + apps)
    assert apps[0].outputs == [] and apps[0].outputs is apps[0].outputs
