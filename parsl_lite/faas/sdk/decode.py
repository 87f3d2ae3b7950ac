"""The service's TASK objects as the SDK shows them (funcX's shapes), and batches split into requests.

No I/O here: these functions turn JSON into task dicts and task dicts into
values or exceptions, so they are tested without a service.

A task dict (``get_task``, ``get_batch_result``, the WebSocket) is funcX's
``{"pending", "status", "result" | "exception", "completion_t"}`` plus
``task_id``, ``endpoint_id``, ``function_id``, ``task_group_id``, ``timings``
and, for a purged, cancelled or unknown task, ``reason``. ``exception`` is a
:class:`~parsl_lite.serialize.RemoteExceptionWrapper` (``.reraise()`` raises
the remote exception with its type and traceback), as in funcX.
"""
from __future__ import annotations

import uuid
from typing import Any, Iterable, Sequence, TypeVar

from parsl_lite.faas import api
from parsl_lite.faas.errors import ServiceError, TaskCancelled, TaskPending, TaskPurged
from parsl_lite.serialize import RemoteExceptionWrapper, deserialize

PENDING_STATES = ("waiting-for-ep", "waiting-for-launch", "running")
TIMINGS = ("received", "dispatched", "started", "finished")
T = TypeVar("T")


def check_id(value: Any, name: str) -> str:
    """``value`` as a UUID string; ``ValueError`` naming ``name`` if it is missing or not a UUID."""
    if value is None:
        raise ValueError(f"{name} is required (a UUID string)")
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a UUID string, got {type(value).__name__}")
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a UUID") from None
    return value


def as_wrapper(obj: Any) -> RemoteExceptionWrapper:
    """A failed task's payload as a wrapper: the runner sends a wrapper, or a bare exception of ours."""
    if isinstance(obj, RemoteExceptionWrapper):
        return obj
    if isinstance(obj, BaseException):
        return RemoteExceptionWrapper(type(obj), obj, obj.__traceback__)
    error = TypeError(f"a failed task's payload is a {type(obj).__name__}, not an exception: {obj!r:.200}")
    return RemoteExceptionWrapper(TypeError, error, None)


def _deserialize_field(task: dict, field: str) -> Any:
    return deserialize(api.unb64(task[field], field))


def decode_task(task: dict) -> dict:
    """The service's TASK JSON as a task dict (results and exceptions deserialized).

    A result that cannot be deserialized here (a module missing on this side)
    becomes the task's ``exception``, so ``get_result`` says why.
    """
    status = str(task.get("status", "unknown"))
    pending = bool(task.get("pending", status in PENDING_STATES))
    timings = task.get("timings") or {}
    out: dict[str, Any] = {
        "task_id": task.get("task_id"), "status": status, "pending": pending,
        "endpoint_id": task.get("endpoint_id"), "function_id": task.get("function_id"),
        "task_group_id": task.get("task_group_id"),
        "timings": {name: timings.get(name) for name in TIMINGS},
    }
    if pending:
        return out
    out["completion_t"] = task.get("completion_t") or timings.get("finished")
    try:
        if status == "success":
            out["result"] = _deserialize_field(task, "result")
        elif status == "failed":
            out["exception"] = as_wrapper(_deserialize_field(task, "exception"))
        else:
            out["reason"] = str(task.get("reason") or status)
    except Exception as exc:  # not ours to decode (bad base64, a class missing here): say so on the task
        out.pop("result", None)
        out["status"] = "failed"
        out["exception"] = RemoteExceptionWrapper(type(exc), exc, exc.__traceback__)
    return out


def task_exception(task: dict) -> BaseException | None:
    """The exception a final task dict stands for (None: it succeeded). Pending: ``TaskPending``."""
    status = task["status"]
    if "error" in task:  # the SDK could not learn the outcome (e.g. the WebSocket was refused)
        return task["error"]
    if task["pending"]:
        return TaskPending(status)
    if status == "success":
        return None
    if "exception" in task:
        return task["exception"].get_exception()
    task_id = str(task.get("task_id"))
    if status == "purged":
        return TaskPurged(task_id)
    if status == "cancelled":
        return TaskCancelled(task_id)
    return ServiceError(404, str(task.get("reason") or f"unknown task id {task_id}"), "unknown_task")


def task_value(task: dict) -> Any:
    """The result of a task dict, or raise what it failed with (``TaskPending`` while pending)."""
    if task["status"] == "failed" and "exception" in task and "error" not in task:
        task["exception"].reraise()
    exc = task_exception(task)
    if exc is not None:
        raise exc
    return task["result"]


def split_by_bytes(items: Sequence[T], sizes: Sequence[int], max_bytes: int, max_items: int = 10_000
                   ) -> Iterable[list[T]]:
    """Consecutive runs of ``items`` whose ``sizes`` sum to at most ``max_bytes`` (a bigger item goes alone)."""
    run: list[T] = []
    total = 0
    for item, size in zip(items, sizes):
        if run and (total + size > max_bytes or len(run) >= max_items):
            yield run
            run, total = [], 0
        run.append(item)
        total += size
    if run:
        yield run
