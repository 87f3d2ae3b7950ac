"""``least_loaded`` against real endpoints: it reads their status reports (workers) and sends accordingly.

One endpoint has 1 worker, the other 4 (cores_per_worker=0.25: 4 fit on a 2-core machine); tasks are held until all are placed, so
the split is decided by the reports and the executor's in-flight counts alone.
"""
from __future__ import annotations

import pytest

import parsl_lite as parsl
from parsl_lite.config import Config
from parsl_lite.dataflow.loader import DataFlowKernelLoader
from parsl_lite.executors import FuncXExecutor

from .conftest import wait_for
from .faas_endpoint_helpers import faas_endpoints  # noqa: F401  (the fixture)
from .faas_helpers import client_home_service
from .test_faas_executor_faults import NAP


@pytest.fixture
def fabric(tmp_path, monkeypatch, faas_endpoints):
    monkeypatch.chdir(tmp_path)
    with client_home_service(tmp_path, monkeypatch, heartbeat_period=0.5) as service:
        try:
            small = faas_endpoints(service, "small", service.admin_token, workers=1, cores_per_worker=0.25)
            big = faas_endpoints(service, "big", service.admin_token, workers=4, cores_per_worker=0.25)
            yield small.endpoint_id, big.endpoint_id
        finally:
            if DataFlowKernelLoader._dfk is not None:
                parsl.clear()


@pytest.mark.parametrize("policy", ["least_loaded", "round_robin"])
def test_least_loaded_follows_the_workers_round_robin_does_not(fabric, tmp_path, policy):
    small, big = fabric
    gate = tmp_path / "go"
    events = []
    config = Config(executors=[FuncXExecutor(label="funcX", endpoints=[small, big], policy=policy,
                                             status_period=0.2)])
    with parsl.load(config) as dfk:
        executor = dfk.executors["funcX"]
        wait_for(lambda: [s.connected_workers for s in executor.statuses([small, big]).values()] == [1, 4]
                 and executor._version > 1, timeout_s=30, what="both endpoints reporting their workers")
        dfk.add_listener(events.append)
        futures = [NAP["nap"](i, str(gate)) for i in range(20)]
        gate.touch()
        results = [f.result(timeout=60) for f in futures]
    assert [x for x, _ in results] == list(range(20))
    where = [name for _, name in results]
    if policy == "least_loaded":
        assert where.count("big") >= 3 * where.count("small") > 0, where
    else:
        assert where.count("big") == where.count("small") == 10, where
    placed = [e.detail["endpoint_id"] for e in events if getattr(e, "what", "") == "task_placed"]
    assert placed.count(big) == where.count("big")
