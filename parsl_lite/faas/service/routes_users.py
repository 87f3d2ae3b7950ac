"""``/v1/version``, ``/v1/whoami`` and ``/v1/users`` (an admin creates users and their first token)."""
from __future__ import annotations

from aiohttp import web

from parsl_lite.faas import api
from parsl_lite.faas.service.auth import hash_token, new_token
from parsl_lite.faas.service.routes_common import ctx_of, json_response, read_json
from parsl_lite.faas.service.validation import ApiError, require_str

routes = web.RouteTableDef()
P = api.API_PREFIX


@routes.get(f"{P}/version")
async def version(request: web.Request) -> web.Response:
    from parsl_lite import __version__
    from parsl_lite.faas.protocol import PROTOCOL_VERSION
    options = ctx_of(request).options
    return json_response({"api": "v1", "parsl_lite": __version__, "protocol_version": PROTOCOL_VERSION,
                          "payload_limit": options.payload_limit, "max_request_bytes": options.max_request_bytes})


@routes.get(f"{P}/whoami")
async def whoami(request: web.Request) -> web.Response:
    user = request["user"]
    return json_response({"user_id": user.user_id, "username": user.username, "is_admin": user.is_admin})


@routes.post(f"{P}/users")
async def create_user(request: web.Request) -> web.Response:
    user = request["user"]
    if not user.is_admin:
        raise ApiError(403, "forbidden", f"only an admin may create users ({user.username} is not one)")
    body = await read_json(request)
    username = require_str(body, "username")
    astore = ctx_of(request).astore
    if await astore.user_by_name(username) is not None:
        raise ApiError(409, "conflict", f"field 'username': a user named {username!r} exists")
    created = await astore.create_user(username, False)
    token = new_token()
    await astore.add_token(created.user_id, hash_token(token), "created by POST /v1/users")
    return json_response({"user_id": created.user_id, "username": created.username, "token": token})
