"""The web view's pure parts: merge patches between snapshots, the feed's versions, when to read the store."""
from __future__ import annotations

import json
import random

from parsl_lite.monitoring.web.feed import Feed, ReadPolicy, apply_patch, merge_patch


def test_merge_patch_carries_only_what_changed() -> None:
    old = {"run": {"run_id": "r1", "state": "running", "duration_s": 3.0}, "counts": {"pending": 5, "running": 2},
           "total": 7, "failures": [], "stream": [{"task_id": 1, "start": 1.0, "end": None}]}
    new = {"run": {"run_id": "r1", "state": "running", "duration_s": 4.0}, "counts": {"pending": 4, "running": 2},
           "total": 7, "failures": [], "stream": [{"task_id": 1, "start": 1.0, "end": 2.0}]}
    patch = merge_patch(old, new)
    assert patch == {"run": {"duration_s": 4.0}, "counts": {"pending": 4},
                     "stream": [{"task_id": 1, "start": 1.0, "end": 2.0}]}
    assert apply_patch(old, patch) == new
    assert merge_patch(new, json.loads(json.dumps(new))) is None


def test_removed_keys_and_none_values_become_null() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": None}
    new = {"b": {"c": 2, "d": None}, "e": None, "f": {"g": None, "h": 1}}
    patch = merge_patch(old, new)
    assert patch == {"a": None, "b": {"d": None}, "f": {"h": 1}}
    assert apply_patch({"a": 1, "b": {"c": 2, "d": 3}}, patch) == {"b": {"c": 2}, "f": {"h": 1}}


def _random_doc(rng: random.Random, depth: int = 0) -> dict:
    doc = {}
    for key in rng.sample("abcdefg", rng.randint(0, 5)):
        kind = rng.random()
        if kind < 0.3 and depth < 3:
            doc[key] = _random_doc(rng, depth + 1)
        elif kind < 0.45:
            doc[key] = [rng.randint(0, 3) for _ in range(rng.randint(0, 3))]
        elif kind < 0.55:
            doc[key] = None
        else:
            doc[key] = rng.choice([0, 1, 2, "x", "y", 1.5, True])
    return doc


def _drop_nulls(value):
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    return value


def test_patch_then_apply_gives_the_new_document_for_random_documents() -> None:
    rng = random.Random(12)
    for _ in range(2000):
        old, new = _random_doc(rng), _random_doc(rng)
        patch = merge_patch(old, new)
        got = _drop_nulls(old) if patch is None else apply_patch(_drop_nulls(old), patch)
        assert got == _drop_nulls(new), (old, new, patch)


def test_feed_versions_count_changes_only() -> None:
    feed = Feed()
    assert feed.update({"total": 1, "x": None}) is None and feed.version == 1
    assert feed.doc == {"total": 1}
    assert feed.update({"total": 1}) is None and feed.version == 1
    assert feed.update({"total": 2}) == {"total": 2} and feed.version == 2
    assert feed.doc == {"total": 2}


def test_read_policy_reads_only_when_watched_and_changed_or_stale() -> None:
    policy = ReadPolicy(max_age_s=15.0)
    assert not policy.should_read(("a",), watchers=0, now=0.0)     # nobody watches: never
    assert policy.should_read(("a",), watchers=1, now=0.0)         # first look
    assert not policy.should_read(("a",), watchers=1, now=1.0)     # nothing moved
    assert not policy.should_read(("a",), watchers=3, now=14.0)
    assert policy.should_read(("b",), watchers=1, now=14.5)        # the store moved
    assert not policy.should_read(("b",), watchers=1, now=20.0)
    assert policy.should_read(("b",), watchers=1, now=29.5)        # stale: the clock may change the view
    policy.forget()
    assert policy.should_read(("b",), watchers=1, now=29.6)        # after a failed read: read again
    assert not policy.should_read(("c",), watchers=0, now=30.0)


def test_read_policy_spaces_costly_reads() -> None:
    policy = ReadPolicy(max_age_s=15.0, cost_factor=5.0)
    assert policy.should_read(1, watchers=1, now=100.0)
    policy.read_took(1.5)                                          # a big store: 1.5 s a snapshot
    assert not policy.should_read(2, watchers=1, now=101.0)        # changed, but too soon
    assert not policy.should_read(3, watchers=1, now=107.4)
    assert policy.should_read(3, watchers=1, now=107.5)            # 5 x 1.5 s after the last read began
    policy.read_took(0.01)
    assert policy.should_read(4, watchers=1, now=108.0)
