"""The functions the benchmark apps run.

They live in their own tiny module, at module level, so every library can
ship them to a worker by reference (``benchmarks.tasks.noop``): process-based
executors pickle functions by name, and importing this module costs nothing.
"""
from __future__ import annotations


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
