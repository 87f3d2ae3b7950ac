"""Fan-out/fan-in: one root, ``n`` children depending on it, one sink taking all children.

::

    r = root()
    cs = [child(r) for _ in range(n)]      # each waits for the root
    s = sink(*cs)                          # waits for all n children
    s.result() == n

Every dependency is a future passed as an argument; the library resolves it
(a process pool resolves it in the parent, see ``adapters/processpool.py``).
"""
from __future__ import annotations

import time

from benchmarks import tasks
from benchmarks.adapters.base import Adapter
from benchmarks.cases.base import Case, Figure, Figures, register_case


def run_dag(adapter: Adapter, n: int) -> Figures:
    """Build the fan-out/fan-in DAG of ``n`` children and wait for its sink.

    Args:
        adapter: a started library.
        n: how many children.

    Returns:
        ``wall_s`` (first submit to the sink's result), ``tasks_per_s``
        (``n + 2`` tasks / wall), ``submit_s`` (building the graph).

    Raises:
        AssertionError: the sink did not see ``n`` children.
    """
    root, child, sink = adapter.app(tasks.dag_root), adapter.app(tasks.dag_child), adapter.app(tasks.dag_sink)
    clock = time.perf_counter
    t0 = clock()
    r = root()
    children = [child(r) for _ in range(n)]
    s = sink(*children)
    t1 = clock()
    total = adapter.result(s)
    wall_s = clock() - t0
    if total != n:
        raise AssertionError(f"sink of {n} children returned {total!r}")
    return {"wall_s": wall_s, "tasks_per_s": (n + 2) / wall_s, "submit_s": t1 - t0}


DAG = register_case(Case(
    name="dag",
    run=run_dag,
    sizes=(1_000, 5_000),
    executors=frozenset({"htex"}),
    figures=(
        Figure("wall_s", higher_is_better=False),
        Figure("tasks_per_s", higher_is_better=True),
    ),
))
