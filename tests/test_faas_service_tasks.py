"""Tasks through a real service: submit, look up, batch status, cancel, groups, limits, SIGKILL, TTL, WebSocket.

No endpoint runs here: tasks stay waiting-for-ep, as for an offline endpoint.
Where a test needs a final task, it stores the result in the service's store
from the test process, as the endpoint link does (a real SQLite file both
processes use); the end-to-end path with a real endpoint is in
test_faas_service_e2e.py.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest

from parsl_lite.faas import api
from parsl_lite.faas.errors import TaskPurged
from parsl_lite.faas.service.store import CANCELLED, PURGED, SUCCESS, WAITING_FOR_EP, open_store
from tests.conftest import wait_for
from tests.faas_helpers import (  # noqa: F401 (fixture)
    add_user, call, faas_service, register_endpoint, register_function, start_service, submit,
)


@pytest.fixture
def fn_ep(faas_service):
    """A function and an (offline) endpoint of the admin."""
    return register_function(faas_service), register_endpoint(faas_service)["endpoint_id"]


def store_result(service, task_id, value=b"100"):
    """What the endpoint link does when a result arrives: set_results in the service's store."""
    store = open_store(service.db_url)
    try:
        now = time.time()
        assert store.set_results([(task_id, SUCCESS, value, now, now)]) == [task_id]
    finally:
        store.close()


def count(service):
    store = open_store(service.db_url)
    try:
        return store.count_tasks()
    finally:
        store.close()


def test_submit_persists_and_get_task_has_the_task_shape(faas_service, fn_ep):
    function_id, endpoint_id = fn_ep
    status, body = submit(faas_service, function_id, endpoint_id, n=2)
    assert status == 200 and len(body["task_ids"]) == 2
    status, task = call(faas_service, "GET", f"/v1/tasks/{body['task_ids'][0]}")
    assert status == 200
    assert task["status"] == WAITING_FOR_EP and task["pending"] is True
    assert (task["endpoint_id"], task["function_id"], task["task_group_id"]) == (endpoint_id, function_id,
                                                                                 body["task_group_id"])
    assert task["timings"]["received"] > 0 and task["timings"]["finished"] is None
    assert "result" not in task and "exception" not in task
    assert count(faas_service)[WAITING_FOR_EP] == 2


BAD_SUBMISSIONS = [
    (lambda b: b.pop("tasks"), "'tasks': missing"),
    (lambda b: b.update(tasks={}), "'tasks': expected a list"),
    (lambda b: b.update(tasks=[]), "'tasks': empty"),
    (lambda b: b.pop("versions"), "'versions': missing"),
    (lambda b: b["tasks"].append(7), "'tasks[1]': expected an object"),
    (lambda b: b["tasks"].append({"endpoint_id": b["tasks"][0]["endpoint_id"], "payload": ""}),
     "'tasks[1].function_id': missing"),
    (lambda b: b["tasks"].append({**b["tasks"][0], "endpoint_id": "laptop"}), "'tasks[1].endpoint_id'"),
    (lambda b: b["tasks"].append({**b["tasks"][0], "payload": "**"}), "'tasks[1].payload': not valid base64"),
    (lambda b: b["tasks"].append({**b["tasks"][0], "payload": None}), "'tasks[1].payload': expected a base64"),
    (lambda b: b.update(task_group_id="g1"), "'task_group_id'"),
]


def test_a_bad_submission_is_400_naming_the_field_and_stores_nothing(faas_service, fn_ep):
    function_id, endpoint_id = fn_ep
    for change, named in BAD_SUBMISSIONS:
        body = {"tasks": [{"function_id": function_id, "endpoint_id": endpoint_id, "payload": api.b64(b"a")}],
                "versions": "v"}
        change(body)
        status, reply = call(faas_service, "POST", "/v1/submit", body)
        assert status == 400 and named in reply["reason"], (named, reply)
    assert sum(count(faas_service).values()) == 0


