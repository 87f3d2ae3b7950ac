"""A private asyncio loop on a daemon thread: where every client's HTTP and WebSocket I/O runs.

One stack (aiohttp) serves the synchronous client, the asynchronous one and
the executor: a sync call hands a coroutine to this loop and waits for it
(~0.1 ms of thread hand-off on top of the round trip); the session's
keep-alive connections stay open between calls.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any, Awaitable, Callable, Coroutine, Optional, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class LoopThread:
    """An event loop running on its own daemon thread until :meth:`stop`."""

    def __init__(self, name: str = "parsl-lite-faas-client") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        """Schedule ``coro`` on the loop; its concurrent future."""
        if self.loop.is_closed():
            coro.close()
            raise RuntimeError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: Optional[float] = None) -> T:
        """Run ``coro`` on the loop and wait for its value (or exception).

        Raises:
            RuntimeError: called from the loop's own thread (it would wait on itself forever).
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("a blocking client call from the client's own I/O thread (a done-callback?): "
                               "call it from another thread")
        return self.submit(coro).result(timeout)

    def call_soon(self, callback: Any, *args: Any) -> None:
        """Run ``callback(*args)`` on the loop's thread, soon (thread-safe)."""
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed (the client was closed): nothing runs there any more
            logger.debug("dropped %r: the client's loop is closed", callback)

    def stop(self, before: Optional[Callable[[], Awaitable[Any]]] = None, timeout: float = 5.0) -> None:
        """Await ``before()`` on the loop, cancel what still runs there, stop the loop, join the thread.

        Idempotent; from the loop's own thread (a finalizer run there) it stops without joining.
        """
        if not self._thread.is_alive() or self.loop.is_closed():
            return

        async def finish() -> None:
            if before is not None:
                try:
                    await before()
                except Exception:  # closing: nothing left to tell anyone
                    logger.debug("closing before the loop stops failed", exc_info=True)
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            asyncio.get_running_loop().stop()

        if self.in_loop_thread():
            self.loop.create_task(finish())
            return
        try:
            asyncio.run_coroutine_threadsafe(finish(), self.loop)
        except RuntimeError:  # closed meanwhile
            return
        self._thread.join(timeout)
