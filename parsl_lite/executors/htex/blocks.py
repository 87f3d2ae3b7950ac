"""The executor's blocks: how many slots one has, starting and stopping them, and when one dies.

A mixin of :class:`~parsl_lite.executors.htex.executor.HighThroughputExecutor`,
kept apart so each file does one job: ``executor.py`` submits tasks and talks
to the interchange; this one turns the strategy's and the job status poller's
decisions into provider calls (``scale_out`` / ``scale_in`` /
``handle_job_status``, the names Parsl's job status poller calls) and builds
the command a block's job runs to start a worker pool.
"""
from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from collections import OrderedDict
from typing import Any, Optional

from parsl_lite.executors.errors import ExecutorError
from parsl_lite.executors.htex.messages import BlockLost, HoldBlocks
from parsl_lite.executors.htex.wire_auth import SECRET_FILE
from parsl_lite.jobs.states import JobState, JobStatus

logger = logging.getLogger("parsl_lite.executors.htex.executor")

FAILED_BLOCKS_BEFORE_GIVING_UP = 2

DEFAULT_LAUNCH_CMD = ("{python} -m parsl_lite.executors.htex.worker_pool --address {address} --port {worker_port} "
                      "--block-id {block_id} --cores-per-worker {cores_per_worker} {max_workers} {mem_per_worker} "
                      "--heartbeat-period {heartbeat_period} --heartbeat-threshold {heartbeat_threshold} "
                      "--max-result-bytes {max_payload_bytes} {drain_period} --secret-file {secret_file} "
                      "{cert_dir} {broker_file} --logdir {logdir} {debug}")


_ENDED_KEPT = 20  # ended blocks a status report still lists (with how they ended)


class BlockHistory:
    """Each block's last job state as the poller reported it, and the last blocks that ended.

    What a status report shows (``faas/endpoint/status.py``); the poller's thread writes, others read
    copies. Ended blocks are kept with their job id, so a report can say which pod or job went and how.
    """

    def __init__(self, keep_ended: int = _ENDED_KEPT) -> None:
        self.live: dict[str, Any] = {}  # block id -> JobStatus
        self.ended: "OrderedDict[str, tuple[Any, Any]]" = OrderedDict()  # block id -> (job id, JobStatus)
        self._keep = keep_ended

    def changed(self, block_id: str, status: Any, job_id: Any = None) -> None:
        """Note a block's new status; a terminal one moves it to ``ended`` (keeping a known job id)."""
        if not getattr(status, "terminal", False):
            self.live[block_id] = status
            return
        self.live.pop(block_id, None)
        known = self.ended.pop(block_id, (None, None))[0]
        self.ended[block_id] = (job_id if job_id is not None else known, status)
        while len(self.ended) > self._keep:
            self.ended.popitem(last=False)