def test_unknown_and_other_users_ids_at_submit(faas_service, fn_ep):
    function_id, endpoint_id = fn_ep
    alice = add_user(faas_service, "alice")
    unknown = str(uuid.uuid4())
    status, body = submit(faas_service, unknown, endpoint_id)
    assert status == 404 and f"no function {unknown}" in body["reason"]
    status, body = submit(faas_service, function_id, unknown)
    assert status == 404 and f"no endpoint {unknown}" in body["reason"]
    alices_endpoint = register_endpoint(faas_service, alice)["endpoint_id"]
    status, body = submit(faas_service, function_id, alices_endpoint, alice)   # admin's private function
    assert status == 403 and function_id in body["reason"]
    status, body = submit(faas_service, register_function(faas_service, alice), endpoint_id, alice)
    assert status == 403 and endpoint_id in body["reason"]
    # a good task and a refused one in one submission: none is stored
    tasks = [{"function_id": function_id, "endpoint_id": endpoint_id, "payload": ""},
             {"function_id": function_id, "endpoint_id": unknown, "payload": ""}]
    assert call(faas_service, "POST", "/v1/submit", {"tasks": tasks, "versions": "v"})[0] == 404
    assert sum(count(faas_service).values()) == 0


def test_payloads_and_bodies_over_the_limit_are_413_naming_size_and_limit(tmp_path):
    service = start_service(tmp_path, payload_limit=1000)
    try:
        function_id = register_function(service)
        endpoint_id = register_endpoint(service)["endpoint_id"]
        assert submit(service, function_id, endpoint_id, payload=b"x" * 1000)[0] == 200
        status, body = submit(service, function_id, endpoint_id, payload=b"x" * 1001)
        assert status == 413
        assert "tasks[0].payload of 1001 bytes exceeds the limit of 1000 bytes" in body["reason"]
        limit = call(service, "GET", "/v1/version", token="")[1]["max_request_bytes"]
        status, body = submit(service, function_id, endpoint_id, payload=b"x" * 800, n=2000)
        assert status == 413 and f"the limit of {limit} bytes" in body["reason"] and "request body of" in body["reason"]
        assert count(service)[WAITING_FOR_EP] == 1
    finally:
        assert service.stop() == 0


def test_get_task_unknown_and_someone_elses(faas_service, fn_ep):
    task_id = submit(faas_service, *fn_ep)[1]["task_ids"][0]
    alice = add_user(faas_service, "alice")
    status, body = call(faas_service, "GET", f"/v1/tasks/{task_id}", token=alice)
    assert status == 403 and task_id in body["reason"]
    unknown = str(uuid.uuid4())
    status, body = call(faas_service, "GET", f"/v1/tasks/{unknown}")
    assert status == 404 and unknown in body["reason"]


def test_batch_status_never_fails_the_call(faas_service, fn_ep):
    mine = submit(faas_service, *fn_ep, n=2)[1]["task_ids"]
    store_result(faas_service, mine[1])
    alice = add_user(faas_service, "alice")
    theirs = submit(faas_service, register_function(faas_service, alice),
                    register_endpoint(faas_service, alice)["endpoint_id"], alice)[1]["task_ids"][0]
    unknown = str(uuid.uuid4())
    status, body = call(faas_service, "POST", "/v1/batch_status", {"task_ids": [*mine, theirs, unknown, "x"]})
    assert status == 200
    results = body["results"]
    assert results[mine[0]]["status"] == WAITING_FOR_EP and results[mine[0]]["pending"]
    assert results[mine[1]]["status"] == SUCCESS and api.unb64(results[mine[1]]["result"], "r") == b"100"
    for other in (theirs, unknown, "x"):
        assert results[other]["status"] == "unknown" and not results[other]["pending"]
        assert other in results[other]["reason"]
    status, body = call(faas_service, "POST", "/v1/batch_status", {"task_ids": "x"})
    assert status == 400 and "'task_ids'" in body["reason"]


def test_cancel(faas_service, fn_ep):
    task_id = submit(faas_service, *fn_ep)[1]["task_ids"][0]
    alice = add_user(faas_service, "alice")
    assert call(faas_service, "POST", f"/v1/tasks/{task_id}/cancel", token=alice)[0] == 403
    status, task = call(faas_service, "POST", f"/v1/tasks/{task_id}/cancel")
    assert status == 200 and task["status"] == CANCELLED and not task["pending"] and task["reason"]
    assert call(faas_service, "POST", f"/v1/tasks/{task_id}/cancel")[1]["status"] == CANCELLED
    done = submit(faas_service, *fn_ep)[1]["task_ids"][0]
    store_result(faas_service, done)
    assert call(faas_service, "POST", f"/v1/tasks/{done}/cancel")[1]["status"] == SUCCESS   # too late: as it is
    assert call(faas_service, "POST", f"/v1/tasks/{uuid.uuid4()}/cancel")[0] == 404


