"""Endpoint faults, made for real: SIGKILL of the daemon mid-task (re-delivered, or EndpointLost after
max_retries_on_system_failure), SIGKILL of the service while a result is on its way (spooled, re-sent).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from parsl_lite.faas import FuncXClient, TaskPending
from parsl_lite.faas.errors import EndpointLost
from tests.conftest import wait_for
from tests.faas_endpoint_helpers import faas_endpoints  # noqa: F401 (fixture)
from tests.faas_helpers import faas_service  # noqa: F401 (fixture)
from tests.test_faas_endpoint_e2e import _result, count_runs, mark_after_gate, wait_for_file


def test_killed_mid_task_the_task_is_redelivered_and_completes(faas_service, faas_endpoints, tmp_path):
    ep = faas_endpoints(faas_service, "crashy", faas_service.admin_token)
    fxc = FuncXClient()
    marks = tmp_path / "marks"
    task_id = fxc.run(str(marks), True, endpoint_id=ep.endpoint_id, function_id=fxc.register_function(count_runs))
    wait_for(lambda: marks.exists(), 30, "the task to start on a worker")
    ep.kill()
    with pytest.raises(TaskPending):
        fxc.get_result(task_id)
    ep.restart()
    assert _result(fxc, task_id) == 2   # ran again, to the end, on the restarted endpoint


def test_killed_more_than_max_retries_the_task_fails_naming_the_endpoint(faas_service, faas_endpoints, tmp_path):
    ep = faas_endpoints(faas_service, "fragile", faas_service.admin_token, max_retries_on_system_failure=0)
    fxc = FuncXClient()
    marks = tmp_path / "marks"
    task_id = fxc.run(str(marks), True, endpoint_id=ep.endpoint_id, function_id=fxc.register_function(count_runs))
    wait_for(lambda: marks.exists(), 30, "the task to start on a worker")
    ep.kill()
    ep.restart()
    with pytest.raises(EndpointLost) as info:
        _result(fxc, task_id)
    assert ep.endpoint_id in str(info.value) and "2 times" in str(info.value)
    assert marks.read_text() == "x"   # never ran again


def test_a_result_the_service_missed_is_spooled_and_resent_after_it_restarts(faas_service, faas_endpoints, tmp_path):
    ep = faas_endpoints(faas_service, "patient", faas_service.admin_token)
    fxc = FuncXClient()
    path = str(tmp_path / "started")
    task_id = fxc.run(path, "kept", endpoint_id=ep.endpoint_id, function_id=fxc.register_function(wait_for_file))
    wait_for(lambda: os.path.exists(path), 30, "the task to start on a worker")
    faas_service.kill()
    Path(path + ".go").touch()
    spool = ep.directory / "unacked_results"
    wait_for(lambda: len(list(spool.glob("*.results"))) == 1, 20, "the result in the endpoint's spool")
    wait_for(lambda: ep.status_file().get("state") == "Disconnected", 20, "the endpoint to say Disconnected")
    assert ep.alive()
    faas_service.restart()
    assert _result(fxc, task_id) == "kept"
    wait_for(lambda: not list(spool.glob("*.results")), 20, "the spool to be emptied by ResultsStored")
    wait_for(lambda: ep.status_file().get("state") == "Running", 20, "the endpoint to say Running again")


def test_a_spooled_result_survives_the_endpoints_own_crash_and_the_task_runs_once(faas_service, faas_endpoints,
                                                                                    tmp_path):
    ep = faas_endpoints(faas_service, "durable", faas_service.admin_token)
    fxc = FuncXClient()
    marks = tmp_path / "marks"
    gate = str(tmp_path / "gate")
    task_id = fxc.run(gate, str(marks), endpoint_id=ep.endpoint_id, function_id=fxc.register_function(mark_after_gate))
    wait_for(lambda: os.path.exists(gate), 30, "the task to start on a worker")
    faas_service.kill()                       # nobody to send the result to
    Path(gate + ".go").touch()
    spool = ep.directory / "unacked_results"
    wait_for(lambda: list(spool.glob("*.results")), 20, "the result in the endpoint's spool")
    ep.kill()                                 # and the endpoint dies too, with the result only on its disk
    faas_service.restart()
    ep.restart()                              # the service re-delivers the task; the endpoint has its result
    assert _result(fxc, task_id) == 1
    assert marks.read_text() == "x"           # it ran once
    wait_for(lambda: not list(spool.glob("*.results")), 20, "the spool to be emptied by ResultsStored")
