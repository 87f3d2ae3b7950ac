"""Behaviours Parsl 2026.10.26 users' scripts and tests rely on, exactly as Parsl has them.

Each test names the Parsl behaviour it holds us to (issue 9, point 1); all run
through a real kernel on threads.
"""
from __future__ import annotations

import os
import pickle
from concurrent.futures import Future

import pytest
from typeguard import TypeCheckError

from parsl_lite import AUTO_LOGNAME, File, bash_app, join_app, python_app
from parsl_lite.app.errors import BadStdStreamFile
from parsl_lite.dataflow.errors import DependencyError, JoinError
from parsl_lite.dataflow.futures import DataFuture

from .test_apps import add, boom


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
    with pytest.raises(TypeCheckError, match=r'argument "url" \(int\)'):  # Parsl's File is @typechecked
        File(42)


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


# ---------------------------------------------------------------- stdout / stderr


@bash_app
def echo_to_streams(msg, stderr=None, stdout=None):
    return f'echo "{msg}"; echo "{msg}" >&2'


@pytest.mark.parametrize("err_type,spec", [
    (TypeCheckError, ["t3.out", "w"]),        # a list, not a tuple
    (TypeCheckError, ("t4.out", None)),       # no mode
    (TypeCheckError, (42, "w")),              # not a path
    (TypeCheckError, ("t6.out", "w", 42)),    # a 3-tuple
    (TypeCheckError, ("t7.out",)),            # a 1-tuple
    (TypeCheckError, 42),                     # not a str
    (BadStdStreamFile, ("t8.out", "badmode")),
], ids=["list", "null_mode", "not_a_string", "3tuple", "1tuple", "int", "bad_mode"])
def test_a_bad_stdout_spec_fails_the_call_as_parsl(dfk, tmp_path, monkeypatch, err_type, spec):
    monkeypatch.chdir(tmp_path)
    fut = echo_to_streams("Hello world", stdout=spec, stderr="t.err")
    assert fut.done()  # refused at the call: the task never runs
    with pytest.raises(err_type):
        fut.result()
    assert not os.path.exists(tmp_path / "t.err")


def test_a_path_is_appended_to_and_a_w_tuple_truncates(dfk, tmp_path):
    out, err = str(tmp_path / "t1.out"), str(tmp_path / "t1.err")
    for _ in range(2):
        echo_to_streams("hi", stdout=out, stderr=err).result(timeout=10)
    assert open(out).read() == "hi\nhi\n"  # Parsl's default mode is 'a+'
    for _ in range(2):
        echo_to_streams("hi", stdout=(out, "w"), stderr=err).result(timeout=10)
    assert open(out).read() == "hi\n"
    echo_to_streams("again", stdout=(out, "a"), stderr=err).result(timeout=10)
    assert open(out).read() == "hi\nagain\n"
    header = '--> executable follows <--\necho "hi"; echo "hi" >&2\n--> end executable <--\n'
    assert open(err).read().startswith(header + "hi\n")  # Parsl heads stderr with the command


def test_a_file_as_stdout_gives_a_data_future(dfk, tmp_path):
    target = File(str(tmp_path / "out.txt"))
    fut = echo_to_streams("to a file", stdout=target)
    assert isinstance(fut.stdout, DataFuture)
    assert fut.stdout.result(timeout=10) is target
    assert fut.result() == 0 and open(target).read() == "to a file\n"
    plain = echo_to_streams("x", stdout=str(tmp_path / "p.txt"))
    assert plain.stdout == str(tmp_path / "p.txt")


def test_auto_logname_paths_have_parsls_format(dfk):
    fut = echo_to_streams("auto", stdout=AUTO_LOGNAME, stderr=AUTO_LOGNAME)
    fut.result(timeout=10)
    logs = os.path.join(dfk.run_dir, "task_logs", "0000")
    assert fut.stdout == os.path.join(logs, f"task_{fut.tid:04d}_echo_to_streams.stdout")
    assert fut.stderr == os.path.join(logs, f"task_{fut.tid:04d}_echo_to_streams.stderr")
    assert open(fut.stdout).read() == "auto\n"

    @bash_app
    def labelled(label=None, stdout=None):
        return "echo labelled"

    fut = labelled(label="mine", stdout=AUTO_LOGNAME)
    fut.result(timeout=10)
    assert fut.stdout == os.path.join(logs, f"task_{fut.tid:04d}_labelled_mine.stdout")
    assert AUTO_LOGNAME == -1  # Parsl's value


