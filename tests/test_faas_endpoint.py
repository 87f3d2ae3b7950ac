"""The endpoint's parts without a service: the worker-side runner, the task book, the spool, config, CLI."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from parsl_lite.errors import ConfigurationError, DeserializationError, SerializationError
from parsl_lite.faas import protocol as p
from parsl_lite.faas.endpoint.config import default_config_text, load_endpoint_config
from parsl_lite.faas.endpoint.runner import run_faas_task
from parsl_lite.faas.endpoint.spool import ResultSpool
from parsl_lite.faas.endpoint.tasks import (
    Accept, ForgetResults, Refuse, ResendResults, ResultWindow, Run, StoreResults, TaskBook,
)
from parsl_lite.faas.errors import MaxResultSizeExceeded, SerializationVersionError
from parsl_lite.serialize import RemoteExceptionWrapper, deserialize, serialize

HERE = p.versions_string()


def _double(x: int) -> int:
    return x * 2


def _boom(x: int) -> int:
    raise KeyError(f"no key {x}")


def _big(n: int) -> bytes:
    return b"x" * n


def _generator(n: int):
    return (i for i in range(n))


def _run(fn, *args, limit: int = 10**7, versions: str = HERE, **kwargs):
    return run_faas_task(serialize(fn), serialize((args, kwargs)), versions, limit)


# ---------------------------------------------------------------- runner


def test_runner_success_returns_the_serialized_value_and_times():
    state, payload, started, finished = _run(_double, 21)
    assert state == "success" and deserialize(payload) == 42
    assert 0 < started <= finished


def test_runner_exception_comes_back_as_the_original_type_with_its_traceback():
    state, payload, _, _ = _run(_boom, 7)
    assert state == "failed"
    wrapper = deserialize(payload)
    assert isinstance(wrapper, RemoteExceptionWrapper)
    with pytest.raises(KeyError, match="no key 7") as info:
        wrapper.reraise()
    assert "_boom" in [entry.name for entry in info.traceback]


def test_runner_result_over_the_limit_is_max_result_size_exceeded():
    state, payload, _, _ = _run(_big, 5000, limit=1000)
    assert state == "failed"
    error = deserialize(payload)
    assert isinstance(error, MaxResultSizeExceeded) and error.limit == 1000 and error.size > 5000
    assert "exceeds the limit of 1000 bytes" in str(error)


def test_runner_unreadable_body_from_other_versions_names_both():
    state, payload, _, _ = run_faas_task(b"D-not-dill", serialize(((), {})), "Python 2.7.18, parsl_lite 0.0.1", 100)
    assert state == "failed"
    error = deserialize(payload)
    assert isinstance(error, SerializationVersionError)
    assert "Python 2.7.18, parsl_lite 0.0.1" in str(error) and HERE in str(error)


def test_runner_unreadable_body_of_the_same_versions_gives_the_original_error():
    state, payload, _, _ = run_faas_task(b"Zjunk", serialize(((), {})), HERE, 100)
    assert state == "failed"
    with pytest.raises(DeserializationError, match="unknown serialization header"):
        deserialize(payload).reraise()


def test_runner_unserializable_value_fails_naming_it():
    state, payload, _, _ = _run(_generator, 3)
    assert state == "failed"
    with pytest.raises(SerializationError, match="return value"):
        deserialize(payload).reraise()


def test_runner_loads_a_function_once_per_worker_and_keeps_a_bounded_cache():
    from parsl_lite.faas.endpoint import runner

    body = serialize(_double)
    assert runner._load_function(body) is runner._load_function(body)
    for n in range(runner._CACHE_SIZE + 5):
        runner._load_function(serialize(lambda x, n=n: x + n))
    assert len(runner._functions) == runner._CACHE_SIZE


# ---------------------------------------------------------------- task book (pure)


def _item(task_id: str, function_id: str = "f", attempt: int = 1) -> p.TaskItem:
    return p.TaskItem(task_id, function_id, b"body", b"payload", HERE, attempt)


def _result(task_id: str) -> p.TaskResult:
    return p.TaskResult(task_id, "success", b"v", 1.0, 2.0)


def test_book_runs_new_tasks_and_drops_duplicates():
    book = TaskBook("ep", 3)
    actions = book.delivered([_item("a"), _item("b"), _item("a")])
    assert actions == [Run(_item("a")), Run(_item("b")), Accept(("a",))]  # the copy of a: accepted again, not run
    assert book.submitted(["a", "b"]) == [Accept(("a", "b"))]
    assert book.delivered([_item("a", attempt=2)]) == [Accept(("a",))]
    assert book.completed([_result("a")]) == [StoreResults((_result("a"),))]
    assert book.delivered([_item("a", attempt=3)]) == []   # its result is spooled: on its way
    assert book.completed([_result("a")]) == []            # a second result of it is dropped
    assert book.outstanding == 1


def test_book_spools_until_stored_and_resends_after_hello():
    book = TaskBook("ep", 3, spooled=["old"])
    assert book.hello_accepted() == [ResendResults(("old",))]
    book.delivered([_item("n")])
    book.completed([_result("n")])
    assert book.hello_accepted() == [ResendResults(("n", "old"))]
    assert book.stored(["old", "unknown"]) == [ForgetResults(("old",))]
    assert book.stored(["old"]) == []
    assert book.delivered([_item("old", attempt=2)]) == [Run(_item("old", attempt=2))]  # forgotten: runs again


def test_book_refuses_functions_not_allowed_naming_the_function():
    book = TaskBook("ep-1", 3, allowed_functions=["ok"])
    actions = book.delivered([_item("a", "ok"), _item("b", "bad")])
    assert actions[0] == Run(_item("a", "ok"))
    refuse = actions[1]
    assert isinstance(refuse, Refuse) and refuse.why == "not_allowed"
    assert "function bad" in refuse.detail and "ep-1" in refuse.detail
    assert book.delivered([_item("b", "bad")]) == []  # being refused: not refused twice
    assert book.completed([_result("b")]) == [StoreResults((_result("b"),))]


def test_book_intersects_its_allowed_functions_with_the_services():
    book = TaskBook("ep", 3)
    book.set_allowed_functions([])
    assert book.allowed_functions == frozenset()
    book.set_allowed_functions(["x", "y"])
    assert book.allowed_functions == {"x", "y"}
    book.set_allowed_functions(["y", "z"])
    assert book.allowed_functions == {"y"}


def test_book_fails_a_task_delivered_more_than_max_retries_plus_one():
    book = TaskBook("ep-9", 2)
    assert book.delivered([_item("a", attempt=3)]) == [Run(_item("a", attempt=3))]
    refuse = TaskBook("ep-9", 2).delivered([_item("a", attempt=4)])[0]
    assert isinstance(refuse, Refuse) and refuse.why == "endpoint_lost"
    assert "4 times" in refuse.detail and "max_retries_on_system_failure=2" in refuse.detail


def test_window_sends_at_once_when_idle_and_batches_behind_unacknowledged_messages():
    window = ResultWindow(2)
    window.add([_result("a")])
    first = window.take(connected=True)
    assert first == (_result("a"),)            # idle: at once
    window.sent(first)
    window.add([_result("b")])
    second = window.take(connected=True)
    window.sent(second)
    window.add([_result("c")])
    window.add([_result("d")])
    assert window.take(connected=True) == () and window.in_flight == 2   # full: c and d wait
    window.stored(["b"])
    assert window.take(connected=True) == (_result("c"), _result("d"))   # one batch when room comes
    window.add([_result("e")])
    assert window.take(connected=False) == (_result("e"),)   # no connection: to the spool at once
    window.sent([_result("x")])
    window.reset()
    assert window.in_flight == 0
    big = [p.TaskResult(t, "success", b"x" * 10, 0.0, 1.0) for t in "uvw"]
    window.add(big)
    assert window.take(connected=False, max_bytes=15) == tuple(big[:2])   # stops once 15 bytes are reached
    assert window.take(connected=False, max_bytes=5) == tuple(big[2:])    # at least one, even if bigger
    with pytest.raises(ValueError):
        ResultWindow(0)


# ---------------------------------------------------------------- spool


def test_spool_survives_a_new_process_and_forgets_on_delete(tmp_path):
    spool = ResultSpool(tmp_path / "unacked")
    first = [p.TaskResult("t1", "success", b"\x00\n" * 10, 1.5, 2.5), p.TaskResult("t2", "failed", b"", 0.0, 3.0)]
    spool.write(first)                                              # one batch: one file, one fsync
    spool.write([p.TaskResult("t3", "success", b"three", 4.0, 5.0)])
    (tmp_path / "unacked" / "x.results.tmp").write_bytes(b"half")   # a write cut short
    files = sorted((tmp_path / "unacked").glob("*.results"))
    assert len(files) == 2 and all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in files)
    again = ResultSpool(tmp_path / "unacked")                       # what a restarted daemon finds
    assert again.task_ids() == ["t1", "t2", "t3"] and len(again) == 3
    assert sorted(again.read_all(["t3", "t1", "t9"])) == sorted([first[0], p.TaskResult("t3", "success", b"three",
                                                                                          4.0, 5.0)])
    assert not (tmp_path / "unacked" / "x.results.tmp").exists()
    again.delete(["t1"])
    assert len(list((tmp_path / "unacked").glob("*.results"))) == 2   # t2 still needs the first file
    again.delete(["t2", "t3"])
    assert again.task_ids() == [] and not list((tmp_path / "unacked").glob("*.results"))


# ---------------------------------------------------------------- config


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_default_config_loads_as_one_htex_on_a_local_provider(tmp_path):
    path = _write(tmp_path / "ep" / "config.toml", default_config_text("ep", cores=3))
    loaded = load_endpoint_config(path)
    executor = loaded.executor
    assert type(executor).__name__ == "HighThroughputExecutor" and executor.max_workers_per_node == 3
    provider = executor.provider
    assert type(provider).__name__ == "LocalProvider"
    assert (provider.init_blocks, provider.min_blocks, provider.max_blocks) == (1, 0, 1)
    assert loaded.settings.max_retries_on_system_failure == 3 and loaded.settings.allowed_functions == ()
    assert loaded.config.run_dir == str(tmp_path / "ep" / "runinfo")
    assert loaded.config.strategy == "simple"


@pytest.mark.parametrize("table, field", [
    ("[endpoint]\nheartbeat_perod = 2\n", "[endpoint]: heartbeat_perod"),
    ("[endpoint]\nmax_retries_on_system_failure = -1\n", "[endpoint]: max_retries_on_system_failure"),
    ("[endpoint]\nallowed_functions = 'f'\n", "[endpoint]: allowed_functions"),
    ("[endpoint]\nheartbeat_period = 5\nheartbeat_threshold = 2\n", "[endpoint]: heartbeat_threshold"),
])
def test_a_wrong_endpoint_field_is_refused_naming_file_and_field(tmp_path, table, field):
    path = _write(tmp_path / "config.toml", table + '[[executors]]\ntype = "HighThroughputExecutor"\n')
    with pytest.raises(ConfigurationError) as info:
        load_endpoint_config(path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_a_wrong_executor_field_is_refused_by_the_config_loader(tmp_path):
    text = default_config_text("ep").replace("max_workers_per_node", "max_workers_per_nod")
    path = _write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigurationError, match=r"\[executors.0\] \(HighThroughputExecutor\): max_workers_per_nod"):
        load_endpoint_config(path)


def test_an_endpoint_needs_exactly_one_htex(tmp_path):
    path = _write(tmp_path / "config.toml", '[[executors]]\ntype = "ThreadPoolExecutor"\n')
    with pytest.raises(ConfigurationError, match="exactly one HighThroughputExecutor"):
        load_endpoint_config(path)
    with pytest.raises(ConfigurationError, match="no such endpoint config"):
        load_endpoint_config(tmp_path / "missing.toml")


# ---------------------------------------------------------------- CLI (no service)


def _cli(*words: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PARSL_LITE_HOME": str(home)}
    env.pop("PARSL_LITE_FAAS_TOKEN", None)
    env.pop("PARSL_LITE_FAAS_URL", None)
    return subprocess.run([sys.executable, "-m", "parsl_lite.cli", "endpoint", *words], capture_output=True,
                          text=True, env=env, timeout=60)


def test_cli_configure_list_status_and_exit_codes(tmp_path):
    home = tmp_path / "home"
    done = _cli("configure", "laptop", home=home)
    assert done.returncode == 0, done.stderr
    config = home / "endpoints" / "laptop" / "config.toml"
    assert config.is_file() and "LocalProvider" in config.read_text()
    assert _cli("configure", "laptop", home=home).returncode == 1           # exists: --force to overwrite
    assert _cli("configure", "laptop", "--force", home=home).returncode == 0
    listing = _cli("list", home=home)
    assert listing.returncode == 0
    assert listing.stdout.split("\n")[0].split() == ["NAME", "ID", "STATE", "WORKERS", "QUEUE"]
    assert listing.stdout.split("\n")[1].split() == ["laptop", "-", "Stopped", "0", "0"]
    missing = _cli("start", "nowhere", home=home)
    assert missing.returncode == 2 and "endpoint configure nowhere" in missing.stderr
    assert _cli("stop", "laptop", home=home).stdout.strip() == "endpoint laptop was not running"
    assert _cli("status", "nowhere", home=home).returncode == 1
    for command in ("configure", "start", "stop", "restart", "list", "status", "delete"):
        assert _cli(command, "--help", home=home).returncode == 0


def test_cli_start_without_credentials_fails_with_the_reason(tmp_path):
    home = tmp_path / "home"
    _cli("configure", "laptop", home=home)
    done = _cli("start", "laptop", home=home)
    assert done.returncode == 1
    assert "registration failed" in done.stderr and "client.json" in done.stderr
    status = json.loads((home / "endpoints" / "laptop" / "status.json").read_text())
    assert status["state"] == "Failed"
    assert not (home / "endpoints" / "laptop" / "endpoint.pid").exists()
    assert "Stopped" in _cli("list", home=home).stdout


def test_cli_start_with_a_bad_config_exits_2_naming_the_field(tmp_path):
    home = tmp_path / "home"
    _cli("configure", "laptop", home=home)
    config = home / "endpoints" / "laptop" / "config.toml"
    config.write_text(config.read_text().replace("max_blocks = 1", "max_blocks = 'one'"))
    done = _cli("start", "laptop", home=home)
    assert done.returncode == 2
    assert "max_blocks" in done.stderr and str(config) in done.stderr


# ---------------------------------------------------------------- task book: any order of events

_EVENTS = hs.lists(hs.one_of(
    hs.tuples(hs.just("deliver"), hs.lists(hs.tuples(hs.sampled_from("abcdef"), hs.sampled_from("fg"),
                                                     hs.integers(1, 4)), max_size=4)),
    hs.tuples(hs.just("finish"), hs.integers(0, 5)),
    hs.tuples(hs.just("stored"), hs.lists(hs.sampled_from("abcdefz"), max_size=4)),
    hs.tuples(hs.just("hello"), hs.none()),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(_EVENTS)
def test_book_in_any_order_never_runs_a_held_or_spooled_task_and_spools_each_result_once(events):
    """A shell that does what the actions say; the book's sets must match what the shell holds."""
    book = TaskBook("ep", 2, allowed_functions=["f"])
    executor: list[str] = []          # what the executor holds, in order
    disk: set[str] = set()            # what the spool holds
    for kind, arg in events:
        if kind == "deliver":
            actions = book.delivered([_item(t, f, a) for t, f, a in arg])
        elif kind == "finish":
            actions = book.completed([_result(executor.pop(arg % len(executor)))]) if executor else []
        elif kind == "stored":
            actions = book.stored(arg)
        else:
            actions = book.hello_accepted()
        while actions:
            action = actions.pop(0)
            if isinstance(action, Run):
                assert action.item.task_id not in executor and action.item.task_id not in disk
                assert action.item.function_id == "f" and action.item.attempt <= 3
                executor.append(action.item.task_id)
                actions += book.submitted([action.item.task_id])
            elif isinstance(action, Refuse):
                actions += book.completed([_result(action.task_id)])
            elif isinstance(action, StoreResults):
                for result in action.results:
                    assert result.task_id not in disk
                    disk.add(result.task_id)
            elif isinstance(action, ForgetResults):
                assert set(action.task_ids) <= disk
                disk.difference_update(action.task_ids)
            elif isinstance(action, ResendResults):
                assert set(action.task_ids) == disk
            else:
                assert isinstance(action, Accept) and set(action.task_ids) <= set(executor)
        assert book.held == set(executor) and book.spooled == disk and not book.refused


def test_a_second_daemon_of_the_same_endpoint_refuses_to_run(tmp_path):
    import fcntl

    home = tmp_path / "home"
    directory = home / "endpoints" / "twice"
    directory.mkdir(parents=True)
    with open(directory / "endpoint.pid", "w") as held:   # what a running daemon holds
        fcntl.flock(held, fcntl.LOCK_EX)
        env = {**os.environ, "PARSL_LITE_HOME": str(home)}
        done = subprocess.run([sys.executable, "-m", "parsl_lite.faas.endpoint.daemon", "twice"], capture_output=True,
                              text=True, env=env, timeout=60)
    assert done.returncode == 1 and "already running" in done.stderr
