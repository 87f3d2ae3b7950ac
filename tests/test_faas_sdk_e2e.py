"""The SDK end to end: a real service, a real endpoint daemon (htex workers), the issue's lines as written.

One service and one endpoint serve the whole module (starting them costs
seconds); each test gets its own ``PARSL_LITE_HOME`` holding the admin's
client.json, so ``FuncXClient()`` finds the service by itself. The test
functions are defined as a user's script defines them (``__main__``), so they
travel by value, as from a notebook.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from parsl_lite.faas import FuncXClient, FuncXExecutor, TaskPending, paths
from parsl_lite.faas.errors import MaxResultSizeExceeded, TaskPurged

from .conftest import wait_for
from .faas_endpoint_helpers import Endpoint, start_endpoint
from .faas_helpers import Service, call, start_service
from .test_faas_sdk import drop_websocket, user_functions


@dataclass
class Fabric:
    """A service, its admin's token, and endpoints of the admin."""

    service: Service
    endpoints: list[Endpoint]
    home: Path

    @property
    def ep_id(self) -> str:
        return self.endpoints[0].endpoint_id


@contextlib.contextmanager
def running_fabric(root: Path, endpoints: int = 1, workers: int = 2, **service_options) -> Iterator[Fabric]:
    """Start a service and ``endpoints`` endpoints under ``root``; stop them all (by pid) at the end."""
    with pytest.MonkeyPatch.context() as mp:
        home = root / "fabric-home"
        mp.setenv(paths.HOME_ENV, str(home))
        mp.delenv(paths.URL_ENV, raising=False)
        mp.delenv(paths.TOKEN_ENV, raising=False)
        service = start_service(root, **service_options)
        started: list[Endpoint] = []
        try:
            paths.write_client_file(service.url, service.admin_token)
            for n in range(endpoints):
                started.append(start_endpoint(service, f"ep{n}", service.admin_token, workers=workers))
            yield Fabric(service, started, home)
        finally:
            stray = [pid for endpoint in started for pid in endpoint.cleanup()]
            service.stop()
            assert not stray, f"endpoint processes left running (killed now): {stray}"


@pytest.fixture(scope="module")
def fabric(tmp_path_factory):
    with running_fabric(tmp_path_factory.mktemp("sdk-e2e")) as built:
        yield built


@pytest.fixture
def ep_id(fabric, tmp_path, monkeypatch) -> str:
    """The endpoint's id; this test's PARSL_LITE_HOME holds the admin's client.json."""
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    paths.write_client_file(fabric.service.url, fabric.service.admin_token)
    return fabric.ep_id


USER = user_functions("""
    import os

    def double_delayed(x):
        import time; time.sleep(1); return x * 2

    def wait_for_file(path):
        import os, time
        while not os.path.exists(path):
            time.sleep(0.01)
        return "released"

    class Boom(Exception):
        pass

    def explode(x):
        raise Boom(f"boom {x}")

    def double(x):
        return x * 2
""")
double_delayed = USER["double_delayed"]


# ---------------------------------------------------------------- "What a user does", as written

def test_issue_sync_lines(ep_id):
    fxc = FuncXClient()                       # finds the local service and the user's token by itself
    func_id = fxc.register_function(double_delayed, description="doubles")
    task_id = fxc.run(50, endpoint_id=ep_id, function_id=func_id)
    with pytest.raises(TaskPending):
        fxc.get_result(task_id)               # raises TaskPending while pending, then returns 100

    def result():
        try:
            return fxc.get_result(task_id)
        except TaskPending:
            return None
    assert wait_for(result, what="the task's result") == 100


def test_issue_async_lines(ep_id):
    func_id = FuncXClient().register_function(double_delayed, description="doubles")

    async def notebook_cell():
        fxc = FuncXClient(asynchronous=True)      # run() returns an awaitable resolving to the result
        result = await fxc.run(50, endpoint_id=ep_id, function_id=func_id)   # in a notebook cell
        return result

    assert asyncio.run(notebook_cell()) == 100
    fxc = FuncXClient(asynchronous=True)
    assert fxc.loop.run_until_complete(fxc.run(50, endpoint_id=ep_id, function_id=func_id)) == 100


def test_issue_executor_lines(ep_id):
    fxc = FuncXClient(asynchronous=True)
    fx = FuncXExecutor(fxc, batch_enabled=True, batch_interval=1.0)
    future = fx.submit(double_delayed, 50, endpoint_id=ep_id)   # a concurrent.futures.Future; result() == 100
    assert isinstance(future, concurrent.futures.Future)
    assert future.result() == 100
    fx.shutdown()


# ---------------------------------------------------------------- results, failures, pending

