"""Exceptions of the FaaS executor (the function service's own are in ``parsl_lite.faas.errors``)."""
from __future__ import annotations

from parsl_lite.executors.errors import ExecutorError


class EndpointNotAllowed(ExecutorError, ValueError):
    """A task or the config names an endpoint this user may not send to (unknown, not theirs, not an id).

    Args:
        executor: the executor's label.
        endpoint_id: the endpoint named.
        why: what the service (or the id check) said.
    """

    def __init__(self, executor: str, endpoint_id: str, why: str) -> None:
        self.endpoint_id = endpoint_id
        self.why = why
        super().__init__(executor, f"endpoint {endpoint_id!r} may not be used: {why}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.executor, self.endpoint_id, self.why))


class InvalidFaaSResourceSpecification(ExecutorError, ValueError):
    """A ``parsl_resource_specification`` given to the FaaS executor has keys or values it cannot use."""


class EndpointsOffline(ExecutorError):
    """Every endpoint a task may go to stayed offline for ``offline_timeout`` seconds: it was never sent.

    Args:
        executor: the executor's label.
        endpoint_ids: the endpoints the task could have gone to (all offline or silent).
        waited_s: how long the task waited for one of them.
    """

    def __init__(self, executor: str, endpoint_ids: list[str], waited_s: float) -> None:
        self.endpoint_ids = list(endpoint_ids)
        self.waited_s = waited_s
        super().__init__(executor, f"every endpoint of the task is offline: {', '.join(self.endpoint_ids)}; "
                                   f"it waited {waited_s:.1f} s (offline_timeout) for one to come back")

    def __reduce__(self) -> tuple:
        return (type(self), (self.executor, self.endpoint_ids, self.waited_s))
