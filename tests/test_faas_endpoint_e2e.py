"""The endpoint end to end: a real service process, real endpoint daemons (htex, worker pools), the SDK.

Faults (SIGKILL of the daemon or the service) are in test_faas_endpoint_faults.py;
the functions and helpers both files use are here.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parsl_lite.faas import FuncXClient, TaskPending
from parsl_lite.faas.errors import ServiceError
from tests.conftest import wait_for
from tests.faas_endpoint_helpers import faas_endpoints  # noqa: F401 (fixture)
from tests.faas_helpers import faas_service  # noqa: F401 (fixture)


def double(x):
    return x * 2


def count_runs(path, hold):
    """Append one mark per run; the first run holds (a task that is mid-flight when the endpoint dies)."""
    with open(path, "a") as f:
        f.write("x")
    runs = len(open(path).read())
    if runs == 1 and hold:
        time.sleep(120)
    return runs


def wait_for_file(path, value):
    """Start (mark), then wait until ``path + '.go'`` exists; return ``value``."""
    open(path, "a").close()
    while not os.path.exists(path + ".go"):
        time.sleep(0.02)
    return value


def mark_after_gate(gate, marks):
    """Start (create ``gate``), wait for ``gate + '.go'``, then append a mark to ``marks``; return the count."""
    open(gate, "a").close()
    while not os.path.exists(gate + ".go"):
        time.sleep(0.02)
    with open(marks, "a") as f:
        f.write("x")
    return len(open(marks).read())


def _result(fxc: FuncXClient, task_id: str, timeout_s: float = 45.0):
    """The task's result (or its exception, raised), waiting while it is pending."""
    def ready():
        try:
            return ("value", fxc.get_result(task_id))
        except TaskPending:
            return None
        except Exception as exc:  # the remote exception: final
            return ("error", exc)
    kind, value = wait_for(ready, timeout_s, f"the result of task {task_id}", interval_s=0.05)
    if kind == "error":
        raise value
    return value


def _cli(*words: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parsl_lite.cli", "endpoint", *words], capture_output=True,
                          text=True, timeout=60)


def test_a_task_runs_and_its_result_arrives(faas_service, faas_endpoints):
    ep = faas_endpoints(faas_service, "laptop", faas_service.admin_token, workers=2, walltime="01:00:00")
    fxc = FuncXClient()
    func_id = fxc.register_function(double, description="doubles")
    task_id = fxc.run(21, endpoint_id=ep.endpoint_id, function_id=func_id)
    assert _result(fxc, task_id) == 42
    timings = fxc.get_task(task_id)["timings"]
    assert timings["started"] and timings["finished"] >= timings["started"]
    rows = [line.split() for line in _cli("list").stdout.splitlines()]
    assert rows[0] == ["NAME", "ID", "STATE", "WORKERS", "QUEUE"]
    assert rows[1][:3] == ["laptop", ep.endpoint_id, "Running"]
    wait_for(lambda: fxc.get_endpoint_status(ep.endpoint_id)["details"].get("idle_workers") == 2, 20,
             "the status report to count 2 idle workers")
    details = fxc.get_endpoint_status(ep.endpoint_id)["details"]
    assert details["provider_type"] == "LocalProvider" and list(details["blocks"].values()) == ["RUNNING"]
    assert details["alive"] is True and details["managers"] == 1 and details["connected_workers"] == 2
    assert details["pending_tasks"] == 0 and details["outstanding_tasks"] == 0
    assert 0 < details["walltime_left_s"] <= 3600
    status = _cli("status", "laptop").stdout
    assert "blocks: 0 RUNNING" in status and "state Running" in status and "last heard" in status
    assert ep.stop() == 0
    assert ep.status_file()["state"] == "Stopped"
    wait_for(lambda: fxc.get_endpoint_status(ep.endpoint_id)["status"] == "offline", 20, "the service to see it go")
    assert fxc.get_endpoint_status(ep.endpoint_id)["details"].get("stopped") is True   # said EndpointBye
    assert _cli("list").stdout.splitlines()[1].split()[2] == "Stopped"


