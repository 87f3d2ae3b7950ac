"""What the web view pushes, decided without I/O: merge patches between snapshots, and when to read the store.

A snapshot is a JSON document (dicts, lists, strings, numbers). Browsers get
the whole document once, then only what changed, as an RFC 7386 JSON merge
patch: a dict key whose value changed carries the new value (dicts recurse),
a key that went away carries ``null``, lists and scalars are replaced whole.
A ``None`` in a snapshot therefore means the same as a missing key.

:class:`ReadPolicy` says when to read the store at all: only while someone
watches, and only when the store's signature (file sizes and times, or a
``max(timestamp)``) moved, or the last read is older than ``max_age_s`` (views
that depend on the clock, e.g. a run whose process died). Nothing else runs,
so an idle store costs no CPU beyond a ``stat`` per tick.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Optional

Json = Any


def merge_patch(old: Json, new: Json) -> Optional[Json]:
    """The merge patch that turns ``old`` into ``new``, or None when they are equal."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None if old == new else new
    patch: dict[str, Json] = {}
    for key in old.keys() - new.keys():
        if old[key] is not None:
            patch[key] = None
    for key, value in new.items():
        if key not in old or old[key] is None:
            if value is not None:
                patch[key] = _without_nulls(value)
            continue
        if value is None:
            patch[key] = None
            continue
        if isinstance(value, dict) and isinstance(old[key], dict):
            sub = merge_patch(old[key], value)
            if sub is not None:
                patch[key] = sub
        elif value != old[key]:
            patch[key] = _without_nulls(value)
    return patch or None


def apply_patch(doc: Json, patch: Json) -> Json:
    """RFC 7386: ``doc`` with ``patch`` applied (a new object; ``doc`` is left alone)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_patch(result.get(key), value)
    return result


def _without_nulls(value: Json) -> Json:
    """A dict value sent whole drops its ``None`` keys, as applying a patch would."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


class Feed:
    """The document browsers hold and its version; each new snapshot gives the patch to push, or None."""

    def __init__(self) -> None:
        self.version = 0
        self.doc: Optional[Json] = None

    def update(self, snapshot: Json) -> Optional[Json]:
        """Take a snapshot; return the patch from the previous one (None: unchanged, or the first)."""
        snapshot = _without_nulls(snapshot)
        if self.doc is None:
            self.doc, self.version = snapshot, 1
            return None
        patch = merge_patch(self.doc, snapshot)
        if patch is not None:
            self.doc, self.version = snapshot, self.version + 1
        return patch


@dataclass
class ReadPolicy:
    """When to read the store: someone watches and (its signature moved or the last read is stale).

    A read that cost ``t`` seconds of CPU allows the next one only ``cost_factor * t``
    after it began: on a big run (a snapshot of 100,000 tasks takes seconds)
    the view then costs at most ``1 / cost_factor`` of a core, never the run's.
    """

    max_age_s: float = 5.0
    cost_factor: float = 5.0
    _signature: Optional[Hashable] = None
    _read_at: Optional[float] = None
    _not_before: float = float("-inf")

    def should_read(self, signature: Hashable, watchers: int, now: float) -> bool:
        """Decide for this tick; a True means the caller reads now (the read is recorded)."""
        if watchers <= 0 or now < self._not_before:
            return False
        stale = self._read_at is None or now - self._read_at >= self.max_age_s
        if signature != self._signature or stale:
            self._signature, self._read_at = signature, now
            return True
        return False

    def read_took(self, took_s: float) -> None:
        """The read :meth:`should_read` allowed cost ``took_s`` (CPU): space the next one by it."""
        if self._read_at is not None:
            self._not_before = self._read_at + self.cost_factor * took_s

    def forget(self) -> None:
        """The next tick with a watcher reads (a read failed, or the run being watched changed)."""
        self._signature = self._read_at = None
