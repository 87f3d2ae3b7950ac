"""The function service process: HTTP + WebSocket (aiohttp) for clients, ZMQ (the endpoint link) for endpoints.

    python -m parsl_lite.faas.service.server --dir DIR [--db URL] [--host 127.0.0.1] [--port 0]
        [--endpoint-port 0] [--result-ttl S] [--payload-limit BYTES] [--heartbeat-period S]
        [--broker [--broker-advertise HOST]]

What it owns, in start order (stopped in reverse on SIGTERM or SIGINT)::

    store (AsyncStore: one thread)  ->  endpoint link (ZMQ ROUTER)  ->  HTTP site  ->  DIR/service.json
                                                                       purge loop (results past their TTL)

With ``--broker`` a messaging broker runs beside them (a thread, its own ZMQ
ports, files in ``DIR/broker/``); it accepts the service's user tokens, and
``GET /v1/broker`` (any user) and ``service.json``'s ``broker`` say where it is.

``DIR/service.json`` = ``{"url", "zmq_url", "pid", "service_id", "db"[, "broker"]}``
appears (atomically, 0600) only once both listeners are up, and is removed
at a clean stop; after a SIGKILL it stays, naming a dead pid. The log is
``DIR/service.log``.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

from parsl_lite.faas import api, paths
from parsl_lite.faas.service.context import DEFAULT_HEARTBEAT_PERIOD_S, ServiceContext, ServiceOptions

logger = logging.getLogger("parsl_lite.faas.service")

SERVICE_FILE = "service.json"
LOG_FILE = "service.log"
_LINK_MODULE = "parsl_lite.faas.service.endpoint_link"


def parse_args(argv: Optional[Sequence[str]] = None) -> ServiceOptions:
    parser = argparse.ArgumentParser(prog="python -m parsl_lite.faas.service.server",
                                     description="Run the function service in the foreground.")
    parser.add_argument("--dir", type=Path, default=None,
                        help="the service's directory (default $PARSL_LITE_HOME/faas/service)")
    parser.add_argument("--db", default="", help="store URL: an SQLite path, sqlite:///PATH or "
                        "postgresql://... (default DIR/faas.db)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="HTTP port (default 0: any free port)")
    parser.add_argument("--endpoint-port", type=int, default=0, help="ZMQ port for endpoints (default 0: any)")
    parser.add_argument("--result-ttl", type=float, default=api.DEFAULT_RESULT_TTL_S,
                        help="seconds a result is kept after its first fetch (default %(default)s)")
    parser.add_argument("--payload-limit", type=int, default=api.DEFAULT_PAYLOAD_LIMIT,
                        help="bytes of one payload or result (default %(default)s)")
    parser.add_argument("--heartbeat-period", type=float, default=DEFAULT_HEARTBEAT_PERIOD_S,
                        help="seconds between endpoint heartbeats and WebSocket pings (default %(default)s)")
    parser.add_argument("--broker", action="store_true", help="also run a messaging broker (parsl_lite.messaging) "
                        "that accepts this service's user tokens")
    parser.add_argument("--broker-advertise", default="", help="the host the broker's clients dial (default --host)")
    args = parser.parse_args(argv)
    return ServiceOptions(dir=(args.dir or paths.service_dir()).resolve(), db=args.db, host=args.host,
                          port=args.port, endpoint_port=args.endpoint_port, result_ttl_s=args.result_ttl,
                          payload_limit=args.payload_limit, heartbeat_period_s=args.heartbeat_period,
                          broker=args.broker, broker_advertise=args.broker_advertise)


def setup_logging(directory: Path) -> None:
    """One file handler for this process (the service's and aiohttp's warnings); never the root logger."""
    handler = logging.FileHandler(directory / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    for name, level in (("parsl_lite", logging.INFO), ("aiohttp", logging.WARNING)):
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.setLevel(level)


def write_service_file(directory: Path, info: dict[str, Any]) -> Path:
    """``service.json`` written whole under a temporary name, then renamed: readers never see half of it."""
    path = directory / SERVICE_FILE
    tmp = directory / f".{SERVICE_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_service_file(directory: Path) -> Optional[dict[str, Any]]:
    try:
        with open(directory / SERVICE_FILE) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def url_host(host: str) -> str:
    """The host to put in URLs: a wildcard bind is reached on loopback."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else (f"[{host}]" if ":" in host else host)


