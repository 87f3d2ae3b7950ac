"""The SDK against a real service process (no endpoint needed: tasks wait for an offline one).

A task sent to a registered endpoint that never connects stays
``waiting-for-ep``: that is ``TaskPending`` deterministically, and a
``cancel`` makes it final on demand, which drives the WebSocket (results
pushed, reconnection after a drop) without any timing race.
"""
from __future__ import annotations

import asyncio
import textwrap
import threading
import uuid

import pytest

from parsl_lite.faas import FuncXClient, FuncXExecutor, TaskPending, paths
from parsl_lite.faas.errors import (MaxResultSizeExceeded, ServiceError, TaskCancelled)
from parsl_lite.faas.sdk.executor import FuncXFuture

from .conftest import wait_for
from .faas_helpers import add_user, call, faas_service, start_service  # noqa: F401 (fixture)


def user_functions(source: str) -> dict:
    """Functions as a user's script or notebook defines them (module ``__main__``: sent by value)."""
    namespace: dict = {"__name__": "__main__"}
    exec(textwrap.dedent(source), namespace)
    return namespace


FUNCS = user_functions("""
    def double(x):
        return x * 2
""")


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory):
    """One service for the tests that neither kill nor restart it (a service takes ~1 s to start)."""
    service = start_service(tmp_path_factory.mktemp("faas"))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def service(shared_service, tmp_path, monkeypatch):
    """The shared service, with ``PARSL_LITE_HOME`` in ``tmp_path`` and the admin's client.json there."""
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.delenv(paths.URL_ENV, raising=False)
    monkeypatch.delenv(paths.TOKEN_ENV, raising=False)
    paths.write_client_file(shared_service.url, shared_service.admin_token)
    return shared_service


def offline_endpoint(service, token=None, name=None) -> str:
    """A registered endpoint that never connects: its tasks wait in waiting-for-ep."""
    name = name or f"offline-{uuid.uuid4().hex[:8]}"
    status, body = call(service, "POST", "/v1/endpoints", {"name": name}, token=token)
    assert status == 200, body
    return body["endpoint_id"]


def drop_websocket(fxc: FuncXClient) -> None:
    """Cut the results WebSocket's TCP connection from the client side (no close handshake)."""
    async def drop() -> None:
        ws = fxc._watcher._ws
        assert ws is not None, "no results WebSocket open"
        ws._response.connection.transport.abort()
    fxc._io.run(drop())


# ---------------------------------------------------------------- the sync client

def test_client_finds_the_service_and_token_by_itself(service):
    fxc = FuncXClient()                       # client.json written by the fixture
    assert fxc.service_url == service.url
    assert fxc.whoami()["username"] == "admin"
    assert fxc.version_check()["api"] == "v1"
    func_id = fxc.register_function(FUNCS["double"], description="doubles")
    info = fxc.get_function(func_id)
    assert (info["function_name"], info["description"], info["public"]) == ("double", "doubles", False)


