"""The functions the benchmark apps run.

They live in their own tiny module, at module level, so every library can
ship them to a worker by reference (``benchmarks.tasks.noop``): process-based
executors pickle functions by name, and importing this module costs nothing.
"""
from __future__ import annotations

import os
import random
import time


def noop() -> None:
    """Do nothing; the cost measured is the library's alone."""
    return None


def inc(x: int) -> int:
    """Return ``x + 1``; chained apps pass the count down the chain.

    Args:
        x: the previous app's result.

    Returns:
        ``x + 1``.
    """
    return x + 1


def whoami(delay_s: float) -> int:
    """Sleep a little and return the worker's process id (start-up probe).

    The sleep keeps one fast worker from taking every probe task, so that a
    round of W probes lands on W different workers once they are all up.

    Args:
        delay_s: seconds to hold the worker.

    Returns:
        ``os.getpid()`` of the process that ran the task.
    """
    time.sleep(delay_s)
    return os.getpid()


def pi(points: int) -> float:
    """Pure-Python Monte-Carlo estimate of pi from ``points`` random points.

    Args:
        points: how many points in the unit square to draw.

    Returns:
        4 × the fraction of points inside the quarter circle.
    """
    rnd = random.random
    inside = 0
    for _ in range(points):
        x = rnd()
        y = rnd()
        if x * x + y * y <= 1.0:
            inside += 1
    return 4.0 * inside / points


def pi_block(estimates: int, points: int) -> float:
    """One block of the ``pi`` case: ``estimates`` estimates in a row, averaged.

    Args:
        estimates: how many ``pi(points)`` to evaluate.
        points: points per estimate.

    Returns:
        The mean of the estimates.
    """
    return sum(pi(points) for _ in range(estimates)) / estimates


def pi_item(_index: int, points: int) -> float:
    """One element of the ``pi`` case's Dask bag: ``pi(points)`` (the index is ignored).

    Args:
        _index: the bag element (``range(estimates)``).
        points: points per estimate.

    Returns:
        ``pi(points)``.
    """
    return pi(points)


def dag_root() -> int:
    """The root of the fan-out/fan-in DAG."""
    return 1


def dag_child(root: int) -> int:
    """One of the DAG's children: takes the root's result and returns it.

    Args:
        root: the root's result (1).

    Returns:
        ``root``.
    """
    return root


def dag_sink(*children: int) -> int:
    """The DAG's sink: takes every child's result.

    Args:
        children: the children's results (all 1).

    Returns:
        Their sum, which is the number of children.
    """
    return sum(children)
