"""Loading, cleaning up, executors by label, events, and the kernel's bad input."""
from __future__ import annotations

import os
import threading

import pytest
from typeguard import TypeCheckError

import parsl_lite
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.dataflow.kernel import DataFlowKernel, KernelShutdown
from parsl_lite.errors import ConfigurationError, NoDataFlowKernelError
from parsl_lite.executors import ThreadPoolExecutor


@python_app
def where():
    return threading.current_thread().name


@python_app
def wait_on(event):
    event.wait(30)
    return "released"


def test_calling_an_app_before_load_says_so():
    with pytest.raises(NoDataFlowKernelError, match="Must first load config"):
        where()


def test_app_with_its_own_kernel_needs_no_load(run_dir):
    dfk = DataFlowKernel(Config(run_dir=run_dir))
    try:
        mine = python_app(lambda: 5, data_flow_kernel=dfk)
        assert mine().result(timeout=10) == 5
    finally:
        dfk.cleanup()


def test_load_returns_a_context_manager_and_clear_forgets_it(run_dir):
    with parsl_lite.load(Config(run_dir=run_dir)) as dfk:
        assert parsl_lite.dfk() is dfk
        assert where().result(timeout=10).startswith("parsl_lite-threads")
    with pytest.raises(NoDataFlowKernelError):
        parsl_lite.dfk()


def test_loading_twice_is_refused(dfk, run_dir):
    with pytest.raises(ConfigurationError, match="already loaded"):
        parsl_lite.load(Config(run_dir=run_dir))


def test_default_load_uses_a_local_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dfk = parsl_lite.load()
    try:
        assert where().result(timeout=10)
        assert dfk.run_dir.startswith(str(tmp_path))
    finally:
        parsl_lite.clear()


def test_load_from_a_toml_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f'run_dir = "{tmp_path / "ri"}"\n[[executors]]\ntype = "ThreadPoolExecutor"\nlabel = "t1"\n')
    with parsl_lite.load(str(path)) as dfk:
        assert list(dfk.executors) == ["t1"]
        assert where().result(timeout=10).startswith("parsl_lite-t1")


def test_run_dirs_are_numbered_and_hold_the_log(make_dfk, run_dir):
    first = make_dfk()
    assert where().result(timeout=10)
    first.cleanup()
    second = make_dfk()
    assert os.path.basename(first.run_dir) == "000" and os.path.basename(second.run_dir) == "001"
    log = open(os.path.join(first.run_dir, "parsl.log")).read()
    assert "kernel starting" in log and "kernel cleanup done" in log


def test_apps_are_pinned_to_executors_by_label(make_dfk):
    make_dfk(executors=[ThreadPoolExecutor(label="alpha"), ThreadPoolExecutor(label="beta")])
    on_beta = python_app(executors=["beta"])(lambda: threading.current_thread().name)
    on_alpha = python_app(executors="alpha")(lambda: threading.current_thread().name)
    assert all(on_beta().result(timeout=10).startswith("parsl_lite-beta") for _ in range(5))
    assert on_alpha().result(timeout=10).startswith("parsl_lite-alpha")


def test_unknown_executor_label_is_refused_at_the_call(dfk):
    nowhere = python_app(executors=["gpu"])(lambda: 1)
    with pytest.raises(ConfigurationError, match=r"unknown executor label\(s\) \['gpu'\]; this config has \['threads'\]"):
        nowhere()


def test_wait_for_current_tasks_waits_for_everything(dfk):
    release = threading.Event()
    futs = [wait_on(release) for _ in range(3)]
    threading.Timer(0.2, release.set).start()
    parsl_lite.wait_for_current_tasks()
    assert all(f.done() for f in futs)


