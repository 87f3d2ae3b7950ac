"""Classes from the user's ``__main__`` sent by value, and home again as themselves.

Pickle stores a class by reference (``__main__.Point``), which a worker cannot
resolve: its ``__main__`` is the worker module. dill can send the class by
value, but each load then builds a new class, so on a worker the function's
``Point`` and its argument's class would differ, and a result would come home
as an instance of yet another copy. Like cloudpickle's class tracker, each
``__main__`` class sent gets a tracker id; a process that loads a class under
an id it already knows uses the class it has (:func:`_tracked_class`). A class
that arrived that way is sent back under the same id even by plain
:func:`~parsl_lite.serialize.serialize` (the worker's result path), so the
user's process gets its own class back and ``isinstance`` holds at both ends.

Limits: a tracked class is built once per process; later changes to it (a class
attribute set after the first send, a method reading a global that was rebound)
do not reach a process that has it already. Redefining the class (re-running
the notebook cell) makes a new class with a new id, which does. An ``Enum``
defined in ``__main__`` cannot be sent at all (dill cannot rebuild one by
value): define it in a module.
"""
from __future__ import annotations

import io
import pickle
import threading
import uuid
import weakref
from types import FunctionType
from typing import Any, Optional

import dill

_PROTOCOL = pickle.HIGHEST_PROTOCOL

_lock = threading.Lock()
_class_by_id: "weakref.WeakValueDictionary[str, type]" = weakref.WeakValueDictionary()
_id_by_class: "weakref.WeakKeyDictionary[type, str]" = weakref.WeakKeyDictionary()
_arrived: "weakref.WeakSet[type]" = weakref.WeakSet()  # built here from another process's bytes


def _tracked_class(tracker_id: str, built: type) -> type:
    """Unpickling hook: the class this process knows under ``tracker_id``, else ``built``."""
    with _lock:
        known = _class_by_id.get(tracker_id)
        if known is not None:
            return known
        _class_by_id[tracker_id] = built
        _id_by_class[built] = tracker_id
        _arrived.add(built)
        return built


def _tracker_id(cls: type, assign: bool) -> Optional[str]:
    """The id to send ``cls`` under, or None to let dill send it untracked."""
    with _lock:
        tracker_id = _id_by_class.get(cls)
        if tracker_id is not None and (assign or cls in _arrived):
            return tracker_id
        if not assign:
            return None
        tracker_id = uuid.uuid4().hex
        _id_by_class[cls] = tracker_id
        _class_by_id[tracker_id] = cls
        return tracker_id


class _Pickler(dill.Pickler):
    """dill by value (``byref=False, recurse=True``), with ``__main__`` classes tracked."""

    def __init__(self, file: io.BytesIO, assign_ids: bool) -> None:
        super().__init__(file, _PROTOCOL, byref=False, recurse=True)
        self._assign_ids = assign_ids

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if (isinstance(obj, type) and obj.__module__ == "__main__" and id(obj) not in self.memo
                and id(obj) not in self._postproc):
            tracker_id = _tracker_id(obj, self._assign_ids)
            if tracker_id is not None:
                self._save_tracked(obj, tracker_id)
                return
        super().save(obj, save_persistent_id)

    def _save_tracked(self, cls: type, tracker_id: str) -> None:
        """Write ``_tracked_class(tracker_id, <cls by value>)``."""
        self.save(_tracked_class)
        self.save(tracker_id)
        super().save(cls)  # dill builds the class; our memo now maps id(cls) to what dill built
        self.write(pickle.TUPLE2 + pickle.REDUCE)
        # Later references to cls in this pickle must load as what _tracked_class returned, not
        # as dill's copy: memoize the result under id(cls). The displaced entry stays under
        # another key so that our memo keeps the unpickler's length (memo indices are positions).
        index = len(self.memo)
        self.write(self.put(index))
        displaced = self.memo.get(id(cls))
        if displaced is not None:
            self.memo[("parsl_lite.built", id(cls))] = displaced
        self.memo[id(cls)] = (index, cls)


def dumps_by_value(obj: Any, assign_ids: bool) -> bytes:
    """dill ``obj`` by value; ``assign_ids`` tracks every ``__main__`` class met.

    Without ``assign_ids`` only classes that arrived from another process are
    tracked (sent home as themselves); the others go by plain dill, so that
    bytes used as keys (memoization, checkpoints) stay the same across runs.
    """
    buffer = io.BytesIO()
    _Pickler(buffer, assign_ids).dump(obj)
    return buffer.getvalue()


# ---------------------------------------------------------------- the fast path: plain pickle

class _MentionsMain(Exception):
    """Raised inside the pickler: ``obj`` refers to ``__main__``, so it must go by value."""


class _MainFinder(pickle.Pickler):
    """The C pickler, stopped by the first class or function of ``__main__``.

    ``reducer_override`` is not called for ``None``, bools and exact ints,
    floats, str, bytes, lists, tuples, dicts and sets, so plain data pays
    nothing; each other object pays one Python call (~0.15 µs). This is
    precise where scanning the bytes for ``b"__main__"`` is not, and the
    scan runs at ~2 GB/s here (0.5 ms per MiB of payload).
    """

    def reducer_override(self, obj: Any) -> Any:
        cls = obj if isinstance(obj, type) else type(obj)
        if cls.__module__ == "__main__" or (cls is FunctionType and obj.__module__ == "__main__"):
            raise _MentionsMain
        return NotImplemented


# Picklers not in use, with their buffers. ``list.pop`` and ``append`` are atomic, so a
# thread (or a re-entrant call: a ``__reduce__`` that serializes) takes one no other
# call holds, or makes its own; a thread-local slot cost ~0.25 us more per call here.
_idle: list[tuple[_MainFinder, io.BytesIO]] = []
_MAX_IDLE = 8
_MAX_KEPT_BYTES = 1 << 20  # after a bigger payload, start afresh: no big buffer kept idle


def pickle_unless_main(obj: Any, header: bytes) -> Optional[bytes]:
    """``header`` + ``obj`` pickled, or None if it refers to ``__main__``.

    The picklers and their buffers are reused: writing to a file object also
    spares the C pickler's copy of large payloads (a 1 MiB bytes: 0.04 ms,
    against 0.4 ms through ``pickle.dumps``).

    Raises:
        Exception: whatever pickle raises for an object it refuses.
    """
    try:
        pickler, buffer = _idle.pop()
    except IndexError:
        buffer = io.BytesIO()
        pickler = _MainFinder(buffer, _PROTOCOL)
    buffer.write(header)
    try:
        pickler.dump(obj)
    except _MentionsMain:
        return None  # a pickler stopped mid-dump is dropped, never reused (so is one that raised)
    blob = buffer.getvalue()
    pickler.clear_memo()
    buffer.seek(0)
    buffer.truncate()
    if len(blob) < _MAX_KEPT_BYTES and len(_idle) < _MAX_IDLE:
        _idle.append((pickler, buffer))
    return blob
