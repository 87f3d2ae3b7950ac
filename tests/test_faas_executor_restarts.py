"""The FaaS executor across restarts: the service SIGKILLed and restarted, an endpoint that gives tasks up.

Same fixture as test_faas_executor_faults.py (a fast-heartbeat service, two real endpoints).
"""
from __future__ import annotations

import parsl_lite as parsl
from parsl_lite.config import Config
from parsl_lite.executors import FuncXExecutor

from .conftest import wait_for
from .faas_endpoint_helpers import faas_endpoints  # noqa: F401  (the fixture)
from .test_faas_executor_faults import NAP, fabric  # noqa: F401  (the fixture)


def test_service_restarted_mid_workflow_the_workflow_finishes(fabric, tmp_path):
    service, (ep1, ep2) = fabric
    gate = tmp_path / "go"
    config = Config(executors=[FuncXExecutor(label="funcX", endpoints=[ep1.endpoint_id, ep2.endpoint_id],
                                             status_period=0.2, endpoint_lost_after=30.0)])
    with parsl.load(config):
        futures = [NAP["nap"](i, str(gate)) for i in range(6)]

        def accepted() -> bool:   # every task has its id: the service stored it
            held = [f.task_record.exec_fu for f in futures]
            return all(fu is not None and fu.faas_future.task_id for fu in held)
        wait_for(accepted, what="the 6 tasks accepted by the service")
        service.kill()
        service.restart()
        gate.touch()
        assert [f.result(timeout=50)[0] for f in futures] == list(range(6))


def test_endpoint_lost_from_the_endpoint_is_retried_elsewhere(fabric, tmp_path, faas_endpoints):
    """An endpoint that died holding a task more often than it allows fails it with EndpointLost; the retry avoids it."""
    service, (_ep1, ep2) = fabric
    fragile = faas_endpoints(service, "fragile", service.admin_token, workers=1, max_retries_on_system_failure=0)
    gate = tmp_path / "go"
    config = Config(retries=1, executors=[FuncXExecutor(label="funcX", endpoints=[fragile.endpoint_id, ep2.endpoint_id],
                                                        status_period=0.2, endpoint_lost_after=None)])
    from .faas_helpers import call
    with parsl.load(config):
        futures = [NAP["nap"](i, str(gate)) for i in range(4)]     # 0 and 2 on fragile

        def delivered() -> bool:   # fragile holds its two tasks (state waiting-for-launch at the service)
            held = [f.task_record.exec_fu for f in futures[0::2]]
            ids = [fu.faas_future.task_id for fu in held if fu is not None and fu.faas_future.task_id]
            if len(ids) < 2:
                return False
            answers = [call(service, "GET", f"/v1/tasks/{t}") for t in ids]
            assert all(code == 200 for code, _ in answers), answers
            return len(ids) == 2 and all(body["status"] == "waiting-for-launch" for _, body in answers)
        wait_for(delivered, what="fragile holding its tasks")
        fragile.kill()
        fragile.restart()          # the service delivers them again: attempt 2 > 1 + 0, EndpointLost
        gate.touch()
        results = [f.result(timeout=50) for f in futures]
    assert [x for x, _ in results] == list(range(4))
    assert {where for _, where in results} == {"ep2"}