def test_tasks_submitted_while_the_endpoint_is_offline_run_when_it_starts(faas_service, faas_endpoints):
    ep = faas_endpoints(faas_service, "sleepy", faas_service.admin_token, workers=2)
    assert ep.stop() == 0
    fxc = FuncXClient()
    func_id = fxc.register_function(double)
    task_ids = [fxc.run(i, endpoint_id=ep.endpoint_id, function_id=func_id) for i in range(5)]
    with pytest.raises(TaskPending, match="waiting-for-ep"):
        fxc.get_result(task_ids[0])
    ep.start()
    assert [_result(fxc, t) for t in task_ids] == [0, 2, 4, 6, 8]


def test_allowed_functions_are_enforced_by_the_endpoint_too(faas_service, faas_endpoints):
    ep = faas_endpoints(faas_service, "picky", faas_service.admin_token)
    fxc = FuncXClient()
    ok_id, bad_id = fxc.register_function(double), fxc.register_function(count_runs)
    assert ep.stop() == 0
    queued = fxc.run(3, endpoint_id=ep.endpoint_id, function_id=bad_id)   # accepted: no list at the service yet
    config = ep.directory / "config.toml"
    config.write_text(config.read_text().replace("[endpoint]\n", f'[endpoint]\nallowed_functions = ["{ok_id}"]\n'))
    ep.start()   # re-registers with the list; the queued task is delivered and refused by the endpoint
    with pytest.raises(PermissionError) as info:
        _result(fxc, queued)
    assert bad_id in str(info.value) and ep.endpoint_id in str(info.value)
    assert _result(fxc, fxc.run(4, endpoint_id=ep.endpoint_id, function_id=ok_id)) == 8
    with pytest.raises(ServiceError) as refused:   # and the service refuses new ones at the edge
        fxc.run(5, endpoint_id=ep.endpoint_id, function_id=bad_id)
    assert refused.value.http_status == 403


def test_blocks_scale_out_under_load_and_in_when_idle(faas_service, faas_endpoints, tmp_path):
    ep = faas_endpoints(faas_service, "elastic", faas_service.admin_token, workers=1, init_blocks=0,
                        max_blocks=2, max_idletime=1.0)
    fxc = FuncXClient()
    func_id = fxc.register_function(wait_for_file)

    def blocks() -> dict:
        return fxc.get_endpoint_status(ep.endpoint_id)["details"].get("blocks", {})

    assert blocks() == {}   # no block before there is work
    paths = [str(tmp_path / f"task{i}") for i in range(2)]
    task_ids = [fxc.run(path, i, endpoint_id=ep.endpoint_id, function_id=func_id) for i, path in enumerate(paths)]
    wait_for(lambda: all(os.path.exists(path) for path in paths), 40, "both tasks running, one block each")
    assert len(blocks()) == 2
    for path in paths:
        Path(path + ".go").touch()
    assert [_result(fxc, t) for t in task_ids] == [0, 1]
    wait_for(lambda: blocks() == {}, 40, "the idle blocks to be released")



def test_a_function_serialized_by_other_versions_fails_naming_both(faas_service, faas_endpoints):
    from parsl_lite.faas import api, protocol
    from parsl_lite.faas.errors import SerializationVersionError
    from parsl_lite.serialize import serialize
    from tests.faas_helpers import call

    ep = faas_endpoints(faas_service, "modern", faas_service.admin_token)
    status, body = call(faas_service, "POST", "/v1/functions", {
        "function_name": "from_the_past", "function_code": api.b64(b"D\x80\x02not dill of ours"),
        "versions": "Python 2.7.18, parsl_lite 0.0.1"})
    assert status == 200, body
    status, body = call(faas_service, "POST", "/v1/submit", {
        "tasks": [{"function_id": body["function_id"], "endpoint_id": ep.endpoint_id,
                   "payload": api.b64(serialize(((), {})))}], "versions": "Python 2.7.18, parsl_lite 0.0.1"})
    assert status == 200, body
    with pytest.raises(SerializationVersionError) as info:
        _result(FuncXClient(), body["task_ids"][0])
    assert "Python 2.7.18, parsl_lite 0.0.1" in str(info.value) and protocol.versions_string() in str(info.value)
