"""Who may see, run and send what: pure decisions over the store's records, refusals as :class:`ApiError`.

- A function: its owner, the users it is shared with, everyone if public.
- An endpoint (send tasks to it, see it): its owner, the users it is shared
  with, everyone if public. Only the owner re-registers or deletes it.
- An endpoint's ``allowed_functions`` (empty: any): a function not in it is
  refused (403) naming the function and the endpoint.
- A task or task group: only the user who submitted it.

An unknown id is a 404 naming it; a known one that is not the caller's is a 403.
"""
from __future__ import annotations

from typing import Optional

from parsl_lite.faas.service.store import EndpointRecord, FunctionRecord, TaskRecord, User
from parsl_lite.faas.service.validation import ApiError


def may_use_function(user: User, function: FunctionRecord) -> bool:
    return function.public or function.owner_id == user.user_id or user.user_id in function.shared_with


def may_use_endpoint(user: User, endpoint: EndpointRecord) -> bool:
    return endpoint.public or endpoint.owner_id == user.user_id or user.user_id in endpoint.shared_with


def function_for(user: User, function: Optional[FunctionRecord], function_id: str) -> FunctionRecord:
    """The function if ``user`` may see and run it; else 404 (unknown) or 403 (not theirs)."""
    if function is None:
        raise ApiError(404, "not_found", f"no function {function_id}")
    if not may_use_function(user, function):
        raise ApiError(403, "forbidden", f"function {function_id} is not yours, not shared with you "
                                         f"({user.username}) and not public")
    return function


def endpoint_for(user: User, endpoint: Optional[EndpointRecord], endpoint_id: str) -> EndpointRecord:
    """The endpoint if ``user`` may send to it (and see it); else 404 or 403."""
    if endpoint is None:
        raise ApiError(404, "not_found", f"no endpoint {endpoint_id}")
    if not may_use_endpoint(user, endpoint):
        raise ApiError(403, "forbidden", f"endpoint {endpoint_id} is not yours, not shared with you "
                                         f"({user.username}) and not public")
    return endpoint


def owned_endpoint(user: User, endpoint: Optional[EndpointRecord], endpoint_id: str, action: str) -> EndpointRecord:
    """The endpoint if ``user`` owns it (to ``action`` it: re-register, delete); else 404 or 403."""
    if endpoint is None:
        raise ApiError(404, "not_found", f"no endpoint {endpoint_id}")
    if endpoint.owner_id != user.user_id:
        raise ApiError(403, "forbidden", f"endpoint {endpoint_id} belongs to another user; "
                                         f"only its owner may {action} it")
    return endpoint


def check_allowed(endpoint: EndpointRecord, function_id: str) -> None:
    """403 if the endpoint limits its functions and ``function_id`` is not among them."""
    if endpoint.allowed_functions and function_id not in endpoint.allowed_functions:
        raise ApiError(403, "function_not_allowed",
                       f"function {function_id} is not in the allowed_functions of endpoint "
                       f"{endpoint.endpoint_id} ({endpoint.name!r})")


def task_for(user: User, task: Optional[TaskRecord], task_id: str) -> TaskRecord:
    """The task if ``user`` submitted it; else 404 or 403."""
    refusal = task_refusal(user, task, task_id)
    if refusal is not None:
        raise refusal
    assert task is not None
    return task


def task_refusal(user: User, task: Optional[TaskRecord], task_id: str) -> Optional[ApiError]:
    """Why ``user`` may not see this task (None: they may); batch_status reports it per task."""
    if task is None:
        return ApiError(404, "not_found", f"no task {task_id}")
    if task.owner_id != user.user_id:
        return ApiError(403, "forbidden", f"task {task_id} was submitted by another user")
    return None
