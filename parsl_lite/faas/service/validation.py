"""What a request body may hold, checked at the edge: each refusal names the field and says what is wrong.

Pure functions over parsed JSON (no aiohttp, no store): a handler calls
:func:`parse_json` on the body bytes, then the ``require_*`` / ``optional_*``
helpers on the fields it reads. A refusal is an :class:`ApiError`, which the
service's middleware turns into the API's JSON error body (``api.error_body``).
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Optional

from parsl_lite.faas import api

MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 10_000


class ApiError(Exception):
    """A refused request: the HTTP ``status``, a short ``code`` and a ``reason`` naming what was wrong.

    ``extra`` fields are merged into the JSON body (e.g. the TASK of a purged task with its 410).
    """

    def __init__(self, status: int, code: str, reason: str, extra: Optional[dict[str, Any]] = None) -> None:
        self.status = status
        self.code = code
        self.reason = reason
        self.extra = extra or {}
        super().__init__(f"{status} {code}: {reason}")

    def body(self) -> dict[str, Any]:
        return {**self.extra, **api.error_body(self.code, self.reason)}


def bad_field(field: str, reason: str) -> ApiError:
    return ApiError(400, "bad_request", f"field {field!r}: {reason}")


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; 400 if it is not JSON, or not an object."""
    if not raw:
        raise ApiError(400, "bad_request", "body: empty; expected a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"body: malformed JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", f"body: expected a JSON object, got {type(body).__name__}")
    return body


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def require_str(body: dict[str, Any], field: str, max_chars: int = MAX_NAME_CHARS, where: str = "") -> str:
    """A non-empty string field of at most ``max_chars`` characters."""
    name = where + field
    if field not in body:
        raise bad_field(name, "missing")
    value = body[field]
    if not isinstance(value, str):
        raise bad_field(name, f"expected a string, got {_type_name(value)}")
    if not value.strip():
        raise bad_field(name, "empty")
    if len(value) > max_chars:
        raise bad_field(name, f"{len(value)} characters; at most {max_chars}")
    return value


def optional_str(body: dict[str, Any], field: str, default: str = "", max_chars: int = MAX_TEXT_CHARS) -> str:
    value = body.get(field, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise bad_field(field, f"expected a string, got {_type_name(value)}")
    if len(value) > max_chars:
        raise bad_field(field, f"{len(value)} characters; at most {max_chars}")
    return value


def optional_bool(body: dict[str, Any], field: str, default: bool = False) -> bool:
    value = body.get(field, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_field(field, f"expected true or false, got {_type_name(value)}")
    return value


def str_list(body: dict[str, Any], field: str, required: bool = False) -> list[str]:
    """A list of strings (``[]`` if absent and not ``required``)."""
    if field not in body or body[field] is None:
        if required:
            raise bad_field(field, "missing")
        return []
    value = body[field]
    if not isinstance(value, list):
        raise bad_field(field, f"expected a list, got {_type_name(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise bad_field(f"{field}[{i}]", f"expected a non-empty string, got {_type_name(item)}")
    return list(value)


def check_uuid(value: Any, field: str) -> str:
    """A UUID string (the form every id of the service has)."""
    if not isinstance(value, str):
        raise bad_field(field, f"expected an id (a UUID string), got {_type_name(value)}")
    try:
        uuid.UUID(value)
    except ValueError:
        raise bad_field(field, f"{value[:80]!r} is not an id (a UUID string)") from None
    return value


def uuid_list(body: dict[str, Any], field: str) -> list[str]:
    ids = str_list(body, field, required=True)
    return [check_uuid(v, f"{field}[{i}]") for i, v in enumerate(ids)]


def b64_field(body: dict[str, Any], field: str, where: str = "") -> bytes:
    """A required base64 field, decoded."""
    if field not in body:
        raise bad_field(where + field, "missing")
    try:
        return api.unb64(body[field], where + field)
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None


def check_size(size: int, limit: int, what: str) -> None:
    """413 if ``size`` bytes exceed ``limit``, naming both (the words of ``MaxResultSizeExceeded``)."""
    if size > limit:
        raise ApiError(413, "payload_too_large", f"{what} of {size} bytes exceeds the limit of {limit} bytes")


def path_id(value: str, what: str) -> str:
    """An id from the URL path; 404 naming it if it cannot be an id at all."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise ApiError(404, "not_found", f"no {what} {value[:80]!r} (not an id)") from None
    return value
