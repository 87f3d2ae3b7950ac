"""Python, bash and join apps through a real kernel on threads."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os

import pytest
from typeguard import TypeCheckError

from parsl_lite import AUTO_LOGNAME, File, bash_app, join_app, python_app
from parsl_lite.app.errors import (
    AppBadFormatting, AppTimeout, BadOutputs, BadStdStreamFile, BashAppNoReturn, BashExitFailure, MissingOutputs,
)
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


@python_app
def pair(x):
    return {"x": x, "items": [x, x + 1]}


def test_python_app_returns_future_and_result(dfk):
    fut = add(1, 2)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=10) == 3
    assert fut.tid == 0 and fut.task_status() == "exec_done"
    assert "task 0 add state=exec_done" in repr(fut)


def test_futures_in_args_kwargs_and_inputs_are_dependencies(dfk):
    a, b = add(1), add(2)
    c = add(a, b=b)
    d = total(inputs=[a, b, c, 10])
    assert d.result(timeout=10) == 1 + 2 + 3 + 10


def test_a_long_chain_resolves_in_order(dfk):
    fut = add(0, 1)
    for _ in range(300):
        fut = add(fut, 1)
    assert fut.result(timeout=30) == 301


def test_failed_parent_fails_children_with_dependency_error_naming_it(dfk):
    bad = boom("parent broke")
    good = add(1)
    child = add(bad, good)
    grandchild = add(child)
    with pytest.raises(DependencyError) as info:
        child.result(timeout=10)
    err = info.value
    assert err.task_id == child.tid
    assert [(type(e), tid) for e, tid in err.dependent_exceptions_tids] == [(ValueError, f"task {bad.tid}")]
    assert f"task {bad.tid}" in str(err) and str(err.__cause__) == "parent broke"
    with pytest.raises(DependencyError, match=f"task {child.tid}"):
        grandchild.result(timeout=10)
    assert child.task_status() == "dep_fail"


def test_remote_exception_keeps_type_and_traceback(dfk):
    fut = boom("kept")
    with pytest.raises(ValueError, match="kept") as info:
        fut.result(timeout=10)
    assert any(entry.name == "boom" for entry in info.traceback)


def test_retries_rerun_a_failing_task(make_dfk, tmp_path):
    make_dfk(retries=2)
    marker = tmp_path / "attempts"

    @python_app
    def flaky(path):
        with open(path, "a") as f:
            f.write("x")
        if len(open(path).read()) < 3:
            raise RuntimeError("not yet")
        return "ok"

    fut = flaky(str(marker))
    assert fut.result(timeout=10) == "ok"
    assert marker.read_text() == "xxx"
    assert fut.task_record.fail_count == 2


def test_retry_handler_cost_limits_retries(make_dfk):
    seen = []

    def handler(exc, record):
        seen.append((type(exc).__name__, record.id))
        return 2.5 if isinstance(exc, ValueError) else 0.1

    make_dfk(retries=3, retry_handler=handler)
    with pytest.raises(ValueError):
        boom().result(timeout=10)
    assert len(seen) == 2  # costs 2.5, then 5.0 > 3: no third try


def test_app_future_works_with_wait_and_as_completed(dfk):
    futs = [add(i) for i in range(20)]
    done, not_done = concurrent.futures.wait(futs, timeout=10)
    assert not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futs, timeout=10)) == list(range(20))


def test_app_future_is_awaitable(dfk):
    async def main():
        return await add(20, 22)

    assert asyncio.run(main()) == 42


def test_item_and_attribute_access_make_new_futures(dfk):
    fut = pair(5)
    assert fut["x"].result(timeout=10) == 5
    assert fut["items"][1].result(timeout=10) == 6
    assert add(fut["x"], 1).result(timeout=10) == 6  # derived futures are dependencies too

    @python_app
    def obj():
        return File("/tmp/some/path.txt")

    assert obj().filename.result(timeout=10) == "path.txt"
    with pytest.raises(KeyError):
        fut["nope"].result(timeout=10)


def test_outputs_give_data_futures(dfk, tmp_path):
    out = File(str(tmp_path / "out.txt"))

    @python_app
    def write(outputs=()):
        with open(outputs[0], "w") as f:
            f.write("data")

    fut = write(outputs=[out])
    assert len(fut.outputs) == 1
    assert fut.outputs[0].result(timeout=10) == out
    assert fut.outputs[0].filepath == out.filepath
    assert (tmp_path / "out.txt").read_text() == "data"


def test_outputs_that_are_not_files_fail_the_future_at_once(dfk):
    @python_app
    def write(outputs=()):
        return 1

    fut = write(outputs=["plain-string.txt"])
    assert fut.done()
    with pytest.raises(BadOutputs, match=r"outputs\[0\] must be a File, got str"):
        fut.result()


def test_python_walltime_raises_app_timeout(dfk):
    @python_app
    def spin():
        while True:
            pass

    with pytest.raises(AppTimeout, match="walltime of 0.3"):
        spin(walltime=0.3).result(timeout=20)
    assert add(1, 1).result(timeout=10) == 2  # the worker thread survived


def test_special_keywords_reach_the_function_only_if_declared(dfk):
    @python_app
    def plain(x):
        return x

    @python_app
    def declares(x, stdout=None):
        return stdout

    assert plain(3, stdout="ignored.txt").result(timeout=10) == 3
    assert declares(3, stdout="given.txt").result(timeout=10) == "given.txt"


def test_join_app_resolves_to_the_results_of_its_futures(dfk):
    @join_app
    def fib(n):
        if n < 2:
            return add(n)
        return add(fib(n - 1), fib(n - 2))

    @join_app
    def many(n):
        return [add(i) for i in range(n)]

    assert fib(12).result(timeout=30) == 144
    assert many(5).result(timeout=10) == [0, 1, 2, 3, 4]


def test_join_app_inner_failure_is_a_join_error(dfk):
    @join_app
    def broken():
        return [add(1), boom("inner")]

    with pytest.raises(JoinError) as info:
        broken().result(timeout=10)
    assert str(info.value.__cause__) == "inner"


def test_join_app_must_return_futures(dfk):
    @join_app
    def wrong():
        return 42

    with pytest.raises(TypeError, match="must return a Future or list of Futures, got 42 of type <class 'int'>"):
        wrong().result(timeout=10)


# ---------------------------------------------------------------- bash apps

@bash_app
def echo(message, stdout=None, stderr=None):
    return f"echo {message}; echo err-{message} >&2"


def test_bash_app_redirects_stdout_and_stderr(dfk, tmp_path):
    out, err = tmp_path / "o.txt", tmp_path / "e.txt"
    assert echo("hi", stdout=str(out), stderr=str(err)).result(timeout=10) == 0
    assert out.read_text() == "hi\n"
    header = "--> executable follows <--\necho hi; echo err-hi >&2\n--> end executable <--\n"  # Parsl's
    assert err.read_text() == header + "err-hi\n"


def test_bash_app_append_mode_and_shared_file(dfk, tmp_path):
    log = tmp_path / "log.txt"
    echo("one", stdout=str(log), stderr=str(log)).result(timeout=10)
    echo("two", stdout=(str(log), "a"), stderr=(str(log), "a")).result(timeout=10)
    lines = [line for line in log.read_text().splitlines() if not line.startswith(("-->", "echo"))]
    assert lines == ["one", "err-one", "two", "err-two"]


def test_auto_logname_puts_streams_under_the_run_dir(dfk):
    fut = echo("auto", stdout=AUTO_LOGNAME, stderr=AUTO_LOGNAME)
    assert fut.result(timeout=10) == 0
    assert fut.stdout.startswith(os.path.join(dfk.run_dir, "task_logs"))
    assert fut.stdout.endswith(".stdout") and fut.stderr.endswith(".stderr")
    assert open(fut.stdout).read() == "auto\n"


def test_std_autopath_from_config(make_dfk, tmp_path):
    make_dfk(std_autopath=lambda record, kw: str(tmp_path / f"custom-{record.id}.{kw}"))
    fut = echo("x", stdout=AUTO_LOGNAME)
    fut.result(timeout=10)
    assert (tmp_path / f"custom-{fut.tid}.stdout").read_text() == "x\n"


def test_bash_nonzero_exit_raises_with_the_code(dfk):
    @bash_app
    def fail():
        return "exit 3"

    with pytest.raises(BashExitFailure) as info:
        fail().result(timeout=10)
    assert info.value.exitcode == 3
    assert "unix exit code 3" in str(info.value)


def test_bash_walltime_kills_the_command(dfk, tmp_path):
    @bash_app
    def slow(marker):
        return f"sleep 30; touch {marker}"

    marker = tmp_path / "never"
    with pytest.raises(AppTimeout, match="walltime of 0.5"):
        slow(str(marker), walltime=0.5).result(timeout=20)  # the command would sleep 30 s
    assert not marker.exists()


def test_bash_app_must_return_a_string(dfk):
    @bash_app
    def not_a_command():
        return 17

    with pytest.raises(BashAppNoReturn, match="must return the command line as a str, got int"):
        not_a_command().result(timeout=10)


def test_bash_app_formatting_error(dfk):
    @bash_app
    def bad_format(d):
        return "echo {missing}".format(**d)

    with pytest.raises(AppBadFormatting, match="KeyError"):
        bad_format({}).result(timeout=10)


def test_bash_app_missing_outputs(dfk, tmp_path):
    @bash_app
    def forgets(outputs=()):
        return "true"

    with pytest.raises(MissingOutputs, match="did not write its outputs"):
        forgets(outputs=[File(str(tmp_path / "x.out"))]).result(timeout=10)


def test_bash_app_outputs_flow_to_the_next_app(dfk, tmp_path):
    @bash_app
    def produce(outputs=()):
        return f"echo 41 > {outputs[0]}"

    @python_app
    def consume(inputs=()):
        return int(open(inputs[0]).read()) + 1

    made = produce(outputs=[File(str(tmp_path / "n.txt"))])
    assert consume(inputs=[made.outputs[0]]).result(timeout=10) == 42


def test_bad_std_stream_fails_the_future(dfk):
    with pytest.raises(TypeCheckError, match=r'argument "stdfspec" \(int\) did not match'):  # Parsl's typeguard
        echo("x", stdout=42).result(timeout=10)
    with pytest.raises(BadStdStreamFile, match=r"Bad Stream File: f.txt \(stdout mode 'r' cannot write\)"):
        echo("x", stdout=("f.txt", "r")).result(timeout=10)


def test_unwritable_std_stream_names_the_file(dfk):
    with pytest.raises(BadStdStreamFile, match="/proc/forbidden/x.out"):
        echo("x", stdout="/proc/forbidden/x.out").result(timeout=10)
