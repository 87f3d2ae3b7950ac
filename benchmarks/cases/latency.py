"""Round-trip latency: one no-op at a time, submit then wait for its result."""
from __future__ import annotations

import time

from benchmarks import tasks
from benchmarks.adapters.base import Adapter
from benchmarks.cases.base import Case, Figure, Figures, mean, percentile, register_case


def run_latency(adapter: Adapter, n: int, warmup: int) -> Figures:
    """Time ``n`` sequential round trips of one no-op after ``warmup`` untimed ones.

    Args:
        adapter: a started library.
        n: timed round trips.
        warmup: untimed round trips first (lazy imports, caches, connections).

    Returns:
        ``p50_ms``, ``p95_ms``, ``p99_ms``, ``mean_ms``, ``max_ms``.
    """
    submit = adapter.app(tasks.noop)
    result = adapter.result
    for _ in range(warmup):
        result(submit())
    clock = time.perf_counter
    samples: list[float] = []
    for _ in range(n):
        t0 = clock()
        result(submit())
        samples.append(clock() - t0)
    ms = sorted(1e3 * s for s in samples)
    return {
        "p50_ms": percentile(ms, 0.50),
        "p95_ms": percentile(ms, 0.95),
        "p99_ms": percentile(ms, 0.99),
        "mean_ms": mean(ms),
        "max_ms": ms[-1],
    }


LATENCY = register_case(Case(
    name="latency",
    run=run_latency,
    sizes=(1_000,),
    sizes_by_executor={"htex": (200,)},
    fixed={"warmup": 50},
    figures=(
        Figure("p50_ms", higher_is_better=False),
        Figure("p95_ms", higher_is_better=False),
        Figure("mean_ms", higher_is_better=False),
    ),
))
