"""The service's HTTP API (``/v1/``): routes, JSON shapes and limits, shared by the service and the SDK.

Every request carries ``Authorization: Bearer <token>``. Bodies are JSON;
bytes (a serialized function, arguments, a result) travel base64-encoded in
string fields (:func:`b64`, :func:`unb64`). Every error is a JSON body
``{"error": CODE, "reason": TEXT}`` with the HTTP status: 400 (malformed JSON
or a bad field: the reason names the field), 401 (no token, or a wrong one),
403 (not yours, not shared with you, not in the endpoint's
``allowed_functions``), 404 (unknown function, endpoint, task or group id:
the reason names it), 409 (a name already taken), 410 (the task's result was
purged), 413 (payload over the limit: size and limit in the reason).

Routes (``{id}`` a UUID string)::

    GET    /v1/version                  -> {"api": "v1", "parsl_lite": V, "protocol_version": N,
                                            "payload_limit"?: bytes}   (no token needed; the SDK refuses a
                                            bigger payload before sending, DEFAULT_PAYLOAD_LIMIT if absent)
    GET    /v1/whoami                   -> {"user_id", "username", "is_admin"}
    POST   /v1/users                    {"username"}  (admin only)  -> {"user_id", "username", "token"}
    POST   /v1/functions                {"function_name", "function_code": b64, "description"?, "public"?: bool,
                                         "shared_with"?: [username], "versions"?: str}  -> {"function_id"}
    GET    /v1/functions/{id}           -> {"function_id", "function_name", "description", "owner", "public",
                                            "created"}
    POST   /v1/endpoints                {"name", "endpoint_id"?: existing id to re-register, "public"?: bool,
                                         "allowed_functions"?: [function_id], "shared_with"?: [username]}
                                        -> {"endpoint_id", "name", "zmq_url", "service_public_key",
                                            "endpoint_public_key", "endpoint_secret_key"}   (z85 CurveZMQ keys)
    GET    /v1/endpoints                -> {"endpoints": [ENDPOINT, ...]}   (those you may send to)
    GET    /v1/endpoints/{id}           -> ENDPOINT
    GET    /v1/endpoints/{id}/status    -> {"status": "online" | "offline", "details": last report,
                                            "last_seen": t | null}
    DELETE /v1/endpoints/{id}           -> {"deleted": true}   (owner only)
    POST   /v1/submit                   {"tasks": [{"function_id", "endpoint_id", "payload": b64}, ...],
                                         "task_group_id"?: id, "versions": str}
                                        -> {"task_group_id", "task_ids": [id, ...]}   (all accepted, or none)
    GET    /v1/tasks/{id}               -> TASK
    POST   /v1/batch_status             {"task_ids": [id, ...]}  -> {"results": {id: TASK, ...}}
                                        (unknown ids: TASK is {"task_id", "status": "unknown", "pending": false,
                                         "reason": "..."}; it never fails the whole call)
    POST   /v1/tasks/{id}/cancel        -> TASK
    GET    /v1/task_groups/{id}         -> {"task_group_id", "task_ids": [id, ...]}
    GET    /v1/ws                       WebSocket (below)

    ENDPOINT = {"endpoint_id", "name", "owner", "status": "online" | "offline", "last_seen", "details"}
    TASK     = {"task_id", "status", "pending": bool, "endpoint_id", "function_id", "task_group_id",
                "result"?: b64 (success), "exception"?: b64 (failed), "reason"?: str (purged, unknown),
                "completion_t"?: t, "timings": {"received", "dispatched", "started", "finished"} (t or null)}

WebSocket ``/v1/ws`` (token in the ``Authorization`` header, as for every
route): the client sends ``{"watch": [task_id, ...]}`` (any number of times);
the service answers each watched task that is already final at once, and
every other one when it becomes final, with one TASK object per text
message (``/v1/ws?batch=1``: many per ``{"tasks": [TASK, ...]}`` message,
at most 1000 or ~8 MB each). ``{"unwatch": [...]}`` stops. After a reconnect the client sends
its watch list again and so misses nothing. The service sends WebSocket pings;
a client that stops answering is dropped.
"""
from __future__ import annotations

import base64
from typing import Any, Final

API_PREFIX: Final = "/v1"
DEFAULT_PORT: Final = 8765
DEFAULT_PAYLOAD_LIMIT: Final = 10 * 1024 * 1024
"""Bytes of one task's payload (and of one result) the service accepts by default (10 MB)."""
DEFAULT_RESULT_TTL_S: Final = 7 * 24 * 3600.0
"""How long a result is kept after it was first fetched."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, field: str) -> bytes:
    """Decode a base64 field; ``ValueError`` naming ``field`` if it is not base64."""
    if not isinstance(text, str):
        raise ValueError(f"field {field!r}: expected a base64 string, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except Exception:
        raise ValueError(f"field {field!r}: not valid base64") from None


def error_body(code: str, reason: str) -> dict[str, str]:
    return {"error": code, "reason": reason}
