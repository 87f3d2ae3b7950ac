"""The service's aiohttp application: every route table, the middleware, and the WebSockets' shutdown.

One route module per job (``routes_users``, ``routes_functions``,
``routes_endpoints``, ``routes_tasks``); each only parses, checks
(``validation``, ``access``) and calls the store or the endpoint link.
"""
from __future__ import annotations

from aiohttp import WSCloseCode, web

from parsl_lite.faas.service.context import ServiceContext
from parsl_lite.faas.service.routes_common import CTX, auth_middleware, error_middleware


def make_app(ctx: ServiceContext) -> web.Application:
    from parsl_lite.faas.service import routes_endpoints, routes_functions, routes_tasks, routes_users
    # a body may be a bit above max_request_bytes before aiohttp stops reading: read_json names the limit
    app = web.Application(middlewares=[error_middleware, auth_middleware],
                          client_max_size=ctx.options.max_request_bytes + 1)
    app[CTX] = ctx
    for module in (routes_users, routes_functions, routes_endpoints, routes_tasks):
        app.add_routes(module.routes)
    app.on_shutdown.append(_close_sockets)
    return app


async def _close_sockets(app: web.Application) -> None:
    """Clients' WebSockets end with "going away": an SDK reconnects (to the restarted service)."""
    for ws in list(app[CTX].sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"service stopping")