def test_cleanup_fails_unfinished_tasks_and_refuses_new_ones(make_dfk):
    dfk = make_dfk(executors=[ThreadPoolExecutor(max_threads=1)])
    release, started = threading.Event(), threading.Event()

    @python_app
    def started_then_wait(event):
        started.set()
        return wait_on.func(event)

    running = started_then_wait(release)
    queued = where()
    dependent = python_app(lambda x: x)(running)
    assert started.wait(10)  # running on the only thread before cleanup begins (else it is cancelled)
    threading.Timer(0.5, release.set).start()
    dfk.cleanup()
    assert running.result(timeout=10) == "released"  # the running task was allowed to finish
    for fut in (queued, dependent):
        with pytest.raises(Exception) as info:
            fut.result(timeout=10)
        assert "shut down" in str(info.value) or "cleaned up" in str(info.value)
    with pytest.raises(KernelShutdown):
        dfk.submit(lambda: 1, ())
    dfk.cleanup()  # idempotent


def test_exit_mode_wait_waits_for_tasks(run_dir):
    release = threading.Event()
    threading.Timer(0.2, release.set).start()
    with parsl_lite.load(Config(run_dir=run_dir, exit_mode="wait")):
        fut = wait_on(release)
    assert fut.result(timeout=1) == "released"


def test_exception_in_with_block_cleans_up(run_dir):
    with pytest.raises(RuntimeError):
        with parsl_lite.load(Config(run_dir=run_dir, exit_mode="skip")) as dfk:
            raise RuntimeError("user error")
    assert dfk._cleanup_called


def test_state_events_are_published_to_listeners(dfk):
    seen = []
    dfk.add_listener(lambda change: seen.append((change.task_id, change.old.name, change.new.name)))
    fut = where()
    fut.result(timeout=10)
    assert [(o, n) for tid, o, n in seen if tid == fut.tid] == [
        ("unsched", "pending"), ("pending", "launched"), ("launched", "exec_done")]


def test_garbage_collect_forgets_finished_tasks(make_dfk):
    dfk = make_dfk()
    where().result(timeout=10)
    assert dfk.tasks == {}
    dfk.cleanup()
    kept = make_dfk(garbage_collect=False)
    fut = where()
    fut.result(timeout=10)
    assert kept.tasks[fut.tid].state.name == "exec_done"


# ---------------------------------------------------------------- config validation

def test_config_wrong_types_name_the_parameter():
    with pytest.raises(TypeCheckError, match='"retries"'):
        Config(retries="3")
    with pytest.raises(TypeCheckError, match='"executors" item 0'):
        Config(executors=["threads"])
    with pytest.raises(TypeCheckError, match='"max_threads"'):
        ThreadPoolExecutor(max_threads="2")
    with pytest.raises(TypeCheckError, match='"exit_mode"'):
        Config(exit_mode="later")


def test_config_bad_values_name_the_field():
    with pytest.raises(ConfigurationError, match="retries"):
        Config(retries=-1)
    with pytest.raises(ConfigurationError, match="unique"):
        Config(executors=[ThreadPoolExecutor(), ThreadPoolExecutor()])
    with pytest.raises(ConfigurationError, match="strategy"):
        Config(strategy="fastest")
    with pytest.raises(ConfigurationError, match="max_threads"):
        ThreadPoolExecutor(max_threads=0)


def test_config_repr_shows_what_was_set():
    text = repr(Config(retries=2, executors=[ThreadPoolExecutor(label="t", max_threads=3)]))
    assert "retries=2" in text and "ThreadPoolExecutor(label='t', max_threads=3)" in text
    assert "run_dir" not in text


def test_parsl_import_paths_exist():
    from parsl_lite.app.app import bash_app, join_app, python_app  # noqa: F401
    from parsl_lite.app.errors import AppTimeout, BadStdStreamFile, BashExitFailure, MissingOutputs  # noqa: F401
    from parsl_lite.config import Config  # noqa: F401
    from parsl_lite.data_provider.files import File  # noqa: F401
    from parsl_lite.dataflow.dflow import DataFlowKernel, DataFlowKernelLoader  # noqa: F401
    from parsl_lite.dataflow.errors import BadCheckpoint, DependencyError, JoinError  # noqa: F401
    from parsl_lite.dataflow.memoization import BasicMemoizer  # noqa: F401
    from parsl_lite.errors import ConfigurationError, NoDataFlowKernelError  # noqa: F401
    from parsl_lite.executors import ThreadPoolExecutor  # noqa: F401
    from parsl_lite.utils import get_all_checkpoints, get_last_checkpoint  # noqa: F401
    import parsl_lite.launchers  # noqa: F401
    import parsl_lite.providers  # noqa: F401
    assert parsl_lite.AUTO_LOGNAME is not None


