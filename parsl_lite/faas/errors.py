"""Exceptions of the function service, raised by the SDK, the service and endpoints.

Names follow funcX / Globus Compute where the concept is the same
(``TaskPending``, ``MaxResultSizeExceeded``), so a funcX user's ``except``
clauses keep working.
"""
from __future__ import annotations

from typing import Any, Optional

from parsl_lite.errors import ParslError


class FaaSError(ParslError):
    """Base class of the function service's exceptions."""


class TaskPending(FaaSError):
    """The task has no result yet. ``reason`` is its status (e.g. ``"waiting-for-ep"``).

    The message is funcX's: ``Task is pending due to <reason>``.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    def __str__(self) -> str:
        return f"Task is pending due to {self.reason}"


class ServiceError(FaaSError):
    """The service refused a request. ``http_status`` and ``reason`` come from its JSON error body.

    Args:
        http_status: the HTTP status code (400, 401, 403, 404, 409, 413, ...).
        reason: the body's ``reason`` (what was wrong, naming the field or id).
        code: the body's short machine-readable ``code`` (e.g. ``"bad_token"``).
    """

    def __init__(self, http_status: int, reason: str, code: str = "error") -> None:
        self.http_status = http_status
        self.reason = reason
        self.code = code
        super().__init__(f"{http_status} {code}: {reason}")


class MaxResultSizeExceeded(FaaSError):
    """A result (or payload) is larger than the limit; the message gives both sizes in bytes."""

    def __init__(self, size: int, limit: int, what: str = "result") -> None:
        self.size = size
        self.limit = limit
        self.what = what
        super().__init__(f"{what} of {size} bytes exceeds the limit of {limit} bytes")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.size, self.limit, self.what))


class TaskPurged(FaaSError):
    """The task's result was kept for its time-to-live after it was fetched, then deleted."""

    def __init__(self, task_id: str, ttl_s: Optional[float] = None) -> None:
        self.task_id = task_id
        self.ttl_s = ttl_s
        after = f" {ttl_s:g} s after it was fetched" if ttl_s is not None else ""
        super().__init__(f"task {task_id}: its result was purged{after}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task_id, self.ttl_s))


class EndpointLost(FaaSError):
    """The endpoint running a task died (or vanished) too many times; the task was not lost silently."""

    def __init__(self, endpoint_id: str, reason: str) -> None:
        self.endpoint_id = endpoint_id
        self.reason = reason
        super().__init__(f"endpoint {endpoint_id}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.endpoint_id, self.reason))


class SerializationVersionError(FaaSError):
    """An endpoint cannot read a function or its arguments serialized by another Python / parsl_lite."""

    def __init__(self, detail: str, client_versions: str, endpoint_versions: str) -> None:
        self.detail = detail
        self.client_versions = client_versions
        self.endpoint_versions = endpoint_versions
        super().__init__(f"cannot deserialize the task on the endpoint ({detail}): it was serialized by "
                         f"{client_versions}, the endpoint runs {endpoint_versions}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.detail, self.client_versions, self.endpoint_versions))


class MalformedMessage(FaaSError):
    """Bytes from a peer are not a valid message of ``faas/protocol.py``; ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed message: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


class TaskCancelled(FaaSError):
    """The task was cancelled (``FuncXClient.cancel``) before it ran; it has no result."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id} was cancelled before it ran")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task_id,))


class VersionMismatch(FaaSError):
    """The service speaks another API or protocol version than this client (funcX's name)."""

    def __init__(self, version_message: str) -> None:
        self.version_message = version_message
        super().__init__(version_message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.version_message,))


class ServiceUnreachable(FaaSError):
    """No connection to the service at ``url`` (not running, wrong address); ``reason`` is the OS's."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach the function service at {url}: {reason} "
                         "(is it running? start one with `parsl-lite service start`)")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.url, self.reason))


class CredentialsNotFound(FaaSError):
    """No service URL or token: no arguments, no environment variables, no credentials file."""
