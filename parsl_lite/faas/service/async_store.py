"""The store, seen from the service's event loop: every call runs on one store thread, in order.

SQLite and psycopg block; a commit waits for the disk. Running them on the
event loop would stall every WebSocket and endpoint message behind one
fsync. So the service holds an :class:`AsyncStore`: ``await
astore.get_tasks(ids)`` runs ``store.get_tasks(ids)`` on the store's own
thread (one thread, so the store needs no locking and calls keep their
order) and resumes the caller when it is done. An exception in the store
call is raised at the ``await``.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from typing import Any, Callable

from parsl_lite.faas.service.store import Store


class AsyncStore:
    """Awaitable proxies of a :class:`Store`'s methods, run on one thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="parsl_lite-faas-store")

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)
        if not callable(method):
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, functools.partial(method, *args, **kwargs))

        call.__name__ = name
        return call

    def close(self) -> None:
        """Finish the calls already queued, then close the store (on its own thread)."""
        self._thread.submit(self.store.close).result()
        self._thread.shutdown(wait=True)
