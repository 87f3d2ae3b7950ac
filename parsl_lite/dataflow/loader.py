"""The process's current DataFlowKernel: ``load``, ``dfk``, ``clear``, ``wait_for_current_tasks``."""
from __future__ import annotations

import threading
from typing import Any, Optional

from parsl_lite.errors import ConfigurationError, NoDataFlowKernelError


class DataFlowKernelLoader:
    """Holds at most one loaded kernel per process, as Parsl does."""

    _dfk: Optional[Any] = None
    _lock = threading.Lock()

    @classmethod
    def load(cls, config: Any = None) -> Any:
        """Build and start a kernel from a ``Config``, a config file path, or the default.

        Raises:
            ConfigurationError: a kernel is already loaded, or the config is wrong.
        """
        from parsl_lite.config_loader import load_config
        from parsl_lite.dataflow.kernel import DataFlowKernel

        with cls._lock:
            if cls._dfk is not None:
                raise ConfigurationError("config", "a config is already loaded: call parsl_lite.clear() "
                                                   "or dfk().cleanup() before loading another")
            cls._dfk = DataFlowKernel(load_config(config))
            return cls._dfk

    @classmethod
    def dfk(cls) -> Any:
        """The loaded kernel.

        Raises:
            NoDataFlowKernelError: nothing is loaded.
        """
        dfk = cls._dfk
        if dfk is None:
            raise NoDataFlowKernelError("Must first load config: call parsl_lite.load(config) before calling apps")
        return dfk

    @classmethod
    def clear(cls) -> None:
        """Clean up the loaded kernel, if any, and forget it."""
        dfk = cls._dfk
        if dfk is not None:
            dfk.cleanup()
        cls._dfk = None

    @classmethod
    def forget(cls, dfk: Any) -> None:
        """Called by a kernel's cleanup: it is no longer the current one."""
        with cls._lock:
            if cls._dfk is dfk:
                cls._dfk = None

    @classmethod
    def wait_for_current_tasks(cls) -> None:
        """Wait for every task of the loaded kernel."""
        cls.dfk().wait_for_current_tasks()
