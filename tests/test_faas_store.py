"""One conformance suite for the function service's stores, run against SQLite and a real PostgreSQL.

Each test gets an empty store: a fresh SQLite file, or a fresh PostgreSQL
schema (the DSN's ``search_path``) dropped afterwards. Durability is checked
with real child processes killed by SIGKILL.

A speed check (not a test): ``python -m tests.test_faas_store URL [N]`` (from the repository root).
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import replace
from typing import Iterator

import psycopg
import pytest

from parsl_lite.faas.service.store import (
    CANCELLED, FAILED, PURGED, RUNNING, SUCCESS, WAITING_FOR_EP, WAITING_FOR_LAUNCH,
    EndpointRecord, FunctionRecord, Store, TaskRecord, open_store,
)
from parsl_lite.faas.service.store_postgres import PostgresStore
from parsl_lite.faas.service.store_sql import SCHEMA_VERSION, SchemaVersionError
from parsl_lite.faas.service.store_sqlite import SqliteStore


# ---------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """Nothing here touches the real ~/.parsl_lite (the child processes inherit this too)."""
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "home"))


def _pg_schema_dsn(pg_dsn: str, schema: str) -> str:
    return f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url(postgres) -> Iterator[str]:
    """A DSN whose tables land in a schema of their own, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres["PG_DSN"], autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_schema_dsn(postgres["PG_DSN"], schema)
    finally:
        with psycopg.connect(postgres["PG_DSN"], autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    """The URL of an empty store of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'faas.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=["sqlite", "sqlite-full", "postgres"])
def durable_url(request, tmp_path) -> str:
    """As ``store_url``, and SQLite with ``synchronous=full``: both levels must survive a SIGKILL."""
    if request.param.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'faas.db'}" + ("?synchronous=full" if request.param.endswith("full") else "")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url) -> Iterator[Store]:
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


def _task(endpoint_id: str = "ep-1", group: str = "g-1", received: float = 100.0, **kw) -> TaskRecord:
    fields = dict(task_id=str(uuid.uuid4()), owner_id="u-1", function_id="f-1", endpoint_id=endpoint_id,
                  task_group_id=group, payload=b"args", versions="Python 3.11, parsl_lite 0",
                  state=WAITING_FOR_EP, received=received)
    fields.update(kw)
    return TaskRecord(**fields)


def _endpoint(endpoint_id: str = "ep-1", name: str = "laptop", owner: str = "u-1", **kw) -> EndpointRecord:
    fields = dict(endpoint_id=endpoint_id, owner_id=owner, name=name, public_key="k" * 40, public=False,
                  allowed_functions=(), shared_with=(), created=10.0)
    fields.update(kw)
    return EndpointRecord(**fields)


def _state(store: Store, task_id: str) -> str:
    return store.get_tasks([task_id])[task_id].state


# ---------------------------------------------------------------- users, tokens, functions

def test_users_and_tokens(store):
    alice = store.create_user("alice")
    admin = store.create_user("root", is_admin=True)
    assert uuid.UUID(alice.user_id).version == 4 and not alice.is_admin and admin.is_admin
    assert store.get_user(alice.user_id) == alice
    assert store.user_by_name("root") == admin
    assert store.get_user("nobody") is None and store.user_by_name("nobody") is None
    with pytest.raises(ValueError, match="'alice'"):
        store.create_user("alice")
    store.add_token(alice.user_id, "a" * 64, "laptop")
    assert store.user_for_token("a" * 64) == alice
    assert store.user_for_token("b" * 64) is None
    with pytest.raises(ValueError, match="already stored"):
        store.add_token(admin.user_id, "a" * 64)
    assert store.user_for_token("a" * 64) == alice     # the failed add changed nothing


def test_functions(store):
    record = FunctionRecord("f-1", "u-1", "double", "doubles", b"\x00body\xff", False, ("u-2", "u-3"),
                            "Python 3.11, parsl_lite 0", 5.0)
    store.add_function(record)
    assert store.get_function("f-1") == record
    assert store.get_function("f-2") is None
    with pytest.raises(ValueError, match="f-1"):
        store.add_function(replace(record, name="other"))
    public = replace(record, function_id="f-2", public=True, shared_with=())
    store.add_function(public)
    assert store.get_function("f-2") == public


# ---------------------------------------------------------------- endpoints

def test_endpoint_add_get_list_delete(store):
    first = _endpoint(allowed_functions=("f-1",), shared_with=("u-2",), status={})
    store.add_endpoint(first)
    store.add_endpoint(_endpoint("ep-2", "cluster", created=11.0, public=True))
    assert store.get_endpoint("ep-1") == first
    assert store.endpoint_by_name("u-1", "cluster").endpoint_id == "ep-2"
    assert store.endpoint_by_name("u-2", "cluster") is None
    assert [e.endpoint_id for e in store.list_endpoints()] == ["ep-1", "ep-2"]
    with pytest.raises(ValueError, match="'cluster'"):
        store.add_endpoint(_endpoint("ep-3", "cluster"))
    assert store.delete_endpoint("ep-1") is True
    assert store.delete_endpoint("ep-1") is False
    assert store.get_endpoint("ep-1") is None and [e.endpoint_id for e in store.list_endpoints()] == ["ep-2"]


def test_endpoint_readd_replaces_registration_keeps_liveness(store):
    store.add_endpoint(_endpoint())
    store.set_endpoint_seen("ep-1", 50.0, True, {"managers": 2})
    store.add_endpoint(_endpoint(name="renamed", public_key="z" * 40, public=True, allowed_functions=("f-9",),
                                 shared_with=("u-7",), created=99.0, connected=False))
    got = store.get_endpoint("ep-1")
    assert (got.name, got.public_key, got.public, got.allowed_functions, got.shared_with) == \
        ("renamed", "z" * 40, True, ("f-9",), ("u-7",))
    assert (got.created, got.last_seen, got.connected, got.status) == (10.0, 50.0, True, {"managers": 2})
    assert store.endpoint_by_name("u-1", "laptop") is None


def test_endpoint_seen_and_disconnect_all(store):
    store.add_endpoint(_endpoint())
    store.add_endpoint(_endpoint("ep-2", "other"))
    assert store.get_endpoint("ep-1").last_seen is None and not store.get_endpoint("ep-1").connected
    report = {"alive": True, "managers": 1, "idle_workers": [1, 2], "provider": "LocalProvider"}
    store.set_endpoint_seen("ep-1", 20.0, True, report)
    store.set_endpoint_seen("ep-2", 21.0, True)
    assert store.get_endpoint("ep-1").status == report
    store.set_endpoint_seen("ep-1", 22.0, True)            # a heartbeat without a report keeps the last one
    got = store.get_endpoint("ep-1")
    assert (got.last_seen, got.connected, got.status) == (22.0, True, report)
    store.set_endpoint_seen("ep-2", 23.0, False)
    assert not store.get_endpoint("ep-2").connected
    store.set_endpoint_seen("ep-2", 24.0, True)
    store.disconnect_all_endpoints()
    assert [e.connected for e in store.list_endpoints()] == [False, False]
    assert store.get_endpoint("ep-1").status == report


# ---------------------------------------------------------------- the task life cycle

def test_task_life_cycle(store):
    a, b, c = _task(received=3.0), _task(received=1.0), _task(received=2.0)
    other = _task(endpoint_id="ep-2")
    store.add_tasks([a, b, c, other])
    got = store.get_tasks([a.task_id, "missing", other.task_id])
    assert set(got) == {a.task_id, other.task_id} and got[a.task_id] == a
    assert type(got[a.task_id].payload) is bytes and type(got[a.task_id].received) is float
    light = store.get_tasks([a.task_id, "missing"], with_payload=False)
    assert set(light) == {a.task_id} and light[a.task_id] == replace(a, payload=b"")
    assert [t.task_id for t in store.tasks_to_deliver("ep-1", 10)] == [b.task_id, c.task_id, a.task_id]
    assert [t.task_id for t in store.tasks_to_deliver("ep-1", 2)] == [b.task_id, c.task_id]
    assert store.tasks_in_flight("ep-1") == []

    store.mark_dispatched([b.task_id, c.task_id], at=10.0)
    t = store.get_tasks([b.task_id])[b.task_id]
    assert (t.state, t.attempts, t.dispatched) == (WAITING_FOR_LAUNCH, 1, 10.0)
    assert [t.task_id for t in store.tasks_to_deliver("ep-1", 10)] == [a.task_id]
    assert [t.task_id for t in store.tasks_in_flight("ep-1")] == [b.task_id, c.task_id]
    store.mark_dispatched([b.task_id], at=11.0)            # not waiting-for-ep: left alone
    assert store.get_tasks([b.task_id])[b.task_id].attempts == 1

    store.mark_running([b.task_id, a.task_id], at=12.0)     # a is not delivered: left alone
    t = store.get_tasks([b.task_id])[b.task_id]
    assert (t.state, t.started) == (RUNNING, 12.0) and _state(store, a.task_id) == WAITING_FOR_EP

    assert store.set_results([(b.task_id, SUCCESS, b"value", 12.5, 13.0),
                              (c.task_id, FAILED, b"exception", None, 14.0)]) == [b.task_id, c.task_id]
    got = store.get_tasks([b.task_id, c.task_id])
    assert type(got[b.task_id].result) is bytes and type(got[b.task_id].attempts) is int
    assert (got[b.task_id].state, got[b.task_id].result, got[b.task_id].started, got[b.task_id].finished) == \
        (SUCCESS, b"value", 12.5, 13.0)
    assert (got[c.task_id].state, got[c.task_id].result, got[c.task_id].started) == (FAILED, b"exception", None)
    assert store.tasks_in_flight("ep-1") == [] and store.tasks_to_deliver("ep-2", 5) == [other]


def test_requeue_redelivers(store):
    a, b, done = _task(), _task(), _task()
    store.add_tasks([a, b, done])
    store.mark_dispatched([a.task_id, b.task_id, done.task_id], at=1.0)
    store.mark_running([b.task_id], at=2.0)
    store.set_results([(done.task_id, SUCCESS, b"r", None, 3.0)])
    store.requeue([a.task_id, b.task_id, done.task_id])
    assert [_state(store, t.task_id) for t in (a, b, done)] == [WAITING_FOR_EP, WAITING_FOR_EP, SUCCESS]
    assert {t.task_id for t in store.tasks_to_deliver("ep-1", 10)} == {a.task_id, b.task_id}
    store.mark_dispatched([a.task_id], at=5.0)
    t = store.get_tasks([a.task_id])[a.task_id]
    assert (t.state, t.attempts, t.dispatched) == (WAITING_FOR_LAUNCH, 2, 1.0)   # dispatched: the first time


def test_set_results_idempotent(store):
    a, b, cancelled = _task(), _task(), _task()
    store.add_tasks([a, b, cancelled])
    store.cancel_tasks([cancelled.task_id], at=1.0)
    assert store.set_results([(a.task_id, SUCCESS, b"first", 1.0, 2.0)]) == [a.task_id]
    answer = store.set_results([(a.task_id, FAILED, b"second", 5.0, 6.0), (b.task_id, SUCCESS, b"b", None, 7.0),
                                (b.task_id, FAILED, b"dup in batch", None, 8.0),
                                (cancelled.task_id, SUCCESS, b"late", None, 9.0),
                                ("unknown", SUCCESS, b"x", None, 1.0)])
    assert answer == [a.task_id, b.task_id, cancelled.task_id]
    got = store.get_tasks([a.task_id, b.task_id, cancelled.task_id])
    assert (got[a.task_id].state, got[a.task_id].result, got[a.task_id].finished) == (SUCCESS, b"first", 2.0)
    assert (got[b.task_id].state, got[b.task_id].result) == (SUCCESS, b"b")
    assert (got[cancelled.task_id].state, got[cancelled.task_id].result) == (CANCELLED, None)
    with pytest.raises(ValueError, match="'running'"):
        store.set_results([(b.task_id, RUNNING, b"", None, 1.0)])
    assert store.set_results([]) == []


def _one_task_per_stage(store: Store) -> list[str]:
    """Four new tasks, left waiting-for-ep, waiting-for-launch, running and success."""
    tasks = [_task() for _ in range(4)]
    store.add_tasks(tasks)
    ids = [t.task_id for t in tasks]
    store.mark_dispatched(ids[1:], at=1.0)
    store.mark_running(ids[2:], at=2.0)
    store.set_results([(ids[3], SUCCESS, b"ok", None, 3.0)])
    return ids


def test_fail_tasks_only_pending(store):
    ids = _one_task_per_stage(store)
    store.fail_tasks(ids, b"EndpointLost", at=4.0)
    got = store.get_tasks(ids)
    assert [(got[i].state, got[i].result) for i in ids] == [(FAILED, b"EndpointLost")] * 3 + [(SUCCESS, b"ok")]
    assert got[ids[0]].finished == 4.0 and got[ids[3]].finished == 3.0


def test_cancel_only_before_running(store):
    ids = _one_task_per_stage(store)
    assert store.cancel_tasks(ids + ["unknown"], at=5.0) == ids[:2]
    got = store.get_tasks(ids)
    assert [got[i].state for i in ids] == [CANCELLED, CANCELLED, RUNNING, SUCCESS]
    assert got[ids[0]].finished == 5.0
    assert store.cancel_tasks(ids, at=6.0) == [] and store.cancel_tasks([], at=6.0) == []


def test_fetched_and_purged(store):
    old, new, pending, cancelled = _task(), _task(), _task(), _task()
    store.add_tasks([old, new, pending, cancelled])
    store.set_results([(old.task_id, SUCCESS, b"old", None, 1.0), (new.task_id, FAILED, b"new", None, 1.0)])
    store.cancel_tasks([cancelled.task_id], at=1.0)
    store.mark_fetched([old.task_id, pending.task_id, cancelled.task_id], at=10.0)
    store.mark_fetched([old.task_id, new.task_id], at=20.0)          # old: the first fetch stays
    got = store.get_tasks([old.task_id, new.task_id, pending.task_id])
    assert (got[old.task_id].fetched, got[new.task_id].fetched, got[pending.task_id].fetched) == (10.0, 20.0, None)

    before = time.time()
    assert store.purge_fetched(before=15.0) == 1
    got = store.get_tasks([old.task_id, new.task_id, cancelled.task_id])
    assert (got[old.task_id].state, got[old.task_id].result) == (PURGED, None)
    assert got[old.task_id].purged >= before and got[old.task_id].fetched == 10.0
    assert (got[new.task_id].state, got[new.task_id].result) == (FAILED, b"new")
    assert got[cancelled.task_id].state == CANCELLED
    assert store.purge_fetched(before=15.0) == 0
    assert store.set_results([(old.task_id, SUCCESS, b"again", None, 30.0)]) == [old.task_id]
    assert store.get_tasks([old.task_id])[old.task_id].state == PURGED
    assert store.purge_fetched(before=25.0) == 1 and _state(store, new.task_id) == PURGED


def test_task_group_order_and_counts(store):
    first = [_task(group="g-a", received=5.0 - i) for i in range(3)]
    second = [_task(group="g-a", received=0.0), _task(group="g-b")]
    store.add_tasks(first)
    store.add_tasks(second)
    assert store.task_group("g-a") == [t.task_id for t in first] + [second[0].task_id]
    assert store.task_group("g-b") == [second[1].task_id] and store.task_group("g-none") == []
    store.mark_dispatched([first[0].task_id, first[1].task_id], at=1.0)
    store.mark_running([first[0].task_id], at=1.0)
    store.set_results([(first[2].task_id, SUCCESS, b"", None, 1.0)])
    store.cancel_tasks([second[0].task_id], at=1.0)
    assert store.count_tasks() == {WAITING_FOR_EP: 1, WAITING_FOR_LAUNCH: 1, RUNNING: 1, SUCCESS: 1,
                                   FAILED: 0, CANCELLED: 1, PURGED: 0}


def test_add_tasks_all_or_none_and_many_ids(store):
    existing = _task()
    store.add_tasks([existing])
    batch = [_task() for _ in range(5)] + [replace(existing, payload=b"other")]
    with pytest.raises(ValueError, match="none was added"):
        store.add_tasks(batch)
    assert store.get_tasks(t.task_id for t in batch[:5]) == {}
    store.add_tasks([])
    many = [_task(payload=os.urandom(8), result=None) for _ in range(3000)]
    store.add_tasks(many)
    ids = [t.task_id for t in many]
    assert store.get_tasks(ids + ["unknown"]) == {t.task_id: t for t in many}
    store.mark_dispatched(ids, at=1.0)
    assert len(store.set_results([(i, SUCCESS, i.encode(), None, 2.0) for i in ids])) == 3000
    assert store.count_tasks()[SUCCESS] == 3000 and store.task_group("g-1") == [existing.task_id] + ids


# ---------------------------------------------------------------- opening: URLs, schema versions, settings

def test_open_store_urls(tmp_path, monkeypatch, pg_url):
    monkeypatch.chdir(tmp_path)
    for url, path in [("sqlite:///rel/faas.db", tmp_path / "rel" / "faas.db"),
                      (f"sqlite:///{tmp_path}/abs.db", tmp_path / "abs.db"),   # sqlite:////abs/path
                      (str(tmp_path / "plain.db"), tmp_path / "plain.db"),
                      ("bare.db", tmp_path / "bare.db")]:
        opened = open_store(url)
        try:
            assert isinstance(opened, SqliteStore) and os.path.samefile(opened.path, path), url
            opened.create_user("u")
        finally:
            opened.close()
    assert str(tmp_path).startswith("/") and f"sqlite:///{tmp_path}".startswith("sqlite:////")
    opened = open_store(pg_url)
    try:
        assert isinstance(opened, PostgresStore) and opened.count_tasks()[SUCCESS] == 0
        assert "plite:plite@" not in opened.where
    finally:
        opened.close()
    with pytest.raises(ValueError, match="mysql://db/faas"):
        open_store("mysql://db/faas")


def test_schema_version_newer_refused(store_url, tmp_path):
    opened = open_store(store_url)
    assert opened.schema_version() == SCHEMA_VERSION
    with opened._write() as cur:
        opened._exec(cur, "UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 98,))
    opened.close()
    with pytest.raises(SchemaVersionError) as info:
        open_store(store_url)
    message = str(info.value)
    assert f"version {SCHEMA_VERSION + 98}" in message and f"({SCHEMA_VERSION})" in message
    if store_url.startswith("sqlite"):
        assert str(tmp_path / "faas.db") in message
    else:
        assert "127.0.0.1" in message and "plite:plite" not in message


def test_reopen_keeps_everything(store_url):
    first = open_store(store_url)
    user = first.create_user("alice")
    task = _task()
    first.add_tasks([task])
    first.close()
    again = open_store(store_url)
    try:
        assert again.user_by_name("alice") == user and again.get_tasks([task.task_id]) == {task.task_id: task}
        assert again.schema_version() == SCHEMA_VERSION
    finally:
        again.close()


def test_postgres_reconnects_after_losing_its_connection(pg_url, postgres):
    """A dropped connection fails the call in progress; the next call opens a new one."""
    store = PostgresStore(pg_url)
    try:
        store.create_user("before")
        backend_pid = store._conn.info.backend_pid
        with psycopg.connect(postgres["PG_DSN"], autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
        with pytest.raises(psycopg.OperationalError):
            store.count_tasks()
        assert store.user_by_name("before") is not None and store._conn.info.backend_pid != backend_pid
    finally:
        store.close()


def test_sqlite_settings(tmp_path):
    opened = SqliteStore(tmp_path / "s.db")
    try:
        assert opened.settings() == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 30000}  # 1: NORMAL
    finally:
        opened.close()
    full = open_store(f"sqlite:///{tmp_path / 's.db'}?synchronous=full")
    try:
        assert full.settings()["synchronous"] == 2 and full.path == str(tmp_path / "s.db")   # 2: FULL
    finally:
        full.close()
    for bad in ("?synchronous=off", "?journal=delete"):
        with pytest.raises(ValueError, match=f"s.db\\{bad}"):
            SqliteStore(f"{tmp_path / 's.db'}{bad}")
    with pytest.raises(sqlite3.OperationalError, match=str(tmp_path / "dir.db")):
        (tmp_path / "dir.db").mkdir()
        SqliteStore(tmp_path / "dir.db")


# ---------------------------------------------------------------- durability and concurrent processes

_WRITER = textwrap.dedent("""
    import sys, time, uuid
    from parsl_lite.faas.service.store import SUCCESS, WAITING_FOR_EP, TaskRecord, open_store
    store = open_store(sys.argv[1])
    print("open", flush=True)
    for i in range(int(sys.argv[2])):
        ids = [str(uuid.uuid4()) for _ in range(3)]
        store.add_tasks([TaskRecord(t, "u", "f", "ep", "g", b"p", "v", WAITING_FOR_EP, time.time()) for t in ids])
        print("added", *ids, flush=True)
        store.set_results([(t, SUCCESS, t.encode(), None, time.time()) for t in ids[:2]])
        print("result", *ids[:2], flush=True)
""")


def _start_writer(url: str, rounds: int = 10 ** 6) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WRITER, url, str(rounds)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def test_sigkill_loses_no_reported_write(durable_url):
    """Every write the child reported (printed after the method returned) survives its SIGKILL."""
    store_url = durable_url
    proc = _start_writer(store_url)
    lines = []
    try:
        while len(lines) < 200:
            line = proc.stdout.readline()
            assert line, f"writer ended early: {proc.stderr.read()}"
            lines.append(line.split())
        os.kill(proc.pid, signal.SIGKILL)          # mid-stream: it is writing as fast as it can
        proc.wait(timeout=30)
        rest = proc.stdout.read()   # not communicate(): it reads the pipe past what readline() holds buffered
    finally:
        _stop(proc)
    assert proc.returncode == -signal.SIGKILL
    lines += [line.split() for line in rest.splitlines() if line]
    added = [t for words in lines if words[0] == "added" for t in words[1:]]
    results = [t for words in lines if words[0] == "result" for t in words[1:]]
    reopened = open_store(store_url)
    try:
        got = reopened.get_tasks(added)
        assert set(added) <= set(got)
        assert all((got[t].state, got[t].result) == (SUCCESS, t.encode()) for t in results)
    finally:
        reopened.close()


def test_sqlite_readers_while_a_process_writes(tmp_path):
    """A reader process and a second writer share the file with the writer: nobody sees "database is locked"."""
    url = str(tmp_path / "faas.db")
    SqliteStore(url).close()
    reader_code = textwrap.dedent("""
        import sys
        from parsl_lite.faas.service.store_sqlite import SqliteStore
        store, seen = SqliteStore(sys.argv[1]), 0
        while seen < 300:                          # until the writers have written this much
            counts = store.count_tasks()             # one snapshot: every task is in one of these two
            now = counts["waiting-for-ep"] + counts["success"]
            assert now >= seen, (now, seen)
            seen = now
            store.get_tasks(t.task_id for t in store.tasks_to_deliver("ep", 50))
        print("read", seen, flush=True)
    """)
    writers = [_start_writer(url, rounds=60), _start_writer(url, rounds=60)]
    reader = subprocess.Popen([sys.executable, "-c", reader_code, url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        out, err = reader.communicate(timeout=50)
        assert reader.returncode == 0 and out.startswith("read"), err
        for writer in writers:
            _, werr = writer.communicate(timeout=50)
            assert writer.returncode == 0, werr
            assert "locked" not in werr
    finally:
        for proc in [reader, *writers]:
            _stop(proc)
    final = SqliteStore(url)
    try:
        assert final.count_tasks()[SUCCESS] == 2 * 60 * 2 and final.count_tasks()[WAITING_FOR_EP] == 2 * 60
    finally:
        final.close()


# ---------------------------------------------------------------- speed check (not a test)

def speed_check(url: str, n: int = 10_000) -> dict[str, float]:
    """Seconds for add_tasks, get_tasks, mark_dispatched and set_results of ``n`` tasks in an empty store."""
    store = open_store(url)
    tasks = [_task(payload=os.urandom(100)) for _ in range(n)]
    ids = [t.task_id for t in tasks]
    steps = {"add_tasks": lambda: store.add_tasks(tasks), "get_tasks": lambda: store.get_tasks(ids),
             "mark_dispatched": lambda: store.mark_dispatched(ids, 1.0),
             "set_results": lambda: store.set_results([(i, SUCCESS, b"r" * 100, None, 2.0) for i in ids])}
    seconds = {}
    for name, step in steps.items():
        started = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - started
    store.close()
    return seconds


if __name__ == "__main__":
    for step, took in speed_check(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10_000).items():
        print(f"{step:16s} {took * 1000:8.1f} ms")