# ---------------------------------------------------------------- memoization


def test_a_cached_bash_app_runs_once_per_call(dfk, tmp_path):
    counter = tmp_path / "count"

    @bash_app(cache=True)
    def touch_once(word):
        return f"echo {word} >> {counter}"

    assert touch_once("a").result(timeout=10) == 0
    again = touch_once("a")
    assert again.result(timeout=10) == 0 and again.task_status() == "memo_done"
    touch_once("b").result(timeout=10)
    assert counter.read_text().split() == ["a", "b"]  # the second "a" did not run


def test_a_memoized_failure_returns_the_same_exception_object_without_running(dfk, tmp_path):
    counter = tmp_path / "count"

    @python_app(cache=True)
    def fails(x):
        with open(counter, "a") as f:
            f.write(".")
        raise ValueError(f"bad {x}")

    first = fails(1).exception(timeout=10)
    second = fails(1)
    assert second.exception(timeout=10) is first
    assert second.task_status() == "failed"
    assert counter.read_text() == "."


class Opaque:
    """Pickles, but with an identity users want to choose (e.g. a handle to a dataset)."""

    def __init__(self, name, payload):
        self.name, self.payload = name, payload


def test_id_for_memo_is_a_singledispatch_users_register_types_on(dfk, tmp_path):
    from parsl_lite.dataflow.memoization import id_for_memo

    assert hasattr(id_for_memo, "registry") and id_for_memo.dispatch(Opaque) is id_for_memo.dispatch(object)

    @id_for_memo.register(Opaque)
    def _by_name(obj, output_ref=False):
        return id_for_memo(obj.name, output_ref=output_ref)

    counter = tmp_path / "count"

    @python_app(cache=True)
    def use(data):
        with open(counter, "a") as f:
            f.write(".")
        return data.name

    assert use(Opaque("ds1", payload=1)).result(timeout=10) == "ds1"
    hit = use(Opaque("ds1", payload=2))  # same name: the registered encoder says it is the same call
    assert hit.result(timeout=10) == "ds1" and hit.task_status() == "memo_done"
    assert counter.read_text() == "."
    assert id_for_memo.dispatch(Opaque) is _by_name


def test_an_unmemoizable_argument_fails_the_call_with_value_error(dfk):
    @python_app(cache=True)
    def takes(x):
        return 1

    fut = takes(x for x in range(3))  # a generator: no encoding, no pickle
    assert fut.done()  # decided at the call: the task never runs
    with pytest.raises(ValueError, match="for memoization"):
        fut.result()
    assert fut.task_status() == "failed"


def test_the_graph_fails_a_memo_hit_on_a_failure_without_retrying():
    from parsl_lite.dataflow.graph import CheckMemo, Finish, MemoChecked, TaskGraph, TaskId, TaskRecord, TaskSubmitted
    from parsl_lite.dataflow.states import States

    graph = TaskGraph(retries=3)
    record = TaskRecord(TaskId(0), "f", memoize=True)
    assert graph.handle(TaskSubmitted(record, 0)) == [CheckMemo(record)]
    assert graph.handle(MemoChecked(TaskId(0), hit=True, failed=True)) == [Finish(record, States.failed)]
    assert len(graph) == 0


# ---------------------------------------------------------------- walltime


def test_walltime_from_the_signature_default_is_enforced_on_a_sleeping_app(dfk):
    from parsl_lite.app.errors import AppTimeout

    @python_app
    def naps(walltime=0.3):  # Parsl's test: a declared default walltime applies, and sleeping is interrupted
        import time
        while True:
            time.sleep(0.05)

    with pytest.raises(AppTimeout):
        naps().result(timeout=30)

    @python_app
    def sees(walltime=30):
        return walltime

    assert sees().result(timeout=10) == 30  # the function still receives the value it declares
    assert sees(walltime=20).result(timeout=10) == 20
    with pytest.raises(AppTimeout):
        naps(walltime=0.2).result(timeout=30)