def test_task_pending_until_released(ep_id, tmp_path):
    gate = tmp_path / "release"
    fxc = FuncXClient()
    task_id = fxc.run(str(gate), endpoint_id=ep_id, function_id=fxc.register_function(USER["wait_for_file"]))
    with pytest.raises(TaskPending) as info:
        fxc.get_result(task_id)
    assert info.value.reason in ("waiting-for-ep", "waiting-for-launch", "running")
    wait_for(lambda: fxc.get_task(task_id)["timings"]["dispatched"], what="the task dispatched")
    with pytest.raises(TaskPending):
        fxc.get_result(task_id)               # still held by the gate
    gate.touch()

    def done():
        try:
            return fxc.get_result(task_id)
        except TaskPending:
            return None
    assert wait_for(done, what="the released task's result") == "released"
    task = fxc.get_task(task_id)
    assert task["status"] == "success" and task["endpoint_id"] == ep_id and task["completion_t"]
    timings = task["timings"]
    assert timings["received"] <= timings["dispatched"] <= timings["started"] <= timings["finished"]


def _assert_remote_boom(exc: BaseException) -> None:
    assert type(exc) is USER["Boom"] and str(exc) == "boom 3"
    frames = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
    assert "explode" in frames, frames       # the remote frame, carried home


def test_failed_function_reraises_its_type_and_traceback(ep_id):
    fxc = FuncXClient()
    func_id = fxc.register_function(USER["explode"])
    task_id = fxc.run(3, endpoint_id=ep_id, function_id=func_id)

    def failed():
        try:
            fxc.get_result(task_id)
        except TaskPending:
            return None
        except Exception as exc:
            return exc
        raise AssertionError("the task succeeded")
    _assert_remote_boom(wait_for(failed, what="the task's failure"))
    assert fxc.get_batch_result([task_id])[task_id]["status"] == "failed"

    with FuncXExecutor(fxc, endpoint_id=ep_id, batch_interval=0.05) as fx:
        _assert_remote_boom(fx.submit(USER["explode"], 3).exception(timeout=30))
    async_client = FuncXClient(asynchronous=True)
    with pytest.raises(USER["Boom"]) as info:
        async_client.loop.run_until_complete(async_client.run(3, endpoint_id=ep_id, function_id=func_id))
    _assert_remote_boom(info.value)


def test_batch_results_in_funcx_shape(ep_id):
    fxc = FuncXClient()
    func_id = fxc.register_function(USER["double"])
    batch = fxc.create_batch()
    for i in range(6):
        batch.add(i, endpoint_id=ep_id, function_id=func_id)
    task_ids = fxc.batch_run(batch)
    results = wait_for(lambda: (r := fxc.get_batch_result(task_ids)) and all(not t["pending"] for t in r.values())
                       and r, what="every result")
    assert [results[t]["result"] for t in task_ids] == [0, 2, 4, 6, 8, 10]
    assert all({"pending", "status", "result", "completion_t"} <= set(results[t]) for t in task_ids)


def test_websocket_dropped_during_an_await_resolves_with_the_result(ep_id, tmp_path):
    gate = tmp_path / "release"
    fxc = FuncXClient(asynchronous=True)
    func_id = fxc.register_function(USER["wait_for_file"])
    awaitable = fxc.run(str(gate), endpoint_id=ep_id, function_id=func_id)
    wait_for(lambda: awaitable.task_id and fxc._watcher.connects == 1, what="the task watched")
    drop_websocket(fxc)
    wait_for(lambda: fxc._watcher.connects == 2, what="the WebSocket reconnected")
    gate.touch()
    assert fxc.loop.run_until_complete(awaitable) == "released"


# ---------------------------------------------------------------- the executor

def test_executor_map_and_reload_tasks_after_a_new_executor(ep_id):
    fxc = FuncXClient()
    fx = FuncXExecutor(fxc, endpoint_id=ep_id, batch_interval=0.05)
    assert list(fx.map(USER["double"], range(8))) == [0, 2, 4, 6, 8, 10, 12, 14]
    futures = [fx.submit(USER["double"], i) for i in range(5)]
    assert [f.result(timeout=30) for f in futures] == [0, 2, 4, 6, 8]
    fx.shutdown()

    again = FuncXExecutor(FuncXClient(), endpoint_id=ep_id, task_group_id=fx.task_group_id)  # a new script
    reloaded = again.reload_tasks()
    assert len(reloaded) == 13 and [f.task_id for f in reloaded[8:]] == [f.task_id for f in futures]
    assert [f.result(timeout=30) for f in reloaded] == [0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8]