def test_env_beats_the_credentials_file(service, monkeypatch):
    bob = add_user(service, f"bob-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv(paths.URL_ENV, service.url)
    monkeypatch.setenv(paths.TOKEN_ENV, bob)
    assert FuncXClient().whoami()["username"].startswith("bob-")


def test_run_pending_then_task_dict(service):
    fxc = FuncXClient()
    ep_id = offline_endpoint(service)
    func_id = fxc.register_function(FUNCS["double"])
    task_id = fxc.run(50, endpoint_id=ep_id, function_id=func_id)
    uuid.UUID(task_id)
    with pytest.raises(TaskPending, match="Task is pending due to waiting-for-ep") as info:
        fxc.get_result(task_id)
    assert info.value.reason == "waiting-for-ep"
    task = fxc.get_task(task_id)
    assert (task["status"], task["pending"], task["endpoint_id"]) == ("waiting-for-ep", True, ep_id)
    assert task["timings"]["received"] > 0 and task["timings"]["dispatched"] is None
    assert fxc.get_endpoint_status(ep_id)["status"] == "offline"
    assert ep_id in [e["endpoint_id"] for e in fxc.get_endpoints()]


def test_cancel_then_get_result_says_cancelled(service):
    fxc = FuncXClient()
    ep_id = offline_endpoint(service)
    task_id = fxc.run(1, endpoint_id=ep_id, function_id=fxc.register_function(FUNCS["double"]))
    assert fxc.cancel(task_id)["status"] == "cancelled"
    with pytest.raises(TaskCancelled, match=task_id):
        fxc.get_result(task_id)


def test_batch_run_and_get_batch_result_shapes(service):
    fxc = FuncXClient()
    ep_id = offline_endpoint(service)
    func_id = fxc.register_function(FUNCS["double"])
    group = str(uuid.uuid4())
    batch = fxc.create_batch(task_group_id=group)
    for i in range(5):
        batch.add(i, endpoint_id=ep_id, function_id=func_id)
    task_ids = fxc.batch_run(batch)
    assert len(task_ids) == 5 and fxc.get_task_group(group) == task_ids
    fxc.cancel(task_ids[0])
    results = fxc.get_batch_result(task_ids)
    assert list(results) == task_ids
    assert {k: results[task_ids[0]][k] for k in ("pending", "status")} == {"pending": False, "status": "cancelled"}
    assert "completion_t" in results[task_ids[0]]
    assert all(results[t]["pending"] and results[t]["status"] == "waiting-for-ep" for t in task_ids[1:])
    with pytest.raises(TypeError, match="list of task ids"):
        fxc.get_batch_result(task_ids[0])


# ---------------------------------------------------------------- bad input at the client edge

def test_payload_over_the_limit_refused_before_sending(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    service = start_service(tmp_path, payload_limit=4096)
    try:
        fxc = FuncXClient(service.url, service.admin_token)
        assert fxc.payload_limit == 4096          # learnt from /v1/version
        ep_id = offline_endpoint(service)
        func_id = fxc.register_function(FUNCS["double"])
        with pytest.raises(MaxResultSizeExceeded) as info:
            fxc.run(b"x" * 10_000, endpoint_id=ep_id, function_id=func_id)
        assert (info.value.what, info.value.limit) == ("payload", 4096) and info.value.size > 10_000
        status, _ = call(service, "GET", f"/v1/task_groups/{fxc.session_task_group_id}")
        assert status == 404                      # nothing reached the service
        fxc.payload_limit = 10**9                 # were the client to send it, the service says 413
        with pytest.raises(ServiceError) as refused:
            fxc.run(b"x" * 10_000, endpoint_id=ep_id, function_id=func_id)
        assert refused.value.http_status == 413 and "4096" in refused.value.reason
        fxc.payload_limit = 4096
        batch = fxc.create_batch(task_group_id=str(uuid.uuid4()))
        for _ in range(300):                      # ~1.6 MB of base64: more than one request may carry
            batch.add(b"z" * 3900, endpoint_id=ep_id, function_id=func_id)
        assert sum(count for count, _ in batch.requests(fxc.versions, fxc.max_request_bytes)) == 300
        assert len(list(batch.requests(fxc.versions, fxc.max_request_bytes))) >= 2
        task_ids = fxc.batch_run(batch)
        assert len(set(task_ids)) == 300 and fxc.get_task_group(batch.task_group_id) == task_ids
    finally:
        service.stop()


def test_unknown_ids_get_the_services_404_reason(service):
    fxc = FuncXClient()
    ep_id = offline_endpoint(service)
    func_id = fxc.register_function(FUNCS["double"])
    missing = str(uuid.uuid4())
    with pytest.raises(ServiceError) as info:
        fxc.run(1, endpoint_id=ep_id, function_id=missing)
    assert info.value.http_status == 404 and missing in info.value.reason
    with pytest.raises(ServiceError) as info:
        fxc.run(1, endpoint_id=missing, function_id=func_id)
    assert info.value.http_status == 404 and missing in info.value.reason
    with pytest.raises(ServiceError) as info:
        fxc.get_task(missing)
    assert info.value.http_status == 404 and missing in info.value.reason
    with pytest.raises(ValueError, match="endpoint_id 'laptop' is not a UUID"):
        fxc.run(1, endpoint_id="laptop", function_id=func_id)


def test_wrong_token_gets_the_services_401_reason(service):
    fxc = FuncXClient(service.url, "not-a-token")
    with pytest.raises(ServiceError) as info:
        fxc.register_function(FUNCS["double"])
    assert info.value.http_status == 401 and info.value.reason
    assert "token" in info.value.reason


def test_another_users_function_is_forbidden(service):
    admin = FuncXClient()
    func_id = admin.register_function(FUNCS["double"])
    bob_name = f"bob-{uuid.uuid4().hex[:8]}"
    bob_token = add_user(service, bob_name)
    bob = FuncXClient(service.url, bob_token)
    bob_ep = offline_endpoint(service, token=bob_token)
    with pytest.raises(ServiceError) as info:
        bob.run(1, endpoint_id=bob_ep, function_id=func_id)
    assert info.value.http_status in (403, 404) and func_id in info.value.reason
    shared = admin.register_function(FUNCS["double"], shared_with=[bob_name])
    assert uuid.UUID(bob.run(1, endpoint_id=bob_ep, function_id=shared))


# ---------------------------------------------------------------- the async client

def test_async_run_resolves_over_the_websocket(service):
    fxc = FuncXClient(asynchronous=True)
    ep_id = offline_endpoint(service)
    func_id = fxc.register_function(FUNCS["double"])
    awaitable = fxc.run(50, endpoint_id=ep_id, function_id=func_id)
    task_id = wait_for(lambda: awaitable.task_id, what="the task accepted")
    wait_for(lambda: fxc._watcher.connects == 1, what="the results WebSocket opened")
    fxc.cancel(task_id)
    with pytest.raises(TaskCancelled, match=task_id):
        fxc.loop.run_until_complete(awaitable)
    wait_for(lambda: fxc._watcher._ws is None, what="the WebSocket closed after the last task")


def test_async_client_made_inside_a_running_loop(service):
    ep_id = offline_endpoint(service)

    async def cell():  # a notebook cell: the loop runs already
        fxc = FuncXClient(asynchronous=True)
        assert fxc.loop is asyncio.get_running_loop()
        awaitable = fxc.run(1, endpoint_id=ep_id, function_id=fxc.register_function(FUNCS["double"]))
        threading.Thread(target=lambda: fxc.cancel(wait_for(lambda: awaitable.task_id))).start()
        with pytest.raises(TaskCancelled):
            await awaitable
        return True

    assert asyncio.run(cell())


def test_async_awaitables_work_in_any_loop_and_gather(service):
    fxc = FuncXClient(asynchronous=True)         # made outside any loop: fxc.loop is a new one
    ep_id = offline_endpoint(service)
    func_id = fxc.register_function(FUNCS["double"])
    tasks = [fxc.run(i, endpoint_id=ep_id, function_id=func_id) for i in range(3)]
    ids = [wait_for(lambda t=t: t.task_id, what="the task accepted") for t in tasks]
    assert not any(t.done() for t in tasks)

    async def elsewhere():                       # another loop (asyncio.run's) awaits them together
        assert asyncio.get_running_loop() is not fxc.loop
        threading.Thread(target=lambda: [fxc.cancel(i) for i in ids]).start()
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(elsewhere())
    assert [type(o) for o in outcomes] == [TaskCancelled] * 3
    assert all(t.done() for t in tasks) and isinstance(tasks[0].exception(), TaskCancelled)


def test_async_runs_of_one_tick_share_a_request_and_a_refused_one_fails_alone(service, monkeypatch):
    fxc = FuncXClient(asynchronous=True)
    ep_id = offline_endpoint(service)
    func_id = fxc.register_function(FUNCS["double"])
    submits = []
    real_call = fxc._session.call

    async def counting_call(method, path, body=None, idempotent=False):
        if path == "/submit":
            submits.append(len(body["tasks"]))
        return await real_call(method, path, body, idempotent)
    monkeypatch.setattr(fxc._session, "call", counting_call)

    runs = [fxc.run(i, endpoint_id=ep_id, function_id=func_id) for i in range(20)]
    wait_for(lambda: sum(submits) == 20, what="the 20 runs submitted")
    assert len(submits) < 20                      # coalesced while the first request was in flight

    good = [fxc.run(i, endpoint_id=ep_id, function_id=func_id) for i in range(3)]
    missing = str(uuid.uuid4())
    bad = fxc.run(1, endpoint_id=ep_id, function_id=missing)
    with pytest.raises(ServiceError) as info:
        fxc.loop.run_until_complete(bad)
    assert info.value.http_status == 404 and missing in info.value.reason
    assert len({wait_for(lambda t=t: t.task_id, what="a good run accepted") for t in good}) == 3
    for task_id in fxc.get_task_group():
        fxc.cancel(task_id)
    async def together():
        return await asyncio.gather(*runs, return_exceptions=True)
    assert all(isinstance(o, TaskCancelled) for o in fxc.loop.run_until_complete(together()))


def test_websocket_dropped_during_an_await_still_resolves(service):
    fxc = FuncXClient(asynchronous=True)
    ep_id = offline_endpoint(service)
    awaitable = fxc.run(1, endpoint_id=ep_id, function_id=fxc.register_function(FUNCS["double"]))
    task_id = wait_for(lambda: awaitable.task_id, what="the task accepted")
    wait_for(lambda: fxc._watcher.connects == 1, what="the results WebSocket opened")
    drop_websocket(fxc)
    wait_for(lambda: fxc._watcher.connects == 2, what="the WebSocket reconnected")
    fxc.cancel(task_id)
    with pytest.raises(TaskCancelled):
        fxc.loop.run_until_complete(awaitable)


def test_service_restarted_during_an_await_still_resolves(faas_service):
    fxc = FuncXClient(asynchronous=True)
    ep_id = offline_endpoint(faas_service)
    awaitable = fxc.run(1, endpoint_id=ep_id, function_id=fxc.register_function(FUNCS["double"]))
    task_id = wait_for(lambda: awaitable.task_id, what="the task accepted")
    wait_for(lambda: fxc._watcher.connects == 1, what="the results WebSocket opened")
    faas_service.kill()
    faas_service.restart()
    wait_for(lambda: fxc._watcher.connects >= 2, what="the WebSocket reconnected to the new service")
    assert fxc.cancel(task_id)["status"] == "cancelled"
    with pytest.raises(TaskCancelled):
        fxc.loop.run_until_complete(awaitable)


def test_service_killed_during_submissions_loses_and_doubles_nothing(faas_service):
    fxc = FuncXClient()
    ep_id = offline_endpoint(faas_service)
    fx = FuncXExecutor(fxc, endpoint_id=ep_id, batch_size=5, batch_interval=0.0)
    futures: list = []
    stop = threading.Event()

    def keep_submitting():
        while not stop.is_set() and len(futures) < 3000:
            futures.append(fx.submit(FUNCS["double"], len(futures)))

    submitter = threading.Thread(target=keep_submitting)
    submitter.start()
    try:
        wait_for(lambda: sum(1 for f in futures[:200] if f.task_id) >= 100, what="submissions flowing")
        faas_service.kill()                       # SIGKILL, with batches in flight
        faas_service.restart()
        wait_for(lambda: len(futures) >= 1500, what="submissions after the restart", timeout_s=40)
    finally:
        stop.set()
        submitter.join()
    fx.shutdown(wait=False)
    wait_for(lambda: all(f.task_id or f.done() for f in futures), what="every submission answered", timeout_s=40)
    assert not [f.exception() for f in futures if f.done()], "a submission failed"
    ids = [f.task_id for f in futures]
    group = fxc.get_task_group(fx.task_group_id)
    assert len(set(ids)) == len(ids) == len(futures)
    assert group == ids                           # each task stored once, in submission order


# ---------------------------------------------------------------- the executor without an endpoint

def test_executor_batches_ready_together_share_requests_and_a_refused_one_fails_alone(service, monkeypatch):
    fxc = FuncXClient()
    ep_id = offline_endpoint(service)
    submits = []
    real_call = fxc._session.call

    async def counting_call(method, path, body=None, idempotent=False):
        if path == "/submit":
            submits.append(len(body["tasks"]))
        return await real_call(method, path, body, idempotent)
    monkeypatch.setattr(fxc._session, "call", counting_call)
    missing = str(uuid.uuid4())
    fx = FuncXExecutor(fxc, endpoint_id=ep_id, batch_size=10, batch_interval=60.0)   # full batches only
    first = [fx.submit(FUNCS["double"], i) for i in range(420)]
    bad = [fx.submit(FUNCS["double"], i, endpoint_id=missing) for i in range(10)]     # one batch of its own
    last = [fx.submit(FUNCS["double"], i) for i in range(20)]
    for future in bad:
        with pytest.raises(ServiceError) as info:
            future.result(timeout=20)
        assert info.value.http_status == 404 and missing in info.value.reason
    good = first + last
    wait_for(lambda: all(f.task_id for f in good), what="every good task accepted")
    assert max(submits) > 10                         # batches of 10, coalesced behind a request in flight
    fx.shutdown(wait=False, cancel_futures=True)     # the endpoint is offline: nothing would finish
    assert fxc.get_task_group(fx.task_group_id) == [f.task_id for f in good]   # each stored once, in order


def test_executor_future_of_a_refused_task_raises_the_service_error(service):
    fxc = FuncXClient()
    missing = str(uuid.uuid4())
    with FuncXExecutor(fxc, endpoint_id=missing) as fx:
        future = fx.submit(FUNCS["double"], 1)
        with pytest.raises(ServiceError) as info:
            future.result(timeout=20)
    assert info.value.http_status == 404 and missing in info.value.reason


def test_executor_registers_once_and_batches(service):
    fxc = FuncXClient()
    ep_id = offline_endpoint(service)
    fx = FuncXExecutor(fxc, endpoint_id=ep_id, batch_size=4, batch_interval=60.0)
    futures = [fx.submit(FUNCS["double"], i) for i in range(10)]
    assert len(fx._registry) == 1
    wait_for(lambda: all(f.task_id for f in futures[:8]), what="two full batches sent")
    assert futures[9].task_id is None          # the last two wait for the interval (or a waiter)
    group = fxc.get_task_group(fx.task_group_id)
    assert len(group) == 8
    with pytest.raises(TaskPending):
        fxc.get_result(futures[9].task_id or group[0])
    fx.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in futures)
    with pytest.raises(RuntimeError, match="shut down"):
        fx.submit(FUNCS["double"], 1)


def test_cancelling_a_sent_future_cancels_the_task_at_the_service(service):
    fxc = FuncXClient()
    fx = FuncXExecutor(fxc, endpoint_id=offline_endpoint(service), batch_interval=0.05)
    future = fx.submit(FUNCS["double"], 1)
    task_id = wait_for(lambda: future.task_id, what="the task accepted")
    assert future.cancel() and future.cancelled()
    wait_for(lambda: fxc.get_batch_result([task_id])[task_id]["status"] == "cancelled",
             what="the service cancelled the task")


def test_reload_tasks_in_a_new_executor(service):
    fxc = FuncXClient()
    ep_id = offline_endpoint(service)
    first = FuncXExecutor(fxc, endpoint_id=ep_id, batch_interval=0.05)
    futures = [first.submit(FUNCS["double"], i) for i in range(3)]
    wait_for(lambda: all(f.task_id for f in futures), what="the tasks accepted")
    group = first.task_group_id
    del first                                   # the script died; a new one re-attaches

    again = FuncXExecutor(FuncXClient(), endpoint_id=ep_id, task_group_id=group)
    reloaded = again.reload_tasks()
    assert [f.task_id for f in reloaded] == [f.task_id for f in futures]
    assert all(isinstance(f, FuncXFuture) and not f.done() for f in reloaded)
    for future in reloaded:
        fxc.cancel(future.task_id)
    for future in reloaded:
        with pytest.raises(TaskCancelled):
            future.result(timeout=20)
    with pytest.raises(ServiceError) as info:
        again.reload_tasks(str(uuid.uuid4()))
    assert info.value.http_status == 404
