"""What the htex tests share: a small local executor, our processes by name, a task known to run."""
from __future__ import annotations

import os
from typing import Any

import psutil

from parsl_lite import python_app
from parsl_lite.executors.htex.executor import HighThroughputExecutor
from parsl_lite.providers import LocalProvider

from .conftest import wait_for

INTERCHANGE = "parsl_lite.executors.htex.interchange"
POOL = "htex.worker_pool"


def local_htex(max_blocks: int = 1, init_blocks: int = 1, **overrides: Any) -> HighThroughputExecutor:
    """A two-worker htex on one local block, with a short heartbeat so faults show within seconds."""
    options: dict[str, Any] = dict(label="htex", max_workers_per_node=2, heartbeat_period=1, heartbeat_threshold=3,
                                   provider=LocalProvider(init_blocks=init_blocks, min_blocks=0, max_blocks=max_blocks))
    options.update(overrides)
    return HighThroughputExecutor(**options)


def our_processes(name: str) -> list[psutil.Process]:
    """Our live descendants whose command line contains ``name`` (zombies and the departed skipped)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and name in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def interchange_processes() -> list[psutil.Process]:
    return our_processes(INTERCHANGE)


@python_app
def mark_then_sleep(marker, seconds, value=None):
    """Say it runs (the marker file holds the worker's pid), then hold its worker."""
    import os
    import time
    with open(marker, "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(seconds)
    return value


def running_on_a_worker(tmp_path, seconds: float = 30, value: Any = None):
    """A task that is running on a worker (it wrote its marker) when this returns."""
    marker = tmp_path / f"running-{os.urandom(4).hex()}"
    fut = mark_then_sleep(str(marker), seconds, value)
    wait_for(lambda: marker.exists() and marker.read_text(), 20, "the task to start on a worker")
    return fut
