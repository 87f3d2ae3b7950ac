"""CPU-bound work in blocks: 100 Monte-Carlo estimates of pi split into ``b`` tasks.

TARGETS.md: "100 × ``pi(10**6)`` in b = 1, 2, 4, 5, 10, 20, 100 blocks";
a block of size b means b apps, each evaluating ``100/b`` estimates in a row
and returning their mean. Libraries with dataflow apps submit b
:func:`~benchmarks.tasks.pi_block` apps; Dask uses a ``dask.bag`` with
``npartitions=b`` (see :meth:`Adapter.partitioned_mean`).

``points`` is 10**6 per estimate when the case is run alone (``run pi``) and
10**5 in ``run all``, to keep a full run short; ``--pi-n`` sets it.
"""
from __future__ import annotations

import math
import time

from benchmarks import tasks
from benchmarks.adapters.base import Adapter
from benchmarks.cases.base import Case, Figure, Figures, register_case


def run_pi(adapter: Adapter, b: int, points: int, estimates: int) -> Figures:
    """Evaluate ``estimates`` × ``pi(points)`` in ``b`` tasks; time it.

    Args:
        adapter: a started library.
        b: how many tasks (blocks); must divide ``estimates``.
        points: points per estimate.
        estimates: estimates in all (100).

    Returns:
        ``wall_s`` (first submit to the mean in hand), ``points_per_s``
        (all points drawn / wall), ``abs_error`` (|mean − π|).

    Raises:
        ValueError: ``b`` does not divide ``estimates``.
        AssertionError: the estimate is off by more than 8 standard deviations.
    """
    if b < 1 or estimates % b:
        raise ValueError(f"b={b} must divide estimates={estimates}")
    clock = time.perf_counter
    t0 = clock()
    value = adapter.partitioned_mean(estimates, b, tasks.pi_block, tasks.pi_item, points)
    wall_s = clock() - t0
    error = abs(value - math.pi)
    sigma = math.sqrt(math.pi * (4 - math.pi) / (points * estimates))  # of the mean of all points
    if error > 8 * sigma:
        raise AssertionError(f"pi estimate {value} is off by {error:.3g} (σ = {sigma:.3g})")
    return {"wall_s": wall_s, "points_per_s": points * estimates / wall_s, "abs_error": error}


PI = register_case(Case(
    name="pi",
    run=run_pi,
    size_param="b",
    sizes=(1, 2, 4, 5, 10, 20, 100),
    fixed={"points": 10**6, "estimates": 100},
    fixed_in_all={"points": 10**5},
    executors=frozenset({"htex"}),
    timeout_s=600.0,  # b=1 at 10**6 points: 100 estimates in a row, ~25 s here
    figures=(
        Figure("wall_s", higher_is_better=False),
    ),
))
