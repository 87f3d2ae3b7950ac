"""The slot file: which task each worker of a pool is running, shared by ``mmap``.

One little-endian int64 per worker slot. A worker writes a task's id before it
runs it and :data:`~parsl_lite.executors.htex.messages.NO_TASK` after (a few
hundred nanoseconds, no system call); its pool reads the slot when the worker
dies, so only the task that was running is reported lost.

The file is unlinked as soon as it is made (in ``/dev/shm`` where there is one:
memory, not disk): the pool keeps it open and hands the descriptor to each
worker it starts (``pass_fds``), so nothing is left behind even if the pool is
killed.
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

    def __init__(self, fd: int, mapping: mmap.mmap) -> None:
        self.fd = fd
        self._map = mapping

    @classmethod
    def create(cls, count: int, directory: Optional[str] = None) -> "SlotFile":
        """A new, already unlinked file of ``count`` slots, all :data:`NO_TASK`."""
        if directory is None and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
            directory = "/dev/shm"
        fd, path = tempfile.mkstemp(prefix="parsl_lite-slots-", dir=directory)
        os.unlink(path)
        os.write(fd, _SLOT.pack(NO_TASK) * count)
        return cls(fd, mmap.mmap(fd, _SLOT.size * count))

    @classmethod
    def attach(cls, fd: int) -> "SlotFile":
        """Map the file a worker inherited as descriptor ``fd``."""
        return cls(fd, mmap.mmap(fd, 0))

    def write(self, index: int, task_id: int) -> None:
        _SLOT.pack_into(self._map, _SLOT.size * index, task_id)

    def read(self, index: int) -> int:
        return _SLOT.unpack_from(self._map, _SLOT.size * index)[0]

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)
