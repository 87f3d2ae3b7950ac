"""``/v1/submit``, ``/v1/tasks``, ``/v1/batch_status``, ``/v1/task_groups`` and the ``/v1/ws`` WebSocket.

A submission is checked whole (every function, endpoint, payload) and then
persisted in one ``add_tasks`` transaction before the answer: an accepted
task survives a SIGKILL of the service. Only then is the endpoint link told.
"""
from __future__ import annotations

import binascii
import os
import uuid
from typing import Any

from aiohttp import web

from parsl_lite.faas import api
from parsl_lite.faas.service.access import check_allowed, endpoint_for, function_for, task_for, task_refusal
from parsl_lite.faas.service.context import ServiceContext
from parsl_lite.faas.service.routes_common import ctx_of, json_response, read_json, task_json, unknown_task_json
from parsl_lite.faas.service.store import FINAL_STATES, PURGED, WAITING_FOR_EP, TaskRecord, User
from parsl_lite.faas.service.validation import (
    MAX_TEXT_CHARS, ApiError, b64_field, bad_field, check_size, check_uuid, path_id, require_str, str_list,
)

routes = web.RouteTableDef()
P = api.API_PREFIX


async def _group_id(ctx: ServiceContext, user: User, body: dict[str, Any]) -> str:
    """The client's group id (it may be new: clients make their own), or a fresh one; 403 if someone else's."""
    if body.get("task_group_id") is None:
        return str(uuid.uuid4())
    group_id = check_uuid(body["task_group_id"], "task_group_id")
    owner = ctx.group_owners.get(group_id)
    if owner is None:   # not seen since the service started: read the store (every id of the group: once)
        earlier = await ctx.astore.task_group(group_id)
        first = (await ctx.astore.get_tasks(earlier[:1])).get(earlier[0]) if earlier else None
        owner = first.owner_id if first is not None else None
        if owner is not None:
            _remember_group(ctx, group_id, owner)
    if owner is not None and owner != user.user_id:
        raise ApiError(403, "forbidden", f"task group {group_id} holds another user's tasks")
    return group_id


_GROUPS_REMEMBERED = 100_000


def _remember_group(ctx: ServiceContext, group_id: str, owner_id: str) -> None:
    """A group's owner never changes once it holds a task: later submissions to it skip the store (reading
    every id of a session's group on each submit made a long session's submits ever slower)."""
    if len(ctx.group_owners) >= _GROUPS_REMEMBERED:
        ctx.group_owners.pop(next(iter(ctx.group_owners)))
    ctx.group_owners[group_id] = owner_id


class _Checker:
    """Checks each task of a submission, looking each function and endpoint up once."""

    def __init__(self, ctx: ServiceContext, user: User) -> None:
        self.ctx, self.user = ctx, user
        self.functions: dict[str, Any] = {}
        self.endpoints: dict[str, Any] = {}
        self.allowed: set[tuple[str, str]] = set()

    async def check(self, i: int, item: Any) -> tuple[str, str, bytes]:
        """The task's ids and payload. The fast path (a pair already checked) costs two lookups and a decode."""
        try:
            function_id, endpoint_id = item["function_id"], item["endpoint_id"]
            pair = (function_id, endpoint_id)
            known = pair in self.allowed
        except (TypeError, KeyError):    # not an object, a field missing, or an id that is not a string
            known = False
        if not known:
            function_id, endpoint_id = await self._check_pair(i, item)
        payload = item.get("payload")
        try:
            data = binascii.a2b_base64(payload, strict_mode=True) if type(payload) is str else None
        except ValueError:                # binascii.Error, or a str that is not ASCII
            data = None
        if data is None:
            data = b64_field(item, "payload", f"tasks[{i}].")     # raises the 400 naming the field
        if len(data) > self.ctx.options.payload_limit:
            check_size(len(data), self.ctx.options.payload_limit, f"tasks[{i}].payload")
        return function_id, endpoint_id, data

    async def _check_pair(self, i: int, item: Any) -> tuple[str, str]:
        where = f"tasks[{i}]."
        if not isinstance(item, dict):
            raise bad_field(f"tasks[{i}]", f"expected an object, got {type(item).__name__}")
        for field in ("function_id", "endpoint_id"):
            if field not in item:
                raise bad_field(where + field, "missing")
        function_id = check_uuid(item["function_id"], where + "function_id")
        endpoint_id = check_uuid(item["endpoint_id"], where + "endpoint_id")
        if function_id not in self.functions:
            found = await self.ctx.astore.get_function(function_id)
            self.functions[function_id] = function_for(self.user, found, function_id)
        if endpoint_id not in self.endpoints:
            found = await self.ctx.astore.get_endpoint(endpoint_id)
            self.endpoints[endpoint_id] = endpoint_for(self.user, found, endpoint_id)
        check_allowed(self.endpoints[endpoint_id], function_id)
        self.allowed.add((function_id, endpoint_id))
        return function_id, endpoint_id


