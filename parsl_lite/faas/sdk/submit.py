"""Sending batches to ``POST /v1/submit`` so that a service restart neither loses nor doubles a task.

A submission whose connection breaks (the service was killed mid-request)
may or may not have been stored. Like globus-sdk's retry policy, the client
waits for the service to come back rather than failing at once, but it does
not simply send again: it first reads the batch's task group. The group
lists its tasks in submission order and this client knows how many it held
before the request, so the answer is exact: the tasks are there (take their
ids), or they are not (send again), or somebody else wrote to the group
meanwhile (say so, with the original error). Submissions of one client go
one at a time (an ``asyncio.Lock``), which keeps the group's order theirs.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

from parsl_lite.faas.errors import ServiceError, ServiceUnreachable
from parsl_lite.faas.sdk.batch import Batch
from parsl_lite.faas.sdk.http import ServiceSession
from parsl_lite.faas.sdk.results_ws import Backoff

logger = logging.getLogger(__name__)

DEFAULT_RETRY_S = 60.0
"""How long a submission waits for an unreachable service to come back before it fails."""


def outcome_after_outage(known: int, count: int, group_size: int) -> str:
    """What a broken submission of ``count`` tasks did, from its group's size before (``known``) and now.

    Returns ``"stored"`` (take the group's last ``count`` ids), ``"not_stored"`` (send it again) or
    ``"unknown"`` (the group changed otherwise: another client wrote to it).
    """
    if group_size == known + count:
        return "stored"
    if group_size == known:
        return "not_stored"
    return "unknown"


class Submitter:
    """Sends batches in order, counting each task group's tasks, and retries across a service restart.

    Args:
        session: the client's HTTP session.
        versions: the client's ``"Python X, parsl_lite Y"``, sent with every request.
        retry_s: how long to wait for an unreachable service (0: fail at once).
    """

    def __init__(self, session: ServiceSession, versions: str, retry_s: float = DEFAULT_RETRY_S) -> None:
        self._session = session
        self._versions = versions
        self.retry_s = retry_s
        self.max_request_bytes: Optional[int] = None
        self._lock: Optional[asyncio.Lock] = None
        self._group_sizes: dict[str, int] = {}   # task group -> tasks it holds (as far as this client knows)

    def new_group(self, task_group_id: str) -> None:
        """``task_group_id`` was made here (a fresh UUID): it holds no task yet, no need to ask."""
        self._group_sizes.setdefault(task_group_id, 0)

    def group_grew(self, task_group_id: str, size: int) -> None:
        """The group was read and holds ``size`` tasks (``reload_tasks``)."""
        self._group_sizes[task_group_id] = size

    async def submit(self, batch: Batch) -> list[str]:
        """POST the batch, request after request (each within the service's size); the task ids.

        Raises:
            ServiceError: the service refused a request (an earlier request of a split batch stays accepted).
            ServiceUnreachable: the service stayed away longer than ``retry_s``.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        gid = batch.task_group_id
        task_ids: list[str] = []
        async with self._lock:
            known = await self._group_size(gid)
            for count, body in batch.requests(self._versions, self.max_request_bytes):
                ids = await self._request(gid, count, body, known)
                known += count
                self._group_sizes[gid] = known
                task_ids.extend(ids)
        return task_ids

    async def _group_size(self, gid: str) -> int:
        size = self._group_sizes.get(gid)
        if size is None:   # a group named by the user: it may hold tasks already
            size = self._group_sizes[gid] = len(await self._group_ids(gid))
        return size

    async def _group_ids(self, gid: str) -> list[str]:
        try:
            return list((await self._session.call("GET", f"/task_groups/{gid}"))["task_ids"])
        except ServiceError as exc:
            if exc.http_status == 404:
                return []
            raise

    async def _request(self, gid: str, count: int, body: dict, known: int) -> list[str]:
        """One ``POST /v1/submit``; across a broken connection, the outcome read back from the group."""
        deadline = time.monotonic() + self.retry_s
        while True:
            try:
                reply = await self._session.call("POST", "/submit", body)
            except ServiceUnreachable as exc:
                ids = await self._group_after_outage(gid, deadline, exc)
                outcome = outcome_after_outage(known, count, len(ids))
                if outcome == "stored":
                    logger.info("submission of %d tasks was stored before the connection broke", count)
                    return ids[known:]
                if outcome == "unknown":
                    raise ServiceUnreachable(self._session.url, f"{exc.reason}; task group {gid} now holds "
                                             f"{len(ids)} tasks, not {known} or {known + count}: another "
                                             "client wrote to it, so this submission's outcome is unknown") from exc
                logger.info("submission of %d tasks was not stored; sending it again", count)
                continue
            ids = reply.get("task_ids")
            if not isinstance(ids, list) or len(ids) != count:
                raise ServiceError(500, f"/v1/submit answered {len(ids or [])} task ids for {count} tasks",
                                   "bad_reply")
            return ids

    async def _group_after_outage(self, gid: str, deadline: float, exc: ServiceUnreachable) -> list[str]:
        """Wait (with backoff) until the service answers again; the group's task ids then."""
        backoff = Backoff(first_s=0.05, max_s=1.0)
        while True:
            if time.monotonic() > deadline:
                raise exc
            await asyncio.sleep(backoff.next_delay())
            try:
                return await self._group_ids(gid)
            except ServiceUnreachable:
                logger.debug("service at %s still unreachable", self._session.url)