def test_task_groups(faas_service, fn_ep):
    group = str(uuid.uuid4())                  # clients make their own group ids
    first = submit(faas_service, *fn_ep, n=2, task_group_id=group)[1]
    second = submit(faas_service, *fn_ep, n=1, task_group_id=group)[1]
    assert first["task_group_id"] == second["task_group_id"] == group
    status, body = call(faas_service, "GET", f"/v1/task_groups/{group}")
    assert status == 200 and body["task_ids"] == first["task_ids"] + second["task_ids"]
    alice = add_user(faas_service, "alice")
    assert call(faas_service, "GET", f"/v1/task_groups/{group}", token=alice)[0] == 403
    alices = (register_function(faas_service, alice), register_endpoint(faas_service, alice)["endpoint_id"])
    status, body = submit(faas_service, *alices, alice, task_group_id=group)
    assert status == 403 and group in body["reason"]
    faas_service.restart()                      # the owner is remembered in memory; after a restart, read again
    status, body = submit(faas_service, *alices, alice, task_group_id=group)
    assert status == 403 and group in body["reason"]
    assert submit(faas_service, *fn_ep, n=1, task_group_id=group)[0] == 200
    unknown = str(uuid.uuid4())
    status, body = call(faas_service, "GET", f"/v1/task_groups/{unknown}")
    assert status == 404 and unknown in body["reason"]


@pytest.fixture
def pg_url(postgres):
    """A PostgreSQL DSN whose tables land in a schema of their own, dropped after the test."""
    import psycopg
    schema = f"svc_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres["PG_DSN"], autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    dsn = postgres["PG_DSN"]
    yield f"{dsn}{'&' if '?' in dsn else '?'}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres["PG_DSN"], autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _sigkill_and_restart_loses_nothing(service):
    function_id, endpoint_id = register_function(service), register_endpoint(service)["endpoint_id"]
    status, body = submit(service, function_id, endpoint_id, n=200)
    assert status == 200
    done, *queued = body["task_ids"]
    store_result(service, done, b"kept")          # as the link stores a result, before the crash
    url = service.url
    service.kill()
    service.restart()
    assert service.url == url                   # same port: clients and endpoints find it again
    status, reply = call(service, "POST", "/v1/batch_status", {"task_ids": body["task_ids"]})
    assert status == 200
    assert {reply["results"][t]["status"] for t in queued} == {WAITING_FOR_EP} and len(queued) == 199
    assert api.unb64(reply["results"][done]["result"], "result") == b"kept"
    assert call(service, "GET", f"/v1/task_groups/{body['task_group_id']}")[1]["task_ids"] == body["task_ids"]
    assert call(service, "GET", f"/v1/endpoints/{endpoint_id}")[0] == 200


def test_sigkill_and_restart_loses_no_queued_task(faas_service):
    _sigkill_and_restart_loses_nothing(faas_service)


def test_sigkill_and_restart_loses_no_queued_task_postgres(tmp_path, pg_url):
    service = start_service(tmp_path, db_url=pg_url)
    try:
        _sigkill_and_restart_loses_nothing(service)
    finally:
        assert service.stop() == 0


def test_a_result_is_purged_after_its_ttl_and_says_so(tmp_path):
    service = start_service(tmp_path, result_ttl=1)
    try:
        endpoint_id = register_endpoint(service)["endpoint_id"]
        task_id = submit(service, register_function(service), endpoint_id)[1]["task_ids"][0]
        store_result(service, task_id)
        status, task = call(service, "GET", f"/v1/tasks/{task_id}")          # the first fetch starts the TTL
        assert status == 200 and task["status"] == SUCCESS
        status, body = wait_for(lambda: (lambda r: r if r[0] == 410 else None)(
            call(service, "GET", f"/v1/tasks/{task_id}")), 20, "the result to be purged")
        assert body["error"] == "purged" and body["status"] == PURGED and "result" not in body
        assert body["reason"] == str(TaskPurged(task_id, 1.0)) and "purged" in body["reason"]
        status, batch = call(service, "POST", "/v1/batch_status", {"task_ids": [task_id]})
        assert batch["results"][task_id]["status"] == PURGED and batch["results"][task_id]["reason"]
    finally:
        assert service.stop() == 0


