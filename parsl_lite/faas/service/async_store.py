"""The store, seen from the service's event loop: calls run in order, on one store thread or inline.

SQLite and psycopg block; a commit waits for the disk. Running them on the
event loop would stall every WebSocket and endpoint message behind one
fsync. So the service holds an :class:`AsyncStore`: ``await
astore.get_tasks(ids)`` runs ``store.get_tasks(ids)`` on the store's own
thread (one thread, so the store needs no locking and calls keep their
order) and resumes the caller when it is done. An exception in the store
call is raised at the ``await``.

But a hop to the thread and back costs two thread wake-ups (more under
load, waiting for the GIL), and a task makes about eight store calls on its
way: that was most of the service's share of a round trip. A store whose
commits do not wait for the disk (``store.inline_ok``: SQLite at
``synchronous=NORMAL``, 20-100 µs a call) runs a *small* call inline on the
loop when the thread is idle (nothing queued before it, so the order holds
and the connection is never used by two threads at once); big calls (a list
argument of more than ``INLINE_MAX_ITEMS``, and the unbounded ones of
``THREAD_ONLY``) and every call of a store that syncs go to the thread as before.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Callable, Optional

from parsl_lite.faas.service.store import Store

INLINE_MAX_ITEMS = 64   # a list/tuple/dict/set argument longer than this goes to the store thread
THREAD_ONLY = frozenset({"purge_fetched", "tasks_in_flight", "task_group", "count_tasks"})
"""Calls whose size the arguments do not tell (a purge, every task of an endpoint or group): always the thread."""


class AsyncStore:
    """Awaitable proxies of a :class:`Store`'s methods, run in call order (see the module docstring)."""

    def __init__(self, store: Store, inline: Optional[bool] = None) -> None:
        self.store = store
        self.inline = bool(getattr(store, "inline_ok", False)) if inline is None else inline
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="parsl_lite-faas-store")
        self._last: Optional[concurrent.futures.Future] = None   # the last call given to the thread

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)
        if not callable(method):
            raise AttributeError(name)

        inline = self.inline and name not in THREAD_ONLY

        async def call(*args: Any, **kwargs: Any) -> Any:
            if inline and (self._last is None or self._last.done()) and _small(args, kwargs):
                result = method(*args, **kwargs)
                await asyncio.sleep(0)   # still a step of the loop, as an await of the thread was
                return result
            future = self._thread.submit(method, *args, **kwargs)
            self._last = future
            return await asyncio.wrap_future(future)

        call.__name__ = name
        return call

    def close(self) -> None:
        """Finish the calls already queued, then close the store (on its own thread)."""
        self._thread.submit(self.store.close).result()
        self._thread.shutdown(wait=True)


def _small(args: tuple, kwargs: dict) -> bool:
    """No collection argument longer than ``INLINE_MAX_ITEMS`` (a cheap call, fine on the loop)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, (list, tuple, dict, set, frozenset)) and len(value) > INLINE_MAX_ITEMS:
            return False
    return True
