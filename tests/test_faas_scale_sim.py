"""The simulated endpoints of ``benchmarks faas_scale``, at tiny size, against a real service process.

Keeps the simulator honest: registered through the real API with real keys,
every task delivered to it is answered, every result is stored by the service
and acknowledged back, and nothing is left running afterwards.
"""
from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from benchmarks import tasks
from benchmarks.faas_sim import SimFleet
from benchmarks.faas_stack import FaasStack
from parsl_lite.faas import FuncXClient, paths
from parsl_lite.faas.service.store import open_store
from tests.conftest import wait_for


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A service under a tmp PARSL_LITE_HOME (FaasStack sets it; monkeypatch restores it)."""
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    service = FaasStack(tmp_path, heartbeat_period=0.5)
    service.start_service()
    try:
        yield service
    finally:
        service.stop()
        assert not psutil.pid_exists(service.pid) or psutil.Process(service.pid).status() == psutil.STATUS_ZOMBIE


def _results(fxc: FuncXClient, task_ids: list[str]) -> dict[str, dict]:
    done: dict[str, dict] = {}

    def all_final() -> bool:
        done.update((t, task) for t, task in fxc.get_batch_result(task_ids).items() if not task["pending"])
        return len(done) == len(task_ids)
    wait_for(all_final, 30, f"{len(task_ids)} tasks final", interval_s=0.05)
    return done


def _gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)


def test_every_task_answered_and_stored(stack: FaasStack) -> None:
    token = stack.add_user("bench")
    fleet = SimFleet(stack, token)
    try:
        endpoint_ids = fleet.add(3, per_process=2)   # two simulator processes
        assert len(set(endpoint_ids)) == 3 and len(fleet.pids()) == 2
        for endpoint_id in endpoint_ids:
            assert stack.call("GET", f"/endpoints/{endpoint_id}/status", token=token)["status"] == "online"
        with FuncXClient(stack.url, token) as fxc:
            function_id = fxc.register_function(tasks.noop)
            batch = fxc.create_batch()
            for i in range(30):
                batch.add(endpoint_id=endpoint_ids[i % 3], function_id=function_id)
            task_ids = fxc.batch_run(batch)
            results = _results(fxc, task_ids)
            assert {t["status"] for t in results.values()} == {"success"}
            assert all(fxc.get_result(t) is None for t in task_ids)
            per_endpoint = [fxc.get_task(t)["endpoint_id"] for t in task_ids]
            assert {e: per_endpoint.count(e) for e in endpoint_ids} == dict.fromkeys(endpoint_ids, 10)
        wait_for(lambda: fleet.stats()["unacked"] == 0, 10, "every result acknowledged", interval_s=0.05)
        stats = fleet.stats()
        assert stats["endpoints"] == 3 and stats["accepted"] == 3 and stats["refused"] == 0
        assert stats["tasks"] == stats["results_sent"] == stats["results_acked"] == 30
        assert stats["duplicates"] == 0 and stats["malformed"] == 0
        store = open_store(stack.db)
        try:
            assert store.count_tasks()["success"] == 30
        finally:
            store.close()
    finally:
        pids = fleet.pids()
        fleet.stop()
    assert _gone(pids), "a simulator process was left running"


def test_answers_again_after_the_service_restarts(stack: FaasStack) -> None:
    """SIGKILL + restart: the simulator says hello again (HelloRequired) and answers new tasks."""
    token = stack.add_user("bench")
    fleet = SimFleet(stack, token)
    try:
        endpoint_id = fleet.add(1)[0]
        stack.kill_service()
        stack.restart_service()
        wait_for(lambda: fleet.stats()["hello_required"] >= 1, 20, "the simulator told to say hello again",
                 interval_s=0.1)
        with FuncXClient(stack.url, token) as fxc:
            function_id = fxc.register_function(tasks.noop)
            task_id = fxc.run(endpoint_id=endpoint_id, function_id=function_id)
            assert _results(fxc, [task_id])[task_id]["status"] == "success"
        assert fleet.stats()["refused"] == 0
    finally:
        fleet.stop()


def test_the_scale_case_at_tiny_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``faas_scale`` through the ``parsl_lite-faas-sim`` adapter: 3 endpoints, 30 tasks, nothing lost."""
    from benchmarks.cases.faas import run_faas_scale
    from benchmarks.faas_adapters import FaasSim
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    adapter = FaasSim()
    adapter.prepare()
    adapter.start(1, tmp_path)
    try:
        service_pid = adapter.service_pid
        figures = run_faas_scale(adapter, endpoints=3, n=30, idle_s=0.1, per_process=2)
        sim_pids = adapter.fleet.pids()
    finally:
        adapter.stop()
    assert figures["lost_tasks"] == figures["failed_tasks"] == figures["unanswered"] == 0
    assert figures["unacked"] == figures["refused"] == figures["duplicates"] == 0
    assert figures["dispatch_rate_per_s"] > 0 and figures["service_rss_mib_peak"] > 0
    assert figures["sim_processes"] == 2
    assert _gone([service_pid, *sim_pids]), "a process of the benchmark was left running"
