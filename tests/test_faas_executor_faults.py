"""The FaaS executor when an endpoint dies mid-workflow: its tasks fail with ``EndpointLost``, retries finish them.

A service with fast heartbeats (an endpoint silent 2 s is offline) and two
real endpoints; one is SIGKILLed while it holds tasks.
"""
from __future__ import annotations

import textwrap

import pytest

import parsl_lite as parsl
from parsl_lite.config import Config
from parsl_lite.dataflow.loader import DataFlowKernelLoader
from parsl_lite.executors import FuncXExecutor
from parsl_lite.errors import ConfigurationError
from parsl_lite.executors.faas.errors import EndpointsOffline
from parsl_lite.faas.errors import EndpointLost

from .conftest import wait_for
from .faas_endpoint_helpers import faas_endpoints  # noqa: F401  (the fixture)
from .faas_helpers import client_home_service
from .test_faas_executor import WHERE
from .test_faas_sdk import user_functions


@pytest.fixture
def fabric(tmp_path, monkeypatch, faas_endpoints):
    monkeypatch.chdir(tmp_path)
    with client_home_service(tmp_path, monkeypatch, heartbeat_period=0.5) as service:
        try:
            eps = [faas_endpoints(service, name, service.admin_token, workers=2) for name in ("ep1", "ep2")]
            yield service, eps
        finally:   # the faas_endpoints fixture stops the endpoints and checks none is left
            if DataFlowKernelLoader._dfk is not None:
                parsl.clear()


NAP = user_functions(WHERE + textwrap.dedent("""
    from parsl_lite import python_app

    @python_app(executors=["funcX"])
    def nap(x, path):
        import os, time
        while not os.path.exists(path):   # hold the task until the test lets it go
            time.sleep(0.02)
        return x, where()
"""))


def make_config(ep1: str, ep2: str, retries: int) -> Config:
    return Config(retries=retries, executors=[
        FuncXExecutor(label="funcX", endpoints=[ep1, ep2], status_period=0.2, endpoint_lost_after=1.0)])


def test_endpoint_killed_mid_workflow_tasks_finish_on_the_other(fabric, tmp_path):
    _service, (ep1, ep2) = fabric
    gate = tmp_path / "go"
    events = []
    with parsl.load(make_config(ep1.endpoint_id, ep2.endpoint_id, retries=2)) as dfk:
        dfk.add_listener(events.append)
        futures = [NAP["nap"](i, str(gate)) for i in range(6)]        # round robin: 3 on each endpoint
        executor = dfk.executors["funcX"]
        wait_for(lambda: executor.outstanding == 6, what="6 tasks in flight")
        ep1.kill()
        wait_for(lambda: not any(ep1.endpoint_id == e and t for e, t in executor._in_flight.items()),
                 timeout_s=30, what="ep1's tasks given up")
        gate.touch()
        results = [f.result(timeout=60) for f in futures]
    assert [x for x, _ in results] == list(range(6))
    assert {where for _, where in results} == {"ep2"}
    seen = [(e.detail["endpoint_id"], e.detail["status"]) for e in events if getattr(e, "what", "") == "endpoint_status"]
    assert (ep1.endpoint_id, "offline") in seen         # the kernel's listeners saw the endpoint go
    placed = [e.detail["endpoint_id"] for e in events if getattr(e, "what", "") == "task_placed"]
    assert placed.count(ep2.endpoint_id) == 6            # and every task end on ep2


def test_endpoint_killed_without_retries_fails_with_endpoint_lost_naming_it(fabric, tmp_path):
    _service, (ep1, ep2) = fabric
    gate = tmp_path / "go"
    with parsl.load(make_config(ep1.endpoint_id, ep2.endpoint_id, retries=0)) as dfk:
        futures = [NAP["nap"](i, str(gate)) for i in range(4)]
        wait_for(lambda: dfk.executors["funcX"].outstanding == 4, what="4 tasks in flight")
        ep1.kill()
        for f in futures[0::2]:   # round robin sent tasks 0 and 2 to ep1
            with pytest.raises(EndpointLost, match=ep1.endpoint_id):
                f.result(timeout=30)
        gate.touch()
        assert [f.result(timeout=60) for f in futures[1::2]] == [(1, "ep2"), (3, "ep2")]


def _offline_at_service(service, endpoint) -> bool:
    from .faas_helpers import call
    return call(service, "GET", f"/v1/endpoints/{endpoint.endpoint_id}/status")[1]["status"] == "offline"


def _both_stopped(fabric, tmp_path, offline_timeout):
    """Both endpoint daemons stopped (``endpoint stop``), offline at the service; a config on both."""
    service, (ep1, ep2) = fabric
    (tmp_path / "go").touch()
    for ep in (ep1, ep2):
        assert ep.stop() == 0
        wait_for(lambda: _offline_at_service(service, ep), timeout_s=30, what=f"{ep.name} offline at the service")
    return ep1, ep2, str(tmp_path / "go"), Config(executors=[FuncXExecutor(
        label="funcX", endpoints=[ep1.endpoint_id, ep2.endpoint_id], status_period=0.2,
        offline_timeout=offline_timeout)])


def test_every_endpoint_of_a_task_offline_it_waits_then_fails_naming_them(fabric, tmp_path):
    ep1, ep2, gate, config = _both_stopped(fabric, tmp_path, offline_timeout=1.0)
    with parsl.load(config) as dfk:
        executor = dfk.executors["funcX"]
        future = NAP["nap"](1, gate)
        assert executor.outstanding == 1 and not executor._in_flight    # it waits here, unsent
        with pytest.raises(EndpointsOffline) as caught:
            future.result(timeout=30)
    assert set(caught.value.endpoint_ids) == {ep1.endpoint_id, ep2.endpoint_id}
    assert ep1.endpoint_id in str(caught.value) and ep2.endpoint_id in str(caught.value)
    assert "offline_timeout" in str(caught.value) and caught.value.waited_s >= 1.0
    with pytest.raises(ConfigurationError, match="offline_timeout"):
        FuncXExecutor(label="funcX", offline_timeout=-1)


def test_every_endpoint_of_a_task_offline_it_runs_when_one_returns(fabric, tmp_path):
    ep1, ep2, gate, config = _both_stopped(fabric, tmp_path, offline_timeout=None)
    with parsl.load(config) as dfk:
        executor = dfk.executors["funcX"]
        both = [NAP["nap"](i, gate) for i in range(3)]
        only_ep1 = NAP["nap"](9, gate, parsl_resource_specification={"endpoints": [ep1.endpoint_id]})
        assert executor.outstanding == 4 and not executor._in_flight
        ep2.start()                     # the one that comes back takes the tasks that may go there
        assert [f.result(timeout=45) for f in both] == [(0, "ep2"), (1, "ep2"), (2, "ep2")]
        assert not only_ep1.done()      # ep1 is still offline: that task still waits
        ep1.start()
        assert only_ep1.result(timeout=45) == (9, "ep1")
