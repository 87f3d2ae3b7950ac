"""A batch of task submissions, sent in one ``POST /v1/submit`` (or a few, if its payloads are large)."""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Optional

from parsl_lite.faas import api
from parsl_lite.faas.errors import MaxResultSizeExceeded
from parsl_lite.faas.sdk.decode import check_id, split_by_bytes
from parsl_lite.serialize import pack_apply_message


_TASK_OVERHEAD = 160     # JSON keys, two UUIDs, quotes: one task's bytes besides its base64 payload
_BODY_OVERHEAD = 4096    # the body's own keys, group id and versions, with room to spare
BODY_OVERHEAD = _BODY_OVERHEAD


def request_bytes_for(payload_limit: int) -> int:
    """The request size a service of this payload limit accepts when it does not say (``api.py``)."""
    return payload_limit * 4 // 3 + 1024 * 1024


def _encoded_size(task: "BatchTask") -> int:
    return (len(task.payload) + 2) // 3 * 4 + _TASK_OVERHEAD


class BatchTask(NamedTuple):
    function_id: str
    endpoint_id: str
    payload: bytes          # serialized (args, kwargs)


def pack_payload(args: tuple, kwargs: dict, limit: int) -> bytes:
    """The serialized ``(args, kwargs)``, refused here if over ``limit`` (DESIGN rule 5: before sending).

    Raises:
        MaxResultSizeExceeded: ``what="payload"``, with the size and the limit.
        SerializationError: naming the argument that cannot be serialized.
    """
    payload = pack_apply_message(args, kwargs)
    if len(payload) > limit:
        raise MaxResultSizeExceeded(len(payload), limit, what="payload")
    return payload


class Batch:
    """Tasks to submit together (funcX's ``Batch``): ``batch.add(*args, endpoint_id=, function_id=, **kwargs)``.

    Args:
        task_group_id: the group every task of the batch joins.
        payload_limit: the biggest payload (bytes) the service accepts.
    """

    def __init__(self, task_group_id: str, payload_limit: int = api.DEFAULT_PAYLOAD_LIMIT) -> None:
        self.task_group_id = check_id(task_group_id, "task_group_id")
        self.payload_limit = payload_limit
        self.tasks: list[BatchTask] = []

    def add(self, *args: Any, endpoint_id: Any = None, function_id: Any = None, **kwargs: Any) -> None:
        """Add ``function_id(*args, **kwargs)`` to run on ``endpoint_id``.

        Raises:
            ValueError: ``endpoint_id`` or ``function_id`` missing or not a UUID.
            MaxResultSizeExceeded: the serialized arguments are over the payload limit.
        """
        endpoint_id = check_id(endpoint_id, "endpoint_id")
        function_id = check_id(function_id, "function_id")
        self.tasks.append(BatchTask(function_id, endpoint_id, pack_payload(args, kwargs, self.payload_limit)))

    def add_packed(self, function_id: str, endpoint_id: str, payload: bytes) -> None:
        """Add a task whose payload is already serialized and checked (the executor's path)."""
        self.tasks.append(BatchTask(function_id, endpoint_id, payload))

    def __len__(self) -> int:
        return len(self.tasks)

    def encoded_bytes(self) -> int:
        """About how many bytes its tasks take in a request body (base64 payloads and JSON around them)."""
        return sum(_encoded_size(task) for task in self.tasks)

    def requests(self, versions: str, max_request_bytes: Optional[int] = None) -> Iterator[tuple[int, dict]]:
        """``(number of tasks, body)`` of each ``POST /v1/submit``, each body within ``max_request_bytes``.

        Default: what a service accepts for one payload at the limit (base64 adds a third, plus 1 MB).
        """
        limit = max_request_bytes or request_bytes_for(self.payload_limit)
        sizes = [_encoded_size(task) for task in self.tasks]
        for run in split_by_bytes(self.tasks, sizes, max(1, limit - _BODY_OVERHEAD)):
            body = {"task_group_id": self.task_group_id, "versions": versions,
                    "tasks": [{"function_id": t.function_id, "endpoint_id": t.endpoint_id,
                               "payload": api.b64(t.payload)} for t in run]}
            yield len(run), body

    def __repr__(self) -> str:
        return f"Batch({len(self.tasks)} tasks, task_group_id={self.task_group_id})"