def test_an_unfetched_result_is_kept(tmp_path):
    service = start_service(tmp_path, result_ttl=0.5)
    try:
        ids = submit(service, register_function(service), register_endpoint(service)["endpoint_id"], n=2)[1]
        fetched, kept = ids["task_ids"]
        store_result(service, fetched)
        store_result(service, kept)
        call(service, "GET", f"/v1/tasks/{fetched}")
        wait_for(lambda: call(service, "GET", f"/v1/tasks/{fetched}")[0] == 410, 20, "the fetched one purged")
        status, task = call(service, "GET", f"/v1/tasks/{kept}")
        assert status == 200 and task["status"] == SUCCESS       # never fetched before: still there
    finally:
        assert service.stop() == 0


# ---------------------------------------------------------------- WebSocket


async def _watch(service, task_ids, token, then=None, expect=1, path="/v1/ws"):
    headers = {"Authorization": f"Bearer {token}"}
    got = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(service.url + path, headers=headers) as ws:
            await ws.send_str(json.dumps({"watch": task_ids}))
            while len(got) < expect:
                got.append(json.loads((await asyncio.wait_for(ws.receive(), 30)).data))
                if then is not None and len(got) == expect - 1:
                    await asyncio.get_running_loop().run_in_executor(None, then)
    return got


def test_websocket_sends_final_tasks_at_once_and_others_when_final(faas_service, fn_ep):
    done, pending = submit(faas_service, *fn_ep, n=2)[1]["task_ids"]
    store_result(faas_service, done)
    unknown = str(uuid.uuid4())
    messages = asyncio.run(_watch(faas_service, [done, pending, unknown], faas_service.admin_token,
                                  then=lambda: call(faas_service, "POST", f"/v1/tasks/{pending}/cancel"),
                                  expect=3))
    by_id = {m["task_id"]: m for m in messages}
    assert by_id[done]["status"] == SUCCESS and api.unb64(by_id[done]["result"], "r") == b"100"
    assert by_id[unknown]["status"] == "unknown"
    assert by_id[pending]["status"] == CANCELLED
    assert [m["task_id"] for m in messages][-1] == pending      # it came when it became final


def test_websocket_with_batch_sends_tasks_in_lists(faas_service, fn_ep):
    """``/v1/ws?batch=1`` (the SDK's): what is final at the watch comes in one {"tasks": [...]} message,
    what becomes final later in another."""
    *done, pending = submit(faas_service, *fn_ep, n=4)[1]["task_ids"]
    for task_id in done:
        store_result(faas_service, task_id)
    unknown = str(uuid.uuid4())
    first, later = asyncio.run(_watch(faas_service, [*done, pending, unknown], faas_service.admin_token,
                                      then=lambda: call(faas_service, "POST", f"/v1/tasks/{pending}/cancel"),
                                      expect=2, path="/v1/ws?batch=1"))
    assert set(first) == {"tasks"} and {t["task_id"] for t in first["tasks"]} == {*done, unknown}
    assert all(api.unb64(t["result"], "r") == b"100" for t in first["tasks"] if t["task_id"] != unknown)
    assert [(t["task_id"], t["status"]) for t in later["tasks"]] == [(pending, CANCELLED)]


def test_websocket_with_batch_2_sends_lean_tasks_in_lists(faas_service, fn_ep):
    """``/v1/ws?batch=2`` (the SDK's): the same lists, each TASK with its outcome only (no ids, no timings)."""
    done, pending = submit(faas_service, *fn_ep, n=2)[1]["task_ids"]
    store_result(faas_service, done)
    first, later = asyncio.run(_watch(faas_service, [done, pending], faas_service.admin_token,
                                      then=lambda: call(faas_service, "POST", f"/v1/tasks/{pending}/cancel"),
                                      expect=2, path="/v1/ws?batch=2"))
    [task] = first["tasks"]
    assert set(task) == {"task_id", "status", "pending", "result", "completion_t"}
    assert (task["task_id"], task["status"], api.unb64(task["result"], "r")) == (done, SUCCESS, b"100")
    assert [(t["task_id"], t["status"], "timings" in t) for t in later["tasks"]] == [(pending, CANCELLED, False)]


def test_websocket_needs_a_token_and_hides_other_users_tasks(faas_service, fn_ep):
    task_id = submit(faas_service, *fn_ep)[1]["task_ids"][0]
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        asyncio.run(_watch(faas_service, [task_id], "wrong"))
    assert info.value.status == 401
    alice = add_user(faas_service, "alice")
    [message] = asyncio.run(_watch(faas_service, [task_id], alice))
    assert message["status"] == "unknown" and "another user" in message["reason"]
