"""Frames between the kernel's process and the monitoring writer: a 4-byte length, then a pickle."""
from __future__ import annotations

import os
import pickle
import struct
from typing import Any, BinaryIO, Optional

_HEADER = struct.Struct("!I")


def write_frame(out: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(data)) + data)


def _read_exact(fd: int, size: int) -> Optional[bytes]:
    """``size`` bytes from a raw descriptor (no buffer hides data from ``select``), or None at end of file."""
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> Optional[Any]:
    """The next frame, or None at end of file."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    data = _read_exact(fd, _HEADER.unpack(header)[0])
    return None if data is None else pickle.loads(data)
