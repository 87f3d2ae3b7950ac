"""``/v1/endpoints``: register (CurveZMQ keys issued here), list, look up, status, delete.

Registering again (the same owner and name, or the ``endpoint_id`` given)
keeps the endpoint's id and issues new keys: the old secret is no longer
needed, and an endpoint directory that lost its keys can register again.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web

from parsl_lite.faas import api
from parsl_lite.faas.service.access import endpoint_for, may_use_endpoint, owned_endpoint
from parsl_lite.faas.service.context import ServiceContext
from parsl_lite.faas.service.routes_common import ctx_of, endpoint_json, endpoint_status, json_response, read_json
from parsl_lite.faas.service.routes_functions import user_ids
from parsl_lite.faas.service.store import EndpointRecord, User
from parsl_lite.faas.service.validation import (
    ApiError, check_uuid, optional_bool, path_id, require_str, uuid_list,
)

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
P = api.API_PREFIX


async def _existing(ctx: ServiceContext, user: User, body: dict[str, Any], name: str) -> EndpointRecord | None:
    """The endpoint this registration renews, if any (``endpoint_id`` given, or the owner's same name)."""
    if body.get("endpoint_id") is not None:
        endpoint_id = check_uuid(body["endpoint_id"], "endpoint_id")
        return owned_endpoint(user, await ctx.astore.get_endpoint(endpoint_id), endpoint_id, "re-register")
    return await ctx.astore.endpoint_by_name(user.user_id, name)


async def _allowed_functions(ctx: ServiceContext, body: dict[str, Any]) -> tuple[str, ...]:
    ids = uuid_list(body, "allowed_functions") if body.get("allowed_functions") is not None else []
    for i, function_id in enumerate(ids):
        if await ctx.astore.get_function(function_id) is None:
            raise ApiError(404, "not_found", f"field 'allowed_functions[{i}]': no function {function_id}")
    return tuple(dict.fromkeys(ids))


@routes.post(f"{P}/endpoints")
async def register_endpoint(request: web.Request) -> web.Response:
    ctx, user = ctx_of(request), request["user"]
    body = await read_json(request)
    name = require_str(body, "name")
    existing = await _existing(ctx, user, body, name)
    allowed = await _allowed_functions(ctx, body)
    shared = await user_ids(ctx, body, "shared_with")
    public = optional_bool(body, "public")
    from parsl_lite.faas.service.keys import issue_endpoint_keys, service_keys
    public_key, secret_key = issue_endpoint_keys()
    record = EndpointRecord(
        endpoint_id=existing.endpoint_id if existing else str(uuid.uuid4()), owner_id=user.user_id, name=name,
        public_key=public_key, public=public, allowed_functions=allowed, shared_with=shared,
        created=existing.created if existing else ctx.now())
    try:
        await ctx.astore.add_endpoint(record)
    except ValueError as exc:   # a new name the owner already uses for another endpoint
        raise ApiError(409, "conflict", f"field 'name': {exc}") from None
    if ctx.link is not None:
        ctx.link.allow_key(public_key)
    service_public_key = ctx.link.service_public_key if ctx.link is not None else service_keys(ctx.options.dir)[0]
    logger.info("endpoint %s (%r of %s) %s", record.endpoint_id, name, user.username,
                "re-registered" if existing else "registered")
    return json_response({"endpoint_id": record.endpoint_id, "name": name, "zmq_url": ctx.zmq_url,
                          "service_public_key": service_public_key,
                          "endpoint_public_key": public_key, "endpoint_secret_key": secret_key})


@routes.get(f"{P}/endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    ctx, user = ctx_of(request), request["user"]
    mine = [e for e in await ctx.astore.list_endpoints() if may_use_endpoint(user, e)]
    return json_response({"endpoints": [await endpoint_json(ctx, e) for e in mine]})


async def _endpoint(request: web.Request) -> tuple[ServiceContext, User, str]:
    endpoint_id = path_id(request.match_info["endpoint_id"], "endpoint")
    return ctx_of(request), request["user"], endpoint_id


@routes.get(P + "/endpoints/{endpoint_id}")
async def get_endpoint(request: web.Request) -> web.Response:
    ctx, user, endpoint_id = await _endpoint(request)
    endpoint = endpoint_for(user, await ctx.astore.get_endpoint(endpoint_id), endpoint_id)
    return json_response(await endpoint_json(ctx, endpoint))


@routes.get(P + "/endpoints/{endpoint_id}/status")
async def endpoint_status_route(request: web.Request) -> web.Response:
    ctx, user, endpoint_id = await _endpoint(request)
    endpoint = endpoint_for(user, await ctx.astore.get_endpoint(endpoint_id), endpoint_id)
    return json_response({"status": endpoint_status(ctx, endpoint), "details": endpoint.status,
                          "last_seen": endpoint.last_seen})


@routes.delete(P + "/endpoints/{endpoint_id}")
async def delete_endpoint(request: web.Request) -> web.Response:
    """The owner deletes it; its unfinished tasks fail with ``EndpointLost`` (never left pending forever)."""
    ctx, user, endpoint_id = await _endpoint(request)
    owned_endpoint(user, await ctx.astore.get_endpoint(endpoint_id), endpoint_id, "delete")
    pending = [t.task_id for t in await ctx.astore.tasks_to_deliver(endpoint_id, 1 << 30)]
    pending += [t.task_id for t in await ctx.astore.tasks_in_flight(endpoint_id)]
    if pending:
        from parsl_lite.faas.errors import EndpointLost
        from parsl_lite.serialize import serialize
        lost = serialize(EndpointLost(endpoint_id, f"deleted by its owner {user.username}"))
        await ctx.astore.fail_tasks(pending, lost, ctx.now())
        if ctx.link is not None:
            ctx.link.notify_cancelled(endpoint_id, pending)
        ctx.on_final(pending)
    await ctx.astore.delete_endpoint(endpoint_id)
    logger.info("endpoint %s deleted by %s (%d unfinished tasks failed)", endpoint_id, user.username, len(pending))
    return json_response({"deleted": True})