def test_executor_submissions_from_threads(ep_id):
    fxc = FuncXClient()
    with FuncXExecutor(fxc, endpoint_id=ep_id, batch_size=7, batch_interval=0.2) as fx:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = list(pool.map(lambda i: fx.submit(USER["double"], i), range(40)))
        assert sorted(f.result(timeout=30) for f in futures) == sorted(2 * i for i in range(40))
    assert len(fx._registry) == 1


def test_tasks_for_an_offline_endpoint_wait_then_resolve_when_it_is_back(fabric, ep_id, monkeypatch):
    monkeypatch.setenv(paths.HOME_ENV, str(fabric.home))   # where the endpoint's directory is
    endpoint = fabric.endpoints[0]
    assert endpoint.stop() == 0
    wait_for(lambda: not endpoint.online(), what="the endpoint offline at the service")
    fxc = FuncXClient()
    with FuncXExecutor(fxc, endpoint_id=ep_id, batch_interval=0.05) as fx:
        futures = [fx.submit(USER["double"], i) for i in range(4)]
        wait_for(lambda: all(f.task_id for f in futures), what="the tasks accepted")
        with pytest.raises(TaskPending, match="waiting-for-ep"):
            fxc.get_result(futures[0].task_id)
        endpoint.start()                          # back: the service delivers what waited
        assert [f.result(timeout=40) for f in futures] == [0, 2, 4, 6]


@pytest.fixture(scope="module")
def small_fabric(tmp_path_factory):
    """A service with a 1 s result time-to-live and a 64 KiB payload limit, and one endpoint."""
    with running_fabric(tmp_path_factory.mktemp("sdk-small"), workers=1, result_ttl=1.0,
                        payload_limit=64 * 1024) as built:
        yield built


@pytest.fixture
def small(small_fabric, tmp_path, monkeypatch) -> Fabric:
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    paths.write_client_file(small_fabric.service.url, small_fabric.service.admin_token)
    return small_fabric


def test_result_over_the_limit_raises_max_result_size_exceeded(small):
    fxc = FuncXClient()
    assert fxc.payload_limit == 64 * 1024
    big = user_functions("""
        def big(n):
            return b"x" * n
    """)["big"]
    with FuncXExecutor(fxc, endpoint_id=small.ep_id, batch_interval=0.05) as fx:
        assert len(fx.submit(big, 1000).result(timeout=30)) == 1000
        with pytest.raises(MaxResultSizeExceeded) as info:
            fx.submit(big, 100_000).result(timeout=30)
    assert info.value.what == "result" and info.value.limit == 64 * 1024 and info.value.size > 100_000
    with pytest.raises(MaxResultSizeExceeded) as refused:       # and a payload that big never leaves
        fxc.run(b"y" * 100_000, endpoint_id=small.ep_id, function_id=fxc.register_function(big))
    assert refused.value.what == "payload"


def test_result_fetched_after_its_time_to_live_is_purged(small):
    fxc = FuncXClient()
    task_id = fxc.run(2, endpoint_id=small.ep_id, function_id=fxc.register_function(USER["double"]))

    def result():
        try:
            return fxc.get_result(task_id)
        except TaskPending:
            return None
    assert wait_for(result, what="the result") == 4          # the first fetch starts its time-to-live
    wait_for(lambda: call(small.service, "GET", f"/v1/tasks/{task_id}")[0] == 410,
             what="the result purged (410)", interval_s=0.2)
    later = FuncXClient()                                     # a new script: the result is gone
    with pytest.raises(TaskPurged, match=task_id):
        later.get_result(task_id)
    assert later.get_task(task_id)["status"] == "purged" and "purged" in later.get_task(task_id)["reason"]
    assert later.get_batch_result([task_id])[task_id]["status"] == "purged"
    assert fxc.get_result(task_id) == 4                       # this client kept what it fetched (funcX)


def test_service_killed_and_restarted_midway_loses_no_task(tmp_path):
    with running_fabric(tmp_path, workers=2) as fab:
        fxc = FuncXClient()
        n = 400
        with FuncXExecutor(fxc, endpoint_id=fab.ep_id, batch_size=20, batch_interval=0.01) as fx:
            futures = [fx.submit(USER["double"], i) for i in range(n // 2)]
            wait_for(lambda: sum(f.done() for f in futures) >= 20, what="results flowing")
            fab.service.kill()                    # SIGKILL midway: tasks queued, running, results in flight
            futures += [fx.submit(USER["double"], i) for i in range(n // 2, n)]
            fab.service.restart()
            results = [f.result(timeout=50) for f in futures]
        assert results == [2 * i for i in range(n)]                  # 0 lost
        assert len(fxc.get_task_group(fx.task_group_id)) == n        # 0 doubled
