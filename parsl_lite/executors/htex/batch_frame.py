"""Reading the one frame of a batch message: ``kind \\n header \\n index blob`` (see ``messages.py``).

Apart from ``messages.py`` (which says what each batch carries) so that file
keeps to its job; these helpers only find the header and the index in the
frame and check that they fit, raising ``codec.Invalid`` where they do not.
"""
from __future__ import annotations

from typing import Any, Final

from parsl_lite.executors.htex.codec import Invalid, frame_to_ints, loads

NL: Final = b"\n"
KIND_MOST: Final = 64
"""A batch's kind is found within this many bytes of its frame."""


def batch_head(frame: bytes, size: int) -> tuple[list[Any], int]:
    """The header list (of ``size`` items) in a batch's frame, and where the index after it begins."""
    start = frame.index(NL) + 1  # the kind's end (the dispatcher found it)
    end = frame.find(NL, start)
    if end < 0:
        raise Invalid("no end of the header")
    header = loads(frame[start:end])
    if type(header) is not list or len(header) != size:
        raise Invalid(f"header must be a JSON list of {size} items")
    return header, end + 1


def batch_index(frame: bytes, at: int, count_ints: int) -> tuple[list[int], int]:
    """The ``count_ints`` int64 of the index at ``at``, and where the blob after it begins."""
    end = at + 8 * count_ints
    if len(frame) < end:
        raise Invalid(f"frame of {len(frame)} bytes too short for an index of {count_ints} numbers at {at}")
    return frame_to_ints(frame[at:end]), end
