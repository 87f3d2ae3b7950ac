"""Executors: where apps run. Classes are imported on first use (PEP 562)."""
from parsl_lite.lazy import lazy_attributes

__all__ = ["ParslExecutor", "ThreadPoolExecutor", "HighThroughputExecutor", "FaaSExecutor", "FuncXExecutor"]

__getattr__ = lazy_attributes("parsl_lite.executors", globals(), {
    "ParslExecutor": "parsl_lite.executors.base",
    "ThreadPoolExecutor": "parsl_lite.executors.threads",
    "HighThroughputExecutor": "parsl_lite.executors.htex.executor",
    "FaaSExecutor": "parsl_lite.executors.faas.executor",
    "FuncXExecutor": "parsl_lite.executors.faas.executor",
})
