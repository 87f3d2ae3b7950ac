"""Results pushed over the service's WebSocket (``/v1/ws``), for the asynchronous client and the executor.

The socket is open only while some watched task has no final state: the
first :meth:`ResultWatcher.watch` opens it, the last result closes it (after
a short linger, so that back-to-back batches do not reconnect each time). A
socket that drops (the service restarted, the network blinked) is opened
again after a backoff and the whole watch list sent again; the service
answers every task already final at once, so nothing is missed.

Everything here runs on the client's private loop (``loop_thread.py``).
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable, Iterable, Optional

import aiohttp

from parsl_lite.faas.errors import ServiceError
from parsl_lite.faas.sdk.decode import decode_task
from parsl_lite.faas.sdk.http import ServiceSession

logger = logging.getLogger(__name__)

Callback = Callable[[dict], None]


WATCH_CHUNK = 5000
"""Task ids per ``{"watch": [...]}`` message (~185 kB), far below the service's message size limit."""


async def send_watch(ws: aiohttp.ClientWebSocketResponse, task_ids: list[str]) -> None:
    """Send ``{"watch": ids}`` in messages of at most ``WATCH_CHUNK`` ids."""
    for start in range(0, len(task_ids), WATCH_CHUNK):
        await ws.send_str(json.dumps({"watch": task_ids[start:start + WATCH_CHUNK]}))


class Backoff:
    """Delays between reconnection attempts: ``first_s`` doubling up to ``max_s``; reset when connected."""

    def __init__(self, first_s: float = 0.05, max_s: float = 2.0) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.max_s, self.first_s * (2 ** self.failures))
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class ResultWatcher:
    """Delivers each watched task's final state (a decoded task dict) to the callbacks watching it.

    Attributes:
        connects: how many times the socket was opened (tests count reconnections).
    """

    def __init__(self, session: ServiceSession, backoff: Optional[Backoff] = None, linger_s: float = 0.5) -> None:
        self._session = session
        self._backoff = backoff or Backoff()
        self._linger_s = linger_s
        self._new_watch = asyncio.Event()
        self._waiters: dict[str, list[Callback]] = {}
        self._ws: Optional[aiohttp.ClientWebSocketResponse] = None
        self._runner: Optional[asyncio.Task] = None
        self._closed = False
        self.connects = 0

    @property
    def watching(self) -> int:
        return len(self._waiters)

    def watch(self, task_ids: Iterable[str], callback: Callback) -> None:
        """Call ``callback(task)`` once each of ``task_ids`` is final (call on the loop)."""
        new = []
        for task_id in task_ids:
            waiters = self._waiters.get(task_id)
            if waiters is None:
                self._waiters[task_id] = [callback]
                new.append(task_id)
            else:
                waiters.append(callback)
        if self._closed:
            self._fail(new, RuntimeError("the client was closed"))
            return
        if new and self._ws is not None and not self._ws.closed:
            asyncio.get_running_loop().create_task(self._send_watch(self._ws, new))
        if new:
            self._new_watch.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def _send_watch(self, ws: aiohttp.ClientWebSocketResponse, task_ids: list[str]) -> None:
        try:
            await send_watch(ws, task_ids)
        except Exception as exc:  # the socket dropped: the run loop reconnects and sends the whole list
            logger.debug("watch not sent (%r); it goes again after the reconnection", exc)

    async def _run(self) -> None:
        """Keep a socket open while anything is watched; reconnect with backoff when it drops."""
        while self._waiters and not self._closed:
            try:
                await self._connected_once()
            except ServiceError as exc:  # refused (wrong token): retrying cannot help
                self._fail(list(self._waiters), exc)
                return
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                logger.debug("results WebSocket to %s: %s: %s", self._session.url, type(exc).__name__, exc)
            if self._waiters and not self._closed:
                first = self._backoff.failures == 0
                delay = self._backoff.next_delay()
                (logger.info if first else logger.debug)(
                    "results WebSocket to %s closed with %d tasks watched; reconnecting in %.2f s",
                    self._session.url, len(self._waiters), delay)
                await asyncio.sleep(delay)

    async def _connected_once(self) -> None:
        ws = await self._session.ws_connect()
        self.connects += 1
        self._backoff.reset()
        try:
            self._ws = ws
            await send_watch(ws, list(self._waiters))
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._deliver(message.data)
                elif message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    break
                if not self._waiters and not await self._linger():
                    break  # the last watched task is final and no new one came: close
        finally:
            self._ws = None
            await ws.close()

    async def _linger(self) -> bool:
        """Keep the socket a moment after the last result (the next batch often follows): True if one came."""
        self._new_watch.clear()
        try:
            await asyncio.wait_for(self._new_watch.wait(), self._linger_s)
        except asyncio.TimeoutError:
            pass
        return bool(self._waiters) and not self._closed

    def _deliver(self, text: str) -> None:
        """One message: a TASK, or ``{"tasks": [TASK, ...]}`` (the batches asked for with ``?batch=1``)."""
        try:
            raw = json.loads(text)
            tasks = raw["tasks"] if "tasks" in raw else [raw]
        except Exception:
            logger.warning("results WebSocket: not a TASK message: %.200r", text)
            return
        for one in tasks:
            self._deliver_task(one)

    def _deliver_task(self, raw: dict) -> None:
        try:
            task_id = raw["task_id"]
        except Exception:
            logger.warning("results WebSocket: not a TASK: %.200r", raw)
            return
        if raw.get("pending", False) or task_id not in self._waiters:
            return
        task = decode_task(raw)
        for callback in self._waiters.pop(task_id):
            try:
                callback(task)
            except Exception:  # one consumer's bug must not stop the others' results
                logger.exception("result callback for task %s failed", task_id)

    def _fail(self, task_ids: list[str], exc: BaseException) -> None:
        """Give these tasks' waiters an ``"error"`` task dict carrying ``exc`` (they resolve, never hang)."""
        for task_id in task_ids:
            task = {"task_id": task_id, "status": "error", "pending": False, "error": exc}
            for callback in self._waiters.pop(task_id, []):
                try:
                    callback(task)
                except Exception:
                    logger.exception("result callback for task %s failed", task_id)

    async def close(self) -> None:
        """Stop: every task still watched resolves with an error saying the client closed."""
        self._closed = True
        self._fail(list(self._waiters), RuntimeError("the client was closed before the task's result came"))
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
