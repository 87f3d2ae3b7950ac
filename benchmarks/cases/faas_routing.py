"""``faas_routing``: how far ``least_loaded`` beats ``round_robin`` on endpoints of unequal size (issue 11).

Run by ``parsl_lite-faas-routing`` only (two real endpoints of 1 and 4
workers; every other adapter returns nothing). In one measurement, for each
policy in turn, a fresh workflow whose ``FaaSExecutor`` may use both
endpoints runs ``n`` apps that each hold a worker ``task_s`` seconds
(:func:`benchmarks.tasks.whoami`): the makespan is first submit -> last
result. The ideal is ``n * task_s / 5`` (2.0 s for 200 x 50 ms);
round robin puts half the tasks on the 1-worker endpoint (5.0 s).
"""
from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Any

from benchmarks import faas_adapters, tasks
from benchmarks.adapters.base import Adapter
from benchmarks.cases.base import Case, Figure, Figures, register_case

logger = logging.getLogger(__name__)

POLICIES = ("round_robin", "least_loaded")


def _makespan(adapter: Any, policy: str, n: int, task_s: float, timeout_s: float) -> Figures:
    """One policy: a warm-up task on each endpoint, then ``n`` apps; makespan and the small endpoint's share."""
    placed: list[str] = []
    dfk = adapter.load_policy(policy)
    dfk.add_listener(lambda e: placed.append(e.detail["endpoint_id"])
                     if getattr(e, "what", "") == "task_placed" else None)
    submit = adapter.app(tasks.whoami)
    for endpoint_id in adapter.endpoint_ids:   # every function registered and each endpoint warm
        submit(0.0, parsl_resource_specification={"endpoints": [endpoint_id]}).result(timeout=60)
    _wait_drained(dfk.executors["funcX"], adapter.endpoint_ids)
    placed.clear()
    t0 = time.perf_counter()
    futures = [submit(task_s) for _ in range(n)]
    done, not_done = concurrent.futures.wait(futures, timeout=timeout_s)
    makespan = time.perf_counter() - t0
    failed = sum(1 for f in done if f.exception() is not None)
    small = adapter.endpoint_ids[0]
    return {f"makespan_{policy}_s": makespan,
            f"small_share_{policy}": placed.count(small) / max(1, len(placed)),
            f"failed_{policy}": float(failed + len(not_done))}


def _wait_drained(executor: Any, endpoint_ids: list[str], timeout_s: float = 60.0) -> None:
    """Until both endpoints' reports show an empty queue: the previous policy's tasks, counted in a report
    made while they ran, would otherwise keep ``least_loaded`` off that endpoint until its next report."""
    deadline = time.monotonic() + timeout_s
    while any(s.queue for s in executor.statuses(endpoint_ids).values()):
        if time.monotonic() > deadline:
            logger.warning("endpoint reports still show a queue after %g s; measuring anyway", timeout_s)
            return
        time.sleep(0.1)


def run_faas_routing(adapter: Adapter, n: int, task_s: float, timeout_s: float = 120.0) -> Figures:
    """``n`` tasks of ``task_s`` seconds with each policy, on endpoints of 1 and 4 workers.

    Returns:
        ``makespan_round_robin_s``, ``makespan_least_loaded_s``, their ratio ``rr_over_ll`` (> 1: least_loaded
        is faster), ``ideal_s`` (``n * task_s / 5``), and per policy the small endpoint's share of the tasks
        and the tasks that failed or did not finish in ``timeout_s``.
    """
    if not hasattr(adapter, "load_policy"):
        logger.info("%s has no endpoints of unequal size: faas_routing skipped", adapter.name)
        return {}
    figures: Figures = {}
    for policy in POLICIES:
        figures.update(_makespan(adapter, policy, n, task_s, timeout_s))
    adapter.unload()
    workers = sum(adapter.WORKERS.values())
    figures["rr_over_ll"] = figures["makespan_round_robin_s"] / figures["makespan_least_loaded_s"]
    figures["ideal_s"] = n * task_s / workers
    return figures


FAAS_ROUTING = register_case(Case(
    name="faas_routing",
    run=run_faas_routing,
    sizes=(200,),
    fixed={"task_s": 0.05},
    executors=frozenset({faas_adapters.GROUP}),
    timeout_s=300.0,
    figures=(
        Figure("makespan_round_robin_s", higher_is_better=False),
        Figure("makespan_least_loaded_s", higher_is_better=False),
        Figure("rr_over_ll", higher_is_better=True),
        Figure("ideal_s", higher_is_better=False),
        Figure("small_share_round_robin", higher_is_better=False),
        Figure("small_share_least_loaded", higher_is_better=False),
        Figure("failed_round_robin", higher_is_better=False),
        Figure("failed_least_loaded", higher_is_better=False),
    ),
))