class ManagesBlocks:
    """Block bookkeeping for the executor (``self.blocks``: block id -> job id)."""

    # Set by the executor: its provider, label, options, client, status queries and failure path.
    _provider: Any
    blocks: dict[str, Any]
    _block_submitted: dict[str, float]
    _failed_blocks: int

    @property
    def block_history(self) -> BlockHistory:
        """The blocks' last job states and the last ended blocks (made on first use)."""
        history = self.__dict__.get("_block_history")
        if history is None:
            history = self.__dict__.setdefault("_block_history", BlockHistory())
        return history

    @property
    def executor_exception(self) -> Optional[BaseException]:
        """Why the executor runs nothing any more (Parsl's name): its blocks kept failing, or it was shut
        down; None while it works."""
        return getattr(self, "_broken", None)

    @property
    def workers_per_block(self) -> int:
        """Task slots per block, as a pool on a node like this one would count them."""
        cores = getattr(self._provider, "cores_per_node", None) or os.cpu_count() or 1
        per_node = max(1, int(cores // self.cores_per_worker))
        if self.max_workers_per_node:
            per_node = min(per_node, self.max_workers_per_node)
        return per_node * max(1, getattr(self._provider, "nodes_per_block", 1))

    def block_idle_since(self, block_id: str) -> Optional[float]:
        """When the block last held a task (its submission, if no pool registered yet); None if busy."""
        status = self._status(max_age_s=1.0)
        idle_s = status.block_idle_s.get(block_id)
        busy = status.block_busy.get(block_id, 0)
        if busy:
            return None
        if idle_s is None:
            return self._block_submitted.get(block_id)
        return time.monotonic() - idle_s

    def handle_job_status(self, block_id: str, status: Any) -> None:
        """A block's job changed state (noted for status reports); if it ended, forget it; if it died,
        fail the tasks its pools held."""
        self.block_history.changed(block_id, status, self.blocks.get(block_id))
        if not getattr(status, "terminal", False):
            return
        self.blocks.pop(block_id, None)
        state = getattr(status.state, "name", str(status.state))
        if state in ("SCALED_IN", "COMPLETED"):
            return
        reason = f"block {block_id}'s job ended: {status}"
        logger.error("executor %r: %s", self.label, reason)
        if state == "FAILED":
            self._block_failed(reason)
        try:
            self.command(BlockLost(0, block_id, reason))
        except Exception as exc:  # the interchange will notice the silence anyway
            logger.warning("executor %r: could not report block %s lost: %r", self.label, block_id, exc)

    def _block_failed(self, reason: str) -> None:
        """Parsl's block error handler: when blocks keep failing and no worker ever came, fail the executor.

        Otherwise tasks would wait for workers that will never come (a bad
        partition, a missing image, a worker that cannot start).
        """
        self._failed_blocks += 1
        if not self.block_error_handler or self._failed_blocks < FAILED_BLOCKS_BEFORE_GIVING_UP:
            return
        if any(self.blocks) or self._status(max_age_s=0.0).connected_workers:
            return
        self._fail(ExecutorError(self.label, f"{self._failed_blocks} blocks failed and no worker connected; "
                                             f"last: {reason}"))

    def scale_out(self, blocks: int = 1) -> list[str]:
        """Start ``blocks`` more blocks of worker pools through the provider.

        None while a lost interchange is being replaced: the restart starts the
        blocks for the new one (a pool started now would dial the dead one); none
        once the executor has failed.
        """
        if self._client is None:
            return []
        if self.executor_exception is not None:  # it gave up (or shut down): a new block would only idle
            logger.debug("executor %r: no new block, it failed: %s", self.label, self.executor_exception)
            return []
        started = []
        for _ in range(blocks):
            block_id = str(next(self._block_ids))
            command = self._launch_command(block_id)
            try:
                job_id = self._provider.submit(command, 1, f"parsl_lite.{self.label}.block-{block_id}")
            except Exception as exc:
                self._block_failed(f"the provider could not start block {block_id}: {exc}")
                raise
            self.blocks[block_id] = job_id
            self._block_submitted[block_id] = time.monotonic()
            started.append(block_id)
            logger.info("executor %r: block %s submitted as job %s", self.label, block_id, job_id)
        return started

    def scale_in(self, block_ids: list[str]) -> list[str]:
        """Stop sending tasks to these blocks, then cancel their jobs."""
        ids = [b for b in block_ids if b in self.blocks]
        if ids:
            try:
                self.command(HoldBlocks(0, tuple(ids)))
            except Exception as exc:
                logger.warning("executor %r: could not hold blocks %s: %r", self.label, ids, exc)
        return self._cancel_blocks(ids)

    def _cancel_blocks(self, block_ids: list[str]) -> list[str]:
        ids = [b for b in block_ids if b in self.blocks]
        if not ids or self._provider is None:
            return []
        try:
            self._provider.cancel([self.blocks[b] for b in ids])
        except Exception:
            logger.exception("executor %r: cancelling blocks %s failed", self.label, ids)
        for block_id in ids:
            self.block_history.changed(block_id, JobStatus(JobState.CANCELLED, "released by parsl_lite"),
                                       self.blocks.pop(block_id, None))
        return ids

    def _launch_command(self, block_id: str) -> str:
        assert self._client is not None
        logdir = os.path.join(self.worker_logdir_root or self.run_dir, f"block-{block_id}")
        secret_file = self._client.secret_file or os.path.join(self._client.settings.logdir, SECRET_FILE)
        return (self.launch_cmd or DEFAULT_LAUNCH_CMD).format(
            python=shlex.quote(sys.executable),
            address=self.address or self.loopback_address,
            worker_port=self._client.worker_port or self._client.settings.worker_port,  # (chosen ahead: not up yet)
            block_id=block_id,
            cores_per_worker=self.cores_per_worker,
            max_workers=f"--max-workers-per-node {self.max_workers_per_node}" if self.max_workers_per_node else "",
            mem_per_worker=f"--mem-per-worker {self.mem_per_worker}" if self.mem_per_worker else "",
            heartbeat_period=self.heartbeat_period,
            heartbeat_threshold=self.heartbeat_threshold,
            max_payload_bytes=self.max_payload_bytes,
            drain_period=f"--drain-period {self.drain_period}" if self.drain_period else "",
            secret_file=shlex.quote(secret_file),  # the path only: `ps` must not show the secret
            cert_dir=f"--cert-dir {shlex.quote(self.cert_dir)}" if self.cert_dir else "",
            logdir=shlex.quote(logdir),
            debug="--debug" if self.worker_debug else "",
            broker_file=_broker_file_option(os.path.dirname(secret_file)),
        )


def _broker_file_option(directory: str) -> str:
    """``--broker-file PATH`` when this process knows a messaging broker: the pool puts its URL and token
    into its workers' environment on any provider (the path only on the command line, as for the secret)."""
    from parsl_lite.messaging.paths import write_worker_file
    try:
        path = write_worker_file(directory)
    except Exception as exc:            # messaging is optional: a broken broker file must not stop a block
        logger.warning("no broker variables for the workers: %r", exc)
        return ""
    return f"--broker-file {shlex.quote(path)}" if path else ""

