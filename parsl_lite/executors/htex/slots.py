"""The slot file: which task each worker of a pool is running, shared by ``mmap``.

One little-endian int64 per worker slot. A worker writes a task's id before it
runs it and :data:`~parsl_lite.executors.htex.messages.NO_TASK` after (a few
hundred nanoseconds, no system call); its pool reads the slot when the worker
dies, so only the task that was running is reported lost. It lives in
``/dev/shm`` where there is one (memory, not disk), else in the temp directory.
"""
from __future__ import annotations

import mmap
import os
import struct
import tempfile
from typing import Optional

from parsl_lite.executors.htex.messages import NO_TASK

_SLOT = struct.Struct("<q")


class SlotFile:
    """The mapped file; :meth:`create` in the pool, :meth:`attach` in each worker."""

    def __init__(self, path: str, mapping: mmap.mmap, owner: bool) -> None:
        self.path = path
        self._map = mapping
        self._owner = owner

    @classmethod
    def create(cls, count: int, directory: Optional[str] = None) -> "SlotFile":
        """A new file of ``count`` slots, all :data:`NO_TASK`, readable by its owner only."""
        if directory is None and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
            directory = "/dev/shm"
        fd, path = tempfile.mkstemp(prefix="parsl_lite-slots-", dir=directory)
        try:
            os.write(fd, _SLOT.pack(NO_TASK) * count)
            mapping = mmap.mmap(fd, _SLOT.size * count)
        finally:
            os.close(fd)
        return cls(path, mapping, owner=True)

    @classmethod
    def attach(cls, path: str) -> "SlotFile":
        with open(path, "r+b") as handle:
            return cls(path, mmap.mmap(handle.fileno(), 0), owner=False)

    def write(self, index: int, task_id: int) -> None:
        _SLOT.pack_into(self._map, _SLOT.size * index, task_id)

    def read(self, index: int) -> int:
        return _SLOT.unpack_from(self._map, _SLOT.size * index)[0]

    def close(self) -> None:
        """Unmap; the pool (the owner) also removes the file."""
        self._map.close()
        if self._owner:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
