"""Dask (``distributed``) on this machine, a peer of the ``htex`` group.

::

    cluster = distributed.LocalCluster(n_workers=W, threads_per_worker=1, processes=True)
    client = distributed.Client(cluster)
    fut = client.submit(fn, *args, pure=False)      # futures as arguments: Dask resolves them
    client.gather(futs) / fut.result()
    client.close(); cluster.close()

Everything else is at Dask's defaults (the scheduler runs in this process, in
a thread of the cluster; the dashboard starts if its requirements are
installed). The ``pi`` case uses a ``dask.bag`` with ``npartitions=b``
computed on this client (TARGETS.md: "Dask side: dask.bag with
npartitions=b").

Start-up: constructing the cluster and client, ``client.wait_for_workers(W)``
(``connected_s``), then :meth:`Adapter.wait_ready` like every process-based
adapter.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.adapters.base import Adapter, Submit, register_adapter


@register_adapter
class DaskDistributed(Adapter):
    """``distributed.LocalCluster(n_workers=W, threads_per_worker=1, processes=True)`` + ``Client``."""

    name = "dask"
    library = "dask"
    executor = "htex"

    def __init__(self) -> None:
        super().__init__()
        self._cluster: Any = None
        self._client: Any = None

    def prepare(self) -> None:
        """Import ``distributed`` and ``dask.bag`` (not timed)."""
        import dask.bag  # noqa: F401
        import distributed  # noqa: F401

    def start(self, workers: int, run_dir: Path) -> None:
        """Start the local cluster and a client; wait for W workers, then for W ready ones."""
        import distributed  # (import inside start: see adapters/base.py)

        t0 = time.perf_counter()
        self._cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True)
        self._client = distributed.Client(self._cluster)
        self.startup_figures["load_s"] = time.perf_counter() - t0
        self._client.wait_for_workers(workers, timeout=120)
        self.startup_figures["connected_s"] = time.perf_counter() - t0
        self.wait_ready(workers)

    def app(self, fn: Callable[..., Any]) -> Submit:
        """``client.submit(fn, *args, pure=False)``; futures among ``args`` are resolved by Dask."""
        client = self._client
        assert client is not None, "start() first"

        def submit(*args: Any) -> Any:
            return client.submit(fn, *args, pure=False)

        return submit

    def gather(self, futures: Iterable[Any]) -> list[Any]:
        """``client.gather``: one call for all the futures."""
        return list(self._client.gather(list(futures)))

    def partitioned_mean(self, items: int, blocks: int, block_fn: Callable[..., float],
                         item_fn: Callable[..., float], *args: Any) -> float:
        """``dask.bag.from_sequence(range(items), npartitions=blocks).map(item_fn, *args).mean()``."""
        import dask.bag

        bag = dask.bag.from_sequence(range(items), npartitions=blocks)
        if bag.npartitions != blocks:
            raise AssertionError(f"dask.bag made {bag.npartitions} partitions, not {blocks}")
        return float(self._client.compute(bag.map(item_fn, *args).mean()).result())

    def stop(self) -> None:
        """Close the client, then the cluster (its worker processes with it)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