def new_task_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUID strings, as ``str(uuid.uuid4())`` makes them, from one read of
    ``os.urandom``: a quarter of the cost of one ``uuid4`` each, on the path of every submitted task."""
    raw = bytearray(os.urandom(16 * count))
    ids = []
    for at in range(0, 16 * count, 16):
        raw[at + 6] = (raw[at + 6] & 0x0F) | 0x40    # version 4
        raw[at + 8] = (raw[at + 8] & 0x3F) | 0x80    # the RFC 4122 variant
        h = raw[at:at + 16].hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


@routes.post(f"{P}/submit")
async def submit(request: web.Request) -> web.Response:
    ctx, user = ctx_of(request), request["user"]
    body = await read_json(request)
    items = body.get("tasks")
    if not isinstance(items, list):
        raise bad_field("tasks", "missing" if items is None else f"expected a list, got {type(items).__name__}")
    if not items:
        raise bad_field("tasks", "empty; submit at least one task")
    versions = require_str(body, "versions", MAX_TEXT_CHARS)
    group_id = await _group_id(ctx, user, body)
    checker, now = _Checker(ctx, user), ctx.now()
    records = []
    task_ids = new_task_ids(len(items))
    for i, item in enumerate(items):
        function_id, endpoint_id, payload = await checker.check(i, item)
        records.append(TaskRecord(task_id=task_ids[i], owner_id=user.user_id, function_id=function_id,
                                  endpoint_id=endpoint_id, task_group_id=group_id, payload=payload,
                                  versions=versions, state=WAITING_FOR_EP, received=now))
    await ctx.astore.add_tasks(records)
    _remember_group(ctx, group_id, user.user_id)
    if ctx.link is not None:
        for endpoint_id in checker.endpoints:
            ctx.link.notify_submitted(endpoint_id)
    return json_response({"task_group_id": group_id, "task_ids": [r.task_id for r in records]})


def _fetched(ctx: ServiceContext, tasks: list[TaskRecord]) -> None:
    """A final task's first fetch starts its time-to-live.

    Recorded in the background, after the answer: a fetch lost to a crash only keeps a result longer.
    """
    first = [t.task_id for t in tasks if t.state in FINAL_STATES and t.state != PURGED and t.fetched is None]
    if first:
        ctx.spawn(ctx.astore.mark_fetched(first, ctx.now()))


@routes.get(P + "/tasks/{task_id}")
async def get_task(request: web.Request) -> web.Response:
    ctx, user = ctx_of(request), request["user"]
    task_id = path_id(request.match_info["task_id"], "task")
    task = task_for(user, (await ctx.astore.get_tasks([task_id], with_payload=False)).get(task_id), task_id)
    shape = task_json(task, ctx.options.result_ttl_s)
    if task.state == PURGED:
        raise ApiError(410, "purged", shape["reason"], extra=shape)
    _fetched(ctx, [task])
    return json_response(shape)


@routes.post(f"{P}/batch_status")
async def batch_status(request: web.Request) -> web.Response:
    ctx, user = ctx_of(request), request["user"]
    task_ids = str_list(await read_json(request), "task_ids", required=True)
    records = await ctx.astore.get_tasks(task_ids, with_payload=False)
    results: dict[str, Any] = {}
    for task_id in task_ids:
        task = records.get(task_id)
        refusal = task_refusal(user, task, task_id)
        if refusal is not None:
            results[task_id] = unknown_task_json(task_id, refusal.reason)
        else:
            assert task is not None
            results[task_id] = task_json(task, ctx.options.result_ttl_s)
    _fetched(ctx, [t for t in records.values() if t.owner_id == user.user_id])
    return json_response({"results": results})


@routes.post(P + "/tasks/{task_id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    """Cancel a task not yet running (a running or final task is left as it is, and returned)."""
    ctx, user = ctx_of(request), request["user"]
    task_id = path_id(request.match_info["task_id"], "task")
    task = task_for(user, (await ctx.astore.get_tasks([task_id])).get(task_id), task_id)
    cancelled = await ctx.astore.cancel_tasks([task_id], ctx.now())
    if cancelled:
        if ctx.link is not None:
            ctx.link.notify_cancelled(task.endpoint_id, cancelled)
        ctx.on_final(cancelled)
        task = (await ctx.astore.get_tasks([task_id]))[task_id]
    return json_response(task_json(task, ctx.options.result_ttl_s))


@routes.get(P + "/task_groups/{task_group_id}")
async def task_group(request: web.Request) -> web.Response:
    ctx, user = ctx_of(request), request["user"]
    group_id = path_id(request.match_info["task_group_id"], "task group")
    task_ids = await ctx.astore.task_group(group_id)
    if not task_ids:
        raise ApiError(404, "not_found", f"no task group {group_id}")
    first = (await ctx.astore.get_tasks(task_ids[:1])).get(task_ids[0])
    if first is None or first.owner_id != user.user_id:
        raise ApiError(403, "forbidden", f"task group {group_id} holds another user's tasks")
    return json_response({"task_group_id": group_id, "task_ids": task_ids})


@routes.get(f"{P}/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Results pushed as they become final (see ``watchers.py``); pings every heartbeat period."""
    from parsl_lite.faas.service.watchers import serve_watch_socket
    ctx = ctx_of(request)
    ws = web.WebSocketResponse(heartbeat=ctx.options.heartbeat_period_s, max_msg_size=ctx.options.max_request_bytes)
    await ws.prepare(request)
    ctx.sockets.add(ws)
    try:
        batch = request.query.get("batch")
        await serve_watch_socket(ctx, ws, request["user"], batched=batch == "1", lean=batch == "2")
    finally:
        ctx.sockets.discard(ws)
    return ws
