"""parsl_lite: parallel dataflow scripting in the style of Parsl.

    import parsl_lite as parsl
    from parsl_lite import python_app

    @python_app
    def double(x):
        return 2 * x

    with parsl.load():                    # a Config, a config file, or the default (threads)
        print(double(21).result())        # 42
        parsl.wait([double(i) for i in range(10)], progress=True)   # a bar (a widget in Jupyter)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from parsl_lite.lazy import lazy_attributes

if TYPE_CHECKING:
    from parsl_lite.dataflow.kernel import DataFlowKernel

# Imported on first use (PEP 562), so that worker processes, which import only
# what they run, start fast instead of loading the whole kernel.
_LAZY = {
    "bash_app": "parsl_lite.app.app", "join_app": "parsl_lite.app.app", "python_app": "parsl_lite.app.app",
    "Config": "parsl_lite.config", "File": "parsl_lite.data_provider.files",
    "DataFlowKernel": "parsl_lite.dataflow.kernel", "DataFlowKernelLoader": "parsl_lite.dataflow.loader",
    "AUTO_LOGNAME": "parsl_lite.app.call", "ThreadPoolExecutor": "parsl_lite.executors.threads",
    "HighThroughputExecutor": "parsl_lite.executors.htex.executor",
    "set_file_logger": "parsl_lite.log_utils", "set_stream_logger": "parsl_lite.log_utils",
    "wait": "parsl_lite.progress", "as_completed": "parsl_lite.progress",
}


__getattr__ = lazy_attributes("parsl_lite", globals(), _LAZY)


__version__ = "0.1.0"
__all__ = ["bash_app", "python_app", "join_app", "Config", "DataFlowKernel", "File", "AUTO_LOGNAME",
           "ThreadPoolExecutor", "HighThroughputExecutor", "load", "dfk", "clear", "wait_for_current_tasks",
           "set_file_logger", "set_stream_logger", "wait", "as_completed"]


def load(config: Any = None) -> "DataFlowKernel":
    """Load a config and start its kernel; usable as ``with parsl_lite.load(...):``.

    Args:
        config: a ``Config``, a path to a ``.toml`` file or to a Python module
            that defines ``config``, or None for the default, ``Config()``: one
            ``ThreadPoolExecutor``, as in Parsl (``parsl_lite.configs.htex_local``
            has worker processes). Under ``parsl-lite run --config FILE``, FILE
            is loaded whatever is passed here.
    """
    from parsl_lite.dataflow.loader import DataFlowKernelLoader

    return DataFlowKernelLoader.load(config)


def dfk() -> "DataFlowKernel":
    """The loaded kernel (raises ``NoDataFlowKernelError`` if none)."""
    from parsl_lite.dataflow.loader import DataFlowKernelLoader

    return DataFlowKernelLoader.dfk()


def clear() -> None:
    """Clean up and forget the loaded kernel."""
    from parsl_lite.dataflow.loader import DataFlowKernelLoader

    DataFlowKernelLoader.clear()


def wait_for_current_tasks() -> None:
    """Wait until every task submitted so far has finished."""
    from parsl_lite.dataflow.loader import DataFlowKernelLoader

    DataFlowKernelLoader.wait_for_current_tasks()
