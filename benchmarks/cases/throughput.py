"""Throughput cases: many independent no-ops, and one long dependency chain."""
from __future__ import annotations

import resource
import sys
import time

from benchmarks import tasks
from benchmarks.adapters.base import Adapter
from benchmarks.cases.base import Case, Figure, Figures, register_case


def run_noop(adapter: Adapter, n: int) -> Figures:
    """Submit ``n`` independent no-op apps, then wait for all of them.

    Args:
        adapter: a started library.
        n: how many apps.

    Returns:
        ``submit_rate_per_s`` (the submit loop alone), ``throughput_per_s``
        and ``overhead_us_per_task`` (first submit to last result),
        ``maxrss_mib`` (peak RSS of the submitting process, whole life).
    """
    submit = adapter.app(tasks.noop)
    clock = time.perf_counter
    t0 = clock()
    futures = [submit() for _ in range(n)]
    t1 = clock()
    adapter.gather(futures)
    t2 = clock()
    total_s = t2 - t0
    return {
        "submit_rate_per_s": n / (t1 - t0),
        "throughput_per_s": n / total_s,
        "overhead_us_per_task": 1e6 * total_s / n,
        "submit_s": t1 - t0,
        "total_s": total_s,
        "maxrss_mib": maxrss_mib(),
    }


def maxrss_mib() -> float:
    """Peak resident set size of this process so far (``getrusage``), in MiB.

    Costs nothing while the case runs, unlike sampling; covers the whole
    life of the child (start-up included), not its worker processes.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, KiB on Linux


def run_chain(adapter: Adapter, n: int) -> Figures:
    """Submit ``n`` apps, each taking the previous app's future as argument.

    The library resolves each dependency itself; only the last result is
    awaited. Its value is checked, so a library that skips links fails.

    Args:
        adapter: a started library.
        n: length of the chain.

    Returns:
        ``tasks_per_s`` and ``us_per_task`` (first submit to last result),
        ``submit_s`` (building the whole chain).

    Raises:
        AssertionError: the chain's result is not ``n``.
    """
    submit = adapter.app(tasks.inc)
    clock = time.perf_counter
    t0 = clock()
    future = submit(0)
    for _ in range(n - 1):
        future = submit(future)
    t1 = clock()
    last = adapter.result(future)
    t2 = clock()
    if last != n:
        raise AssertionError(f"chain of {n} returned {last!r}")
    total_s = t2 - t0
    return {
        "tasks_per_s": n / total_s,
        "us_per_task": 1e6 * total_s / n,
        "submit_s": t1 - t0,
        "total_s": total_s,
    }


NOOP = register_case(Case(
    name="noop",
    run=run_noop,
    sizes=(10_000, 100_000),
    timeout_s=1200.0,  # 100k: Parsl's thread executor ~2 min here, Dask ~5 min (more under load)
    # 100k no-ops take Parsl's HTEX ~3.5 min and Dask ~5.5 min here: `run all
    # --executor htex` leaves them out (it stays under 10 minutes); `run noop` has them.
    sizes_in_all={"htex": (10_000,)},
    figures=(
        Figure("throughput_per_s", higher_is_better=True),
        Figure("submit_rate_per_s", higher_is_better=True),
        Figure("overhead_us_per_task", higher_is_better=False),
        Figure("maxrss_mib", higher_is_better=False),
    ),
))

CHAIN = register_case(Case(
    name="chain",
    run=run_chain,
    sizes=(10_000,),
    executors=frozenset({"threads"}),  # `run chain --executor htex` works; `run all` there skips it
    figures=(
        Figure("tasks_per_s", higher_is_better=True),
        Figure("us_per_task", higher_is_better=False),
    ),
))
