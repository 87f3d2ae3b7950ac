"""The web view's HTTP side (aiohttp): the page, the server-sent event stream, the report.

Routes::

    GET /            the page (one HTML document, its script and style inline)
    GET /events      text/event-stream: ``snapshot`` (the whole document, once),
                     then ``patch`` (a merge patch, only when the store changed)
    GET /snapshot    the current document as JSON (scripts, tests)
    GET /report      the run's report (report.py's HTML, plots inline) once the run ended; 409 before

One ticker reads the store for all browsers, at most once per ``interval_s``
and only while at least one is connected (``feed.ReadPolicy``); the read runs
in a thread so the loop keeps serving.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import Executor
from typing import Any, Hashable, Optional, Protocol

from aiohttp import web

from parsl_lite.monitoring.web.feed import Feed, Json, ReadPolicy
from parsl_lite.monitoring.web.page import PAGE_HTML

logger = logging.getLogger(__name__)

_CLOSE = object()   # queued to a stream: the server is stopping


class Source(Protocol):
    """What the server reads: a cheap change signature, the snapshot document, the report.

    The server calls them on ``executor`` (one thread: a store connection stays on its thread).
    """

    executor: Optional[Executor]

    def signature(self) -> Hashable: ...

    def snapshot(self) -> Json: ...

    def report_html(self) -> Optional[str]:
        """The report of a run that ended; None while it runs."""


class WebMonitor:
    """The running web view: :meth:`start` listens, :meth:`stop` ends the streams and the site."""

    def __init__(self, source: Source, interval_s: float = 1.0, max_age_s: float = 5.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.source = source
        self.interval_s = interval_s
        self.feed = Feed()
        self.policy = ReadPolicy(max_age_s=max_age_s)
        self.reads = 0                      # store reads so far (tests: none while nobody watches)
        self.keepalive_s = 15.0             # a quiet stream gets a comment this often, to notice a closed tab
        self.url = ""
        self._streams: set[asyncio.Queue] = set()
        self._watched = asyncio.Event()
        self._ready = asyncio.Event()       # the feed holds a first document
        self._read_lock = asyncio.Lock()
        self._report: Optional[tuple[Hashable, str]] = None
        self._runner: Optional[web.AppRunner] = None
        self._ticker: Optional[asyncio.Task] = None

    @property
    def watchers(self) -> int:
        """Event streams open now (browsers watching)."""
        return len(self._streams)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.get("/", self._page), web.get("/events", self._events),
                        web.get("/snapshot", self._snapshot), web.get("/report", self._report_page),
                        web.get("/favicon.ico", self._no_icon)])
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: a free port); return the page's URL."""
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        bound = self._runner.addresses[0][1]
        shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
        self.url = f"http://{shown}:{bound}/"
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())
        return self.url

    async def stop(self) -> None:
        for queue in list(self._streams):
            queue.put_nowait(_CLOSE)
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------ reading the store

    async def _tick_loop(self) -> None:
        while True:
            await self._watched.wait()
            await self.refresh()
            await asyncio.sleep(self.interval_s)

    async def refresh(self, force: bool = False, asking: int = 0) -> None:
        """Read the store if the policy says so (or ``force``) and push the patch to every stream.

        ``asking``: readers besides the streams (a ``/snapshot`` request) for the policy to count.
        """
        async with self._read_lock:
            try:
                signature = await self._call(self.source.signature)
                if not (self.policy.should_read(signature, len(self._streams) + asking, time.monotonic()) or force):
                    return
                self.reads += 1
                snapshot, cpu_s = await self._call(lambda: _with_cpu_time(self.source.snapshot))
                self.policy.read_took(cpu_s)
            except Exception:
                logger.exception("reading the monitoring store failed; retrying next tick")
                self.policy.forget()
                return
            first = self.feed.doc is None
            patch = self.feed.update(snapshot)
            self._ready.set()
            if first:       # streams opened while the store could not be read got no document yet
                self._broadcast("snapshot", {"version": self.feed.version, "doc": self.feed.doc})
            elif patch is not None:
                self._broadcast("patch", {"version": self.feed.version, "patch": patch})

    async def _call(self, fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(getattr(self.source, "executor", None), fn)

    def _broadcast(self, event: str, data: Json) -> None:
        message = _sse(event, data)
        for queue in self._streams:
            queue.put_nowait(message)

    # ------------------------------------------------------------ routes

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE_HTML, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def _no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _snapshot(self, request: web.Request) -> web.Response:
        await self.refresh(force=not self._ready.is_set(), asking=1)
        return web.json_response({"version": self.feed.version, "doc": self.feed.doc})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        if not self._ready.is_set():
            await self.refresh(force=True)
        # the whole document first, at the version patches count from: taken and the queue joined with
        # no await between, so every later patch lands in the queue and none is missed
        first = _sse("snapshot", {"version": self.feed.version, "doc": self.feed.doc})
        queue: asyncio.Queue = asyncio.Queue()
        self._streams.add(queue)
        self._watched.set()
        try:
            await response.write(first)
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), self.keepalive_s)
                except asyncio.TimeoutError:
                    message = b": keep-alive\n\n"   # a comment: a browser gone away fails this write
                if message is _CLOSE:
                    break
                await response.write(message)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams.discard(queue)
            if not self._streams:
                self._watched.clear()
        return response

    async def _report_page(self, request: web.Request) -> web.Response:
        signature = await self._call(self.source.signature)
        if self._report is not None and self._report[0] == signature:
            return web.Response(text=self._report[1], content_type="text/html")
        try:
            html = await self._call(self.source.report_html)
        except Exception as exc:
            logger.exception("the report could not be made")
            return web.Response(status=500, text=f"the report could not be made: {type(exc).__name__}: {exc}\n")
        if html is None:
            return web.Response(status=409, text="the run has not ended: its report comes when it does\n")
        self._report = (signature, html)
        return web.Response(text=html, content_type="text/html")


def _with_cpu_time(fn: Any) -> tuple[Any, float]:
    """``fn()`` and the CPU seconds this thread spent in it (what a read costs, whatever the machine's load)."""
    started = time.thread_time()
    return fn(), time.thread_time() - started


def _sse(event: str, data: Json) -> bytes:
    """One server-sent event; the JSON holds no newline, so one ``data:`` line carries it."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


async def run_until_signalled(monitor: WebMonitor, host: str, port: int, out: Any) -> int:
    """Serve until SIGINT or SIGTERM; print the URL once listening."""
    import signal
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await monitor.start(host, port)
    print(f"parsl-lite monitor: serving on {url} (Ctrl-C stops)", file=out, flush=True)
    try:
        await stop.wait()
    finally:
        await monitor.stop()
    return 0