def test_submit_blocks_at_max_pending_tasks_and_everything_completes(make_dfk):
    dfk = make_dfk(executors=[ThreadPoolExecutor(max_threads=1)], max_pending_tasks=10)
    slow = python_app(lambda i: (__import__("time").sleep(0.002), i)[1])
    futs, seen = [], []
    for i in range(100):
        futs.append(slow(i))
        seen.append(len(dfk.tasks))
    assert [f.result(timeout=30) for f in futs] == list(range(100))
    assert max(seen) <= 10
    assert min(seen[20:]) >= 1  # it kept working while the caller waited


def test_max_pending_tasks_must_be_positive():
    with pytest.raises(ConfigurationError, match="max_pending_tasks"):
        Config(max_pending_tasks=0)


# ---------------------------------------------------------------- SystemExit in an app, a callback, a handler

def test_sys_exit_in_a_thread_app_fails_its_future_and_the_script_goes_on(make_dfk):
    from parsl_lite.dataflow.errors import AppExit, DataFlowException

    make_dfk(executors=[ThreadPoolExecutor(max_threads=1)])
    exits = python_app(lambda code: __import__("sys").exit(code))
    fut = exits(3)
    with pytest.raises(AppExit, match=r"raised SystemExit\(3\)") as caught:
        fut.result(timeout=10)  # an Exception, not the SystemExit: an uncaught one does not end the script
    assert isinstance(caught.value, DataFlowException) and caught.value.code == 3
    assert isinstance(caught.value.__cause__, SystemExit)
    assert where().result(timeout=10).startswith("parsl_lite-threads")  # the only thread is still there


def test_sys_exit_in_a_join_app_body_fails_its_future(dfk):
    from parsl_lite.app.app import join_app
    from parsl_lite.dataflow.errors import AppExit

    @join_app
    def exits():
        raise SystemExit(4)

    with pytest.raises(AppExit) as caught:
        exits().result(timeout=10)
    assert caught.value.code == 4


def test_sys_exit_in_a_done_callback_does_not_kill_the_executor_thread(make_dfk, caplog):
    make_dfk(executors=[ThreadPoolExecutor(max_threads=1)])
    gate = threading.Event()
    first = wait_on(gate)
    first.add_done_callback(lambda _: __import__("sys").exit(5))
    gate.set()  # the callback now runs on the executor's only thread, as the task completes
    first.result(timeout=10)
    later = [where() for _ in range(3)]
    assert all(f.result(timeout=10).startswith("parsl_lite-threads") for f in later)
    assert any("exception calling callback" in r.getMessage() for r in caplog.records)


def test_sys_exit_in_the_retry_handler_is_a_handler_failure(make_dfk):
    def handler(exc, record):
        raise SystemExit(6)

    make_dfk(executors=[ThreadPoolExecutor(max_threads=1)], retries=3, retry_handler=handler)
    failing = python_app(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing().result(timeout=10)  # not retried, not stuck, not the end of the script
    assert where().result(timeout=10)


def test_a_config_can_be_loaded_again_after_cleanup(run_dir):
    config = Config(executors=[ThreadPoolExecutor(max_threads=1)], run_dir=run_dir)
    for _ in range(2):
        with parsl_lite.load(config):
            assert where().result(timeout=10).startswith("parsl_lite-threads")


def test_a_start_cut_short_is_shut_down_too(run_dir):
    class StartsThenFails(ThreadPoolExecutor):
        def start(self):
            super().start()  # threads are running now...
            raise RuntimeError("provider said no")  # ...and the start fails (or Ctrl-C lands here)

    executor = StartsThenFails(max_threads=2)
    with pytest.raises(RuntimeError, match="provider said no"):
        parsl_lite.load(Config(executors=[executor], run_dir=run_dir))
    assert executor._threads == []  # shut down; the fixture checks that no thread is left
    with pytest.raises(NoDataFlowKernelError):
        parsl_lite.dfk()
