"""``/v1/functions``: register a function (its serialized body, opaque to the service) and look one up."""
from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from parsl_lite.faas import api
from parsl_lite.faas.service.access import function_for
from parsl_lite.faas.service.context import ServiceContext
from parsl_lite.faas.service.routes_common import ctx_of, json_response, read_json
from parsl_lite.faas.service.store import FunctionRecord
from parsl_lite.faas.service.validation import (
    b64_field, bad_field, check_size, optional_bool, optional_str, path_id, require_str, str_list,
)

routes = web.RouteTableDef()
P = api.API_PREFIX


async def user_ids(ctx: ServiceContext, body: dict[str, Any], field: str) -> tuple[str, ...]:
    """The ids of the users named in ``body[field]``; 400 naming the first unknown one."""
    ids = []
    for i, name in enumerate(str_list(body, field)):
        user = await ctx.astore.user_by_name(name)
        if user is None:
            raise bad_field(f"{field}[{i}]", f"no user named {name!r}")
        ids.append(user.user_id)
    return tuple(dict.fromkeys(ids))


@routes.post(f"{P}/functions")
async def register_function(request: web.Request) -> web.Response:
    ctx, user = ctx_of(request), request["user"]
    body = await read_json(request)
    name = require_str(body, "function_name")
    code = b64_field(body, "function_code")
    if not code:
        raise bad_field("function_code", "empty")
    check_size(len(code), ctx.options.payload_limit, "function_code")
    record = FunctionRecord(
        function_id=str(uuid.uuid4()), owner_id=user.user_id, name=name,
        description=optional_str(body, "description"), body=code, public=optional_bool(body, "public"),
        shared_with=await user_ids(ctx, body, "shared_with"), versions=optional_str(body, "versions"),
        created=ctx.now())
    await ctx.astore.add_function(record)
    return json_response({"function_id": record.function_id})


@routes.get(P + "/functions/{function_id}")
async def get_function(request: web.Request) -> web.Response:
    ctx, user = ctx_of(request), request["user"]
    function_id = path_id(request.match_info["function_id"], "function")
    function = function_for(user, await ctx.astore.get_function(function_id), function_id)
    return json_response({"function_id": function.function_id, "function_name": function.name,
                          "description": function.description, "owner": await ctx.username(function.owner_id),
                          "public": function.public, "created": function.created})