class Service:
    """The running service; :meth:`start` brings everything up, :meth:`stop` takes it down in reverse."""

    def __init__(self, options: ServiceOptions) -> None:
        self.options = options
        self.ctx: Optional[ServiceContext] = None
        self._runner: Any = None
        self._purger: Optional[asyncio.Task] = None
        self.url = ""

    async def start(self) -> None:
        from parsl_lite.faas.service.async_store import AsyncStore
        from parsl_lite.faas.service.store import open_store
        options = self.options
        astore = AsyncStore(open_store(options.db_url))
        await astore.disconnect_all_endpoints()
        ctx = self.ctx = ServiceContext(options, astore, str(uuid.uuid4()))
        await self._start_link(ctx)
        if options.broker:
            self._start_broker(ctx)
        await self._start_http(ctx)
        self._purger = asyncio.get_running_loop().create_task(self._purge_loop())
        info = {"url": self.url, "zmq_url": ctx.zmq_url, "pid": os.getpid(), "service_id": ctx.service_id,
                "db": options.db_url}
        if ctx.broker is not None:
            info["broker"] = ctx.broker.info
        write_service_file(options.dir, info)
        logger.info("service %s up: %s, endpoints at %s, store %s", ctx.service_id, self.url,
                    ctx.zmq_url or "(no endpoint link)", _safe_url(options.db_url))

    async def _start_link(self, ctx: ServiceContext) -> None:
        if importlib.util.find_spec(_LINK_MODULE) is None:
            logger.warning("no endpoint link (%s is missing): serving the API without endpoints", _LINK_MODULE)
            return
        from parsl_lite.faas.service.endpoint_link import EndpointLink
        o = self.options
        ctx.link = EndpointLink(ctx.astore, o.dir, o.host, o.endpoint_port, o.heartbeat_period_s,
                                o.payload_limit, ctx.on_final)
        ctx.zmq_url = await ctx.link.start()
        ctx.service_id = getattr(ctx.link, "service_id", ctx.service_id)   # the id endpoints see in heartbeats

    def _start_broker(self, ctx: ServiceContext) -> None:
        """The messaging broker in a thread; a token is good if it is a user's (asked of the store on the loop)."""
        from parsl_lite.faas.service.auth import hash_token
        from parsl_lite.messaging.hosted import HostedBroker
        loop = asyncio.get_running_loop()

        def user_token(token: str) -> bool:
            found = asyncio.run_coroutine_threadsafe(ctx.astore.user_for_token(hash_token(token)), loop)
            return found.result(10) is not None

        ctx.broker = HostedBroker(self.options.dir / "broker", self.options.host, user_token,
                                  self.options.broker_advertise or url_host(self.options.host).strip("[]"))
        ctx.broker.start()
        logger.info("messaging broker at %s", ctx.broker.info["address"])

    async def _start_http(self, ctx: ServiceContext) -> None:
        from aiohttp import web

        from parsl_lite.faas.service.routes import make_app
        app = make_app(ctx)
        app.router.add_get(f"{api.API_PREFIX}/broker", _broker_route)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{url_host(self.options.host)}:{port}"

    async def _purge_loop(self) -> None:
        """Delete results fetched longer ago than the time-to-live; the tasks stay, state ``purged``."""
        assert self.ctx is not None
        period, ttl = self.options.purge_period_s, self.options.result_ttl_s
        while True:
            await asyncio.sleep(period)
            try:
                purged = await self.ctx.astore.purge_fetched(self.ctx.now() - ttl)
            except Exception:
                logger.exception("purging results older than %g s failed", ttl)
                continue
            if purged:
                logger.info("purged %d results fetched more than %g s ago", purged, ttl)

    async def stop(self) -> None:
        """Listeners first (no new work), then the link, background steps, and the store last."""
        ctx = self.ctx
        if self._purger is not None:
            self._purger.cancel()
            await asyncio.gather(self._purger, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if ctx is not None and ctx.broker is not None:
            await asyncio.to_thread(ctx.broker.stop)   # off the loop: its token checks need the loop
        if ctx is not None:
            if ctx.link is not None:
                await ctx.link.stop()
            await ctx.drain()
            ctx.astore.close()
            info = read_service_file(self.options.dir)
            if info is not None and info.get("pid") == os.getpid():
                (self.options.dir / SERVICE_FILE).unlink(missing_ok=True)
        logger.info("service stopped")


async def _broker_route(request: Any) -> Any:
    """``GET /v1/broker`` (any user): where the hosted messaging broker listens; 404 when there is none.
    Its clients use their own bearer token as the broker token."""
    from parsl_lite.faas.service.routes_common import ctx_of, json_response
    broker = ctx_of(request).broker
    if broker is None:
        return json_response(api.error_body("no_broker", "this service runs no messaging broker "
                                                         "(start it with --broker)"), 404)
    return json_response(broker.info)


def _safe_url(url: str) -> str:
    """A store URL without its password, for the log."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


async def serve(options: ServiceOptions) -> None:
    """Run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = Service(options)
    try:
        await service.start()
        await stop.wait()
        logger.info("stopping (signal)")
    finally:
        await service.stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        options = parse_args(argv)
    except Exception as exc:   # ConfigError names the field
        print(f"parsl_lite.faas.service.server: {exc}", file=sys.stderr)
        return 2
    options.dir.mkdir(parents=True, exist_ok=True)
    setup_logging(options.dir)
    try:
        asyncio.run(serve(options))
    except Exception:
        logger.exception("the service failed")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
