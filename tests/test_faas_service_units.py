"""The service's pure pieces without a process: the watchers registry, access rules, validation, tokens, options."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from parsl_lite.errors import ConfigError
from parsl_lite.faas.service import access, validation
from parsl_lite.faas.service.auth import hash_token, new_token, token_from_header
from parsl_lite.faas.service.context import ServiceOptions
from parsl_lite.faas.service.routes_common import task_json
from parsl_lite.faas.service.store import EndpointRecord, FunctionRecord, TaskRecord, User
from parsl_lite.faas.service.validation import ApiError
from parsl_lite.faas.service.watchers import Watchers

ALICE = User("u-alice", "alice", False, 0.0)
BOB = User("u-bob", "bob", False, 0.0)
CAROL = User("u-carol", "carol", False, 0.0)


# ---------------------------------------------------------------- watchers


def test_a_pair_is_taken_once():
    w = Watchers()
    w.watch("c1", ["t1", "t2"])
    w.watch("c2", ["t1"])
    assert w.take("c1", "t1") and not w.take("c1", "t1")     # the watch answer and on_final: one sends
    assert w.take_all("t1") == ["c2"] and w.take_all("t1") == []
    assert w.watched(["t1", "t2", "t3"]) == ["t2"]
    w.drop("c1")
    assert len(w) == 0 and w.watched(["t2"]) == []


def test_unwatch_and_watching():
    w = Watchers()
    w.watch("c", ["a", "b", "c"])
    w.unwatch("c", ["b", "zz"])
    assert w.watching("c") == {"a", "c"}


@given(st.lists(st.tuples(st.sampled_from(["watch", "unwatch", "take", "take_all", "drop"]),
                          st.sampled_from(["c1", "c2", "c3"]), st.lists(st.sampled_from("abcd"), max_size=3))))
def test_registry_stays_consistent(ops):
    """Any order of events: every pair the registry holds is in both of its indexes, and taken at most once."""
    w, pairs = Watchers(), set()
    for op, conn, ids in ops:
        if op == "watch":
            w.watch(conn, ids)
            pairs |= {(conn, t) for t in ids}
        elif op == "unwatch":
            w.unwatch(conn, ids)
            pairs -= {(conn, t) for t in ids}
        elif op == "take":
            for t in ids:
                assert w.take(conn, t) == ((conn, t) in pairs)
                pairs.discard((conn, t))
        elif op == "take_all":
            for t in ids:
                assert set(w.take_all(t)) == {c for c, tt in pairs if tt == t}
                pairs = {(c, tt) for c, tt in pairs if tt != t}
        else:
            w.drop(conn)
            pairs = {(c, t) for c, t in pairs if c != conn}
        assert len(w) == len(pairs)
        for c in ("c1", "c2", "c3"):
            assert w.watching(c) == {t for cc, t in pairs if cc == c}


# ---------------------------------------------------------------- access


def _function(**kw):
    return FunctionRecord(**{"function_id": "f1", "owner_id": ALICE.user_id, "name": "f", "description": "",
                             "body": b"", "public": False, "shared_with": (), "versions": "", "created": 0.0,
                             **kw})


def _endpoint(**kw):
    return EndpointRecord(**{"endpoint_id": "e1", "owner_id": ALICE.user_id, "name": "laptop", "public_key": "k",
                             "public": False, "allowed_functions": (), "shared_with": (), "created": 0.0, **kw})


def test_function_access():
    private, shared, public = _function(), _function(shared_with=(BOB.user_id,)), _function(public=True)
    assert [access.may_use_function(u, private) for u in (ALICE, BOB, CAROL)] == [True, False, False]
    assert [access.may_use_function(u, shared) for u in (ALICE, BOB, CAROL)] == [True, True, False]
    assert [access.may_use_function(u, public) for u in (ALICE, BOB, CAROL)] == [True, True, True]
    with pytest.raises(ApiError) as info:
        access.function_for(BOB, private, "f1")
    assert info.value.status == 403 and "f1" in info.value.reason and "bob" in info.value.reason
    with pytest.raises(ApiError) as info:
        access.function_for(BOB, None, "f9")
    assert info.value.status == 404 and "f9" in info.value.reason


def test_endpoint_access_ownership_and_allowed_functions():
    shared = _endpoint(shared_with=(BOB.user_id,), allowed_functions=("f1",))
    assert access.endpoint_for(BOB, shared, "e1") is shared
    with pytest.raises(ApiError) as info:
        access.endpoint_for(CAROL, shared, "e1")
    assert info.value.status == 403
    with pytest.raises(ApiError) as info:
        access.owned_endpoint(BOB, shared, "e1", "delete")
    assert info.value.status == 403 and "delete" in info.value.reason
    access.check_allowed(shared, "f1")
    access.check_allowed(_endpoint(), "anything")                   # empty: any function
    with pytest.raises(ApiError) as info:
        access.check_allowed(shared, "f2")
    assert info.value.status == 403 and "f2" in info.value.reason and "e1" in info.value.reason


def test_task_access():
    task = TaskRecord("t1", ALICE.user_id, "f1", "e1", "g1", b"", "", "waiting-for-ep", 0.0)
    assert access.task_for(ALICE, task, "t1") is task
    assert access.task_refusal(BOB, task, "t1").status == 403
    assert access.task_refusal(BOB, None, "t2").status == 404


# ---------------------------------------------------------------- validation and shapes


def test_validation_names_fields():
    assert validation.parse_json(b'{"a": 1}') == {"a": 1}
    for raw, status in ((b"{", 400), (b"[]", 400), (b"", 400), (b"\xff", 400)):
        with pytest.raises(ApiError) as info:
            validation.parse_json(raw)
        assert info.value.status == status and info.value.reason.startswith("body:")
    with pytest.raises(ApiError, match="'name': 201 characters"):
        validation.require_str({"name": "x" * 201}, "name")
    with pytest.raises(ApiError, match=r"'ids\[1\]'"):
        validation.uuid_list({"ids": [str(uuid.uuid4()), "nope"]}, "ids")
    with pytest.raises(ApiError) as info:
        validation.check_size(11, 10, "tasks[3].payload")
    assert info.value.status == 413
    assert "tasks[3].payload of 11 bytes exceeds the limit of 10 bytes" in info.value.reason


def test_task_json_of_each_state():
    base = TaskRecord("t1", "u", "f", "e", "g", b"", "", "success", 1.0, result=b"v", finished=2.0)
    assert task_json(base)["result"] == "dg==" and task_json(base)["completion_t"] == 2.0
    failed = task_json(TaskRecord(**{**base.__dict__, "state": "failed"}))
    assert failed["exception"] == "dg==" and "result" not in failed
    purged = task_json(TaskRecord(**{**base.__dict__, "state": "purged", "result": None}), 60.0)
    assert "purged 60 s after it was fetched" in purged["reason"]
    pending = task_json(TaskRecord(**{**base.__dict__, "state": "running", "result": None, "finished": None}))
    assert pending["pending"] and "completion_t" not in pending


# ---------------------------------------------------------------- tokens and options


def test_tokens():
    token = new_token()
    assert len(token) >= 40 and hash_token(token) != token and len(hash_token(token)) == 64
    assert token_from_header(f"Bearer {token}") == token
    for header, code in ((None, "missing_token"), ("Bearer", "malformed_token"), ("Token x", "malformed_token"),
                         ("Bearer a b", "malformed_token")):
        with pytest.raises(ApiError) as info:
            token_from_header(header)
        assert info.value.status == 401 and info.value.code == code


def test_options_name_the_bad_field(tmp_path: Path):
    options = ServiceOptions(dir=tmp_path)
    assert options.host == "127.0.0.1" and options.db_url == str(tmp_path / "faas.db")
    assert options.max_request_bytes > 4 * options.payload_limit // 3
    for field, value in (("port", 70000), ("result_ttl_s", 0), ("payload_limit", 0), ("heartbeat_period_s", -1)):
        with pytest.raises(ConfigError, match=field):
            ServiceOptions(dir=tmp_path, **{field: value})


def test_async_store_runs_small_calls_inline_in_order_and_the_rest_on_its_thread():
    """With an ``inline_ok`` store, a small call runs on the loop's thread once the store thread is idle;
    big arguments and THREAD_ONLY calls go to the store thread; every call keeps its order."""
    import asyncio
    import threading
    import time as _time

    from parsl_lite.faas.service.async_store import INLINE_MAX_ITEMS, AsyncStore

    class Recorder:           # the calls and where they ran (the real stores are tested in test_faas_store.py)
        inline_ok = True

        def __init__(self) -> None:
            self.calls: list[tuple[str, str]] = []

        def get_tasks(self, ids, with_payload=True):
            if len(ids) > INLINE_MAX_ITEMS:
                _time.sleep(0.05)     # a slow big call: what follows must wait for it, in order
            self.calls.append((f"get_tasks/{len(ids)}", threading.current_thread().name))

        def task_group(self, group_id):
            self.calls.append(("task_group", threading.current_thread().name))

        def close(self) -> None:
            pass

    async def scenario(astore: AsyncStore) -> None:
        await astore.get_tasks(["a"])
        await asyncio.gather(astore.get_tasks(["x"] * (INLINE_MAX_ITEMS + 1)), astore.get_tasks(["b"]))
        await astore.task_group("g")
        await astore.get_tasks(["c"])

    recorder = Recorder()
    astore = AsyncStore(recorder)
    try:
        asyncio.run(scenario(astore))
    finally:
        astore.close()
    loop_thread = threading.current_thread().name
    where = [(name, "loop" if thread == loop_thread else "store") for name, thread in recorder.calls]
    assert where == [("get_tasks/1", "loop"), (f"get_tasks/{INLINE_MAX_ITEMS + 1}", "store"),
                     ("get_tasks/1", "store"),   # the thread was busy: behind the big call, not before it
                     ("task_group", "store"), ("get_tasks/1", "loop")]
    assert not AsyncStore(recorder, inline=False).inline
