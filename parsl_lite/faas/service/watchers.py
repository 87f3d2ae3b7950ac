"""Which WebSocket connection waits for which task: a pure registry, and the loop that feeds it.

:class:`Watchers` holds (connection, task id) pairs and nothing else: no
sockets, no store. A pair is *taken* by whoever sends that task's final
state to that connection, so the answer to ``{"watch": [...]}`` (tasks
already final) and a later ``on_final`` (tasks that just became final) never
both send it: on one event loop, exactly one of them takes the pair.

:func:`serve_watch_socket` is the shell: it reads a connection's messages,
registers what it watches, and sends TASK objects (``routes_common.task_json``),
one per message, or many per ``{"tasks": [...]}`` message to a client that
connected with ``?batch=1``. With ``?batch=2`` (the SDK's) the TASKs in them are lean: ``task_id``,
``status``, ``pending``, the result (or exception, or reason) and ``completion_t``, without the ids
and timings every other TASK carries (``GET /v1/tasks/{id}`` has those): half the JSON, on the path
of every result.
:class:`FinalNotifier` is what the endpoint link calls with ids of tasks whose
results were just stored.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any, Hashable, Iterable

from parsl_lite.faas.service.store import FINAL_STATES, User

logger = logging.getLogger(__name__)


BATCH_MAX_TASKS = 1000            # TASK objects per {"tasks": [...]} message at most
BATCH_MAX_CHARS = 8 * 1024 * 1024  # and about this much JSON (results are base64 in it)
LEAN_KEYS = frozenset({"task_id", "status", "pending", "result", "exception", "reason", "completion_t"})
"""What a lean TASK (``?batch=2``) keeps."""


class Watchers:
    """Connection <-> watched task ids, and which connections take TASKs in batches."""

    def __init__(self) -> None:
        self._by_task: dict[str, set[Hashable]] = defaultdict(set)
        self._by_conn: dict[Hashable, set[str]] = defaultdict(set)
        self.batched: set[Hashable] = set()   # asked for ``?batch=1``: {"tasks": [TASK, ...]} messages
        self.lean: set[Hashable] = set()      # asked for ``?batch=2``: the same, with lean TASKs

    def watch(self, conn: Hashable, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            self._by_task[task_id].add(conn)
            self._by_conn[conn].add(task_id)

    def unwatch(self, conn: Hashable, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            self.take(conn, task_id)

    def take(self, conn: Hashable, task_id: str) -> bool:
        """Remove the pair; True if it was there (the caller now sends the task to ``conn``)."""
        conns = self._by_task.get(task_id)
        if not conns or conn not in conns:
            return False
        conns.discard(conn)
        if not conns:
            del self._by_task[task_id]
        ids = self._by_conn[conn]
        ids.discard(task_id)
        if not ids:
            del self._by_conn[conn]
        return True

    def take_all(self, task_id: str) -> list[Hashable]:
        """Every connection watching ``task_id``, removed from the registry."""
        conns = list(self._by_task.get(task_id, ()))
        for conn in conns:
            self.take(conn, task_id)
        return conns

    def drop(self, conn: Hashable) -> None:
        """The connection closed: forget all it watched."""
        for task_id in list(self._by_conn.get(conn, ())):
            self.take(conn, task_id)
        self.batched.discard(conn)
        self.lean.discard(conn)

    def watched(self, task_ids: Iterable[str]) -> list[str]:
        """Those of ``task_ids`` somebody watches."""
        return [t for t in task_ids if t in self._by_task]

    def watching(self, conn: Hashable) -> set[str]:
        return set(self._by_conn.get(conn, ()))

    def __len__(self) -> int:
        return sum(len(c) for c in self._by_task.values())


class FinalNotifier:
    """``on_final(task_ids)`` for the endpoint link: sends each newly final task to whoever watches it."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    def __call__(self, task_ids: list[str]) -> None:
        ids = self._ctx.watchers.watched(task_ids)
        if ids:
            self._ctx.spawn(self.send(ids))

    async def send(self, task_ids: list[str]) -> None:
        from parsl_lite.faas.service.routes_common import task_json
        ctx = self._ctx
        records = await ctx.astore.get_tasks(task_ids, with_payload=False)
        out = Outgoing(ctx.watchers.batched, ctx.watchers.lean)
        fetched = []
        for task_id, task in records.items():
            if task.state not in FINAL_STATES:
                continue
            for ws in ctx.watchers.take_all(task_id):
                await out.add(ws, task_json(task, ctx.options.result_ttl_s))
                fetched.append(task_id)
        await out.flush()
        if fetched:
            await ctx.astore.mark_fetched(sorted(set(fetched)), ctx.now())


