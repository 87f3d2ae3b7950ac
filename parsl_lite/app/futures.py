"""``DataFuture`` under Parsl's import path (defined beside ``AppFuture``)."""
from parsl_lite.dataflow.futures import DataFuture

__all__ = ["DataFuture"]
