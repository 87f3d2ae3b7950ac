"""Monitoring's cost: no-op throughput with monitoring on and off, in one run; the store's speed and size.

Its own executor group, ``monitoring``, holds two adapters that differ only in
``Config(monitoring=...)``: ``parsl_lite-htex-mon-off`` (the ``parsl_lite-htex``
set-up) and ``parsl_lite-htex-mon-on`` (the same with
``MonitoringHub(logging_endpoint=sqlite:///<run_dir>/monitoring.db)`` at its
defaults, worker-side records included). The runner interleaves them, so
their ratio is taken on the same machine at the same time::

    .venv-bench/bin/python -m benchmarks run monitoring --executor monitoring      # n = 10k and 100k, 3 repeats

Figures, beside ``noop``'s: for the monitored run ``drain_s`` (last result ->
every event of the case committed to the store), ``events_per_s`` (events of
the case / first submit -> committed), ``events`` and ``store_mib_per_100k``
(growth of the SQLite file and its WAL, scaled to 100,000 tasks).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from benchmarks.adapters.base import Adapter, register_adapter
from benchmarks.adapters.parsl_family import ParslLiteHtex
from benchmarks.cases.base import Case, Figure, Figures, register_case
from benchmarks.cases.throughput import run_noop


@register_adapter
class ParslLiteHtexMonOff(ParslLiteHtex):
    """``parsl_lite-htex``, in the ``monitoring`` group: the reference."""

    name = "parsl_lite-htex-mon-off"
    executor = "monitoring"


@register_adapter
class ParslLiteHtexMonOn(ParslLiteHtex):
    """``parsl_lite-htex`` with ``MonitoringHub()`` writing into ``<run_dir>/monitoring.db``."""

    name = "parsl_lite-htex-mon-on"
    executor = "monitoring"
    warm_modules = (*ParslLiteHtex.warm_modules, ".monitoring")

    def start(self, workers: int, run_dir: Path) -> None:
        self._store = run_dir / "monitoring.db"
        super().start(workers, run_dir)

    def _config_kwargs(self) -> dict[str, Any]:
        from parsl_lite.monitoring import MonitoringHub

        return {**super()._config_kwargs(),
                "monitoring": MonitoringHub(logging_endpoint=f"sqlite:///{self._store}")}


def _store_bytes(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())


def run_monitored_noop(adapter: Adapter, n: int) -> Figures:
    """``noop``'s measurement; with monitoring on, also until the store holds every event."""
    parsl = getattr(adapter, "_parsl", None)
    hub = parsl.dfk().monitoring if parsl is not None else None
    if hub is None:
        return run_noop(adapter, n)
    before_events, before_bytes = hub.flush(), _store_bytes(adapter._store)  # type: ignore[attr-defined]
    figures = run_noop(adapter, n)
    t2 = time.perf_counter()
    events = hub.flush(timeout_s=600) - before_events
    drain_s = time.perf_counter() - t2
    figures.update({
        "drain_s": drain_s,
        "events": float(events),
        "events_per_s": events / (figures["total_s"] + drain_s),
        "store_mib_per_100k": (_store_bytes(adapter._store) - before_bytes) / 2**20 * 100_000 / n,  # type: ignore[attr-defined]
    })
    return figures


MONITORING = register_case(Case(
    name="monitoring",
    run=run_monitored_noop,
    sizes=(10_000, 100_000),
    timeout_s=1200.0,
    executors=frozenset(),   # `run monitoring --executor monitoring` only: never part of `run all`
    figures=(
        Figure("throughput_per_s", higher_is_better=True),
        Figure("submit_rate_per_s", higher_is_better=True),
        Figure("events_per_s", higher_is_better=True),
        Figure("drain_s", higher_is_better=False),
        Figure("store_mib_per_100k", higher_is_better=False),
    ),
))
