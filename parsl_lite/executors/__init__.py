"""Executors: where apps run. Classes are imported on first use (PEP 562)."""
import importlib
from typing import Any

__all__ = ["ParslExecutor", "ThreadPoolExecutor", "HighThroughputExecutor"]

_LAZY = {"ParslExecutor": "parsl_lite.executors.base", "ThreadPoolExecutor": "parsl_lite.executors.threads",
         "HighThroughputExecutor": "parsl_lite.executors.htex.executor"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'parsl_lite.executors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
