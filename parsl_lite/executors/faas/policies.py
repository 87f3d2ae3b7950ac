"""Which endpoint runs a task: the routing policies, pure (no I/O, no clock; STYLE 1).

A policy is any callable ``policy(task_spec, statuses) -> endpoint_id``:

- ``task_spec``: ``{"endpoints": [ids allowed, in order], "function_name": str,
  "resource_specification": dict}``;
- ``statuses``: ``{endpoint_id: EndpointStatus}`` of the candidates, already
  narrowed by :func:`candidates` (allowed, not just lost, reporting if any is).

``round_robin`` cycles through the candidates; ``least_loaded`` sends to the
one with the fewest tasks per worker, from the endpoints' status reports and
the executor's own count of what it sent there since.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

Policy = Callable[[dict, Mapping[str, "EndpointStatus"]], str]


@dataclass(frozen=True)
class EndpointStatus:
    """What the executor knows of one endpoint when it routes a task.

    Attributes:
        endpoint_id: the endpoint.
        online: the service says it is connected and reporting.
        reporting: its last report is recent (an endpoint that stopped reporting gets no new task).
        connected_workers: workers it has (last report).
        idle_workers: workers with nothing to do (last report).
        queue: tasks waiting or running there (last report).
        in_flight: tasks this executor sent there that have not finished (live, not from a report).
        recently_lost: it lost a task of this executor a short while ago (a retry goes elsewhere).
    """
    endpoint_id: str
    online: bool = True
    reporting: bool = True
    connected_workers: int = 0
    idle_workers: int = 0
    queue: int = 0
    in_flight: int = 0
    recently_lost: bool = False

    @property
    def usable(self) -> bool:
        return self.online and self.reporting and not self.recently_lost


def status_from_report(endpoint_id: str, reply: Mapping[str, Any], in_flight: int, now: float,
                       stale_after_s: float, recently_lost: bool = False, finished_since: int = 0) -> EndpointStatus:
    """An ``EndpointStatus`` from ``get_endpoint_status``'s answer (``{status, details, last_seen}``).

    ``finished_since``: tasks of this executor that finished there since the report was read. They
    are out of its queue now; a report a few seconds old would otherwise still count them, and keep
    ``least_loaded`` away from an endpoint that has just drained (until its next report).
    """
    details = reply.get("details") or {}
    last_seen = reply.get("last_seen") or 0.0
    online = reply.get("status") == "online" and details.get("alive", True) is not False
    return EndpointStatus(
        endpoint_id=endpoint_id,
        online=online,
        reporting=online and (now - float(last_seen)) <= stale_after_s,
        connected_workers=int(details.get("connected_workers") or 0),
        idle_workers=int(details.get("idle_workers") or 0),
        queue=max(0, int(details.get("pending_tasks") or 0) + int(details.get("outstanding_tasks") or 0)
                  - finished_since),
        in_flight=in_flight,
        recently_lost=recently_lost,
    )


def candidates(allowed: Sequence[str], statuses: Mapping[str, EndpointStatus]) -> list[str]:
    """The endpoints a task may go to now, in the allowed order.

    The usable ones (online, reporting, not just lost) if any; else those not just
    lost (the task waits at the service for one to return); else all allowed.
    """
    def status(e: str) -> EndpointStatus:
        return statuses.get(e) or EndpointStatus(e)
    usable = [e for e in allowed if status(e).usable]
    if usable:
        return usable
    not_lost = [e for e in allowed if not status(e).recently_lost]
    return not_lost or list(allowed)


class RoundRobin:
    """``round_robin``: each task to the next candidate in turn (one counter per executor)."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def __call__(self, task_spec: dict, statuses: Mapping[str, EndpointStatus]) -> str:
        options = [e for e in task_spec["endpoints"] if e in statuses] or list(task_spec["endpoints"])
        return options[next(self._counter) % len(options)]


def load(status: EndpointStatus) -> float:
    """Tasks per worker: the larger of the reported queue and the executor's own in flight."""
    return max(status.queue, status.in_flight) / max(1, status.connected_workers)


