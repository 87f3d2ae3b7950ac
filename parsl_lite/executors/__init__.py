"""Executors: where apps run."""
from parsl_lite.executors.base import ParslExecutor
from parsl_lite.executors.htex.executor import HighThroughputExecutor
from parsl_lite.executors.threads import ThreadPoolExecutor

__all__ = ["ParslExecutor", "ThreadPoolExecutor", "HighThroughputExecutor"]
