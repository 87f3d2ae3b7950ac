"""Shared fixtures: a loaded kernel per test, in a run directory of its own."""
from __future__ import annotations

import threading
import time

import pytest

import parsl_lite
from parsl_lite.config import Config
from parsl_lite.dataflow.loader import DataFlowKernelLoader
from parsl_lite.executors import ThreadPoolExecutor


@pytest.fixture
def run_dir(tmp_path):
    return str(tmp_path / "runinfo")


@pytest.fixture
def make_dfk(run_dir):
    """Load a config (threads by default) and clean it up after the test."""
    loaded = []

    def _make(config: Config | None = None, **config_kwargs):
        if config is None:
            executors = config_kwargs.pop("executors", None) or [ThreadPoolExecutor(max_threads=4)]
            config = Config(executors=executors, run_dir=run_dir, **config_kwargs)
        dfk = parsl_lite.load(config)
        loaded.append(dfk)
        return dfk

    yield _make
    for dfk in loaded:
        dfk.cleanup()
    DataFlowKernelLoader.clear()


@pytest.fixture
def dfk(make_dfk):
    return make_dfk()


@pytest.fixture(autouse=True)
def no_kernel_left_behind():
    """Every test starts and ends without a loaded kernel or stray worker threads."""
    DataFlowKernelLoader.clear()
    before = {t.ident for t in threading.enumerate()}
    yield
    DataFlowKernelLoader.clear()
    deadline = time.monotonic() + 10
    while True:
        leaked = [t.name for t in threading.enumerate()
                  if t.ident not in before and t.is_alive() and t.name.startswith("parsl_lite")]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads left running: {leaked}"
