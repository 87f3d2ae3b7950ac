"""parsl_lite: parallel dataflow scripting in the style of Parsl.

    import parsl_lite as parsl
    from parsl_lite import python_app

    @python_app
    def double(x):
        return 2 * x

    with parsl.load():                    # a Config, a config file, or the local default
        print(double(21).result())        # 42
"""
from __future__ import annotations

from typing import Any

from parsl_lite.app.app import bash_app, join_app, python_app
from parsl_lite.config import Config
from parsl_lite.data_provider.files import File
from parsl_lite.dataflow.kernel import DataFlowKernel
from parsl_lite.dataflow.loader import DataFlowKernelLoader
from parsl_lite.dataflow.streams import AUTO_LOGNAME
from parsl_lite.executors import ThreadPoolExecutor
from parsl_lite.log_utils import set_file_logger, set_stream_logger

__version__ = "0.1.0"
__all__ = ["bash_app", "python_app", "join_app", "Config", "DataFlowKernel", "File", "AUTO_LOGNAME",
           "ThreadPoolExecutor", "load", "dfk", "clear", "wait_for_current_tasks",
           "set_file_logger", "set_stream_logger"]


def load(config: Any = None) -> DataFlowKernel:
    """Load a config and start its kernel; usable as ``with parsl_lite.load(...):``.

    Args:
        config: a ``Config``, a path to a ``.toml`` file or to a Python module
            that defines ``config``, or None for the local default.
    """
    return DataFlowKernelLoader.load(config)


def dfk() -> DataFlowKernel:
    """The loaded kernel (raises ``NoDataFlowKernelError`` if none)."""
    return DataFlowKernelLoader.dfk()


def clear() -> None:
    """Clean up and forget the loaded kernel."""
    DataFlowKernelLoader.clear()


def wait_for_current_tasks() -> None:
    """Wait until every task submitted so far has finished."""
    DataFlowKernelLoader.wait_for_current_tasks()
