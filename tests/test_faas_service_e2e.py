"""The service with a real endpoint daemon: results over HTTP and the WebSocket, the TTL, a SIGKILLed service.

The endpoint is ``tests/faas_endpoint_helpers.py``'s (``parsl-lite endpoint
start``, an htex with one worker); requests are plain HTTP (``faas_helpers.call``)
so what is tested is the service's API, not the SDK.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp

from parsl_lite.faas import api
from parsl_lite.faas.errors import TaskPurged
from parsl_lite.faas.service.store import PURGED, SUCCESS, WAITING_FOR_EP
from parsl_lite.serialize import deserialize, serialize
from tests.conftest import wait_for
from tests.faas_endpoint_helpers import faas_endpoints  # noqa: F401 (fixture)
from tests.faas_helpers import call, faas_service, register_function, start_service, submit  # noqa: F401


def double(x):
    return x * 2


def run(service, function_id, endpoint_id, *xs):
    tasks = [{"function_id": function_id, "endpoint_id": endpoint_id, "payload": api.b64(serialize(((x,), {})))}
             for x in xs]
    status, body = call(service, "POST", "/v1/submit", {"tasks": tasks, "versions": "test"})
    assert status == 200, body
    return body["task_ids"]


def final(service, task_id):
    status, task = call(service, "GET", f"/v1/tasks/{task_id}")
    return task if status == 200 and not task["pending"] else None


def value(task):
    return deserialize(api.unb64(task["result"], "result"))


async def _watch(service, task_ids):
    headers = {"Authorization": f"Bearer {service.admin_token}"}
    got = {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(service.url + "/v1/ws", headers=headers, max_msg_size=0) as ws:
            await ws.send_str(json.dumps({"watch": task_ids}))
            while len(got) < len(task_ids):
                message = json.loads((await asyncio.wait_for(ws.receive(), 45)).data)
                got[message["task_id"]] = message
    return got


def test_results_come_over_the_websocket_and_http(faas_service, faas_endpoints):
    endpoint = faas_endpoints(faas_service, "laptop", faas_service.admin_token)
    function_id = register_function(faas_service, code=serialize(double))
    task_ids = run(faas_service, function_id, endpoint.endpoint_id, 1, 2, 3)
    pushed = asyncio.run(_watch(faas_service, task_ids))
    assert [value(pushed[t]) for t in task_ids] == [2, 4, 6]
    task = final(faas_service, task_ids[0])
    assert task["status"] == SUCCESS and value(task) == 2
    timings = task["timings"]
    assert timings["received"] <= timings["dispatched"] <= timings["finished"]
    assert task["completion_t"] == timings["finished"]
    status, body = call(faas_service, "GET", f"/v1/endpoints/{endpoint.endpoint_id}/status")
    assert body["status"] == "online" and body["last_seen"] and body["details"]
    shown = subprocess.run([sys.executable, "-m", "parsl_lite.cli", "service", "status", "--dir",
                            str(faas_service.dir)], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "endpoints: 1 online of 1" in shown.stdout and "success 3" in shown.stdout
    assert endpoint.endpoint_id in shown.stdout


def test_a_result_from_an_endpoint_is_purged_after_its_ttl(tmp_path, monkeypatch, faas_endpoints):
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "home"))
    service = start_service(tmp_path, result_ttl=1)
    try:
        endpoint = faas_endpoints(service, "laptop", service.admin_token)
        [task_id] = run(service, register_function(service, code=serialize(double)), endpoint.endpoint_id, 21)
        task = wait_for(lambda: final(service, task_id), 45, "the result")    # this fetch starts the TTL
        assert value(task) == 42
        status, body = wait_for(lambda: (lambda r: r if r[0] == 410 else None)(
            call(service, "GET", f"/v1/tasks/{task_id}")), 20, "the purge")
        assert body["status"] == PURGED and body["reason"] == str(TaskPurged(task_id, 1.0))
    finally:
        assert service.stop() == 0       # the endpoint: faas_endpoints stops it


def test_tasks_queued_in_a_killed_service_run_after_its_restart(faas_service, faas_endpoints):
    endpoint = faas_endpoints(faas_service, "laptop", faas_service.admin_token)
    function_id = register_function(faas_service, code=serialize(double))
    endpoint.stop()                                   # offline: the tasks wait, persisted
    task_ids = run(faas_service, function_id, endpoint.endpoint_id, *range(20))
    faas_service.kill()
    faas_service.restart()
    status, body = call(faas_service, "POST", "/v1/batch_status", {"task_ids": task_ids})
    assert {t["status"] for t in body["results"].values()} == {WAITING_FOR_EP}
    endpoint.start()                                  # it comes back to the restarted service
    done = wait_for(lambda: all(final(faas_service, t) for t in task_ids), 45, "all 20 results")
    assert done
    assert [value(final(faas_service, t)) for t in task_ids] == [2 * x for x in range(20)]
