"""``parsl-lite monitor --web``: the terminal monitor's view in a browser, updated live.

::

    store (SQLite / PostgreSQL) --queries + views, one thread--> StoreSource
        --> WebMonitor (aiohttp, 127.0.0.1): ticker, at most once per interval and only
            while a browser watches: change token moved? -> snapshot -> Feed (merge patch)
        --> every browser's /events stream (server-sent events): the whole document once,
            then only the patches; /report: the report's HTML (report.py) once the run ended

Nothing is fetched from another host: the page carries its script and style.
"""
from __future__ import annotations

import sys
from typing import Optional, TextIO

__all__ = ["serve"]


def serve(store: str, run_id: Optional[str] = None, *, host: str = "127.0.0.1", port: int = 0,
          interval_s: float = 1.0, out: TextIO = sys.stdout) -> int:
    """Serve the live view of ``run_id`` (None: the latest run) of ``store`` until SIGINT or SIGTERM.

    Prints ``parsl-lite monitor: serving on http://HOST:PORT/`` to ``out`` once listening.

    Args:
        store: the store's URL (``sqlite:////abs/path.db`` or ``postgresql://...``).
        run_id: a run id (or what ``Store.find_run`` accepts); None follows the latest run.
        host: the address to bind (127.0.0.1: this machine only).
        port: the port; 0 picks a free one.
        interval_s: the shortest time between two reads of the store.
        out: where the URL line goes.

    Returns:
        The exit status: 0 after a signal, 2 when the address cannot be bound.

    Raises:
        ValueError: ``port`` or ``interval_s`` out of range (named).
        parsl_lite.monitoring.queries.StoreUnreadable, UnknownRun: before anything listens.
    """
    import asyncio

    from parsl_lite.monitoring.web.server import WebMonitor, run_until_signalled
    from parsl_lite.monitoring.web.source import StoreSource

    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
    if not interval_s > 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
    source = StoreSource(store, run_id)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"parsl-lite monitor: warning: serving on {host!r} with no login: anyone who reaches it sees the run",
              file=sys.stderr)
    try:
        return asyncio.run(run_until_signalled(WebMonitor(source, interval_s), host, port, out))
    except OSError as exc:
        print(f"parsl-lite monitor: error: cannot listen on {host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    finally:
        source.close()
