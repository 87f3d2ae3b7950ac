"""Results on the endpoint's disk until the service says it stored them (``unacked_results/``, as Globus Compute).

The session writes here what it could not send, and what the service has not acknowledged within a
fraction of a second (``session._SPOOL_AFTER_S``); a result stored at once never touches the disk.

One file per batch of results that completed together (``<ns>-<n>.results``):
a JSON line listing ``[task_id, state, started, finished, payload size]`` per
result, then the payloads back to back. A file is written to a temporary
name, fsynced, renamed, and the directory fsynced, so after a crash a batch is
either whole on disk or absent (its tasks are then re-delivered), never half
there. One fsync per batch, not per result: a fsync costs milliseconds here,
which a per-result file would pay on every task. A file is deleted once every
result in it is acknowledged; a re-start re-sends the whole file, which the
service takes as duplicates of what it already stored.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import time
from pathlib import Path
from typing import Iterable, Iterator

from parsl_lite.faas.protocol import TaskResult

logger = logging.getLogger(__name__)

SPOOL_DIR = "unacked_results"
SUFFIX = ".results"


class ResultSpool:
    """The spool directory of one endpoint, and an index of which file holds which task's result."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._names = itertools.count()
        self._files: dict[str, set[str]] = {}   # file name -> task ids in it not yet acknowledged
        self._where: dict[str, str] = {}        # task id -> file name
        for leftover in self.directory.glob("*.tmp"):  # a write cut short by a crash
            leftover.unlink(missing_ok=True)
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                rows = self._header(path)
            except (OSError, ValueError) as exc:
                logger.error("spool file %s is unreadable (%s); leaving it for inspection", path, exc)
                continue
            self._index(path.name, [row[0] for row in rows])

    def _index(self, name: str, task_ids: list[str]) -> None:
        self._files[name] = set(task_ids)
        for task_id in task_ids:
            self._where[task_id] = name

    @staticmethod
    def _header(path: Path) -> list[list]:
        with open(path, "rb") as f:
            rows = json.loads(f.readline())
        if not isinstance(rows, list) or any(not isinstance(r, list) or len(r) != 5 for r in rows):
            raise ValueError("bad header line")
        return rows

    def write(self, results: Iterable[TaskResult]) -> None:
        """Write these results durably, as one file (write, fsync, rename, fsync the directory)."""
        results = list(results)
        if not results:
            return
        name = f"{time.time_ns()}-{next(self._names)}{SUFFIX}"
        header = json.dumps([[r.task_id, r.state, r.started, r.finished, len(r.payload)] for r in results])
        tmp = self.directory / f"{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header.encode() + b"\n")
                for result in results:
                    f.write(result.payload)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, self.directory / name)
        self._sync_directory()
        self._index(name, [r.task_id for r in results])

    def read_all(self, task_ids: Iterable[str]) -> Iterator[TaskResult]:
        """The spooled results among ``task_ids`` (unknown ids are skipped), reading each file once."""
        wanted: dict[str, set[str]] = {}
        for task_id in task_ids:
            name = self._where.get(task_id)
            if name is not None:
                wanted.setdefault(name, set()).add(task_id)
        for name, ids in wanted.items():
            yield from self._read_file(name, ids)

    def _read_file(self, name: str, ids: set[str]) -> Iterator[TaskResult]:
        try:
            with open(self.directory / name, "rb") as f:
                rows = json.loads(f.readline())
                for task_id, state, started, finished, size in rows:
                    payload = f.read(size)
                    if task_id in ids:
                        yield TaskResult(task_id, state, payload, float(started), float(finished))
        except (OSError, ValueError, TypeError) as exc:
            logger.error("spool file %s is unreadable (%s); its results are not re-sent", name, exc)

    def task_ids(self) -> list[str]:
        """The tasks whose results are spooled and not yet acknowledged."""
        return sorted(self._where)

    def delete(self, task_ids: Iterable[str]) -> None:
        """Forget these results; a file goes once none of its results is left."""
        for task_id in task_ids:
            name = self._where.pop(task_id, None)
            if name is None:
                continue
            left = self._files[name]
            left.discard(task_id)
            if not left:
                del self._files[name]
                (self.directory / name).unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._where)

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
