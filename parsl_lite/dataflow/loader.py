"""The process's current DataFlowKernel: ``load``, ``dfk``, ``clear``, ``wait_for_current_tasks``.

Under ``parsl-lite run`` (:meth:`DataFlowKernelLoader.script_session`) the
script's kernel is loaded lazily: the script's own ``parsl_lite.load(...)``
works as usual, except that with ``--config FILE`` the CLI's config wins
over whatever the script passes; a script that never calls ``load`` gets
the CLI's config (or the default) at its first app call or ``dfk()``.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from parsl_lite.errors import ConfigurationError, NoDataFlowKernelError

logger = logging.getLogger(__name__)


@dataclass
class _ScriptSession:
    """What ``parsl-lite run`` asked for: its config source, and whether it overrides the script's."""

    source: Any
    forced: bool
    prepared: Any = None       # the Config the CLI already built (and checked) from ``source``, used once
    implicit_used: bool = False  # the lazy load for a script that never calls load() happens at most once

    def config(self) -> Any:
        from parsl_lite.config_loader import load_config

        prepared, self.prepared = self.prepared, None
        return prepared if prepared is not None else load_config(self.source)


class DataFlowKernelLoader:
    """Holds at most one loaded kernel per process, as Parsl does."""

    _dfk: Optional[Any] = None
    _lock = threading.RLock()
    _session: Optional[_ScriptSession] = None

    @classmethod
    def load(cls, config: Any = None) -> Any:
        """Build and start a kernel from a ``Config``, a config file path, or the default (``Config()``).

        Raises:
            ConfigurationError: a kernel is already loaded, or the config is wrong.
        """
        from parsl_lite.config_loader import load_config
        from parsl_lite.dataflow.kernel import DataFlowKernel

        with cls._lock:
            if cls._dfk is not None:
                raise ConfigurationError("config", "a config is already loaded: call parsl_lite.clear() "
                                                   "or dfk().cleanup() before loading another")
            session = cls._session
            if session is not None:
                session.implicit_used = True
                if session.forced:
                    if config is not None:
                        logger.warning("parsl-lite run --config %s: loading it instead of the config the "
                                       "script passed to load()", session.source)
                    built = session.config()
                else:
                    built = load_config(config)
            else:
                built = load_config(config)
            cls._dfk = DataFlowKernel(built)
            cls._dfk.add_cleanup_listener(cls.forget)
            return cls._dfk

    @classmethod
    def dfk(cls) -> Any:
        """The loaded kernel (under ``parsl-lite run``, loaded now if the script has not loaded one).

        Raises:
            NoDataFlowKernelError: nothing is loaded.
        """
        dfk = cls._dfk
        if dfk is None:
            dfk = cls._load_for_script()
            if dfk is None:
                raise NoDataFlowKernelError("Must first load config")  # Parsl's exact words
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
        """A loaded kernel's cleanup listener: it is no longer the current one."""
        with cls._lock:
            if cls._dfk is dfk:
                cls._dfk = None

    @classmethod
    def wait_for_current_tasks(cls) -> None:
        """Wait for every task of the loaded kernel."""
        cls.dfk().wait_for_current_tasks()

    @classmethod
    @contextlib.contextmanager
    def script_session(cls, source: Any, prepared: Any = None) -> Iterator[None]:
        """While a script runs under ``parsl-lite run``: lazy loading, the CLI's config winning if given.

        Args:
            source: the ``--config`` source, or None (then the script's own
                ``load`` arguments are used, and the default if it loads nothing).
            prepared: the Config already built from ``source``, used for the first load.

        On leaving, the kernel still loaded is cleaned up.
        """
        with cls._lock:
            cls._session = _ScriptSession(source, forced=source is not None, prepared=prepared)
        try:
            yield
        finally:
            with cls._lock:
                cls._session = None
            cls.clear()

    @classmethod
    def _load_for_script(cls) -> Optional[Any]:
        if cls._session is None:  # the usual case: no lock, so dfk() never waits for a load in progress
            return None
        with cls._lock:
            if cls._dfk is not None:
                return cls._dfk
            session = cls._session
            if session is None or session.implicit_used:
                return None
            logger.info("parsl-lite run: the script called an app before load(); loading %s",
                        session.source if session.source is not None else "the default config")
            return cls.load(None)