def least_loaded(task_spec: dict, statuses: Mapping[str, EndpointStatus]) -> str:
    """``least_loaded``: the candidate with the fewest tasks per worker; ties: most idle workers, then order."""
    options = [e for e in task_spec["endpoints"] if e in statuses] or list(task_spec["endpoints"])
    reporting = [e for e in options if e in statuses and statuses[e].usable] or options

    def key(item: tuple[int, str]) -> tuple[float, int, int]:
        index, e = item
        s = statuses.get(e) or EndpointStatus(e)
        return (load(s), -s.idle_workers, index)
    return min(enumerate(reporting), key=key)[1]


POLICIES: dict[str, Callable[[], Policy]] = {
    "round_robin": RoundRobin,
    "least_loaded": lambda: least_loaded,
}


def resolve_policy(policy: Union[str, Policy]) -> Policy:
    """A policy from its name or a callable.

    Raises:
        ValueError: an unknown name (the known ones are listed).
    """
    if callable(policy):
        return policy
    factory = POLICIES.get(policy)
    if factory is None:
        raise ValueError(f"unknown policy {policy!r}; known: {sorted(POLICIES)} or a callable "
                         "policy(task_spec, statuses) -> endpoint_id")
    return factory()


def choose(policy: Policy, task_spec: dict, statuses: Mapping[str, EndpointStatus]) -> str:
    """Ask ``policy`` among the candidates of ``task_spec['endpoints']``; its answer must be one of them.

    Raises:
        ValueError: the policy named an endpoint the task may not go to.
    """
    allowed = list(task_spec["endpoints"])
    options = candidates(allowed, statuses)
    spec = {**task_spec, "endpoints": options}
    chosen = policy(spec, {e: statuses.get(e) or EndpointStatus(e) for e in options})
    if chosen not in allowed:
        raise ValueError(f"policy {getattr(policy, '__name__', policy)!r} chose endpoint {chosen!r}, "
                         f"not among the task's endpoints {allowed}")
    return chosen


class LossTracker:
    """When an endpoint counts as lost: offline for longer than ``after_s`` (pure; times passed in).

    ``observe`` takes each status poll; ``newly_lost`` returns an endpoint once per
    offline spell, when its in-flight tasks should fail with ``EndpointLost``.
    ``mark_lost``/``recently_lost`` remember a loss for ``avoid_s`` so retries go elsewhere.
    """

    def __init__(self, after_s: Optional[float], avoid_s: float = 60.0) -> None:
        self.after_s = after_s
        self.avoid_s = avoid_s
        self._offline_since: dict[str, float] = {}
        self._reported: set[str] = set()
        self._lost_at: dict[str, float] = {}

    def observe(self, endpoint_id: str, online: bool, now: float) -> None:
        if online:
            self._offline_since.pop(endpoint_id, None)
            self._reported.discard(endpoint_id)
        else:
            self._offline_since.setdefault(endpoint_id, now)

    def offline_for(self, endpoint_id: str, now: float) -> float:
        since = self._offline_since.get(endpoint_id)
        return 0.0 if since is None else now - since

    def newly_lost(self, now: float) -> list[str]:
        if self.after_s is None:
            return []
        lost = [e for e, since in self._offline_since.items()
                if now - since >= self.after_s and e not in self._reported]
        for e in lost:
            self._reported.add(e)
            self.mark_lost(e, now)
        return lost

    def gives_up(self, endpoint_id: str, submitted_at: float, now: float) -> bool:
        """A task sent at ``submitted_at`` fails now: its endpoint and the task both waited ``after_s`` offline.

        So a task sent to an endpoint that was offline already also waits ``after_s`` before it fails.
        """
        if self.after_s is None:
            return False
        return min(self.offline_for(endpoint_id, now), now - submitted_at) >= self.after_s

    def mark_lost(self, endpoint_id: str, now: float) -> None:
        self._lost_at[endpoint_id] = now

    def recently_lost(self, endpoint_id: str, now: float) -> bool:
        at = self._lost_at.get(endpoint_id)
        return at is not None and now - at < self.avoid_s
