"""Behaviours Parsl 2026.10.26 users' scripts and tests rely on, exactly as Parsl has them.

Each test names the Parsl behaviour it holds us to (issue 9, point 1); all run
through a real kernel on threads.
"""
from __future__ import annotations

import pickle
from concurrent.futures import Future

import pytest

from parsl_lite import File, join_app, python_app
from parsl_lite.dataflow.errors import DependencyError, JoinError


@python_app
def add(a, b=0):
    return a + b


@python_app
def boom(message="boom"):
    raise ValueError(message)


@python_app
def total(inputs=()):
    return sum(inputs)


# ---------------------------------------------------------------- DependencyError / JoinError


def test_dependency_error_names_app_dependencies_as_task_n_and_causes_with_the_root(dfk):
    bad = boom("parent broke")
    child = add(bad, add(1))
    grandchild = add(child)
    with pytest.raises(DependencyError) as info:
        child.result(timeout=10)
    err = info.value
    assert err.task_id == child.tid
    assert err.dependent_exceptions_tids == [(bad.exception(), f"task {bad.tid}")]
    assert err.__cause__ is bad.exception()
    assert str(err) == f"Dependency failure for task {child.tid}. The representative cause is via task {bad.tid}"
    with pytest.raises(DependencyError) as info:
        grandchild.result(timeout=10)
    deeper = info.value
    assert deeper.dependent_exceptions_tids == [(err, f"task {child.tid}")]
    assert deeper.__cause__ is bad.exception()  # Parsl walks down to the first root cause
    assert str(deeper).endswith(f"via task {child.tid} <- task {bad.tid}")


def test_dependency_error_describes_a_plain_future_by_its_repr(dfk):
    plain: Future = Future()
    plain.set_exception(KeyError("plain"))
    child = add(plain)
    with pytest.raises(DependencyError) as info:
        child.result(timeout=10)
    err = info.value
    assert err.dependent_exceptions_tids == [(plain.exception(), repr(plain))]
    assert repr(plain) in str(err)
    assert err.__cause__ is plain.exception()


def test_several_failed_dependencies_are_listed_in_parsl_order_and_marked_others(dfk):
    first, second, third = boom("1"), boom("2"), boom("3")
    child = add(first, b=second)
    with pytest.raises(DependencyError) as info:
        child.result(timeout=10)
    assert [d for _, d in info.value.dependent_exceptions_tids] == [f"task {first.tid}", f"task {second.tid}"]
    assert str(info.value).endswith(f"via task {first.tid} (+ others)")

    @python_app
    def takes(x, inputs=(), y=None):
        return x

    late = takes(first, inputs=[third], y=second)  # args, then keyword arguments, then inputs
    with pytest.raises(DependencyError) as info:
        late.result(timeout=10)
    assert [d for _, d in info.value.dependent_exceptions_tids] == [
        f"task {first.tid}", f"task {second.tid}", f"task {third.tid}"]


def test_a_failed_data_future_is_described_as_parsl_does(dfk, tmp_path):
    @python_app
    def write_fail(outputs=()):
        raise OSError("disk")

    out = write_fail(outputs=[File(str(tmp_path / "x"))]).outputs[0]
    child = add(out)
    with pytest.raises(DependencyError) as info:
        child.result(timeout=10)
    assert info.value.dependent_exceptions_tids[0][1] == f"DataFuture from task {out.tid}"


def test_propagated_errors_pickle_with_their_fields(dfk):
    child = add(boom("x"))
    err = child.exception(timeout=10)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is DependencyError and str(back) == str(err)
    assert type(back.__cause__) is ValueError


def test_join_error_lists_failed_inner_futures_and_is_not_retried(make_dfk):
    make_dfk(retries=2)
    calls = []

    @join_app
    def broken():
        calls.append(1)
        return [add(1), boom("inner")]

    fut = broken()
    with pytest.raises(JoinError) as info:
        fut.result(timeout=10)
    err = info.value
    assert len(calls) == 1  # Parsl never retries a join app for its inner apps' failures
    (exc, description), = err.dependent_exceptions_tids
    assert isinstance(exc, ValueError) and str(exc) == "inner"
    assert description.startswith("task ") and err.__cause__ is exc
    assert str(err) == f"Join failure for task {fut.tid}. The representative cause is via {description}"


def test_join_of_a_single_plain_future_that_failed(dfk):
    plain: Future = Future()

    @join_app
    def wraps():
        return plain

    fut = wraps()
    plain.set_exception(KeyError("k"))
    err = fut.exception(timeout=10)
    assert type(err) is JoinError
    assert err.dependent_exceptions_tids == [(plain.exception(), repr(plain))]


def test_join_app_returning_no_future_fails_with_parsls_type_error_once(make_dfk):
    make_dfk(retries=2)
    calls = []

    @join_app
    def wrong():
        calls.append(1)
        return 42

    with pytest.raises(TypeError) as info:
        wrong().result(timeout=10)
    assert str(info.value) == "join_app body must return a Future or list of Futures, got 42 of type <class 'int'>"
    assert len(calls) == 1

    @join_app
    def a_tuple():
        return (add(1),)

    with pytest.raises(TypeError, match="of type <class 'tuple'>"):
        a_tuple().result(timeout=10)


def test_join_app_returning_an_empty_list_joins_to_an_empty_list(dfk):
    @join_app
    def nothing():
        return []

    assert nothing().result(timeout=10) == []


# ---------------------------------------------------------------- no kernel, File.local_path


def test_an_app_called_before_load_raises_parsls_exact_message():
    from parsl_lite.dataflow.loader import DataFlowKernelLoader
    from parsl_lite.errors import NoDataFlowKernelError

    with pytest.raises(NoDataFlowKernelError) as info:
        add(1)
    assert str(info.value) == "Must first load config"
    with pytest.raises(NoDataFlowKernelError, match="^Must first load config$"):
        DataFlowKernelLoader.dfk()


def test_file_without_a_local_path_says_no_local_path_with_parsls_repr():
    remote = File("globus://ep1/data/in.txt")
    expected = (f"<File at 0x{id(remote):x} url=globus://ep1/data/in.txt scheme=globus netloc=ep1 "
                f"path=/data/in.txt filename=in.txt>")
    assert repr(remote) == expected
    with pytest.raises(ValueError) as info:
        remote.filepath
    assert str(info.value) == f"No local_path set for {expected}"
    remote.local_path = "/tmp/in.txt"
    assert remote.filepath == "/tmp/in.txt" and repr(remote).endswith(" local_path=/tmp/in.txt>")


# ---------------------------------------------------------------- retry handler


def test_a_retry_handler_that_raises_fails_the_task_with_its_exception(make_dfk):
    seen = []

    class HandlerBroke(RuntimeError):
        pass

    def handler(exc, record):
        seen.append(exc)
        raise HandlerBroke(f"cannot price {type(exc).__name__}")

    make_dfk(retries=3, retry_handler=handler)
    fut = boom("app failed")
    with pytest.raises(HandlerBroke, match="cannot price ValueError") as info:
        fut.result(timeout=10)
    assert len(seen) == 1  # no retries after the handler raised
    assert isinstance(info.value.__context__, ValueError)  # raised while handling the app's exception
    assert fut.task_record.fail_count == 1 and fut.task_status() == "failed"
