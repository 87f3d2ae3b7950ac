"""Results on the endpoint's disk until the service says it stored them (``unacked_results/``, as Globus Compute).

One file per task, ``<task_id>.result``: a JSON line (task id, state, times),
then the payload bytes. A file is written to a temporary name, fsynced, then
renamed (and the directory fsynced), so after a SIGKILL a result is either
whole on disk or absent, never half-written; the task is re-delivered if absent.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable, Iterator, Optional

from parsl_lite.faas.protocol import TaskResult

logger = logging.getLogger(__name__)

SPOOL_DIR = "unacked_results"
_SUFFIX = ".result"


class ResultSpool:
    """The spool directory of one endpoint."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob("*.tmp"):  # a write cut short by a crash
            leftover.unlink(missing_ok=True)

    def _path(self, task_id: str) -> Path:
        if not task_id or "/" in task_id or task_id.startswith("."):
            raise ValueError(f"task id {task_id!r} cannot name a spool file")
        return self.directory / f"{task_id}{_SUFFIX}"

    def write(self, results: Iterable[TaskResult]) -> None:
        """Write each result durably (write, fsync, rename; then one fsync of the directory)."""
        wrote = False
        for result in results:
            path = self._path(result.task_id)
            header = json.dumps({"task_id": result.task_id, "state": result.state,
                                 "started": result.started, "finished": result.finished}).encode()
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(header + b"\n")
                    f.write(result.payload)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            os.replace(tmp, path)
            wrote = True
        if wrote:
            self._sync_directory()

    def read(self, task_id: str) -> Optional[TaskResult]:
        """The spooled result of ``task_id``, or None if there is none (or it cannot be read)."""
        try:
            data = self._path(task_id).read_bytes()
        except FileNotFoundError:
            return None
        head, sep, payload = data.partition(b"\n")
        try:
            meta = json.loads(head)
            if not sep:
                raise ValueError("no header line")
            return TaskResult(str(meta["task_id"]), meta["state"], payload, float(meta["started"]),
                              float(meta["finished"]))
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("spool file %s is unreadable (%s); leaving it for inspection", self._path(task_id), exc)
            return None

    def task_ids(self) -> list[str]:
        """The tasks whose results are spooled."""
        return sorted(p.name[:-len(_SUFFIX)] for p in self.directory.glob(f"*{_SUFFIX}"))

    def read_all(self, task_ids: Iterable[str]) -> Iterator[TaskResult]:
        for task_id in task_ids:
            result = self.read(task_id)
            if result is not None:
                yield result

    def delete(self, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            self._path(task_id).unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self.task_ids())

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