class Outgoing:
    """TASK objects on their way: one per text message, or, to a connection in ``batched``, gathered into
    ``{"tasks": [...]}`` messages (one JSON encoding and one frame for many results: the per-message cost
    was most of the service's share of a 10,000-task batch)."""

    def __init__(self, batched: set[Hashable], lean: set[Hashable] = frozenset()) -> None:  # type: ignore[assignment]
        self._batched = batched
        self._lean = lean
        self._lists: dict[Any, tuple[list[dict[str, Any]], list[int]]] = {}

    async def add(self, ws: Any, message: dict[str, Any]) -> None:
        if ws not in self._batched:
            await _send(ws, message)
            return
        tasks, size = self._lists.setdefault(ws, ([], [0]))
        if ws in self._lean:
            message = {key: value for key, value in message.items() if key in LEAN_KEYS}
        tasks.append(message)
        size[0] += 300 + len(message.get("result") or message.get("exception") or "")
        if len(tasks) >= BATCH_MAX_TASKS or size[0] >= BATCH_MAX_CHARS:
            await self._flush_one(ws)

    async def _flush_one(self, ws: Any) -> None:
        tasks, _size = self._lists.pop(ws)
        await _send(ws, {"tasks": tasks})

    async def flush(self) -> None:
        """Send what is gathered (call once the batch of results is done)."""
        for ws in list(self._lists):
            await self._flush_one(ws)


async def _send(ws: Any, message: dict[str, Any]) -> None:
    if ws.closed:
        return
    try:
        await ws.send_str(json.dumps(message))
    except (ConnectionError, RuntimeError) as exc:   # the peer went away between two awaits
        logger.info("websocket send failed: %s", exc)


async def serve_watch_socket(ctx: Any, ws: Any, user: User, batched: bool = False, lean: bool = False) -> None:
    """Read ``{"watch": [...]}`` / ``{"unwatch": [...]}`` until the connection closes.

    ``batched`` (the client connected with ``?batch=1``): TASKs go in ``{"tasks": [...]}`` messages.
    """
    from aiohttp import WSMsgType
    if batched or lean:
        ctx.watchers.batched.add(ws)
    if lean:
        ctx.watchers.lean.add(ws)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                request = json.loads(msg.data)
                if not isinstance(request, dict):
                    raise ValueError("expected a JSON object")
                watch, unwatch = _ids(request, "watch"), _ids(request, "unwatch")
            except ValueError as exc:
                await _send(ws, {"error": "bad_request", "reason": f"message: {exc}"})
                continue
            if unwatch:
                ctx.watchers.unwatch(ws, unwatch)
            if watch:
                await _answer_watch(ctx, ws, user, watch)
    finally:
        ctx.watchers.drop(ws)


def _ids(request: dict[str, Any], field: str) -> list[str]:
    value = request.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"field {field!r}: expected a list of task ids")
    return value


async def _answer_watch(ctx: Any, ws: Any, user: User, task_ids: list[str]) -> None:
    """Register the ids, then send at once those already final (and those the caller may not see)."""
    from parsl_lite.faas.service.access import task_refusal
    from parsl_lite.faas.service.routes_common import task_json, unknown_task_json
    ctx.watchers.watch(ws, task_ids)
    records = await ctx.astore.get_tasks(task_ids, with_payload=False)
    out = Outgoing(ctx.watchers.batched, ctx.watchers.lean)
    fetched = []
    for task_id in task_ids:
        task = records.get(task_id)
        refusal = task_refusal(user, task, task_id)
        if refusal is not None:
            if ctx.watchers.take(ws, task_id):
                await out.add(ws, unknown_task_json(task_id, refusal.reason))
        elif task is not None and task.state in FINAL_STATES and ctx.watchers.take(ws, task_id):
            await out.add(ws, task_json(task, ctx.options.result_ttl_s))
            fetched.append(task_id)
    await out.flush()
    if fetched:
        await ctx.astore.mark_fetched(fetched, ctx.now())
