"""Memory of the submitting process: peak RSS while ``n`` no-op apps complete.

A thread samples the child's resident set size (``psutil``) every 10 ms from
just before the first submit to just after the last result, while the
futures are all still held (as a user's list of them would be). RSS of this
process only: a library's worker processes (and Parsl's or parsl_lite's
interchange) are not counted; Dask's scheduler is, since ``LocalCluster``
runs it in a thread of this process.
"""
from __future__ import annotations

import threading
import time

from benchmarks import tasks
from benchmarks.adapters.base import Adapter
from benchmarks.cases.base import Case, Figure, Figures, register_case
from benchmarks.cases.throughput import maxrss_mib

_MIB = 2**20


class _RssSampler(threading.Thread):
    """Samples ``psutil.Process().memory_info().rss`` every ``period_s`` until stopped."""

    def __init__(self, period_s: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        import psutil  # (only the memory case needs it)

        self._process = psutil.Process()
        self._period_s = period_s
        self._done = threading.Event()
        self.peak = self.first = self._process.memory_info().rss
        self.samples = 1

    def run(self) -> None:
        while not self._done.wait(self._period_s):
            self.peak = max(self.peak, self._process.memory_info().rss)
            self.samples += 1

    def finish(self) -> int:
        """Stop, take a last sample and return the peak in bytes."""
        self._done.set()
        self.join()
        self.peak = max(self.peak, self._process.memory_info().rss)
        return self.peak


def run_memory(adapter: Adapter, n: int) -> Figures:
    """Submit ``n`` no-ops, wait for all, and report the submitting process's RSS.

    Args:
        adapter: a started library.
        n: how many apps.

    Returns:
        ``peak_rss_mib`` (sampled, during the case), ``rss_start_mib``
        (before the first submit), ``growth_mib`` (peak − start),
        ``bytes_per_task`` (growth / n), ``maxrss_mib`` (``getrusage`` peak
        over the whole child) and ``throughput_per_s`` (slowed a little by
        the sampler; ``noop`` is the throughput figure).
    """
    submit = adapter.app(tasks.noop)
    sampler = _RssSampler(period_s=0.01)
    sampler.start()
    t0 = time.perf_counter()
    futures = [submit() for _ in range(n)]
    adapter.gather(futures)
    total_s = time.perf_counter() - t0
    peak = sampler.finish()
    del futures
    growth = peak - sampler.first
    return {
        "peak_rss_mib": peak / _MIB,
        "rss_start_mib": sampler.first / _MIB,
        "growth_mib": growth / _MIB,
        "bytes_per_task": growth / n,
        "maxrss_mib": maxrss_mib(),
        "throughput_per_s": n / total_s,
        "samples": float(sampler.samples),
    }


MEMORY = register_case(Case(
    name="memory",
    run=run_memory,
    sizes=(100_000,),
    # Not in `run all`: it repeats noop's n=100k, the longest measurement of Parsl
    # and Dask (~2.5 and ~3.5 min here), and noop records the same peak
    # (`maxrss_mib`, from getrusage) anyway. `run memory --executor htex` adds
    # the sampled peak and the growth.
    executors=frozenset(),
    timeout_s=1200.0,  # Dask needs ~5 min here when the machine is quiet, over 10 when it is not
    figures=(
        Figure("peak_rss_mib", higher_is_better=False),
        Figure("growth_mib", higher_is_better=False),
        Figure("rss_start_mib", higher_is_better=False),
        Figure("maxrss_mib", higher_is_better=False),
    ),
))
