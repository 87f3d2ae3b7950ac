"""What every route shares: the JSON shapes of tasks and endpoints, body reading, the error and auth middleware.

The middleware is where the service translates at its boundary (STYLE 10):
an :class:`ApiError` from a handler, aiohttp's own 404/405/413, and any bug
become the API's JSON error body with the right status.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable, Optional

from aiohttp import web

from parsl_lite.faas import api
from parsl_lite.faas.errors import TaskPurged
from parsl_lite.faas.service.context import ServiceContext
from parsl_lite.faas.service.store import CANCELLED, FAILED, FINAL_STATES, PURGED, SUCCESS, EndpointRecord, TaskRecord
from parsl_lite.faas.service.validation import ApiError, parse_json

logger = logging.getLogger(__name__)

CTX: web.AppKey[ServiceContext] = web.AppKey("ctx", ServiceContext)
OPEN_PATHS = frozenset({f"{api.API_PREFIX}/version"})


def ctx_of(request: web.Request) -> ServiceContext:
    return request.app[CTX]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; 413 (size and limit) before reading a body declared too big."""
    limit = ctx_of(request).options.max_request_bytes
    size = request.content_length
    if size is not None and size > limit:
        raise ApiError(413, "payload_too_large", f"request body of {size} bytes exceeds the limit of {limit} bytes")
    return parse_json(await request.read())


# ---------------------------------------------------------------- shapes

def task_json(task: TaskRecord, ttl_s: Optional[float] = None) -> dict[str, Any]:
    """The API's TASK object."""
    out: dict[str, Any] = {
        "task_id": task.task_id, "status": task.state, "pending": task.state not in FINAL_STATES,
        "endpoint_id": task.endpoint_id, "function_id": task.function_id, "task_group_id": task.task_group_id,
        "timings": {"received": task.received, "dispatched": task.dispatched, "started": task.started,
                    "finished": task.finished},
    }
    if task.state == SUCCESS and task.result is not None:
        out["result"] = api.b64(task.result)
    elif task.state == FAILED and task.result is not None:
        out["exception"] = api.b64(task.result)
    elif task.state == PURGED:
        out["reason"] = str(TaskPurged(task.task_id, ttl_s))
    elif task.state == CANCELLED:
        out["reason"] = f"task {task.task_id} was cancelled by its owner before it ran"
    if task.state in FINAL_STATES:
        out["completion_t"] = task.finished
    return out


def unknown_task_json(task_id: str, reason: str) -> dict[str, Any]:
    return {"task_id": task_id, "status": "unknown", "pending": False, "reason": reason}


async def endpoint_json(ctx: ServiceContext, endpoint: EndpointRecord) -> dict[str, Any]:
    """The API's ENDPOINT object; ``status`` is the link's view when there is a link."""
    return {"endpoint_id": endpoint.endpoint_id, "name": endpoint.name,
            "owner": await ctx.username(endpoint.owner_id), "status": endpoint_status(ctx, endpoint),
            "last_seen": endpoint.last_seen, "details": endpoint.status}


def endpoint_status(ctx: ServiceContext, endpoint: EndpointRecord) -> str:
    online = ctx.link.is_online(endpoint.endpoint_id) if ctx.link is not None else endpoint.connected
    return "online" if online else "offline"


# ---------------------------------------------------------------- middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as ``{"error", "reason"}`` JSON with its status; a bug is a logged 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response(exc.body(), status=exc.status)
    except web.HTTPRequestEntityTooLarge:
        limit = ctx_of(request).options.max_request_bytes
        size = request.content_length
        said = f"{size} bytes" if size is not None else f"more than {limit} bytes"
        return json_response(api.error_body("payload_too_large",
                                            f"request body of {said} exceeds the limit of {limit} bytes"), 413)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response(api.error_body(_code(exc.status), f"{request.method} {request.path}: {exc.reason}"),
                             exc.status)
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return json_response(api.error_body("internal_error", f"{request.method} {request.path}: the service "
                                            "failed (see its log)"), 500)


def _code(status: int) -> str:
    return {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}.get(status, "error")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every route but ``/v1/version`` needs a known Bearer token; the user is ``request["user"]``."""
    if request.path not in OPEN_PATHS and request.method != "OPTIONS":
        request["user"] = await ctx_of(request).auth.user_for(request.headers.get("Authorization"))
    return await handler(request)
